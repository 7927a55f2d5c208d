"""Static controllers: a learned constant, or a learned function of the knobs (parametric models)."""

from __future__ import annotations

import torch
from torch import nn

from nablafx.controllers.base import Controller, logit, register_controller
from nablafx.errors import ConfigError


@register_controller("static")
class StaticController(Controller):
    """``sigmoid(w)`` for a learned vector ``w`` (initialised at the processor's defaults)."""

    def __init__(self, n_params: int, n_knobs: int = 0, defaults=None):
        super().__init__(n_params, n_knobs, defaults)
        self.logits = nn.Parameter(logit(self._defaults.clone()))

    def forward(self, x, knobs=None, state=None):
        p = torch.sigmoid(self.logits).to(x.dtype)
        return p.reshape(1, -1, 1).expand(x.shape[0], -1, 1), state


@register_controller("static-cond")
class StaticCondController(Controller):
    """``sigmoid(MLP(knobs))``: tanh hidden layers, a linear output, then the sigmoid.

    The output layer starts with small weights and a bias at the defaults' logits, so every knob
    setting starts at the processor's defaults.
    """

    uses_knobs = True

    def __init__(self, n_params: int, n_knobs: int = 0, defaults=None, hidden: int = 16, layers: int = 2):
        super().__init__(n_params, n_knobs, defaults)
        if hidden < 1 or layers < 0:
            raise ConfigError(f"hidden must be ≥ 1 and layers ≥ 0, got {hidden}, {layers}")
        mods: list[nn.Module] = []
        width = self.n_knobs
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.Tanh()]
            width = hidden
        out = nn.Linear(width, n_params)
        with torch.no_grad():
            out.weight.mul_(0.1)
            out.bias.copy_(logit(self._defaults.clone()))
        mods.append(out)
        self.net = nn.Sequential(*mods)

    def forward(self, x, knobs=None, state=None):
        k = knobs.to(self.net[-1].weight.dtype)
        if k.dim() == 3:  # per-sample knobs (B, K, T) → per-sample parameters (B, P, T)
            return torch.sigmoid(self.net(k.transpose(1, 2))).transpose(1, 2).to(x.dtype), state
        p = torch.sigmoid(self.net(k)).to(x.dtype)
        return p.unsqueeze(-1), state


@register_controller("none")
class NoController(Controller):
    """For processors without control parameters."""

    def forward(self, x, knobs=None, state=None):
        return x.new_zeros(x.shape[0], 0, 1), state
