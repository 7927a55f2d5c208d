"""Dynamic range compressor processor (threshold, ratio, attack, release, knee, makeup)."""

from __future__ import annotations

import torch

from nablafx.dsp.compressor import compressor, init_compressor_state
from nablafx.processors.base import CONTROL_HOP, ParamRange, Processor, register_processor


@register_processor("compressor")
class Compressor(Processor):
    """Feed-forward log-domain compressor (:func:`nablafx.dsp.compressor.compressor`).

    Its envelope is its own dynamic part: the state carries the detector across blocks.  Attack and
    release must be constant over a block, so it takes static or static-conditional controllers.
    """

    supports_time_varying = False

    def __init__(self, sample_rate: int = 48000, ranges: dict | None = None):
        super().__init__(sample_rate)
        self._set_ranges({
            "threshold_db": ParamRange(-60.0, 0.0, "dB", default=-20.0),
            "ratio": ParamRange(1.0, 20.0, "", "log", default=4.0),
            "attack_ms": ParamRange(0.1, 100.0, "ms", "log", default=5.0),
            "release_ms": ParamRange(5.0, 1000.0, "ms", "log", default=100.0),
            "knee_db": ParamRange(0.0, 24.0, "dB", default=6.0),
            "makeup_db": ParamRange(-12.0, 24.0, "dB", default=0.0),
        }, ranges)

    @property
    def receptive_field(self) -> None:
        return None

    def init_state(self, batch_size, device=None, dtype=None):
        return init_compressor_state(batch_size, 1, device, dtype)

    def forward(self, x: torch.Tensor, params=None, state=None):
        p = self.denormalise(params)
        times = torch.cat([p["attack_ms"], p["release_ms"]], dim=1)
        if times.shape[-1] > 1 and bool((times != times[..., :1]).any()):
            # moving knobs: attack and release follow every CONTROL_HOP samples, the detector state carried
            outs = []
            for start in range(0, x.shape[-1], CONTROL_HOP):
                sl = slice(start, start + CONTROL_HOP)
                y, state, _ = compressor(x[..., sl], self.sample_rate, p["threshold_db"][..., sl], p["ratio"][..., sl],
                                         p["attack_ms"][:, 0, start], p["release_ms"][:, 0, start], p["knee_db"][..., sl],
                                         p["makeup_db"][..., sl], state)
                outs.append(y)
            return torch.cat(outs, dim=-1), state
        y, state, _ = compressor(x, self.sample_rate, p["threshold_db"], p["ratio"], p["attack_ms"][:, 0, 0],
                                 p["release_ms"][:, 0, 0], p["knee_db"], p["makeup_db"], state)
        return y, state
