"""IIR filtering (recursion with carried state), time-varying cascades, frequency sampling and the
bilinear transform against scipy.signal in float64; gradients; no clamping."""

import numpy as np
import pytest
import scipy.signal as ss
import torch

from nablafx.dsp import biquad
from nablafx.dsp.filters import (
    bilinear,
    change_points,
    fsm_impulse_response,
    iir_filter,
    sos_filter,
    sos_filter_tv,
    sos_freqz,
)
from nablafx.dsp.fir import fir_filter

FS = 48000
rng = np.random.default_rng(0)


def random_stable(order, batch):
    """Random stable filters: poles inside radius 0.95."""
    bs, as_ = [], []
    for _ in range(batch):
        poles = []
        while len(poles) < order:
            if order - len(poles) >= 2 and rng.random() < 0.7:
                r, th = rng.uniform(0.3, 0.95), rng.uniform(0.05, 3.0)
                poles += [r * np.exp(1j * th), r * np.exp(-1j * th)]
            else:
                poles.append(rng.uniform(-0.95, 0.95))
        as_.append(np.real(np.poly(poles)))
        bs.append(rng.standard_normal(order + 1))
    return np.array(bs), np.array(as_)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_iir_matches_scipy_lfilter(order):
    b, a = random_stable(order, 3)
    a = a * rng.uniform(0.5, 2.0, size=(3, 1))  # a[0] != 1: normalised inside
    x = rng.standard_normal((3, 1, 700))
    y, _ = iir_filter(torch.tensor(x), torch.tensor(b), torch.tensor(a))
    ref = np.stack([ss.lfilter(b[i], a[i], x[i, 0]) for i in range(3)])
    np.testing.assert_allclose(y[:, 0].numpy(), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("blocks", [[1] * 40, [2, 1, 3, 34], [7, 33], [40]])
def test_iir_streaming_equals_offline(blocks):
    b, a = random_stable(3, 2)
    x = torch.tensor(rng.standard_normal((2, 1, sum(blocks))))
    y, _ = iir_filter(x, torch.tensor(b), torch.tensor(a))
    state, outs, start = None, [], 0
    for n in blocks:
        yy, state = iir_filter(x[..., start:start + n], torch.tensor(b), torch.tensor(a), state)
        outs.append(yy)
        start += n
    torch.testing.assert_close(torch.cat(outs, -1), y, rtol=1e-12, atol=1e-12)


def test_iir_float32_streaming_is_exact_enough():
    """Recursion in float64 inside: a 30 Hz high pass in float32 stays block-size independent."""
    b, a = biquad.highpass(torch.tensor([30.0]), torch.tensor([0.707]), FS)
    x = torch.randn(1, 1, 9000) * 0.3
    y, _ = iir_filter(x, b, a)
    state, outs = None, []
    for s in range(0, 9000, 512):
        yy, state = iir_filter(x[..., s:s + 512], b, a, state)
        outs.append(yy)
    err = (torch.cat(outs, -1) - y).abs().max() / y.pow(2).mean().sqrt()
    assert err < 1e-6
    ref = ss.lfilter(b[0].double().numpy(), a[0].double().numpy(), x[0, 0].double().numpy())
    assert np.abs(y[0, 0].numpy() - ref).max() / np.sqrt(np.mean(ref ** 2)) < 1e-5


def test_no_clamping():
    """Reference defect 3: outputs beyond ±1 pass untouched (same code in training and evaluation)."""
    b, a = biquad.peaking(torch.tensor([12.0]), torch.tensor([1000.0]), torch.tensor([1.0]), FS)
    x = torch.sin(2 * torch.pi * 1000 * torch.arange(4800) / FS).reshape(1, 1, -1) * 0.9
    y, _ = iir_filter(x, b, a)
    assert y.abs().max() > 3.0
    y10, _ = iir_filter(10 * x, b, a)
    torch.testing.assert_close(y10, 10 * y, rtol=1e-5, atol=1e-5)


def test_sos_filter_matches_sosfilt():
    g = torch.tensor([[3.0, -6.0, 4.0, -2.0, 5.0]], dtype=torch.float64)
    f = torch.tensor([[80.0, 300.0, 1200.0, 5000.0, 9000.0]], dtype=torch.float64)
    q = torch.tensor([[0.7, 1.0, 2.0, 0.5, 0.7]], dtype=torch.float64)
    b, a = biquad.parametric_eq(g, f, q, FS)
    x = rng.standard_normal(3000)
    y, _ = sos_filter(torch.tensor(x).reshape(1, 1, -1), b, a)
    sos = np.concatenate([b[0].numpy(), a[0].numpy()], axis=1)
    np.testing.assert_allclose(y[0, 0].numpy(), ss.sosfilt(sos, x), rtol=1e-10, atol=1e-10)


def _tv_design(p):
    # p (B, 2) → lowpass with cutoff 200 Hz … 10 kHz and q 0.5 … 4
    b, a = biquad.lowpass(200.0 * 50.0 ** p[:, 0], 0.5 * 8.0 ** p[:, 1], FS)
    return b.unsqueeze(1), a.unsqueeze(1)


def test_time_varying_cascade_matches_per_sample_loop():
    n, hop = 1000, 128
    frames = torch.rand(2, 2, n // hop + 1, dtype=torch.float64)
    params = frames.repeat_interleave(hop, dim=-1)[..., :n]  # held per frame
    x = torch.randn(2, 1, n, dtype=torch.float64)
    y, _ = sos_filter_tv(x, params, _tv_design)
    # reference: the direct-form-I difference equation, coefficients per sample
    for i in range(2):
        xs, ys = x[i, 0].numpy(), np.zeros(n)
        for t in range(n):
            b, a = (c[0, 0].numpy() for c in _tv_design(params[i:i + 1, :, t]))
            acc = sum(b[k] * xs[t - k] for k in range(3) if t - k >= 0)
            acc -= sum(a[k] * ys[t - k] for k in range(1, 3) if t - k >= 0)
            ys[t] = acc
        np.testing.assert_allclose(y[i, 0].numpy(), ys, rtol=1e-9, atol=1e-9)
    # and block-wise with blocks that do not line up with the frames
    state, outs = None, []
    for s in range(0, n, 77):
        yy, state = sos_filter_tv(x[..., s:s + 77], params[..., s:s + 77], _tv_design, state)
        outs.append(yy)
    torch.testing.assert_close(torch.cat(outs, -1), y, rtol=1e-12, atol=1e-12)


def test_change_points():
    p = torch.tensor([[[0.1, 0.1, 0.2, 0.2, 0.2, 0.3]]])
    assert change_points(p) == [2, 5]
    assert change_points(p[..., :1]) == []


def test_frequency_sampling_fir_matches_recursion():
    b, a = biquad.peaking(torch.tensor([6.0], dtype=torch.float64), torch.tensor([500.0], dtype=torch.float64),
                          torch.tensor([2.0], dtype=torch.float64), FS)
    h = fsm_impulse_response(sos_freqz(b.unsqueeze(1), a.unsqueeze(1), 8192), 4096)
    imp = np.zeros(4096)
    imp[0] = 1.0
    np.testing.assert_allclose(h[0].numpy(), ss.lfilter(b[0].numpy(), a[0].numpy(), imp), atol=1e-9)
    x = torch.randn(1, 1, 5000, dtype=torch.float64)
    y_fir, _ = fir_filter(x, h)
    y_iir, _ = iir_filter(x, b, a)
    assert (y_fir - y_iir).abs().max() < 1e-7


def test_bilinear_matches_scipy():
    bs = np.array([0.0, 2e-3, 1e-7, 3e-12])
    as_ = np.array([1.0, 5e-3, 4e-7, 6e-12])
    b, a = bilinear(torch.tensor(bs), torch.tensor(as_), FS)
    sb, sa = ss.bilinear(bs[::-1], as_[::-1], FS)  # scipy: descending powers of s
    np.testing.assert_allclose(b.numpy(), sb / sa[0], rtol=1e-9)
    np.testing.assert_allclose(a.numpy(), sa / sa[0], rtol=1e-9)


def test_bilinear_prewarp_preserves_corner():
    # analog one-pole low pass at 5 kHz: |H| = -3 dB at exactly 5 kHz after pre-warping
    wc = 2 * np.pi * 5000
    b, a = bilinear(torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([1.0, 1 / wc], dtype=torch.float64),
                    FS, prewarp_hz=5000.0)
    _, h = ss.freqz(b.numpy(), a.numpy(), worN=[5000.0], fs=FS)
    np.testing.assert_allclose(20 * np.log10(abs(h)), -10 * np.log10(2), atol=1e-9)


def test_iir_gradcheck():
    b, a = random_stable(2, 2)
    x = torch.randn(2, 1, 24, dtype=torch.float64, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    at = torch.tensor(a, requires_grad=True)
    state = (torch.randn(2, 1, 2, dtype=torch.float64, requires_grad=True),
             torch.randn(2, 1, 2, dtype=torch.float64, requires_grad=True))
    assert torch.autograd.gradcheck(lambda x, b, a, s0, s1: iir_filter(x, b, a, (s0, s1))[0],
                                    (x, bt, at, *state))


def test_fir_matches_numpy_direct_and_fft():
    x = rng.standard_normal((2, 1, 500))
    for taps in (1, 5, 80):
        h = rng.standard_normal(taps)
        ref = np.stack([np.convolve(x[i, 0], h)[:500] for i in range(2)])
        for method in ("direct", "fft"):
            y, hist = fir_filter(torch.tensor(x), torch.tensor(h), method=method)
            np.testing.assert_allclose(y[:, 0].numpy(), ref, atol=1e-10)
            assert hist.shape == (2, 1, taps - 1)
        hb = rng.standard_normal((2, taps))  # one filter per example
        y, _ = fir_filter(torch.tensor(x), torch.tensor(hb))
        ref = np.stack([np.convolve(x[i, 0], hb[i])[:500] for i in range(2)])
        np.testing.assert_allclose(y[:, 0].numpy(), ref, atol=1e-10)


def test_fir_streaming_and_gradcheck():
    x = torch.randn(1, 1, 300, dtype=torch.float64)
    h = torch.randn(70, dtype=torch.float64)
    y, _ = fir_filter(x, h)
    hist, outs = None, []
    for s in range(0, 300, 13):
        yy, hist = fir_filter(x[..., s:s + 13], h, hist)
        outs.append(yy)
    torch.testing.assert_close(torch.cat(outs, -1), y)
    xs = torch.randn(1, 1, 20, dtype=torch.float64, requires_grad=True)
    hs = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, h: fir_filter(x, h)[0], (xs, hs))
