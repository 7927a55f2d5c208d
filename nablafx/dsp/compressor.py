"""A feed-forward dynamic range compressor with attack *and* release, differentiable and vectorised.

Equations (log-domain design of Giannoulis, Massberg & Reiss, "Digital Dynamic Range Compressor
Design — A Tutorial and Analysis", JAES 2012, with the decoupled peak detector placed on the gain
reduction):

* level ``L[n] = 20 log10 max(|x[n]|, 1e-8)`` dB;
* static curve with threshold ``T``, ratio ``R`` and knee width ``W`` (dB)::

      G(L) = L                                         2 (L − T) < −W
             L + (1/R − 1) (L − T + W/2)² / (2W)       |2 (L − T)| ≤ W
             T + (L − T)/R                              2 (L − T) > W

* gain reduction ``r[n] = L[n] − G(L[n]) ≥ 0`` dB;
* release stage (peak hold with exponential decay): ``r₁[n] = max(r[n], α_R r₁[n−1])``;
* attack stage (one pole): ``r₂[n] = α_A r₂[n−1] + (1 − α_A) r₁[n]``;
* ``y[n] = x[n] · 10^((makeup − r₂[n]) / 20)``;

with ``α = exp(−1 / (τ · f_s))`` for ``τ = attack_ms/1000`` or ``release_ms/1000``.  Rising reduction
follows the attack time constant; after the level falls the reduction decays with the release time
constant (then smoothed by the attack pole).

Vectorisation: the release recursion is a running maximum of exponentially weighted values, i.e.
``log r₁[n] = n log α_R + cummax_k (log r[k] − k log α_R)`` (computed in float64 so long signals keep
their precision); the attack stage is a one-pole filter run by :func:`nablafx.dsp.filters.iir_filter`.
Both carry state ``(r₁[−1], r₂[−1])`` across blocks.

Threshold, ratio, knee and makeup may vary per sample (``(batch, 1, samples)``); attack and release
are one value per example (``(batch,)``, ``(batch, 1)`` or ``(batch, 1, 1)``).
"""

from __future__ import annotations

import math

import torch

from nablafx.dsp.filters import block_recursion_on, iir_filter
from nablafx.dsp.gain import amplitude_to_db

_TINY = 1e-12  # gain reduction (dB) treated as zero in the log domain
#: floor of ``log α_R``: a release shorter than ``1/(40 f_s)`` holds nothing (``α_R ≤ e^−40 ≈ 4e−18``)
#: and behaves as that; without it ``α_R`` underflows to 0 (release ≲ 3e−5 ms at 48 kHz) and
#: ``0 · log 0`` puts NaN in the output and the gradients.
_LOG_ALPHA_MIN = -40.0


def time_constant_to_coeff(time_ms: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """One-pole smoothing coefficient ``exp(−1 / (τ f_s))`` for a time constant in milliseconds."""
    return torch.exp(-1000.0 / (time_ms * sample_rate))


def gain_computer(level_db: torch.Tensor, threshold_db: torch.Tensor, ratio: torch.Tensor,
                  knee_db: torch.Tensor) -> torch.Tensor:
    """Static compression curve ``G(L)`` (output level in dB) with a quadratic soft knee."""
    over = level_db - threshold_db
    knee_safe = knee_db.clamp_min(1e-6)  # only the divisor: a hard knee (0 dB) selects this branch at L = T alone
    slope = 1.0 / ratio - 1.0
    in_knee = level_db + slope * (over + knee_db / 2) ** 2 / (2 * knee_safe)
    above = threshold_db + over / ratio
    out = torch.where(2 * over < -knee_db, level_db, in_knee)
    return torch.where(2 * over > knee_db, above, out)


def init_compressor_state(batch: int, channels: int = 1, device=None, dtype=None):
    """``(r₁[−1], r₂[−1])``: the detector's last reduction values (dB), zero = no reduction."""
    z = torch.zeros(batch, channels, 1, device=device, dtype=dtype)
    return (z, z.to(torch.float64))  # r₂ comes from iir_filter, whose state is float64


def _per_example(v: torch.Tensor, batch: int, name: str) -> torch.Tensor:
    v = torch.as_tensor(v)
    if v.numel() == 1:
        return v.reshape(1).expand(batch)
    if v.numel() != batch:
        raise ValueError(f"{name} must hold one value per example ({batch}), got shape {tuple(v.shape)}")
    return v.reshape(batch)


def running_max(v: torch.Tensor) -> torch.Tensor:
    """``cummax`` along the last axis; while exporting (:func:`~nablafx.dsp.filters.block_recursion`)
    as ``log2(n)`` maxima of shifted copies (a Hillis–Steele scan: ONNX has no cumulative maximum)."""
    if not block_recursion_on():
        return torch.cummax(v, dim=-1).values
    shift = 1
    while shift < v.shape[-1]:
        v = torch.cat([v[..., :shift], torch.maximum(v[..., shift:], v[..., :-shift])], dim=-1)
        shift *= 2
    return v


def release_stage(r: torch.Tensor, alpha_r: torch.Tensor, r1_prev: torch.Tensor) -> torch.Tensor:
    """``r₁[n] = max(r[n], α r₁[n−1])`` for ``r ≥ 0``, vectorised over time.

    r: ``(batch, channels, samples)``; alpha_r: ``(batch,)``; r1_prev: ``(batch, channels, 1)``.
    """
    dt = torch.float64
    n = r.shape[-1]
    log_a = torch.log(alpha_r.to(dt).clamp_min(math.exp(_LOG_ALPHA_MIN))).reshape(-1, 1, 1)
    idx = torch.arange(n + 1, device=r.device, dtype=dt)  # index 0 holds r₁[−1]
    ramp = idx * log_a  # (B, 1, n+1)
    vals = torch.log(torch.cat([r1_prev.to(dt), r.to(dt)], dim=-1).clamp_min(_TINY))
    log_r1 = ramp + running_max(vals - ramp)
    return torch.exp(log_r1[..., 1:]).to(r.dtype)


def compressor(x: torch.Tensor, sample_rate: float, threshold_db, ratio, attack_ms, release_ms,
               knee_db, makeup_db, state=None):
    """Compress ``x (batch, channels, samples)``; returns ``(y, state, reduction_db)``.

    ``reduction_db`` is the smoothed gain reduction ``r₂`` (≥ 0 dB), handy for plots.
    """
    batch, channels, _ = x.shape
    if state is None:
        state = init_compressor_state(batch, channels, x.device, x.dtype)
    r1_prev, r2_prev = state
    level = amplitude_to_db(x)
    r = (level - gain_computer(level, threshold_db, ratio, knee_db)).clamp_min(0.0)
    alpha_a = time_constant_to_coeff(_per_example(attack_ms, batch, "attack_ms"), sample_rate)
    alpha_r = time_constant_to_coeff(_per_example(release_ms, batch, "release_ms"), sample_rate)
    r1 = release_stage(r, alpha_r, r1_prev)
    b = torch.stack([1.0 - alpha_a, torch.zeros_like(alpha_a)], dim=-1).to(x.dtype)
    a = torch.stack([torch.ones_like(alpha_a), -alpha_a], dim=-1).to(x.dtype)
    r2, (_, r2_last) = iir_filter(r1, b, a, (r1_prev, r2_prev))
    y = x * torch.pow(10.0, (makeup_db - r2) / 20.0)
    new_state = (r1[..., -1:] if r1.shape[-1] else r1_prev, r2_last)
    return y, new_state, r2

