"""Causal, streaming band-limited resampling by an integer factor (for oversampled nonlinearities).

Windowed-sinc (Kaiser) low-pass of ``taps_per_phase · factor + 1`` taps at the high rate, used both as
the interpolator after zero insertion and as the anti-aliasing filter before decimation.  Both run as
strided (transposed) convolutions with their history carried, so block-wise processing equals
offline processing.  Decimation keeps high-rate samples ``n·factor``, which makes the delay of
``down(up(x))`` an integer number of base-rate samples:

* ``phase="linear"``: symmetric kernel, delay exactly ``taps_per_phase`` base-rate samples
  (``latency_samples``), flat group delay;
* ``phase="minimum"``: the minimum-phase kernel with the same magnitude response, a delay of a few
  samples at low frequencies and no pre-ringing; the default, as a causal model cannot compensate
  a latency.

Default kernel (32 taps per phase, −6 dB at 0.9 × the base Nyquist frequency, Kaiser β = 8), at
48 kHz: flat (< 0.1 dB) to 18 kHz, −1.1 dB at 20 kHz, −30 dB at 24 kHz, below −80 dB from 26 kHz.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F


def design_kernel(factor: int, taps_per_phase: int = 32, cutoff: float = 0.9, beta: float = 8.0,
                  phase: str = "minimum") -> np.ndarray:
    """Float64 low-pass kernel at the high rate with unit DC gain.

    ``cutoff``: fraction of the *base-rate* Nyquist frequency where the response is −6 dB.
    """
    if factor < 1:
        raise ValueError(f"oversampling factor must be ≥ 1, got {factor}")
    n_taps = taps_per_phase * factor + 1
    h = scipy.signal.firwin(n_taps, cutoff / factor, window=("kaiser", beta))
    h = h / h.sum()
    if phase == "minimum":
        h = scipy.signal.minimum_phase(h, method="homomorphic", half=False)
        h = h / h.sum()
    elif phase != "linear":
        raise ValueError(f"unknown filter phase {phase!r}; known: minimum, linear")
    return h


MATMUL_MAX = 8192  # upsample: blocks up to this many samples as one matmul of sliding windows


def up_history_len(n_taps: int, factor: int) -> int:
    """Base-rate samples of history the interpolator needs."""
    return math.ceil((n_taps - 1) / factor)


def upsample(x: torch.Tensor, kernel: torch.Tensor, factor: int,
             history: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-insert by ``factor`` and interpolate: ``(B, C, T)`` → ``(B, C, T·factor)``.

    Output sample ``n·factor + j`` depends on inputs up to ``n`` only.
    """
    batch, channels, n = x.shape
    n_taps = kernel.shape[-1]
    p = up_history_len(n_taps, factor)
    if history is None:
        history = x.new_zeros(batch, channels, p)
    xp = torch.cat([history.to(x.dtype), x], dim=-1)
    # polyphase: output n·factor + j = Σ_k factor·h[k·factor + j] · x[n − k].  Short blocks: one matmul
    # of the input's sliding windows with the (taps, factor) phase matrix, whose rows come out already
    # interleaved; long signals: one convolution with ``factor`` output channels, then interleaved
    # (both beat the strided transposed convolution on the CPU: 17 vs 31 µs at 64 samples)
    taps = -(-n_taps // factor)
    w = F.pad(kernel.to(x.dtype) * factor, (0, taps * factor - n_taps)).view(taps, factor)  # w[k, j] = f·h[k·f + j]
    flat = xp.reshape(batch * channels, -1)[:, p - (taps - 1):]
    if n <= MATMUL_MAX and not torch.jit.is_tracing():  # (the ONNX exporter has no Unfold of unknown size)
        up = torch.matmul(flat.unfold(-1, taps, 1), w.flip(0)).reshape(batch, channels, n * factor)
    else:
        up = F.conv1d(flat.unsqueeze(1), w.t().flip(-1).unsqueeze(1).contiguous())  # (B·C, factor, n)
        up = up.transpose(1, 2).reshape(batch, channels, n * factor)
    return up, xp[..., xp.shape[-1] - p:] if p > 0 else xp[..., :0]


def downsample(z: torch.Tensor, kernel: torch.Tensor, factor: int,
               history: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Anti-alias filter and keep every ``factor``-th sample: ``(B, C, T·factor)`` → ``(B, C, T)``.

    ``z`` must start on a multiple of ``factor`` (as :func:`upsample` outputs do).
    """
    batch, channels, m = z.shape
    if m % factor:
        raise ValueError(f"downsample: {m} samples is not a multiple of factor {factor}")
    n_taps = kernel.shape[-1]
    if history is None:
        history = z.new_zeros(batch, channels, n_taps - 1)
    zp = torch.cat([history.to(z.dtype), z], dim=-1)
    w = kernel.to(z.dtype).flip(-1).view(1, 1, n_taps)
    y = F.conv1d(zp.reshape(batch * channels, 1, -1), w, stride=factor)
    y = y[..., : m // factor].reshape(batch, channels, m // factor)
    return y, zp[..., zp.shape[-1] - (n_taps - 1):]
