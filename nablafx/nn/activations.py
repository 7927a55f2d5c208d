"""Activation functions by name, for the convolutional and S4 families."""

from __future__ import annotations

from torch import nn

from nablafx.errors import ConfigError
from nablafx.nn.rational import Rational


def _prelu(channels: int) -> nn.Module:
    return nn.PReLU(num_parameters=channels)


ACTIVATIONS = {
    "tanh": lambda channels: nn.Tanh(),
    "prelu": _prelu,
    "rational": lambda channels: Rational("leaky_relu"),
    "relu": lambda channels: nn.ReLU(),
    "gelu": lambda channels: nn.GELU(),
    "identity": lambda channels: nn.Identity(),
}


def make_activation(name: str, channels: int) -> nn.Module:
    """Build the activation ``name`` for a layer of ``channels`` channels (PReLU: one slope each)."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; known: {', '.join(sorted(ACTIVATIONS))}", key="activation")
    return ACTIVATIONS[name](channels)
