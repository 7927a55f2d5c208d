"""LSTM black-box model: one LSTM layer, linear read-out, optional residual (skip) path.

Knob conditioning is by concatenation: the knob vector is appended to the input sample at
every time step (the reference's "fixed" conditioning).  Recurrent, so the receptive field
is unbounded; streaming carries the LSTM's (h, c).
"""

from __future__ import annotations

import torch
from torch import nn

from nablafx.errors import ConfigError
from nablafx.models._common import forward_in_segments
from nablafx.registry import register
from nablafx.streaming import StreamingModel


@register("lstm")
class LSTMModel(StreamingModel):
    def __init__(self, n_knobs: int = 0, sample_rate: int = 48000, hidden_size: int = 32,
                 num_layers: int = 1, residual: bool = True, cond: str = "concat"):
        super().__init__()
        if hidden_size < 1:
            raise ConfigError(f"must be ≥ 1, got {hidden_size}", key="hidden_size")
        if cond not in ("concat", "none"):
            raise ConfigError(f"unknown conditioning {cond!r} for lstm; known: concat, none", key="cond")
        self.n_knobs = n_knobs if cond == "concat" else 0
        self.sample_rate = sample_rate
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.residual = residual
        self.lstm = nn.LSTM(1 + self.n_knobs, hidden_size, num_layers=num_layers, batch_first=True)
        self.out = nn.Linear(hidden_size, 1)

    @property
    def receptive_field(self) -> int | None:
        return None

    def init_state(self, batch_size: int, device=None, dtype=None):
        shape = (self.num_layers, batch_size, self.hidden_size)
        dtype = dtype or self.out.weight.dtype
        device = device or self.out.weight.device
        return (torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor, knobs: torch.Tensor | None = None, state=None):
        # x: (B, 1, T) -> seq: (B, T, 1 + n_knobs)
        knobs = self.check_knobs(x, knobs)
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        # long signals run in segments carrying the state (exact): on the CPU 4096 samples, 3–6× faster;
        # on a GPU 32768, as cuDNN's LSTM fails on sequences of 65536 steps or more
        return forward_in_segments(self._forward, x, knobs, state, 4096, gpu_segment=32768)

    def _forward(self, x, knobs, state):
        seq = x.transpose(1, 2)
        if knobs is not None:
            k = knobs[:, None, :].expand(-1, seq.shape[1], -1) if knobs.dim() == 2 else knobs.transpose(1, 2)
            seq = torch.cat([seq, k], dim=-1)
        h, state = self.lstm(seq, state)
        y = self.out(h).transpose(1, 2)  # (B, 1, T)
        if self.residual:
            y = y + x
        return y, state
