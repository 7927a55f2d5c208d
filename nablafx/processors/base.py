"""Processor base class, parameter ranges, and the processor-type registry.

A processor is an ``nn.Module`` wrapping a :mod:`nablafx.dsp` function.  Its *control parameters*
come from a controller as **normalised** values in [0, 1], shape ``(batch, P, F)`` with ``F == 1``
(constant over the block) or ``F == samples`` (one value per sample); :attr:`Processor.param_ranges`
maps each name, in order, to its real range and unit.  Learned weights that no controller sets (MLP
weights, FIR taps, rational coefficients) are ordinary ``nn.Parameter``s of the processor.

Every processor is streaming: ``init_state(batch)`` and ``forward(x, params, state) -> (y, state)``.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
from torch import nn

from nablafx.errors import ConfigError, required_options


@dataclass(frozen=True)
class ParamRange:
    """A control parameter's real range; ``scale="log"`` maps [0, 1] geometrically (frequencies, Q)."""

    min: float
    max: float
    unit: str = ""
    scale: str = "lin"
    default: float | None = None  # real units; None = the middle of the normalised range

    def __post_init__(self):
        if self.scale not in ("lin", "log"):
            raise ValueError(f"scale must be 'lin' or 'log', got {self.scale!r}")
        if not self.max > self.min:
            raise ValueError(f"range max ({self.max}) must exceed min ({self.min})")
        if self.scale == "log" and self.min <= 0:
            raise ValueError(f"a log-scaled range needs min > 0, got {self.min}")
        if self.default is not None and not self.min <= self.default <= self.max:
            raise ValueError(f"default {self.default} outside [{self.min}, {self.max}]")

    def denormalise(self, p: torch.Tensor) -> torch.Tensor:
        if self.scale == "log":
            return self.min * torch.pow(self.max / self.min, p)
        return self.min + (self.max - self.min) * p

    def normalise(self, value: float) -> float:
        if self.scale == "log":
            return math.log(value / self.min) / math.log(self.max / self.min)
        return (value - self.min) / (self.max - self.min)

    @property
    def default_normalised(self) -> float:
        return 0.5 if self.default is None else self.normalise(self.default)

    def with_bounds(self, lo: float, hi: float) -> ParamRange:
        default = None if self.default is None else min(max(self.default, lo), hi)
        return ParamRange(float(lo), float(hi), self.unit, self.scale, default)


class Processor(nn.Module):
    """Base class.  Subclasses set ``param_ranges`` (ordered) before calling :meth:`_set_ranges`."""

    #: False when the processor cannot follow per-sample parameters (a dynamic controller)
    supports_time_varying: bool = True

    def __init__(self, sample_rate: int = 48000):
        super().__init__()
        self.sample_rate = sample_rate
        self.param_ranges: dict[str, ParamRange] = {}

    def _set_ranges(self, ranges: dict[str, ParamRange], overrides: dict | None = None):
        """Install ``ranges``; ``overrides`` maps names to ``[min, max]`` (params.yaml ``ranges:``)."""
        ranges = dict(ranges)
        for name, bounds in (overrides or {}).items():
            if name not in ranges:
                raise ConfigError(f"unknown parameter; known: {', '.join(ranges)}", key=f"ranges.{name}")
            if not (isinstance(bounds, (list, tuple)) and len(bounds) == 2
                    and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)):
                raise ConfigError(f"expected [min, max], got {bounds!r}", key=f"ranges.{name}")
            try:
                ranges[name] = ranges[name].with_bounds(*bounds)
            except ValueError as err:  # ParamRange's own checks (max > min, log scale > 0)
                raise ConfigError(str(err), key=f"ranges.{name}") from err
        self.param_ranges = ranges

    @property
    def n_params(self) -> int:
        return len(self.param_ranges)

    @property
    def param_names(self) -> list[str]:
        return list(self.param_ranges)

    def default_params(self) -> torch.Tensor:
        """Normalised default values ``(P,)`` (controllers start here)."""
        return torch.tensor([r.default_normalised for r in self.param_ranges.values()])

    def denormalise(self, params: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B, P, F)`` normalised → ``{name: (B, 1, F)}`` in real units."""
        if params.shape[1] != self.n_params:
            raise ValueError(f"{type(self).__name__}: expected {self.n_params} parameters, got {params.shape[1]}")
        return {name: rng.denormalise(params[:, i: i + 1]) for i, (name, rng) in enumerate(self.param_ranges.items())}

    @property
    def receptive_field(self) -> int | None:
        """Samples (current included) influencing an output; ``None`` when unbounded (IIR)."""
        return 1

    def init_state(self, batch_size: int, device=None, dtype=None):
        return None

    def forward(self, x: torch.Tensor, params: torch.Tensor | None = None, state=None):  # pragma: no cover
        raise NotImplementedError


CONTROL_HOP = 32  # per-sample parameters of recursive filters: coefficients updated every CONTROL_HOP samples


def control_rate(params: torch.Tensor, hop: int = CONTROL_HOP) -> torch.Tensor:
    """Hold ``params (B, P, T)`` over steps of ``hop`` samples (from the call's start) when they change
    more often than that — per-sample trajectories from moving knobs — so that a recursive filter is
    redesigned every ``hop`` samples instead of every sample.  Piecewise-constant parameters with
    fewer changes (a dynamic controller's frames) pass unchanged."""
    n = params.shape[-1]
    if n <= 1:
        return params
    changes = int((params[..., 1:] != params[..., :-1]).flatten(0, -2).any(dim=0).sum())
    if changes <= n // hop + 1:
        return params
    return params[..., ::hop].repeat_interleave(hop, dim=-1)[..., :n]


# --- registry of processor types ----------------------------------------------------------------

PROCESSORS: dict[str, type[Processor]] = {}


def register_processor(name: str):
    def deco(cls):
        if name in PROCESSORS and PROCESSORS[name] is not cls:
            raise RuntimeError(f"processor type {name!r} registered twice")
        PROCESSORS[name] = cls
        cls.type_name = name
        return cls

    return deco


def build_processor(spec: dict, sample_rate: int, key: str = "processor") -> Processor:
    """Build a processor from ``{type: ..., **options}`` (``controller`` and ``pretrain`` are ignored).

    Option errors are :class:`ConfigError` naming ``key`` (e.g. ``processors[2]``) and listing the
    known types or allowed options; any other exception is a bug and propagates unchanged.
    """
    if not isinstance(spec, dict):
        raise ConfigError(f"expected a mapping with a 'type' key, got {spec!r}", key=key)
    options = {k: v for k, v in spec.items() if k not in ("type", "controller", "pretrain")}
    kind = spec.get("type")
    if kind not in PROCESSORS:
        raise ConfigError(f"unknown processor {kind!r}; known: {', '.join(sorted(PROCESSORS))}", key=f"{key}.type")
    cls = PROCESSORS[kind]
    params = inspect.signature(cls.__init__).parameters
    allowed = [p for p in params if p not in ("self", "sample_rate")]
    for name in options:
        if name not in allowed:
            raise ConfigError(f"unknown option for processor {kind!r}; "
                              f"allowed: {', '.join(allowed + ['controller', 'pretrain'])}", key=f"{key}.{name}")
    for name in required_options(cls.__init__, skip=("self", "sample_rate")):
        if name not in options:
            raise ConfigError(f"missing; required by processor {kind!r}", key=f"{key}.{name}")
    try:
        return cls(sample_rate=sample_rate, **options)
    except ConfigError as err:
        raise err.under(key) from err
