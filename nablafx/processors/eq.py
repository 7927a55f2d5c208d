"""Biquad-based equalisers: a 5-band parametric EQ and single low/high shelf, peaking, low/high pass.

Two realisations (``method``):

* ``recursive`` (default): exact time-domain recursion with carried state (IIR, unbounded
  receptive field); follows per-sample parameters from dynamic controllers (coefficients change
  where the parameters change).
* ``fsm``: frequency sampling — the cascade's response sampled on ``n_fft`` bins, turned into an FIR
  of ``n_taps`` taps and applied by (FFT) convolution; finite receptive field, fast on GPUs, only for
  parameters constant over a block.

No output clamping anywhere: training and evaluation run the same code.
"""

from __future__ import annotations

import torch

from nablafx.dsp import biquad
from nablafx.dsp.filters import fsm_impulse_response, sos_filter, sos_filter_tv, sos_freqz
from nablafx.dsp.fir import fir_filter
from nablafx.errors import ConfigError
from nablafx.processors.base import ParamRange, Processor, control_rate, register_processor

_Q = ParamRange(0.1, 10.0, "", "log", default=0.707)
_SHELF_Q = ParamRange(0.3, 3.0, "", "log", default=0.707)
_GAIN = ParamRange(-24.0, 24.0, "dB", default=0.0)


class BiquadCascade(Processor):
    """A cascade of RBJ biquads of given ``kinds``; parameters ``<band>_gain_db/_cutoff_hz/_q``."""

    def __init__(self, kinds, bands: dict[str, dict[str, ParamRange]], sample_rate: int = 48000,
                 method: str = "recursive", n_taps: int = 2048, n_fft: int = 8192, ranges: dict | None = None):
        super().__init__(sample_rate)
        if method not in ("recursive", "fsm"):
            raise ConfigError(f"unknown {method!r}; known: recursive, fsm", key="method")
        if method == "fsm" and not (0 < n_taps <= n_fft):
            raise ConfigError(f"{n_taps} must be in 1..n_fft ({n_fft})", key="n_taps")
        self.kinds = tuple(kinds)
        self.method = method
        self.n_taps = n_taps
        self.n_fft = n_fft
        self.supports_time_varying = method == "recursive"
        table = {}
        for band, prm in bands.items():
            for pname, rng in prm.items():
                table[f"{band}_{pname}"] = rng
        self._bands = list(bands)
        self._set_ranges(table, ranges)

    def coefficients(self, params: torch.Tensor):
        """Normalised ``(B, P)`` → ``(b, a)`` each ``(B, K, 3)``, in float64 (see ``iir_filter``)."""
        real = self.denormalise(params.unsqueeze(-1).to(torch.float64))
        gains, cutoffs, qs = [], [], []
        for band in self._bands:
            gains.append(real.get(f"{band}_gain_db", torch.zeros_like(real[f"{band}_cutoff_hz"]))[:, 0, 0])
            # keep corners below Nyquist whatever the sample rate (ranges are written for 44.1/48 kHz)
            cutoffs.append(real[f"{band}_cutoff_hz"][:, 0, 0].clamp(max=0.49 * self.sample_rate))
            qs.append(real[f"{band}_q"][:, 0, 0])
        return biquad.cascade(self.kinds, torch.stack(gains, -1), torch.stack(cutoffs, -1),
                              torch.stack(qs, -1), self.sample_rate)

    def frequency_response(self, params: torch.Tensor, n_fft: int = 4096) -> torch.Tensor:
        """Complex response ``(B, n_fft//2+1)`` for normalised parameters ``(B, P)``."""
        b, a = self.coefficients(params)
        return sos_freqz(b, a, n_fft)

    @property
    def receptive_field(self) -> int | None:
        return None if self.method == "recursive" else self.n_taps

    def init_state(self, batch_size, device=None, dtype=None):
        if self.method == "fsm":
            return torch.zeros(batch_size, 1, self.n_taps - 1, device=device, dtype=dtype)
        return None  # recursive: zero state created lazily by sos_filter

    def forward(self, x, params=None, state=None):
        if self.method == "fsm":
            if params.shape[-1] != 1 and bool((params != params[..., :1]).any()):
                # only moving knobs get here (the config refuses dynamic controllers): the FIR follows per block
                params = params[..., -1:]
            b, a = self.coefficients(params[..., 0])
            h = fsm_impulse_response(sos_freqz(b, a, self.n_fft), self.n_taps).to(x.dtype)  # (B, n_taps)
            return fir_filter(x, h, state)
        if params.shape[-1] == 1:
            b, a = self.coefficients(params[..., 0])
            return sos_filter(x, b, a, state)
        return sos_filter_tv(x, control_rate(params), self.coefficients, state)


def _band(lo_hz, hi_hz, default_hz, q=_Q, gain=True):
    prm = {}
    if gain:
        prm["gain_db"] = _GAIN
    prm["cutoff_hz"] = ParamRange(lo_hz, hi_hz, "Hz", "log", default=default_hz)
    prm["q"] = q
    return prm


@register_processor("peq")
class ParametricEQ(BiquadCascade):
    """Five bands: low shelf, three peaking, high shelf (15 parameters)."""

    def __init__(self, sample_rate: int = 48000, method: str = "recursive", n_taps: int = 2048,
                 n_fft: int = 8192, ranges: dict | None = None):
        bands = {
            "low_shelf": _band(30.0, 1000.0, 100.0, _SHELF_Q),
            "band1": _band(60.0, 1500.0, 300.0),
            "band2": _band(200.0, 5000.0, 1000.0),
            "band3": _band(600.0, 12000.0, 3000.0),
            "high_shelf": _band(1000.0, 18000.0, 6000.0, _SHELF_Q),
        }
        super().__init__(biquad.PEQ_KINDS, bands, sample_rate, method, n_taps, n_fft, ranges)


@register_processor("lowshelf")
class LowShelf(BiquadCascade):
    """Gain below the corner frequency."""

    def __init__(self, sample_rate: int = 48000, method: str = "recursive", n_taps: int = 2048,
                 n_fft: int = 8192, ranges: dict | None = None):
        super().__init__(("lowshelf",), {"low_shelf": _band(30.0, 2000.0, 200.0, _SHELF_Q)},
                         sample_rate, method, n_taps, n_fft, ranges)


@register_processor("highshelf")
class HighShelf(BiquadCascade):
    """Gain above the corner frequency."""

    def __init__(self, sample_rate: int = 48000, method: str = "recursive", n_taps: int = 2048,
                 n_fft: int = 8192, ranges: dict | None = None):
        super().__init__(("highshelf",), {"high_shelf": _band(500.0, 18000.0, 4000.0, _SHELF_Q)},
                         sample_rate, method, n_taps, n_fft, ranges)


@register_processor("peaking")
class Peaking(BiquadCascade):
    def __init__(self, sample_rate: int = 48000, method: str = "recursive", n_taps: int = 2048,
                 n_fft: int = 8192, ranges: dict | None = None):
        super().__init__(("peaking",), {"peak": _band(30.0, 18000.0, 1000.0)},
                         sample_rate, method, n_taps, n_fft, ranges)


@register_processor("lowpass")
class Lowpass(BiquadCascade):
    def __init__(self, sample_rate: int = 48000, method: str = "recursive", n_taps: int = 2048,
                 n_fft: int = 8192, ranges: dict | None = None):
        super().__init__(("lowpass",), {"lowpass": _band(200.0, 20000.0, 12000.0, gain=False)},
                         sample_rate, method, n_taps, n_fft, ranges)


@register_processor("highpass")
class Highpass(BiquadCascade):
    def __init__(self, sample_rate: int = 48000, method: str = "recursive", n_taps: int = 2048,
                 n_fft: int = 8192, ranges: dict | None = None):
        super().__init__(("highpass",), {"highpass": _band(10.0, 2000.0, 30.0, gain=False)},
                         sample_rate, method, n_taps, n_fft, ranges)
