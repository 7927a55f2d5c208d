"""Knob conditioning by name, with one interface for every convolutional/S4 family.

A model owns one :class:`Conditioning` (model-level part, possibly stateful) and asks it for one
layer module per modulated layer (:meth:`Conditioning.make_layer`).  Per call::

    ctx, cstate = cond(x, knobs, cstate)            # once per forward
    h, lstate = layer(h, ctx, lstate)               # in each block

Kinds: ``none``; ``film`` (knob MLP → per-layer scale/shift); ``tfilm`` / ``tinytfilm`` (per-layer
block-pooled LSTM over the layer's own features, + knobs); ``tvfilm`` (one model-level LSTM over
block max |x| and knobs, per-layer projection).  All are causal (see :mod:`nablafx.nn.blockpool`).

Styles (``cond_style``), the same kinds laid out two ways:

* ``nablafx`` — the knobs also enter every layer's projection directly (they act at once, not one
  block later); FiLM's MLP uses PReLU; TFiLM: an LSTM of ``channels`` units and a Linear;
  TinyTFiLM: a Linear from the 4-unit LSTM.
* ``paper`` — the reference's layers and sizes, so parameter counts equal the papers': FiLM's MLP
  uses ReLU; TFiLM's LSTM has 2 × ``channels`` units whose output is the scale and shift;
  TinyTFiLM maps its 4-unit LSTM through 16 → 32 → 2 × ``channels``; TVFiLM's per-layer Linear
  sees the LSTM output only.  The knobs reach the time-varying layers only through the LSTMs.
"""

from __future__ import annotations

import torch
from torch import nn

from nablafx.errors import ConfigError
from nablafx.nn.film import FILM_NORMS, FILM_SCALES, FiLM, KnobEmbedding
from nablafx.nn.tfilm import TFiLM
from nablafx.nn.tvfilm import TVFiLM, TVFiLMController

COND_KINDS = ("none", "film", "tfilm", "tinytfilm", "tvfilm")
TIME_VARYING = ("tfilm", "tinytfilm", "tvfilm")
COND_STYLES = ("nablafx", "paper")


def check_cond(kind: str, family: str, style: str = "nablafx") -> None:
    if kind not in COND_KINDS:
        raise ConfigError(f"unknown conditioning {kind!r} for {family}; known: {', '.join(COND_KINDS)}", key="cond")
    if style not in COND_STYLES:
        raise ConfigError(f"unknown conditioning style {style!r}; known: {', '.join(COND_STYLES)}", key="cond_style")


class _NoMod(nn.Module):
    def init_state(self, batch_size, device=None, dtype=None):
        return None

    def forward(self, h, ctx, state):
        return h, state


class _FiLMLayer(FiLM):
    def init_state(self, batch_size, device=None, dtype=None):
        return None

    def forward(self, h, ctx, state):
        return super().forward(h, ctx), state


class _TVFiLMLayer(TVFiLM):
    def init_state(self, batch_size, device=None, dtype=None):
        return None

    def forward(self, h, ctx, state):
        return super().forward(h, ctx), state


class Conditioning(nn.Module):
    """Model-level conditioning of kind ``kind`` for ``n_knobs`` knobs.

    ``film`` without knobs (``n_knobs == 0``) is no conditioning; the time-varying kinds also work
    without knobs (driven by the audio alone).  ``uses_knobs`` tells whether the model needs knobs.
    """

    def __init__(self, kind: str, n_knobs: int, family: str = "model", embed_dim: int = 32,
                 block_size: int = 128, hidden: int = 32, bottleneck: int = 4, style: str = "nablafx",
                 film_norm: str = "none", film_scale: str = "unit"):
        super().__init__()
        check_cond(kind, family, style)
        if film_scale not in FILM_SCALES:
            raise ConfigError(f"unknown FiLM scale {film_scale!r}; known: {', '.join(FILM_SCALES)}", key="film_scale")
        if film_scale != "unit" and kind != "film":
            raise ConfigError(f"film_scale {film_scale!r} needs cond: film (this variant has cond: {kind})",
                              key="film_scale")
        self.film_scale = film_scale
        if film_norm not in FILM_NORMS:
            raise ConfigError(f"unknown FiLM normalisation {film_norm!r}; known: {', '.join(FILM_NORMS)}",
                              key="film_norm")
        if film_norm != "none" and kind != "film":
            raise ConfigError(f"film_norm {film_norm!r} needs cond: film (this variant has cond: {kind})",
                              key="film_norm")
        self.film_norm = film_norm
        if kind == "film" and n_knobs == 0:
            kind = "none"
        self.kind = kind
        self.style = style
        self.n_knobs = n_knobs if kind != "none" else 0
        self.block_size = block_size
        self.hidden = hidden
        self.bottleneck = bottleneck
        act = "relu" if style == "paper" else "prelu"
        self.embed = KnobEmbedding(n_knobs, embed_dim, activation=act) if kind == "film" else None
        self.controller = TVFiLMController(n_knobs, hidden, block_size) if kind == "tvfilm" else None

    @property
    def time_varying(self) -> bool:
        return self.kind in TIME_VARYING

    def make_layer(self, channels: int) -> nn.Module:
        if self.kind == "none":
            return _NoMod()
        if self.kind == "film":
            return _FiLMLayer(self.embed.dim, channels, norm=self.film_norm, scale=self.film_scale)
        paper = self.style == "paper"
        if self.kind == "tfilm":
            return TFiLM(channels, self.n_knobs, self.block_size, head="direct" if paper else "linear")
        if self.kind == "tinytfilm":
            return TFiLM(channels, self.n_knobs, self.block_size, bottleneck=self.bottleneck,
                         head="mlp" if paper else "linear")
        return _TVFiLMLayer(self.controller.hidden, 0 if paper else self.n_knobs, channels)

    def init_state(self, batch_size: int, device=None, dtype=None):
        if self.controller is not None:
            return self.controller.init_state(batch_size, device, dtype)
        return None

    def forward(self, x: torch.Tensor, knobs: torch.Tensor | None, state):
        if self.kind == "film":
            return self.embed(knobs), state
        if self.kind == "tvfilm":
            return self.controller(x, knobs, state)
        return knobs, state  # none: unused; tfilm: each layer reads the knobs itself
