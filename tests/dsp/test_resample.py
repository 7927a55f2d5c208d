"""Causal streaming resampling: kernel response, exact integer latency, streaming == offline,
and aliasing that falls as the oversampling factor grows."""

import numpy as np
import pytest
import scipy.signal as ss
import torch

from nablafx.dsp.analysis import aliasing_db
from nablafx.dsp.nonlinear import tanh_drive
from nablafx.dsp.resample import design_kernel, downsample, upsample

FS = 48000


@pytest.mark.parametrize("factor", [2, 4, 8])
@pytest.mark.parametrize("phase", ["linear", "minimum"])
def test_kernel_response(factor, phase):
    h = design_kernel(factor, phase=phase)
    assert abs(h.sum() - 1) < 1e-12
    _, resp = ss.freqz(h, worN=[1000.0, 15000.0, 30000.0, FS * factor / 2 - 1], fs=FS * factor)
    db = 20 * np.log10(np.abs(resp))
    assert abs(db[0]) < 0.01 and abs(db[1]) < 0.1
    assert (db[2:] < -75).all()
    if phase == "linear":
        np.testing.assert_allclose(h, h[::-1], atol=1e-15)


def _roundtrip(x, factor, phase, taps=32):
    k = torch.tensor(design_kernel(factor, taps, phase=phase))
    u, _ = upsample(x, k, factor)
    return downsample(u, k, factor)[0]


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_linear_phase_latency_is_integer(factor):
    t = torch.arange(4000, dtype=torch.float64) / FS
    x = torch.sin(2 * torch.pi * 1000 * t).reshape(1, 1, -1)
    y = _roundtrip(x, factor, "linear", taps=32)
    # a 1 kHz sine comes back delayed by exactly 32 samples, unchanged otherwise
    torch.testing.assert_close(y[..., 200:], x[..., 200 - 32:-32], atol=2e-4, rtol=0)


def test_minimum_phase_low_delay():
    t = torch.arange(4000, dtype=torch.float64) / FS
    x = torch.sin(2 * torch.pi * 500 * t).reshape(1, 1, -1)
    y = _roundtrip(x, 4, "minimum")
    lags = [((y[..., 500:] - x[..., 500 - d: x.shape[-1] - d]) ** 2).mean().item() for d in range(40)]
    assert int(np.argmin(lags)) <= 8
    assert abs(y[..., 500:].std() / x[..., 500:].std() - 1) < 1e-3


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_streaming_equals_offline(factor):
    k = torch.tensor(design_kernel(factor))
    x = torch.randn(2, 1, 700, dtype=torch.float64)
    y = downsample(upsample(x, k, factor)[0], k, factor)[0]
    uh = dh = None
    outs = []
    for s, n in zip([0, 1, 4, 37, 300], [1, 3, 33, 263, 400]):
        u, uh = upsample(x[..., s:s + n], k, factor, uh)
        yy, dh = downsample(torch.tanh(u) * 0 + u, k, factor, dh)
        outs.append(yy)
    torch.testing.assert_close(torch.cat(outs, -1), y, rtol=1e-12, atol=1e-12)


def test_causal():
    k = torch.tensor(design_kernel(4))
    x = torch.randn(1, 1, 300, dtype=torch.float64)
    x2 = x.clone()
    x2[..., 150:] += 1.0
    y = downsample(upsample(x, k, 4)[0], k, 4)[0]
    y2 = downsample(upsample(x2, k, 4)[0], k, 4)[0]
    torch.testing.assert_close(y[..., :150], y2[..., :150], rtol=0, atol=0)
    assert (y[..., 150:] - y2[..., 150:]).abs().max() > 0.1


def test_aliasing_falls_with_oversampling():
    t = torch.arange(FS // 4, dtype=torch.float64) / FS
    x = torch.sin(2 * torch.pi * 5000 * t).reshape(1, 1, -1)
    drive = torch.tensor(20.0, dtype=torch.float64)
    zero = torch.tensor(0.0, dtype=torch.float64)
    levels = []
    for factor in (1, 2, 4, 8):
        if factor == 1:
            y = tanh_drive(x, drive, zero)
        else:
            k = torch.tensor(design_kernel(factor))
            u, _ = upsample(x, k, factor)
            y, _ = downsample(tanh_drive(u, drive, zero), k, factor)
        levels.append(aliasing_db(y[0, 0, 2000:], 5000, FS))
    assert all(b < a - 5 for a, b in zip(levels, levels[1:])), levels
    assert levels[0] > -20 and levels[-1] < -55


def test_aliasing_db_of_a_clean_and_an_aliased_signal():
    t = torch.arange(9600, dtype=torch.float64) / FS
    clean = torch.sin(2 * torch.pi * 5000 * t) + 0.3 * torch.sin(2 * torch.pi * 15000 * t)
    assert aliasing_db(clean, 5000, FS) < -200
    dirty = clean + 0.01 * torch.sin(2 * torch.pi * 3000 * t)
    assert abs(aliasing_db(dirty, 5000, FS) - 10 * np.log10(0.01 ** 2 / (1 + 0.09 + 0.01 ** 2))) < 1e-6


@pytest.mark.parametrize("factor", [2, 3, 4, 8])
@pytest.mark.parametrize("n_taps", [None, 20])  # the designed kernel (tpp·factor + 1 taps); an arbitrary length
@pytest.mark.parametrize("n", [300, 2 * 8192 + 300])  # short blocks (a matmul of windows), long ones (a convolution)
def test_upsample_equals_zero_insertion_and_scipy_filter(factor, n_taps, n):
    """Upsampling = insert factor − 1 zeros after each sample, filter with factor·h (scipy, float64),
    with and without carried history (its first block starts from silence)."""
    h = design_kernel(factor) if n_taps is None else np.random.default_rng(factor).standard_normal(n_taps)
    x = np.random.default_rng(1).standard_normal((2, 1, n))
    zi = np.zeros((2, 1, n * factor))
    zi[..., ::factor] = x
    ref = ss.lfilter(factor * h, [1.0], zi, axis=-1)
    k = torch.tensor(h)
    first = n // 2 - 30
    up, hist = upsample(torch.tensor(x[..., :first]), k, factor)
    up2, _ = upsample(torch.tensor(x[..., first:]), k, factor, hist)
    got = torch.cat([up, up2], -1).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
