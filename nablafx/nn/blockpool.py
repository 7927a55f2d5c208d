"""Causal block pooling followed by an LSTM: the engine of TFiLM and TVFiLM.

The signal is cut into blocks of ``block_size`` samples aligned on absolute time (sample 0 of
the stream starts block 0).  Each *completed* block is max-pooled over time and fed to an LSTM,
one step per block.  The condition used for the samples of block k is the LSTM output after
blocks 0 … k-1, i.e. it depends on past samples only (block 0 uses the initial state).  The
reference instead pools a block and applies the result to that same block (and pads its input
so the blocks look ahead): its condition at sample t depends on up to ~block_size future samples.

Streaming carries ``pos`` (position inside the current block), the running max of the current
partial block, and the LSTM's (h, c): any block size gives exactly the offline result.
"""

from __future__ import annotations

import torch
from torch import nn


def segment_lengths(pos: int, n: int, block_size: int) -> list[int]:
    """Lengths of the pieces of ``n`` samples starting at offset ``pos`` of a ``block_size`` grid."""
    first = min(n, block_size - pos)
    nfull, rest = divmod(n - first, block_size)
    return [first] + [block_size] * nfull + ([rest] if rest else [])


def expand_segments(values: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """Per-segment values ``(B, S, F)`` → per-sample ``(B, F, T)`` (``(B, F, 1)`` when one segment)."""
    if len(lengths) == 1:
        return values.transpose(1, 2)
    reps = torch.tensor(lengths, device=values.device)
    return values.repeat_interleave(reps, dim=1, output_size=sum(lengths)).transpose(1, 2)


class CausalBlockLSTM(nn.Module):
    """Max-pool ``z: (B, D, T)`` per block, (optionally project), run an LSTM over completed blocks.

    ``forward(z, extra, state)`` returns ``(hs, lengths, state)``: ``hs (B, S, hidden)`` holds the
    LSTM output valid for each of the S segments of this call (segment lengths in ``lengths``).
    ``extra (B, E)`` (e.g. the knobs) is appended to every LSTM input step.
    """

    def __init__(self, in_features: int, hidden: int, block_size: int = 128, extra_features: int = 0,
                 bottleneck: int | None = None):
        super().__init__()
        if block_size < 1:
            raise ValueError(f"block_size must be ≥ 1, got {block_size}")
        self.in_features = in_features
        self.hidden = hidden
        self.block_size = block_size
        self.extra_features = extra_features
        self.proj = nn.Linear(in_features, bottleneck) if bottleneck else None
        lstm_in = (bottleneck or in_features) + extra_features
        self.lstm = nn.LSTM(lstm_in, hidden, batch_first=True)

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict:
        dtype = dtype or self.lstm.weight_hh_l0.dtype
        device = device or self.lstm.weight_hh_l0.device
        return {
            "pos": 0,
            "max": torch.full((batch_size, self.in_features), float("-inf"), device=device, dtype=dtype),
            "h": torch.zeros(1, batch_size, self.hidden, device=device, dtype=dtype),
            "c": torch.zeros(1, batch_size, self.hidden, device=device, dtype=dtype),
        }

    def forward(self, z: torch.Tensor, extra: torch.Tensor | None, state: dict):
        bsz, dim, n = z.shape
        bs = self.block_size
        pos = state["pos"]
        lengths = segment_lengths(pos, n, bs)
        first = lengths[0]
        closes_first = pos + first == bs
        nfull = (n - first) // bs
        rest = n - first - nfull * bs

        run_max = torch.maximum(state["max"], z[..., :first].amax(-1))  # (B, D)
        pooled = []
        if closes_first:
            pooled.append(run_max[:, None, :])
        if nfull:
            blocks = z[..., first : first + nfull * bs].reshape(bsz, dim, nfull, bs)
            pooled.append(blocks.amax(-1).transpose(1, 2))  # (B, nfull, D)
        if rest:
            new_max = z[..., n - rest :].amax(-1)
        elif closes_first:
            new_max = torch.full_like(run_max, float("-inf"))
        else:
            new_max = run_max

        h, c = state["h"], state["c"]
        if pooled:
            seq = torch.cat(pooled, dim=1) if len(pooled) > 1 else pooled[0]  # (B, m, D)
            if self.proj is not None:
                seq = self.proj(seq)
            if extra is not None:
                seq = torch.cat([seq, extra[:, None, :].expand(-1, seq.shape[1], -1)], dim=-1)
            out, (h_new, c_new) = self.lstm(seq, (h, c))
            hs = torch.cat([h[-1][:, None, :], out], dim=1)[:, : len(lengths)]
        else:
            h_new, c_new = h, c
            hs = h[-1][:, None, :]
        new_state = {"pos": (pos + n) % bs, "max": new_max, "h": h_new, "c": c_new}
        return hs, lengths, new_state
