"""TVFiLM: time-varying FiLM driven by the input level and the knobs, made causal.

One model-level LSTM runs over blocks of ``block_size`` samples; each step sees the block's
max |x| of the model input plus the knobs.  Every layer owns a Linear (a 1×1 convolution over
blocks) mapping ``[LSTM output, knobs]`` to its per-channel scale and shift.  As in
:mod:`nablafx.nn.blockpool`, block k is modulated by the LSTM state after blocks < k — causal,
unlike the reference whose pooling looks up to 184 samples ahead.
"""

from __future__ import annotations

import torch
from torch import nn

from nablafx.nn.blockpool import CausalBlockLSTM, expand_segments


class TVFiLMController(nn.Module):
    """Model-level: ``(x, knobs, state) → (context, state)``; context = (per-segment features, lengths)."""

    def __init__(self, n_knobs: int = 0, hidden: int = 32, block_size: int = 128):
        super().__init__()
        self.n_knobs = n_knobs
        self.out_features = hidden + n_knobs
        self.pool = CausalBlockLSTM(1, hidden, block_size, extra_features=n_knobs)

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict:
        return self.pool.init_state(batch_size, device, dtype)

    def forward(self, x: torch.Tensor, knobs: torch.Tensor | None, state: dict):
        hs, lengths, state = self.pool(x.abs(), knobs, state)
        if knobs is not None:
            hs = torch.cat([hs, knobs[:, None, :].expand(-1, hs.shape[1], -1)], dim=-1)
        return (hs, lengths), state


class TVFiLM(nn.Module):
    """Per-layer modulation from the controller's context."""

    def __init__(self, cond_features: int, channels: int):
        super().__init__()
        self.proj = nn.Linear(cond_features, 2 * channels)

    def forward(self, h: torch.Tensor, ctx) -> torch.Tensor:
        hs, lengths = ctx
        scale, shift = expand_segments(self.proj(hs), lengths).chunk(2, dim=1)
        return torch.addcmul(shift, h, 1.0 + scale)
