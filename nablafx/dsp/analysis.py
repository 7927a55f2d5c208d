"""Measurements on signals (used by the report, tests and benchmarks): exact-bin harmonic analysis."""

from __future__ import annotations

import math

import torch


def _exact_segment(y: torch.Tensor, f0_hz: float, sample_rate: int) -> tuple[torch.Tensor, int]:
    """The last whole-period, FFT-grid-exact segment of ``y`` (float64) and ``f0`` as an int."""
    f0 = int(round(f0_hz))
    if f0 != f0_hz or int(sample_rate) != sample_rate:
        raise ValueError("exact-bin analysis needs integer f0_hz and sample_rate")
    period = sample_rate // math.gcd(f0, int(sample_rate))  # samples holding a whole number of periods
    n = (y.shape[-1] // period) * period
    if n == 0:
        raise ValueError(f"signal too short: need at least {period} samples")
    return y[..., y.shape[-1] - n:].to(torch.float64), f0


def harmonic_split(y: torch.Tensor, f0_hz: float, sample_rate: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Power spectrum of the exact segment of ``y`` (see :func:`aliasing_db`), split in two.

    Returns ``(power, freqs, harmonic)``: the one-sided power per bin ``(..., bins)``, the bin
    frequencies in Hz and a boolean mask of the harmonic bins ``k·f0`` (DC included, k = 0).
    """
    seg, f0 = _exact_segment(y, f0_hz, sample_rate)
    n = seg.shape[-1]
    power = torch.fft.rfft(seg).abs() ** 2
    freqs = torch.arange(power.shape[-1], dtype=torch.float64) * sample_rate / n
    return power, freqs, torch.remainder(freqs, f0) == 0


def aliasing_db(y: torch.Tensor, f0_hz: float, sample_rate: int) -> float:
    """Energy of the non-harmonic components of ``y`` relative to its total energy, in dB.

    ``y``: a steady-state response to a sine of ``f0_hz`` (1-D).  The analysed segment is cut to a
    whole number of periods that also fits the FFT grid exactly (``f0`` and ``sample_rate`` integer
    Hz), so every harmonic ``k·f0`` — and nothing else — falls on its own bin with no leakage
    (rectangular window).  Everything off the harmonic bins is aliasing (plus numerical noise).
    """
    power, _, harmonic = harmonic_split(y, f0_hz, sample_rate)
    return float(10 * torch.log10(power[..., ~harmonic].sum() / power.sum()))


def aliasing_to_signal_db(y: torch.Tensor, f0_hz: float, sample_rate: int, floor_db: float = -200.0) -> float:
    """Aliasing-to-signal ratio in dB: energy off the harmonic bins over the energy on them
    (DC excluded from both), for a steady-state response ``y`` to a sine of ``f0_hz``.

    Same exact-bin analysis as :func:`aliasing_db`; ``floor_db`` is returned for a response with
    no inharmonic energy at all (a linear system in exact arithmetic).
    """
    power, freqs, harmonic = harmonic_split(y, f0_hz, sample_rate)
    signal = power[..., harmonic & (freqs > 0)].sum()
    alias = power[..., ~harmonic].sum()
    if signal <= 0:
        raise ValueError("no energy on the harmonic bins: is the input a sine of f0_hz?")
    if alias <= 0:
        return floor_db
    return max(floor_db, float(10 * torch.log10(alias / signal)))


def harmonic_amplitudes(y: torch.Tensor, f0_hz: float, sample_rate: int, n_harmonics: int) -> torch.Tensor:
    """Peak amplitudes of harmonics 1…``n_harmonics`` of a steady-state response to a sine of
    ``f0_hz`` (exact bins, no window); harmonics at or above Nyquist are NaN.  ``y``: ``(..., samples)``.
    """
    seg, f0 = _exact_segment(y, f0_hz, sample_rate)
    n = seg.shape[-1]
    spec = torch.fft.rfft(seg)
    out = torch.full((*seg.shape[:-1], n_harmonics), float("nan"), dtype=torch.float64)
    for k in range(1, n_harmonics + 1):
        bin_ = k * f0 * n // sample_rate
        if 2 * k * f0 < sample_rate:
            out[..., k - 1] = 2 * spec[..., bin_].abs() / n
    return out


def thd(amplitudes: torch.Tensor) -> torch.Tensor:
    """Total harmonic distortion ``sqrt(Σ_{k≥2} A_k²) / A_1`` from :func:`harmonic_amplitudes`
    (NaN harmonics, above Nyquist, are left out).  Multiply by 100 for percent."""
    a = torch.nan_to_num(amplitudes, nan=0.0)
    return torch.sqrt((a[..., 1:] ** 2).sum(-1)) / a[..., 0]
