"""Causal FIR filtering with carried history (streaming == offline).

``h[k]`` is the tap applied to ``x[n - k]``: ``y[n] = Σ_k h[k] x[n − k]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# above this many taps (and a long enough block) FFT convolution is faster than direct
FFT_MIN_TAPS = 64


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def init_fir_history(x_or_shape, n_taps: int, device=None, dtype=None) -> torch.Tensor:
    """Zero history (``n_taps − 1`` past input samples) for :func:`fir_filter`."""
    batch, channels = x_or_shape[:2]
    return torch.zeros(batch, channels, max(n_taps - 1, 0), device=device, dtype=dtype)


def fir_filter(x: torch.Tensor, h: torch.Tensor, history: torch.Tensor | None = None,
               method: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Causal FIR.

    x: ``(batch, channels, samples)``; h: ``(taps,)`` shared or ``(batch, taps)`` per example;
    history: ``(batch, channels, taps − 1)`` past inputs (``None`` = silence).
    Returns ``(y, new_history)``.  ``method``: ``direct``, ``fft`` or ``auto``.
    """
    batch, channels, n = x.shape
    taps = h.shape[-1]
    if history is None:
        history = x.new_zeros(batch, channels, taps - 1)
    xp = torch.cat([history.to(x.dtype), x], dim=-1)  # (B, C, taps − 1 + n)
    new_history = xp[..., xp.shape[-1] - (taps - 1):] if taps > 1 else xp[..., :0]
    if method == "auto":
        method = "fft" if taps >= FFT_MIN_TAPS and n >= 32 else "direct"
    if method == "fft":
        length = xp.shape[-1]
        nfft = _next_pow2(length + taps - 1)
        hh = h if h.dim() == 1 else h[:, None, :]
        y = torch.fft.irfft(torch.fft.rfft(xp, nfft) * torch.fft.rfft(hh.to(x.dtype), nfft), nfft)
        y = y[..., taps - 1: taps - 1 + n]
    elif method == "direct":
        weight = h.flip(-1).to(x.dtype)
        if h.dim() == 1:
            y = F.conv1d(xp.reshape(batch * channels, 1, -1), weight.view(1, 1, taps))
        else:
            weight = weight.repeat_interleave(channels, dim=0).unsqueeze(1)  # (B·C, 1, taps)
            y = F.conv1d(xp.reshape(1, batch * channels, -1), weight, groups=batch * channels)
        y = y.reshape(batch, channels, n)
    else:
        raise ValueError(f"unknown FIR method {method!r}; known: auto, direct, fft")
    return y, new_history
