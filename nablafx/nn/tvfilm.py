"""TVFiLM: time-varying FiLM driven by the input level and the knobs, made causal.

One model-level LSTM runs over blocks of ``block_size`` samples; each step sees the block's
max |x| of the model input plus the knobs.  Every layer owns a Linear (a 1×1 convolution over
blocks) mapping ``[LSTM output, knobs]`` (or the LSTM output alone) to its per-channel scale and
shift.  As in
:mod:`nablafx.nn.blockpool`, block k is modulated by the LSTM state after blocks < k — causal,
unlike the reference whose pooling looks up to 184 samples ahead.
"""

from __future__ import annotations

import torch
from torch import nn

from nablafx.nn.blockpool import CausalBlockLSTM
from nablafx.nn.tfilm import BlockModulation


class TVFiLMController(nn.Module):
    """Model-level: ``(x, knobs, state) → (context, state)``; context = (hs, knobs, pos, block_size)."""

    def __init__(self, n_knobs: int = 0, hidden: int = 32, block_size: int = 128):
        super().__init__()
        self.n_knobs = n_knobs
        self.hidden = hidden
        self.pool = CausalBlockLSTM(1, hidden, block_size, extra_features=n_knobs)

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict:
        return self.pool.init_state(batch_size, device, dtype)

    def forward(self, x: torch.Tensor, knobs: torch.Tensor | None, state: dict):
        pos = state["pos"]
        hs, state = self.pool(x.abs(), knobs, state)
        return (hs, knobs, pos, self.pool.block_size), state


class TVFiLM(nn.Module):
    """Per-layer modulation from the controller's context: a Linear on ``[LSTM output, knobs]``, or
    on the LSTM output alone with ``n_knobs=0`` (the reference's layout: the knobs reach the layers
    only through the controller's LSTM)."""

    def __init__(self, hidden: int, n_knobs: int, channels: int):
        super().__init__()
        self.mod = BlockModulation(hidden, n_knobs, channels)

    def forward(self, h: torch.Tensor, ctx) -> torch.Tensor:
        hs, knobs, pos, block_size = ctx
        return self.mod(h, hs, knobs, pos, block_size)
