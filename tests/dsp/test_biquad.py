"""Biquad design against the RBJ cookbook (written out here in numpy), scipy.signal, and the
analog prototypes through scipy's bilinear transform; shelves the right way round."""

import math

import numpy as np
import pytest
import scipy.signal as ss
import torch

from nablafx.dsp import biquad
from nablafx.dsp.filters import freqz, sos_freqz

FS = 48000
CASES = [(6.0, 100.0, 0.707), (-12.0, 1000.0, 2.0), (18.0, 8000.0, 0.5), (-3.0, 15000.0, 1.2)]


def rbj_numpy(kind, gain_db, f0, q, fs=FS):
    a_ = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * f0 / fs
    c, s = math.cos(w0), math.sin(w0)
    al = s / (2 * q)
    sq = 2 * math.sqrt(a_) * al
    if kind == "lowpass":
        b = [(1 - c) / 2, 1 - c, (1 - c) / 2]
        a = [1 + al, -2 * c, 1 - al]
    elif kind == "highpass":
        b = [(1 + c) / 2, -(1 + c), (1 + c) / 2]
        a = [1 + al, -2 * c, 1 - al]
    elif kind == "peaking":
        b = [1 + al * a_, -2 * c, 1 - al * a_]
        a = [1 + al / a_, -2 * c, 1 - al / a_]
    elif kind == "lowshelf":
        b = [a_ * ((a_ + 1) - (a_ - 1) * c + sq), 2 * a_ * ((a_ - 1) - (a_ + 1) * c), a_ * ((a_ + 1) - (a_ - 1) * c - sq)]
        a = [(a_ + 1) + (a_ - 1) * c + sq, -2 * ((a_ - 1) + (a_ + 1) * c), (a_ + 1) + (a_ - 1) * c - sq]
    elif kind == "highshelf":
        b = [a_ * ((a_ + 1) + (a_ - 1) * c + sq), -2 * a_ * ((a_ - 1) + (a_ + 1) * c), a_ * ((a_ + 1) + (a_ - 1) * c - sq)]
        a = [(a_ + 1) - (a_ - 1) * c + sq, 2 * ((a_ - 1) - (a_ + 1) * c), (a_ + 1) - (a_ - 1) * c - sq]
    b, a = np.array(b), np.array(a)
    return b / a[0], a / a[0]


def analog_prototype(kind, gain_db, f0, q, fs=FS):
    """RBJ's analog prototypes with s normalised to the pre-warped corner, via scipy.signal.bilinear."""
    a_ = 10 ** (gain_db / 40)
    wc = 2 * fs * math.tan(math.pi * f0 / fs)
    r = math.sqrt(a_) / q
    if kind == "lowshelf":   # A (s² + √A/Q s + A) / (A s² + √A/Q s + 1)
        bs, as_ = [a_, a_ * r, a_ * a_], [a_, r, 1.0]
    elif kind == "highshelf":  # A (A s² + √A/Q s + 1) / (s² + √A/Q s + A)
        bs, as_ = [a_ * a_, a_ * r, a_], [1.0, r, a_]
    elif kind == "peaking":  # (s² + A/Q s + 1) / (s² + s/(A Q) + 1)
        bs, as_ = [1.0, a_ / q, 1.0], [1.0, 1 / (a_ * q), 1.0]
    scale = np.array([1 / wc ** 2, 1 / wc, 1.0])
    return ss.bilinear(np.array(bs) * scale, np.array(as_) * scale, fs)


def ours(kind, gain_db, f0, q):
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    b, a = biquad.design(kind, t(gain_db), t(f0), t(q), FS)
    return b.numpy(), a.numpy()


@pytest.mark.parametrize("kind", biquad.KINDS)
@pytest.mark.parametrize("gain_db,f0,q", CASES)
def test_coefficients_match_cookbook(kind, gain_db, f0, q):
    b, a = ours(kind, gain_db, f0, q)
    rb, ra = rbj_numpy(kind, gain_db, f0, q)
    np.testing.assert_allclose(b, rb, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a, ra, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ["lowshelf", "highshelf", "peaking"])
@pytest.mark.parametrize("gain_db,f0,q", CASES)
def test_coefficients_match_analog_prototype(kind, gain_db, f0, q):
    b, a = ours(kind, gain_db, f0, q)
    sb, sa = analog_prototype(kind, gain_db, f0, q)
    np.testing.assert_allclose(b, sb / sa[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a, sa / sa[0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("f0", [50.0, 1000.0, 12000.0])
def test_butterworth_low_and_high_pass(f0):
    for kind, btype in (("lowpass", "low"), ("highpass", "high")):
        b, a = ours(kind, 0.0, f0, 1 / math.sqrt(2))
        sb, sa = ss.butter(2, f0, btype=btype, fs=FS)
        np.testing.assert_allclose(b, sb, rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(a, sa, rtol=1e-9, atol=1e-13)


def _mag_db(kind, gain_db, f0, q, freqs):
    b, a = ours(kind, gain_db, f0, q)
    _, h = ss.freqz(b, a, worN=freqs, fs=FS)
    return 20 * np.log10(np.abs(h))


@pytest.mark.parametrize("gain_db", [-12.0, 9.0])
def test_shelves_are_not_mixed_up(gain_db):
    """Reference defect 2: its "high shelf" was a low shelf.  Here: low shelf acts at DC, high at Nyquist."""
    f0 = 1000.0
    low = _mag_db("lowshelf", gain_db, f0, 0.707, [0.0, f0, FS / 2])
    high = _mag_db("highshelf", gain_db, f0, 0.707, [0.0, f0, FS / 2])
    np.testing.assert_allclose(low, [gain_db, gain_db / 2, 0.0], atol=1e-6)
    np.testing.assert_allclose(high, [0.0, gain_db / 2, gain_db], atol=1e-6)


def test_peaking_gain_at_centre_only():
    db = _mag_db("peaking", 7.5, 2000.0, 1.5, [0.0, 2000.0, FS / 2])
    np.testing.assert_allclose(db, [0.0, 7.5, 0.0], atol=1e-6)


def test_freqz_matches_scipy():
    b, a = ours("peaking", 6.0, 500.0, 3.0)
    ref = ss.freqz(b, a, worN=513, whole=False, include_nyquist=True)[1]
    got = freqz(torch.tensor(b), torch.tensor(a), 1024).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


def test_parametric_eq_cascade_response():
    g = torch.tensor([[3.0, -6.0, 4.0, -2.0, 5.0]], dtype=torch.float64)
    f = torch.tensor([[80.0, 300.0, 1200.0, 5000.0, 9000.0]], dtype=torch.float64)
    q = torch.tensor([[0.7, 1.0, 2.0, 0.5, 0.7]], dtype=torch.float64)
    b, a = biquad.parametric_eq(g, f, q, FS)
    assert b.shape == (1, 5, 3) and a.shape == (1, 5, 3)
    sos = np.concatenate([b[0].numpy(), a[0].numpy()], axis=1)
    ref = ss.sosfreqz(sos, worN=np.linspace(0, np.pi, 1025))[1]
    got = sos_freqz(b, a, 2048)[0].numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)
    assert [biquad.PEQ_KINDS[0], biquad.PEQ_KINDS[-1]] == ["lowshelf", "highshelf"]


def test_unknown_kind_lists_known():
    with pytest.raises(ValueError, match="known: lowpass, highpass, peaking, lowshelf, highshelf"):
        biquad.design("bandpass", 0.0, 1000.0, 1.0, FS)


@pytest.mark.parametrize("kind", biquad.KINDS)
def test_design_gradcheck(kind):
    g = torch.tensor([4.0, -3.0], dtype=torch.float64, requires_grad=True)
    f = torch.tensor([700.0, 3000.0], dtype=torch.float64, requires_grad=True)
    q = torch.tensor([0.8, 2.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda g, f, q: biquad.design(kind, g, f, q, FS), (g, f, q))


# --- dasp-pytorch as an independent oracle (adapter and its defects: tests/oracles/dasp.py) -------

def _dasp_grid(n=400, seed=0):
    """Gains ±24 dB, corners 10 Hz … 0.45 f_s (log), Q 0.1 … 10 (log), float64."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(3, n, generator=g, dtype=torch.float64)
    return -24 + 48 * u[0], 10 * (0.45 * FS / 10) ** u[1], 0.1 * 100 ** u[2]


@pytest.mark.parametrize("kind", biquad.KINDS)
def test_coefficients_match_dasp(kind):
    """Same cookbook maths written by someone else: 400 random (gain, corner, Q) per kind agree to
    1e-12 (relative and absolute; both sides float64)."""
    from tests.oracles import dasp

    gain_db, cutoff_hz, q = _dasp_grid()
    b, a = biquad.design(kind, gain_db, cutoff_hz, q, FS)
    db, da = dasp.biquad(kind, gain_db, cutoff_hz, q, FS)
    torch.testing.assert_close(b, db, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a, da, rtol=1e-12, atol=1e-12)


def _peq_params(seed, batch=3):
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(3, batch, 5, generator=g, dtype=torch.float64)
    lo = torch.tensor([30.0, 60.0, 200.0, 600.0, 1000.0], dtype=torch.float64)
    hi = torch.tensor([1000.0, 1500.0, 5000.0, 12000.0, 18000.0], dtype=torch.float64)
    return -24 + 48 * u[0], lo * (hi / lo) ** u[1], 0.3 * 10 ** u[2]


def test_parametric_eq_matches_dasp():
    """Our five-band cascade, run by the exact recursion, against dasp's six-band EQ (one band at
    0 dB) run by frequency sampling.  Responses agree to 1e-10 (same coefficients, same FFT grid);
    filtered noise agrees within dasp's time-aliasing bound (computed from the exact impulse response,
    kept < 1e-6 by the signal length) + 1e-11 (measured: ≤ 5e-13)."""
    from nablafx.dsp.filters import sos_filter
    from tests.oracles import dasp

    n = 2 ** 14
    gain_db, cutoff_hz, q = _peq_params(seed=3)
    b, a = biquad.parametric_eq(gain_db, cutoff_hz, q, FS)
    db, da = dasp.parametric_eq_sos(gain_db, cutoff_hz, q, FS)
    sos = torch.cat([db, da], dim=-1)
    n_fft = dasp.fsm_n_fft(n)
    import dasp_pytorch.signal as dasp_signal

    torch.testing.assert_close(sos_freqz(b, a, n_fft), dasp_signal.fft_sosfreqz(sos, n_fft), rtol=1e-10, atol=1e-10)

    x = 0.5 * torch.randn(3, 2, n, generator=torch.Generator().manual_seed(4), dtype=torch.float64)  # stereo
    ours, _ = sos_filter(x, b, a)
    theirs = dasp.parametric_eq(x, FS, gain_db, cutoff_hz, q)
    impulse = torch.zeros(3, 1, 8 * n, dtype=torch.float64)
    impulse[..., 0] = 1.0
    h, _ = sos_filter(impulse, b, a)
    for i in range(3):
        bound = dasp.fsm_error_bound(h[i, 0], n, float(x[i].abs().max()))
        assert bound < 1e-6
        assert float((ours[i] - theirs[i]).abs().max()) <= bound + 1e-11
