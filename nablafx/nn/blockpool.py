"""Causal block pooling followed by an LSTM: the engine of TFiLM and TVFiLM.

The signal is cut into blocks of ``block_size`` samples aligned on absolute time (sample 0 of
the stream starts block 0).  Each *completed* block is max-pooled over time and fed to an LSTM,
one step per block.  The condition used for the samples of block k is the LSTM output after
blocks 0 … k-1, i.e. it depends on past samples only (block 0 uses the initial state).  The
reference instead pools a block and applies the result to that same block (and pads its input
so the blocks look ahead): its condition at sample t depends on up to ~block_size future samples.

Streaming carries ``pos`` (position inside the current block), the running max of the current
partial block (``None`` when no sample of it has been seen), and the LSTM's (h, c): any block
size gives the offline result.

Speed: a streaming call completes only a few blocks, where ``nn.LSTM``'s fixed cost (~55 µs on
one CPU thread) dominates; up to ``SHORT_STEPS`` steps run as explicit cell updates on the same
weights, with the (constant) knob part of the input projection folded into the bias.
"""

from __future__ import annotations

import torch
from torch import nn

SHORT_STEPS = 8


def expand_blocks(values: torch.Tensor, pos: int, n: int, block_size: int) -> torch.Tensor:
    """Per-block values ``(B, F, S)`` for the blocks touched by samples ``pos … pos+n-1`` of the
    block grid → per-sample ``(B, F, n)`` (``(B, F, 1)``, broadcastable, when S == 1)."""
    bsz, feats, nseg = values.shape
    if nseg == 1:
        return values
    grid = values[..., None].expand(bsz, feats, nseg, block_size).reshape(bsz, feats, nseg * block_size)
    return grid[..., pos : pos + n]


class CausalBlockLSTM(nn.Module):
    """Max-pool ``z: (B, D, T)`` per block, (optionally project), run an LSTM over completed blocks.

    ``forward(z, extra, state)`` returns ``(hs, state)``: ``hs (B, S, hidden)`` holds the LSTM
    output valid for each of the S blocks touched by this call (see :func:`expand_blocks`).
    ``extra (B, E)`` (e.g. the knobs) is appended to every LSTM input step; per-sample ``(B, E, n)``:
    each step gets the value at the last sample of its block.
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
        self.lstm_in = bottleneck or in_features
        self.lstm = nn.LSTM(self.lstm_in + extra_features, hidden, batch_first=True)

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict:
        dtype = dtype or self.lstm.weight_hh_l0.dtype
        device = device or self.lstm.weight_hh_l0.device
        return {
            "pos": 0,
            "max": None,
            "h": torch.zeros(1, batch_size, self.hidden, device=device, dtype=dtype),
            "c": torch.zeros(1, batch_size, self.hidden, device=device, dtype=dtype),
        }

    def pool(self, z: torch.Tensor, pos: int, run_max: torch.Tensor | None):
        """Completed blocks' maxima ``(B, D, m)`` (or None) and the new running max."""
        bsz, dim, n = z.shape
        bs = self.block_size
        if pos == 0 and run_max is None:
            nfull = n // bs
            pooled = z[..., : nfull * bs].reshape(bsz, dim, nfull, bs).amax(-1) if nfull else None
            rest = n - nfull * bs
            return pooled, (z[..., n - rest :].amax(-1) if rest else None)
        first = min(n, bs - pos)
        head = z[..., :first].amax(-1)
        if run_max is not None:
            head = torch.maximum(head, run_max)
        if pos + first < bs:
            return None, head
        nfull, rest = divmod(n - first, bs)
        pooled = head[..., None]
        if nfull:
            full = z[..., first : first + nfull * bs].reshape(bsz, dim, nfull, bs).amax(-1)
            pooled = torch.cat([pooled, full], dim=-1)
        return pooled, (z[..., n - rest :].amax(-1) if rest else None)

    def run_lstm(self, pooled: torch.Tensor, extra: torch.Tensor | None, h: torch.Tensor, c: torch.Tensor):
        """LSTM over ``pooled (B, D, m)`` from (h, c) ``(1, B, H)``; returns outputs ``(B, m, H)``, h, c."""
        seq = pooled.transpose(1, 2)  # (B, m, D)
        if self.proj is not None:
            seq = self.proj(seq)
        steps = seq.shape[1]
        lstm = self.lstm
        if steps > SHORT_STEPS:
            if extra is not None:
                seq = torch.cat([seq, extra[:, None, :].expand(-1, steps, -1) if extra.dim() == 2 else extra], dim=-1)
            out, (h, c) = lstm(seq, (h, c))
            return out, h, c
        # few steps: explicit cell updates (PyTorch gate order i, f, g, o)
        w_ih = lstm.weight_ih_l0
        bias = lstm.bias_ih_l0 + lstm.bias_hh_l0
        if extra is not None and extra.dim() == 2:
            bias = torch.addmm(bias, extra, w_ih[:, self.lstm_in :].t())[:, None, :]  # (B, 1, 4H)
        elif extra is not None:  # one value per step (B, m, E)
            bias = torch.matmul(extra, w_ih[:, self.lstm_in :].t()) + bias  # (B, m, 4H)
        gates_x = torch.matmul(seq, w_ih[:, : self.lstm_in].t()) + bias  # (B, m, 4H)
        w_hh_t = lstm.weight_hh_l0.t()
        hh, cc = h[0], c[0]
        outs = []
        for gx in gates_x.unbind(1):
            i, f, g, o = torch.addmm(gx, hh, w_hh_t).chunk(4, 1)
            cc = torch.addcmul(torch.sigmoid(f) * cc, torch.sigmoid(i), torch.tanh(g))
            hh = torch.sigmoid(o) * torch.tanh(cc)
            outs.append(hh)
        out = torch.stack(outs, dim=1) if steps > 1 else outs[0][:, None]
        return out, hh[None], cc[None]

    def forward(self, z: torch.Tensor, extra: torch.Tensor | None, state: dict):
        pos = state["pos"]
        n = z.shape[-1]
        pooled, new_max = self.pool(z, pos, state["max"])
        h, c = state["h"], state["c"]
        nseg = (pos + n - 1) // self.block_size + 1  # blocks touched by this call
        if pooled is not None:
            if extra is not None and extra.dim() == 3:  # block j of this call ends at sample bs − pos − 1 + j·bs
                ends = range(self.block_size - pos - 1, n, self.block_size)
                extra = extra[..., list(ends)[: pooled.shape[-1]]].transpose(1, 2)  # (B, m, E)
            out, h_new, c_new = self.run_lstm(pooled, extra, h, c)
            hs = torch.cat([h[0][:, None, :], out[:, : nseg - 1]], dim=1) if nseg > 1 else h[0][:, None, :]
        else:
            h_new, c_new = h, c
            hs = h[0][:, None, :]
        new_state = {"pos": (pos + n) % self.block_size, "max": new_max, "h": h_new, "c": c_new}
        return hs, new_state
