"""Exact-bin harmonic analysis (nablafx.dsp.analysis) against closed forms and quadrature."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from nablafx.dsp.analysis import aliasing_db, aliasing_to_signal_db, harmonic_amplitudes, thd

SR = 48000


def _tanh_sine_coefficients(drive: float, n: int) -> np.ndarray:
    """Fourier sine coefficients b_k of tanh(drive·sin θ) by quadrature (float64, independent of FFTs)."""
    return np.array([2 / math.pi * integrate.quad(lambda th, k=k: math.tanh(drive * math.sin(th)) * math.sin(k * th),
                                                  0, math.pi, limit=400, epsabs=1e-13)[0] for k in range(1, n + 1)])


@pytest.mark.parametrize("drive", [0.5, 2.0])
def test_harmonics_and_thd_of_a_tanh_match_quadrature(drive):
    f0 = 1000
    t = np.arange(SR // 10) / SR
    y = torch.from_numpy(np.tanh(drive * np.sin(2 * np.pi * f0 * t)))
    amps = harmonic_amplitudes(y, f0, SR, 23).numpy()
    ref = np.abs(_tanh_sine_coefficients(drive, 23))
    # harmonics above Nyquist fold onto harmonic bins (48 kHz is a multiple of 1 kHz); for these drives
    # their size (b_25 and up) is below 1e-6 of the fundamental, hence the tolerance
    np.testing.assert_allclose(amps, ref, atol=2e-6 * ref[0])
    assert abs(float(thd(torch.from_numpy(amps))) - np.sqrt(np.sum(ref[1:] ** 2)) / ref[0]) < 1e-5
    assert np.all(amps[1::2] < 1e-9)  # an odd function has no even harmonics


def test_small_drive_thd_follows_the_taylor_series():
    # tanh(a sin θ) ≈ a sin θ − a³ sin³θ / 3: H3/H1 → a²/12 for small a
    a = 0.05
    t = np.arange(SR // 10) / SR
    amps = harmonic_amplitudes(torch.from_numpy(np.tanh(a * np.sin(2 * np.pi * 1000 * t))), 1000, SR, 5)
    assert float(thd(amps)) == pytest.approx(a**2 / 12, rel=1e-3)


def test_harmonics_above_nyquist_are_nan():
    y = torch.sin(2 * torch.pi * 5000 * torch.arange(4800, dtype=torch.float64) / SR)
    amps = harmonic_amplitudes(y, 5000, SR, 6).numpy()
    assert np.isfinite(amps[:4]).all() and np.isnan(amps[4:]).all()  # 25 kHz and 30 kHz ≥ 24 kHz
    assert amps[0] == pytest.approx(1.0, abs=1e-12)


def test_aliasing_to_signal_ratio_of_a_known_inharmonic_tone():
    t = torch.arange(SR // 10, dtype=torch.float64) / SR
    sine = torch.sin(2 * torch.pi * 5000 * t)
    assert aliasing_to_signal_db(sine, 5000, SR) < -150  # nothing off the harmonic bins
    # 3 kHz at 1e-3 of the fundamental: ASR = 20·log10(1e-3) = −60 dB exactly
    y = sine + 0.5 * torch.sin(2 * torch.pi * 10000 * t) + 1e-3 * torch.sin(2 * torch.pi * 3000 * t)
    expected = 10 * math.log10(1e-6 / (1 + 0.25))
    assert aliasing_to_signal_db(y, 5000, SR) == pytest.approx(expected, abs=1e-9)
    # aliasing_db keeps its definition (alias over total, DC included)
    assert aliasing_db(y, 5000, SR) == pytest.approx(10 * math.log10(1e-6 / (1 + 0.25 + 1e-6)), abs=1e-9)


def test_non_integer_frequencies_are_refused():
    with pytest.raises(ValueError, match="integer"):
        harmonic_amplitudes(torch.zeros(4800), 1000.5, SR, 3)
