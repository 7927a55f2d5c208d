"""Static nonlinearities — driven tanh, MLP, rational — optionally oversampled ×2/×4/×8.

Oversampling (``oversample: 4`` in params.yaml) runs the curve at ``factor × sample_rate`` between a
causal windowed-sinc interpolator and anti-aliasing decimator (:mod:`nablafx.dsp.resample`), with
their histories carried in the state, so block-wise processing equals offline processing.
``os_phase: minimum`` (default) keeps the delay to about a sample at low frequencies;
``os_phase: linear`` has a flat group delay of ``latency_samples`` samples.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nablafx.dsp import nonlinear as NL
from nablafx.dsp.resample import design_kernel, downsample, up_history_len, upsample
from nablafx.errors import ConfigError
from nablafx.processors.base import ParamRange, Processor, register_processor

OVERSAMPLING_FACTORS = (1, 2, 4, 8)


class StaticNonlinearity(Processor):
    """Base class: subclasses implement :meth:`curve` on (possibly oversampled) audio."""

    def __init__(self, sample_rate: int = 48000, oversample: int = 1, os_taps_per_phase: int = 32,
                 os_phase: str = "minimum"):
        super().__init__(sample_rate)
        if oversample not in OVERSAMPLING_FACTORS:
            raise ConfigError(f"{oversample!r} not supported; known: {', '.join(map(str, OVERSAMPLING_FACTORS))}",
                              key="oversample")
        self.oversample = oversample
        self.os_phase = os_phase
        self.os_taps_per_phase = os_taps_per_phase
        if oversample > 1:
            kernel = design_kernel(oversample, os_taps_per_phase, phase=os_phase)
            self.register_buffer("os_kernel", torch.tensor(kernel, dtype=torch.float32), persistent=False)

    def curve(self, x: torch.Tensor, real: dict[str, torch.Tensor]) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def transfer_curve(self, x: torch.Tensor, params: torch.Tensor | None = None) -> torch.Tensor:
        """The static curve at input values ``x`` (any shape), for plots; ``params (1, P)`` normalised."""
        real = self.denormalise(params.reshape(1, -1, 1)) if self.n_params else {}
        return self.curve(x.reshape(1, 1, -1), real).reshape(x.shape)

    @property
    def latency_samples(self) -> int:
        return self.os_taps_per_phase if (self.oversample > 1 and self.os_phase == "linear") else 0

    @property
    def receptive_field(self) -> int:
        if self.oversample == 1:
            return 1
        n_taps = self.os_kernel.shape[-1]
        return 2 * up_history_len(n_taps, self.oversample) + 1

    def init_state(self, batch_size, device=None, dtype=None):
        if self.oversample == 1:
            return None
        n_taps = self.os_kernel.shape[-1]
        return (torch.zeros(batch_size, 1, up_history_len(n_taps, self.oversample), device=device, dtype=dtype),
                torch.zeros(batch_size, 1, n_taps - 1, device=device, dtype=dtype))

    def forward(self, x, params=None, state=None):
        real = self.denormalise(params) if self.n_params else {}
        if self.oversample == 1:
            return self.curve(x, real), state
        factor = self.oversample
        up_hist, down_hist = state if state is not None else (None, None)
        kernel = self.os_kernel.to(x.dtype)
        u, up_hist = upsample(x, kernel, factor, up_hist)
        real = {k: (v.repeat_interleave(factor, dim=-1) if v.shape[-1] > 1 else v) for k, v in real.items()}
        y, down_hist = downsample(self.curve(u, real), kernel, factor, down_hist)
        return y, (up_hist, down_hist)


@register_processor("tanh")
class TanhNonlinearity(StaticNonlinearity):
    """``tanh(g·x + bias) − tanh(bias)``; ``drive_db`` in [−24, 24] dB, ``bias`` in [−1, 1]."""

    def __init__(self, sample_rate: int = 48000, oversample: int = 1, os_taps_per_phase: int = 32,
                 os_phase: str = "minimum", ranges: dict | None = None):
        super().__init__(sample_rate, oversample, os_taps_per_phase, os_phase)
        self._set_ranges({"drive_db": ParamRange(-24.0, 24.0, "dB", default=0.0),
                          "bias": ParamRange(-1.0, 1.0, "", default=0.0)}, ranges)

    def curve(self, x, real):
        return NL.tanh_drive(x, real["drive_db"], real["bias"])


@register_processor("mlp")
class MLPNonlinearity(StaticNonlinearity):
    """A memoryless MLP ``R → R`` (hidden layers with tanh), learned directly; pretrain it to a curve.

    The default ``hidden: [32, 32, 32]`` has 2 209 parameters.
    """

    def __init__(self, sample_rate: int = 48000, hidden: list[int] | tuple[int, ...] = (32, 32, 32),
                 oversample: int = 1, os_taps_per_phase: int = 32, os_phase: str = "minimum"):
        super().__init__(sample_rate, oversample, os_taps_per_phase, os_phase)
        if not hidden or any(int(h) < 1 for h in hidden):
            raise ConfigError(f"expected a non-empty list of positive widths, got {hidden!r}", key="hidden")
        layers: list[nn.Module] = []
        width = 1
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.Tanh()]
            width = int(h)
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def curve(self, x, real):
        return self.net(x.reshape(-1, 1)).reshape(x.shape)


@register_processor("rational")
class RationalNonlinearity(StaticNonlinearity):
    """Safe rational function ``P/Q`` of degrees ``(6, 5)`` (``Q = 1 + Σ|q_j x^j|``, no poles).

    ``init``: a curve name (:data:`nablafx.dsp.nonlinear.CURVES`) fitted in closed form at
    construction (tanh by default), or ``identity``.
    """

    def __init__(self, sample_rate: int = 48000, degrees: list[int] | tuple[int, int] = (6, 5),
                 init: str = "tanh", oversample: int = 1, os_taps_per_phase: int = 32,
                 os_phase: str = "minimum"):
        super().__init__(sample_rate, oversample, os_taps_per_phase, os_phase)
        m, n = (int(d) for d in degrees)
        if m < 1 or n < 0:
            raise ConfigError(f"expected (numerator ≥ 1, denominator ≥ 0), got {degrees!r}", key="degrees")
        if init == "identity":
            num, den = np.zeros(m + 1), np.zeros(n)
            num[1] = 1.0
        else:
            num, den = NL.fit_rational(NL.curve(init), (m, n), even_denominator=True)
        self.numerator = nn.Parameter(torch.tensor(num, dtype=torch.float32))
        self.denominator = nn.Parameter(torch.tensor(den, dtype=torch.float32))

    def curve(self, x, real):
        return NL.rational(x, self.numerator.to(x.dtype), self.denominator.to(x.dtype))
