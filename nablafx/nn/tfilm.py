"""TFiLM and TinyTFiLM: temporal FiLM (Birnbaum et al., NeurIPS 2019), made causal.

Per layer, the layer's own features are max-pooled over blocks of ``block_size`` samples and an
LSTM runs over the blocks (knobs appended to each step); a Linear on ``[LSTM output, knobs]``
gives a per-channel scale and shift, constant within a block: ``h · (1 + scale) + shift``.
TinyTFiLM projects the pooled features to a bottleneck of 4 before a 4-unit LSTM.
Causality: see :mod:`nablafx.nn.blockpool` (block k is modulated by what the LSTM saw of
blocks < k).
"""

from __future__ import annotations

import torch
from torch import nn

from nablafx.nn.blockpool import CausalBlockLSTM, expand_blocks


class BlockModulation(nn.Module):
    """Linear ``[hs, knobs] → (scale, shift)`` per block, applied as ``h · (1 + scale) + shift``."""

    def __init__(self, hidden: int, n_knobs: int, channels: int):
        super().__init__()
        self.hidden = hidden
        self.channels = channels
        self.proj = nn.Linear(hidden + n_knobs, 2 * channels)
        self.register_buffer("one", torch.cat([torch.ones(channels), torch.zeros(channels)]), persistent=False)

    def forward(self, h: torch.Tensor, hs: torch.Tensor, knobs: torch.Tensor | None, pos: int, block_size: int):
        w = self.proj.weight
        bias = self.proj.bias + self.one.to(w.dtype)
        if knobs is not None and knobs.dim() == 2:
            bias = torch.addmm(bias, knobs, w[:, self.hidden :].t())  # (B, 2C)
        else:
            bias = bias.expand(hs.shape[0], -1)
        ss = torch.baddbmm(bias[:, :, None], w[:, : self.hidden].expand(hs.shape[0], -1, -1), hs.transpose(1, 2))
        ss = expand_blocks(ss, pos, h.shape[-1], block_size)  # (B, 2C, T or 1)
        if knobs is not None and knobs.dim() == 3:  # per-sample knobs: their term per sample, (B, 2C, T)
            ss = ss + torch.matmul(w[:, self.hidden :], knobs)
        return torch.addcmul(ss[:, self.channels :], h, ss[:, : self.channels])


class TFiLM(nn.Module):
    def __init__(self, channels: int, n_knobs: int = 0, block_size: int = 128, hidden: int | None = None,
                 bottleneck: int | None = None):
        super().__init__()
        hidden = hidden or (bottleneck or channels)
        self.n_knobs = n_knobs
        self.pool = CausalBlockLSTM(channels, hidden, block_size, extra_features=n_knobs, bottleneck=bottleneck)
        self.mod = BlockModulation(hidden, n_knobs, channels)

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict:
        return self.pool.init_state(batch_size, device, dtype)

    def forward(self, h: torch.Tensor, knobs: torch.Tensor | None, state: dict):
        pos = state["pos"]
        hs, state = self.pool(h, knobs, state)
        return self.mod(h, hs, knobs, pos, self.pool.block_size), state
