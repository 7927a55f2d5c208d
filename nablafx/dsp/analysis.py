"""Measurements on signals (used by tests and benchmarks)."""

from __future__ import annotations

import math

import torch


def aliasing_db(y: torch.Tensor, f0_hz: float, sample_rate: int) -> float:
    """Energy of the non-harmonic components of ``y`` relative to its total energy, in dB.

    ``y``: a steady-state response to a sine of ``f0_hz`` (1-D).  The analysed segment is cut to a
    whole number of periods that also fits the FFT grid exactly (``f0`` and ``sample_rate`` integer
    Hz), so every harmonic ``k·f0`` — and nothing else — falls on its own bin with no leakage
    (rectangular window).  Everything off the harmonic bins is aliasing (plus numerical noise).
    """
    f0 = int(round(f0_hz))
    if f0 != f0_hz or int(sample_rate) != sample_rate:
        raise ValueError("aliasing_db needs integer f0_hz and sample_rate")
    period = sample_rate // math.gcd(f0, int(sample_rate))  # samples holding a whole number of periods
    n = (y.shape[-1] // period) * period
    if n == 0:
        raise ValueError(f"signal too short: need at least {period} samples")
    seg = y[..., y.shape[-1] - n:].to(torch.float64)
    power = torch.fft.rfft(seg).abs() ** 2
    freqs = torch.arange(power.shape[-1], dtype=torch.float64) * sample_rate / n
    harmonic = torch.remainder(freqs, f0) == 0
    total = power.sum()
    alias = power[..., ~harmonic].sum()
    return float(10 * torch.log10(alias / total))
