"""Integrated loudness, ITU-R BS.1770-4 (mono), in float64.

``torchaudio.functional.loudness`` filters through ``biquad`` helpers that clamp to [−1, 1]
(a 0 dBFS 997 Hz sine reads −3.28 LUFS instead of −3.01, and a hot distortion pedal reads low)
and approximates the K-weighting with RBJ shelves (0.04 LU off at 1 kHz).  This version
designs the standard's two K-weighting biquads for any sample rate (at 48 kHz they equal the
coefficients printed in the standard) and filters with ``torchaudio.functional.lfilter``
without clamping.
"""

from __future__ import annotations

import math

import torch
import torchaudio


def k_weighting_coefficients(sample_rate: int) -> list[tuple[list[float], list[float]]]:
    """(b, a) of the high-shelf pre-filter and the RLB high-pass (BS.1770 / libebur128 design)."""
    out = []
    # stage 1: high shelf, f0 = 1681.97 Hz, gain 3.99984 dB, Q = 0.70718
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / sample_rate)
    vh = 10 ** (gain_db / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + k / q + k * k
    out.append(([(vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0],
                [1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0]))
    # stage 2: high pass, f0 = 38.14 Hz, Q = 0.50033
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / sample_rate)
    a0 = 1 + k / q + k * k
    out.append(([1.0, -2.0, 1.0], [1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0]))
    return out


def integrated_loudness(x: torch.Tensor, sample_rate: int, *, absolute_gate_lufs: float | None = -70.0,
                        relative_gate_lu: float | None = -10.0) -> float | None:
    """LUFS of a mono signal (any shape, flattened); None when every block is gated out.

    BS.1770-4 §2: mean-square energy of K-weighted 400 ms blocks overlapping by 75 % (only whole
    blocks), block loudness ``l_j = −0.691 + 10 log10 z_j``; blocks with ``l_j > Γa`` (absolute gate,
    −70 LUFS) are kept; ``Γr`` = their integrated loudness + ``relative_gate_lu`` (−10 LU); the result
    is the integrated loudness of the blocks above both gates.  ``None`` for either gate switches it
    off (ungated loudness, for tests and diagnostics).
    """
    y = x.reshape(1, -1).to(torch.float64)
    for b, a in k_weighting_coefficients(sample_rate):
        y = torchaudio.functional.lfilter(y, torch.tensor(a, dtype=torch.float64),
                                          torch.tensor(b, dtype=torch.float64), clamp=False)
    block, step = round(0.4 * sample_rate), round(0.1 * sample_rate)
    if y.shape[-1] < block:
        return None
    energy = y[0].unfold(0, block, step).square().mean(-1)
    lk = -0.691 + 10 * torch.log10(energy.clamp_min(1e-30))
    gated = lk > absolute_gate_lufs if absolute_gate_lufs is not None else torch.ones_like(lk, dtype=torch.bool)
    if not gated.any():
        return None
    if relative_gate_lu is not None:
        rel = -0.691 + 10 * math.log10(float(energy[gated].mean())) + relative_gate_lu
        gated &= lk > rel
    mean = float(energy[gated].mean())
    return -0.691 + 10 * math.log10(mean) if mean > 0 else None
