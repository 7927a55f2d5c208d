"""Three-knob passive tone stack (bass, mid, treble) — Fender or Marshall component values."""

from __future__ import annotations

import torch

from nablafx.dsp.filters import freqz, sos_filter, sos_filter_tv
from nablafx.dsp.tonestack import CIRCUITS, tonestack_coeffs
from nablafx.errors import ConfigError
from nablafx.processors.base import ParamRange, Processor, control_rate, register_processor


@register_processor("tonestack")
class ToneStack(Processor):
    """Yeh & Smith's third-order tone stack, bilinear-transformed; knobs in [0, 1] (pot positions).

    Time-varying knobs (a dynamic controller) change the coefficients where the knobs change, with
    the filter state carried.
    """

    def __init__(self, sample_rate: int = 48000, circuit: str = "fender"):
        super().__init__(sample_rate)
        if circuit not in CIRCUITS:
            raise ConfigError(f"unknown {circuit!r}; known: {', '.join(CIRCUITS)}", key="circuit")
        self.circuit = circuit
        self._set_ranges({name: ParamRange(0.0, 1.0, "", default=0.5) for name in ("bass", "mid", "treble")})

    def coefficients(self, params: torch.Tensor):
        """Normalised ``(B, 3)`` → ``(b, a)`` each ``(B, 1, 4)`` (a one-section cascade)."""
        b, a = tonestack_coeffs(params[:, 0], params[:, 1], params[:, 2], self.sample_rate, self.circuit)
        return b.unsqueeze(1), a.unsqueeze(1)

    def frequency_response(self, params: torch.Tensor, n_fft: int = 4096) -> torch.Tensor:
        b, a = self.coefficients(params)
        return freqz(b[:, 0], a[:, 0], n_fft)

    @property
    def receptive_field(self) -> None:
        return None

    def forward(self, x, params=None, state=None):
        if params.shape[-1] == 1:
            b, a = self.coefficients(params[..., 0])
            return sos_filter(x, b, a, state)
        return sos_filter_tv(x, control_rate(params), self.coefficients, state)
