"""Gain staging: gain in dB, DC offset, phase (polarity) inversion, dB conversions.

Audio is ``(batch, channels, samples)``; a parameter is a tensor broadcastable against it,
e.g. ``(batch, 1, 1)`` for one value per example or ``(batch, 1, samples)`` when it varies in time.
"""

from __future__ import annotations

import torch


def db_to_amplitude(gain_db: torch.Tensor) -> torch.Tensor:
    """20·log10 inverse: amplitude ratio of a gain in dB."""
    return torch.pow(10.0, gain_db / 20.0)


def amplitude_to_db(amplitude: torch.Tensor, floor: float = 1e-8) -> torch.Tensor:
    """Level in dB of ``|amplitude|``, floored at ``floor`` (−160 dB by default) to stay finite."""
    return 20.0 * torch.log10(amplitude.abs().clamp_min(floor))


def gain(x: torch.Tensor, gain_db: torch.Tensor) -> torch.Tensor:
    """``x · 10^(gain_db / 20)``."""
    return x * db_to_amplitude(gain_db)


def dc_offset(x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """``x + offset`` (offset in full-scale units)."""
    return x + offset


def phase_invert(x: torch.Tensor) -> torch.Tensor:
    """Polarity inversion, ``−x``."""
    return -x
