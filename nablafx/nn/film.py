"""FiLM: feature-wise linear modulation by the knobs (Perez et al., AAAI 2018).

A 3-layer MLP maps the knob vector to an embedding once per model (:class:`KnobEmbedding`);
each layer owns a Linear that turns the embedding into a per-channel scale and shift
(:class:`FiLM`).  The modulation is ``h * (1 + scale) + shift``, so an untrained layer starts
close to the identity.  Constant in time: causal and stateless.
"""

from __future__ import annotations

import contextlib
import threading

import torch
import torch.nn.functional as F
from torch import nn

_local = threading.local()


@contextlib.contextmanager
def recomputing():
    """Marks a block's second forward pass in the backward pass (activation recomputation: see
    :func:`nablafx.models._common.run_block`).  Batch normalisation then normalises by the batch's
    statistics as the first pass did, without updating its running statistics a second time."""
    before = getattr(_local, "on", False)
    _local.on = True
    try:
        yield
    finally:
        _local.on = before


def is_recomputing() -> bool:
    return getattr(_local, "on", False)


class KnobEmbedding(nn.Module):
    """knobs ``(B, n_knobs)`` → embedding ``(B, dim)`` through a 3-layer MLP.

    ``activation``: ``prelu`` (one learnable slope per layer) or ``relu`` (the reference's MLP).
    """

    def __init__(self, n_knobs: int, dim: int = 32, hidden: int | None = None, activation: str = "prelu"):
        super().__init__()
        if n_knobs < 1:
            raise ValueError(f"KnobEmbedding needs n_knobs ≥ 1, got {n_knobs}")
        if activation not in ("prelu", "relu"):
            raise ValueError(f"KnobEmbedding activation must be prelu or relu, got {activation!r}")
        hidden = hidden or dim
        self.dim = dim

        def act():
            return nn.PReLU() if activation == "prelu" else nn.ReLU()

        self.net = nn.Sequential(
            nn.Linear(n_knobs, hidden), act(),
            nn.Linear(hidden, hidden), act(),
            nn.Linear(hidden, dim), act(),
        )

    def forward(self, knobs: torch.Tensor) -> torch.Tensor:
        """``(B, n_knobs)`` → ``(B, dim)``; per-sample ``(B, n_knobs, T)`` → ``(B, T, dim)``."""
        return self.net(knobs if knobs.dim() == 2 else knobs.transpose(1, 2))


FILM_NORMS = ("none", "batch")
FILM_SCALES = ("unit", "raw")


class FiLM(nn.Module):
    """Per-layer modulation ``h * (1 + scale(e)) + shift(e)`` of ``h: (B, C, T)`` by embedding ``e: (B, E)``.

    ``norm="batch"``: ``h`` is first normalised per channel by a parameter-free BatchNorm, as the
    reference's FiLM does: in training by the mean and variance of the whole batch (every example,
    every sample of the call: so the training forward is not causal within it; the TCN and GCN train
    in 16384-sample segments, each normalised by its own statistics, where the reference normalises
    the whole chunk at once — S4 trains in one piece), at inference
    (``eval()``) by the running statistics gathered in training — a fixed per-channel affine map, causal
    and streamable.  It speeds up early training (the pre-activations start at unit scale whatever the
    input level).

    ``scale="raw"``: ``h * scale(e) + shift(e)``, the reference's form — the same functions, but an
    untrained layer starts with a small random scale instead of close to 1.
    """

    def __init__(self, embed_dim: int, channels: int, norm: str = "none", scale: str = "unit"):
        super().__init__()
        if norm not in FILM_NORMS:
            raise ValueError(f"FiLM norm must be one of {', '.join(FILM_NORMS)}, got {norm!r}")
        if scale not in FILM_SCALES:
            raise ValueError(f"FiLM scale must be one of {', '.join(FILM_SCALES)}, got {scale!r}")
        self.channels = channels
        self.unit = 1.0 if scale == "unit" else 0.0
        self.proj = nn.Linear(embed_dim, 2 * channels)
        self.norm = nn.BatchNorm1d(channels, affine=False) if norm == "batch" else None

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.norm is not None and self.norm.training and is_recomputing():
            # batch statistics as in the first pass; the running ones updated in copies (then dropped),
            # so that the recomputation saves the same tensors as the first pass did
            h = F.batch_norm(h, self.norm.running_mean.clone(), self.norm.running_var.clone(), training=True,
                             momentum=0.0, eps=self.norm.eps)
        elif self.norm is not None:
            h = self.norm(h)
        if emb.dim() == 2:
            scale, shift = self.proj(emb).unsqueeze(-1).chunk(2, dim=1)  # (B, C, 1) each
        else:  # per-sample embedding (B, T, E): scale and shift per sample, (B, C, T) each
            scale, shift = self.proj(emb).transpose(1, 2).chunk(2, dim=1)
        return torch.addcmul(shift, h, self.unit + scale)
