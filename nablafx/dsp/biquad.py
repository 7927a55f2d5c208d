"""Biquad coefficient design (R. Bristow-Johnson's "Audio EQ Cookbook") and cascades of biquads.

Every function takes tensors that broadcast together (one value per example, say ``(batch,)``) and
returns ``(b, a)``, each of shape ``(..., 3)``, normalised so that ``a[..., 0] == 1``.  Units are in
the parameter names; ``sample_rate`` is in Hz.

Shelving filters follow the cookbook exactly: a **low shelf** changes the gain *below* the corner
(``|H(0)| = gain``, ``|H(π)| = 1``), a **high shelf** changes it *above* (``|H(0)| = 1``,
``|H(π)| = gain``); both have half the gain in dB at the corner frequency.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

KINDS = ("lowpass", "highpass", "peaking", "lowshelf", "highshelf")


def _omega(cutoff_hz: torch.Tensor, q: torch.Tensor, sample_rate: float):
    w0 = 2.0 * math.pi * cutoff_hz / sample_rate
    cos_w0 = torch.cos(w0)
    alpha = torch.sin(w0) / (2.0 * q)
    return cos_w0, alpha


def _pack(b0, b1, b2, a0, a1, a2):
    b = torch.stack(torch.broadcast_tensors(b0, b1, b2), dim=-1)
    a = torch.stack(torch.broadcast_tensors(a0, a1, a2), dim=-1)
    return b / a[..., :1], a / a[..., :1]


def _as_tensor(*values):
    ref = next((v for v in values if isinstance(v, torch.Tensor)), None)
    dtype = ref.dtype if ref is not None else torch.get_default_dtype()
    device = ref.device if ref is not None else None
    return [v if isinstance(v, torch.Tensor) else torch.tensor(v, dtype=dtype, device=device) for v in values]


def lowpass(cutoff_hz, q, sample_rate: float):
    """Second-order low pass; with ``q = 1/√2`` it is the bilinear (pre-warped) Butterworth."""
    cutoff_hz, q = _as_tensor(cutoff_hz, q)
    cos_w0, alpha = _omega(cutoff_hz, q, sample_rate)
    b1 = 1.0 - cos_w0
    return _pack(b1 / 2, b1, b1 / 2, 1.0 + alpha, -2.0 * cos_w0, 1.0 - alpha)


def highpass(cutoff_hz, q, sample_rate: float):
    cutoff_hz, q = _as_tensor(cutoff_hz, q)
    cos_w0, alpha = _omega(cutoff_hz, q, sample_rate)
    b1 = 1.0 + cos_w0
    return _pack(b1 / 2, -b1, b1 / 2, 1.0 + alpha, -2.0 * cos_w0, 1.0 - alpha)


def peaking(gain_db, cutoff_hz, q, sample_rate: float):
    """Peaking (bell) EQ: ``gain_db`` at ``cutoff_hz``, unity far from it."""
    gain_db, cutoff_hz, q = _as_tensor(gain_db, cutoff_hz, q)
    cos_w0, alpha = _omega(cutoff_hz, q, sample_rate)
    big_a = torch.pow(10.0, gain_db / 40.0)
    return _pack(1.0 + alpha * big_a, -2.0 * cos_w0, 1.0 - alpha * big_a,
                 1.0 + alpha / big_a, -2.0 * cos_w0, 1.0 - alpha / big_a)


def lowshelf(gain_db, cutoff_hz, q, sample_rate: float):
    """Low shelf: ``gain_db`` below ``cutoff_hz`` (DC), unity at Nyquist."""
    gain_db, cutoff_hz, q = _as_tensor(gain_db, cutoff_hz, q)
    cos_w0, alpha = _omega(cutoff_hz, q, sample_rate)
    big_a = torch.pow(10.0, gain_db / 40.0)
    two_sqrt_a_alpha = 2.0 * torch.sqrt(big_a) * alpha
    ap1, am1 = big_a + 1.0, big_a - 1.0
    return _pack(
        big_a * (ap1 - am1 * cos_w0 + two_sqrt_a_alpha),
        2.0 * big_a * (am1 - ap1 * cos_w0),
        big_a * (ap1 - am1 * cos_w0 - two_sqrt_a_alpha),
        ap1 + am1 * cos_w0 + two_sqrt_a_alpha,
        -2.0 * (am1 + ap1 * cos_w0),
        ap1 + am1 * cos_w0 - two_sqrt_a_alpha,
    )


def highshelf(gain_db, cutoff_hz, q, sample_rate: float):
    """High shelf: unity at DC, ``gain_db`` above ``cutoff_hz`` (Nyquist)."""
    gain_db, cutoff_hz, q = _as_tensor(gain_db, cutoff_hz, q)
    cos_w0, alpha = _omega(cutoff_hz, q, sample_rate)
    big_a = torch.pow(10.0, gain_db / 40.0)
    two_sqrt_a_alpha = 2.0 * torch.sqrt(big_a) * alpha
    ap1, am1 = big_a + 1.0, big_a - 1.0
    return _pack(
        big_a * (ap1 + am1 * cos_w0 + two_sqrt_a_alpha),
        -2.0 * big_a * (am1 + ap1 * cos_w0),
        big_a * (ap1 + am1 * cos_w0 - two_sqrt_a_alpha),
        ap1 - am1 * cos_w0 + two_sqrt_a_alpha,
        2.0 * (am1 - ap1 * cos_w0),
        ap1 - am1 * cos_w0 - two_sqrt_a_alpha,
    )


def design(kind: str, gain_db, cutoff_hz, q, sample_rate: float):
    """One biquad of ``kind`` (one of :data:`KINDS`); ``gain_db`` is ignored by low/high pass."""
    if kind == "lowpass":
        return lowpass(cutoff_hz, q, sample_rate)
    if kind == "highpass":
        return highpass(cutoff_hz, q, sample_rate)
    if kind == "peaking":
        return peaking(gain_db, cutoff_hz, q, sample_rate)
    if kind == "lowshelf":
        return lowshelf(gain_db, cutoff_hz, q, sample_rate)
    if kind == "highshelf":
        return highshelf(gain_db, cutoff_hz, q, sample_rate)
    raise ValueError(f"unknown biquad kind {kind!r}; known: {', '.join(KINDS)}")


def cascade(kinds: Sequence[str], gain_db: torch.Tensor, cutoff_hz: torch.Tensor, q: torch.Tensor,
            sample_rate: float):
    """A cascade of biquads, e.g. a parametric EQ.

    ``gain_db``, ``cutoff_hz``, ``q``: ``(..., K)`` with ``K == len(kinds)``.
    Returns ``(b, a)`` of shape ``(..., K, 3)``.
    """
    if gain_db.shape[-1] != len(kinds) or cutoff_hz.shape[-1] != len(kinds) or q.shape[-1] != len(kinds):
        raise ValueError(f"cascade of {len(kinds)} biquads needs (..., {len(kinds)}) parameters")
    bs, as_ = [], []
    for k, kind in enumerate(kinds):
        b, a = design(kind, gain_db[..., k], cutoff_hz[..., k], q[..., k], sample_rate)
        bs.append(b)
        as_.append(a)
    return torch.stack(bs, dim=-2), torch.stack(as_, dim=-2)


PEQ_KINDS = ("lowshelf", "peaking", "peaking", "peaking", "highshelf")


def parametric_eq(gain_db: torch.Tensor, cutoff_hz: torch.Tensor, q: torch.Tensor, sample_rate: float):
    """Five-band parametric EQ: low shelf, three peaking bands, high shelf; parameters ``(..., 5)``."""
    return cascade(PEQ_KINDS, gain_db, cutoff_hz, q, sample_rate)
