"""TFiLM and TinyTFiLM: temporal FiLM (Birnbaum et al., NeurIPS 2019), made causal.

Per layer, the layer's own features are max-pooled over blocks of ``block_size`` samples and an
LSTM runs over the blocks (knobs appended to each step); a head turns the LSTM output into a
per-channel scale and shift, constant within a block: ``h · (1 + scale) + shift``.
TinyTFiLM projects the pooled features to a bottleneck of 4 before a 4-unit LSTM.
Causality: see :mod:`nablafx.nn.blockpool` (block k is modulated by what the LSTM saw of
blocks < k).

Heads (:class:`BlockModulation`):

* ``linear`` — a Linear on ``[LSTM output, knobs]`` (this project's layout: the knobs also act
  directly, at once);
* ``direct`` — the LSTM output *is* ``[scale, shift]`` (its hidden size is 2 × channels; the
  reference's TFiLM);
* ``mlp`` — LSTM output → 16 → 32 → 2 × channels, ReLU between (the reference's TinyTFiLM adaptor,
  without its final ReLU, which would forbid negative shifts and gains below one here).
"""

from __future__ import annotations

import torch
from torch import nn

from nablafx.nn.blockpool import CausalBlockLSTM, expand_blocks
from nablafx.nn.blocks import channel_mix

HEADS = ("linear", "direct", "mlp")
MLP_HIDDEN = (16, 32)  # the TinyTFiLM adaptor's hidden widths (reference)


class BlockModulation(nn.Module):
    """Per-block ``(scale, shift)`` from the LSTM output (and, for ``head="linear"`` with
    ``n_knobs > 0``, the knobs), applied as ``h · (1 + scale) + shift``."""

    def __init__(self, hidden: int, n_knobs: int, channels: int, head: str = "linear"):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown modulation head {head!r}; known: {', '.join(HEADS)}")
        if head == "direct" and hidden != 2 * channels:
            raise ValueError(f"head 'direct' needs an LSTM of 2 × {channels} units, got {hidden}")
        self.hidden = hidden
        self.channels = channels
        self.head = head
        self.n_knobs = n_knobs if head == "linear" else 0
        self.proj = nn.Linear(hidden + self.n_knobs, 2 * channels) if head == "linear" else None
        if head == "mlp":
            widths = (hidden, *MLP_HIDDEN)
            layers: list[nn.Module] = []
            for a, b in zip(widths[:-1], widths[1:]):
                layers += [nn.Linear(a, b), nn.ReLU()]
            self.mlp = nn.Sequential(*layers, nn.Linear(widths[-1], 2 * channels))
        else:
            self.mlp = None
        self.register_buffer("one", torch.cat([torch.ones(channels), torch.zeros(channels)]), persistent=False)

    def scale_shift(self, hs: torch.Tensor, knobs: torch.Tensor | None) -> torch.Tensor:
        """``hs (B, S, hidden)`` → ``(B, 2C, S)``: ``[1 + scale, shift]`` per block."""
        one = self.one.to(hs.dtype)
        if self.head == "direct":
            return (hs + one).transpose(1, 2)
        if self.head == "mlp":
            return (self.mlp(hs) + one).transpose(1, 2)
        w = self.proj.weight
        bias = self.proj.bias + one
        if self.n_knobs and knobs is not None and knobs.dim() == 2:
            bias = torch.addmm(bias, knobs, w[:, self.hidden :].t())  # (B, 2C)
        else:
            bias = bias.expand(hs.shape[0], -1)
        return torch.baddbmm(bias[:, :, None], w[:, : self.hidden].expand(hs.shape[0], -1, -1), hs.transpose(1, 2))

    def forward(self, h: torch.Tensor, hs: torch.Tensor, knobs: torch.Tensor | None, pos: int, block_size: int):
        ss = self.scale_shift(hs, knobs)  # (B, 2C, S)
        bsz, _, nseg = ss.shape
        n = h.shape[-1]
        per_sample = bool(self.n_knobs) and knobs is not None and knobs.dim() == 3
        if nseg == 1 or per_sample:
            ss = expand_blocks(ss, pos, n, block_size)  # (B, 2C, T or 1)
            if per_sample:  # per-sample knobs: their term per sample
                ss = ss + channel_mix(self.proj.weight[:, self.hidden :], knobs)  # (B, 2C, T)
            return torch.addcmul(ss[:, self.channels :], h, ss[:, : self.channels])
        # h laid out as (B, C, S, block) on the block grid and the per-block values broadcast, instead of
        # expanding them to every sample: no copy at all for a call on the grid (pos 0, whole blocks), and in
        # training two signal-sized tensors fewer kept per layer
        tail = nseg * block_size - pos - n
        hp = torch.nn.functional.pad(h, (pos, tail)) if pos or tail else h
        y = torch.addcmul(ss[:, self.channels :, :, None], hp.reshape(bsz, self.channels, nseg, block_size),
                          ss[:, : self.channels, :, None]).reshape(bsz, self.channels, nseg * block_size)
        return y[..., pos : pos + n] if pos or tail else y


class TFiLM(nn.Module):
    """Per-layer temporal FiLM on ``channels`` features.

    ``hidden``: LSTM units (default ``bottleneck`` or ``channels``; ``2 × channels`` for the
    ``direct`` head); ``bottleneck``: project the pooled features to this size first (TinyTFiLM).
    """

    def __init__(self, channels: int, n_knobs: int = 0, block_size: int = 128, hidden: int | None = None,
                 bottleneck: int | None = None, head: str = "linear"):
        super().__init__()
        if hidden is None:
            hidden = 2 * channels if head == "direct" else (bottleneck or channels)
        self.n_knobs = n_knobs
        self.pool = CausalBlockLSTM(channels, hidden, block_size, extra_features=n_knobs, bottleneck=bottleneck)
        self.mod = BlockModulation(hidden, n_knobs, channels, head)

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict:
        return self.pool.init_state(batch_size, device, dtype)

    def forward(self, h: torch.Tensor, knobs: torch.Tensor | None, state: dict):
        pos = state["pos"]
        hs, state = self.pool(h, knobs, state)
        return self.mod(h, hs, knobs, pos, self.pool.block_size), state
