"""TFiLM and TinyTFiLM: temporal FiLM (Birnbaum et al., NeurIPS 2019), made causal.

Per layer, the layer's own features are max-pooled over blocks of ``block_size`` samples and an
LSTM runs over the blocks (knobs appended to each step); a Linear on ``[LSTM output, knobs]``
gives a per-channel scale and shift, constant within a block.  TinyTFiLM projects the pooled
features to a bottleneck of 4 before a 4-unit LSTM.  Causality: see
:mod:`nablafx.nn.blockpool` (block k is modulated by what the LSTM saw of blocks < k).
"""

from __future__ import annotations

import torch
from torch import nn

from nablafx.nn.blockpool import CausalBlockLSTM, expand_segments


class TFiLM(nn.Module):
    def __init__(self, channels: int, n_knobs: int = 0, block_size: int = 128, hidden: int | None = None,
                 bottleneck: int | None = None):
        super().__init__()
        hidden = hidden or (bottleneck or channels)
        self.n_knobs = n_knobs
        self.pool = CausalBlockLSTM(channels, hidden, block_size, extra_features=n_knobs, bottleneck=bottleneck)
        self.proj = nn.Linear(hidden + n_knobs, 2 * channels)

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict:
        return self.pool.init_state(batch_size, device, dtype)

    def forward(self, h: torch.Tensor, knobs: torch.Tensor | None, state: dict):
        hs, lengths, state = self.pool(h, knobs, state)
        if knobs is not None:
            hs = torch.cat([hs, knobs[:, None, :].expand(-1, hs.shape[1], -1)], dim=-1)
        scale, shift = expand_segments(self.proj(hs), lengths).chunk(2, dim=1)
        return torch.addcmul(shift, h, 1.0 + scale), state
