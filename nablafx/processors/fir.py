"""Static FIR filter with learned taps (no control parameters; may be pretrained to a response)."""

from __future__ import annotations

import torch
from torch import nn

from nablafx.dsp.filters import freqz
from nablafx.dsp.fir import fir_filter
from nablafx.errors import ConfigError
from nablafx.processors.base import Processor, register_processor


@register_processor("fir")
class StaticFIR(Processor):
    """``n_taps`` learned taps, initialised to a unit impulse at tap 0 (identity, no delay)."""

    supports_time_varying = False

    def __init__(self, sample_rate: int = 48000, n_taps: int = 128):
        super().__init__(sample_rate)
        if n_taps < 1:
            raise ConfigError(f"must be ≥ 1, got {n_taps}", key="n_taps")
        self.n_taps = n_taps
        taps = torch.zeros(n_taps)
        taps[0] = 1.0
        self.taps = nn.Parameter(taps)

    @property
    def receptive_field(self) -> int:
        return self.n_taps

    def frequency_response(self, n_fft: int = 4096) -> torch.Tensor:
        return freqz(self.taps, torch.ones(1, dtype=self.taps.dtype, device=self.taps.device), n_fft)

    def init_state(self, batch_size, device=None, dtype=None):
        return torch.zeros(batch_size, 1, self.n_taps - 1, device=device, dtype=dtype)

    def forward(self, x, params=None, state=None):
        return fir_filter(x, self.taps, state)
