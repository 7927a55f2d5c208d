"""Controller base class and registry.

A controller produces a processor's normalised parameters in [0, 1]:
``forward(x, knobs, state) -> (params, state)`` with ``params`` of shape ``(batch, P, 1)`` (constant
over the block) or ``(batch, P, samples)`` (time-varying).  ``x`` is the signal entering the
processor, ``(batch, 1, samples)``; ``knobs`` is ``(batch, n_knobs)`` or ``None``.

Every controller ends in a plain sigmoid of an affine map, so it can reach any value in (0, 1)
(no squashing before the sigmoid), and starts at the processor's default values.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from nablafx.errors import ConfigError, required_options


def logit(p: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    p = p.clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)


class Controller(nn.Module):
    uses_knobs: bool = False
    time_varying: bool = False

    def __init__(self, n_params: int, n_knobs: int = 0, defaults: torch.Tensor | None = None):
        super().__init__()
        self.n_params = n_params
        self.n_knobs = n_knobs if self.uses_knobs else 0
        if self.uses_knobs and n_knobs < 1:
            raise ConfigError(f"{self.type_name} controller needs knobs, but the data has none "
                              "(use a non-conditional controller)")
        if defaults is None:
            defaults = torch.full((n_params,), 0.5)
        self.register_buffer("_defaults", torch.as_tensor(defaults, dtype=torch.float32).reshape(n_params),
                             persistent=False)

    @property
    def receptive_field(self) -> int | None:
        return None if self.time_varying else 1

    def init_state(self, batch_size: int, device=None, dtype=None):
        return None

    def forward(self, x: torch.Tensor, knobs: torch.Tensor | None = None, state=None):  # pragma: no cover
        raise NotImplementedError


CONTROLLERS: dict[str, type[Controller]] = {}


def register_controller(name: str):
    def deco(cls):
        CONTROLLERS[name] = cls
        cls.type_name = name
        return cls

    return deco


def build_controller(spec, n_params: int, n_knobs: int, defaults: torch.Tensor, key: str = "controller"):
    """``spec``: a name (``static``) or ``{type: dynamic, hop: 128, ...}``."""
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"expected a controller name or mapping, got {spec!r}", key=key)
    options = {k: v for k, v in spec.items() if k != "type"}
    kind = spec.get("type")
    if kind not in CONTROLLERS:
        raise ConfigError(f"unknown controller {kind!r}; known: {', '.join(sorted(CONTROLLERS))}", key=f"{key}.type")
    cls = CONTROLLERS[kind]
    allowed = [p for p in inspect.signature(cls.__init__).parameters
               if p not in ("self", "n_params", "n_knobs", "defaults")]
    for name in options:
        if name not in allowed:
            raise ConfigError(f"unknown option for controller {kind!r}; allowed: {', '.join(allowed) or '(none)'}",
                              key=f"{key}.{name}")
    for name in required_options(cls.__init__, skip=("self", "n_params", "n_knobs", "defaults")):
        if name not in options:
            raise ConfigError(f"missing; required by controller {kind!r}", key=f"{key}.{name}")
    try:
        return cls(n_params=n_params, n_knobs=n_knobs, defaults=defaults, **options)
    except ConfigError as err:  # an option error; anything else is a bug and keeps its traceback
        raise err.under(key) from err
