"""Gain staging processors: gain, DC offset, phase inversion (all memoryless)."""

from __future__ import annotations

import torch

from nablafx.dsp import gain as G
from nablafx.processors.base import ParamRange, Processor, register_processor


@register_processor("gain")
class Gain(Processor):
    """``x · 10^(gain_db/20)``; ``gain_db`` in [−24, 24] dB by default (``ranges`` overrides)."""

    def __init__(self, sample_rate: int = 48000, ranges: dict | None = None):
        super().__init__(sample_rate)
        self._set_ranges({"gain_db": ParamRange(-24.0, 24.0, "dB", default=0.0)}, ranges)

    def forward(self, x, params=None, state=None):
        p = self.denormalise(params)
        return G.gain(x, p["gain_db"]), state


@register_processor("dc_offset")
class DCOffset(Processor):
    """``x + offset``; offset in [−1, 1] full scale (e.g. the bias before a fuzz nonlinearity)."""

    def __init__(self, sample_rate: int = 48000, ranges: dict | None = None):
        super().__init__(sample_rate)
        self._set_ranges({"offset": ParamRange(-1.0, 1.0, "FS", default=0.0)}, ranges)

    def forward(self, x, params=None, state=None):
        return G.dc_offset(x, self.denormalise(params)["offset"]), state


@register_processor("phase_inversion")
class PhaseInversion(Processor):
    """Fixed polarity inversion ``−x`` (no parameters)."""

    def forward(self, x: torch.Tensor, params=None, state=None):
        return G.phase_invert(x), state
