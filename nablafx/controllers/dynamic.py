"""Dynamic (signal-driven) controllers: an LSTM over frame features of the processor's input.

Frames are ``hop`` samples long and aligned to absolute time (sample 0 of the stream), whatever
the block size: the state carries the LSTM's ``(h, c)``, the position inside the current frame and
the running peak of its samples.  The parameters applied to the samples of frame ``k + 1`` are read
out after frame ``k`` has been seen, so the controller is causal (no look-ahead inside a frame)
and its output is held constant over each frame (coefficients of recursive filters change only at
frame boundaries).  Before the first frame completes, the read-out of the initial state is used.

Frame features: peak ``max |x|`` and its level ``(dB + 100) / 100``; the conditional variant also
feeds the knobs to the LSTM at every frame.
"""

from __future__ import annotations

import torch
from torch import nn

from nablafx.controllers.base import Controller, logit, register_controller
from nablafx.dsp.gain import amplitude_to_db
from nablafx.errors import ConfigError
from nablafx.streaming import knobs_at, step_on_block_end


@register_controller("dynamic")
class DynamicController(Controller):
    time_varying = True

    def __init__(self, n_params: int, n_knobs: int = 0, defaults=None, hop: int = 128, hidden: int = 16,
                 num_layers: int = 1):
        super().__init__(n_params, n_knobs, defaults)
        if hop < 1 or hidden < 1 or num_layers < 1:
            raise ConfigError(f"hop, hidden and num_layers must be ≥ 1, got {hop}, {hidden}, {num_layers}")
        self.hop = hop
        self.hidden = hidden
        self.num_layers = num_layers
        self.lstm = nn.LSTM(2 + self.n_knobs, hidden, num_layers=num_layers, batch_first=True)
        self.readout = nn.Linear(hidden, n_params)
        # export at a block size dividing the hop (nablafx.portable): the position becomes a state tensor
        # and every call runs the LSTM step, kept only by the call that completes a frame
        self.fixed_block: int | None = None
        with torch.no_grad():
            self.readout.weight.mul_(0.1)
            self.readout.bias.copy_(logit(self._defaults.clone()))

    def init_state(self, batch_size, device=None, dtype=None):
        dtype = dtype or self.readout.weight.dtype
        z = torch.zeros(self.num_layers, batch_size, self.hidden, device=device, dtype=dtype)
        pos = 0 if self.fixed_block is None else torch.zeros(1, dtype=torch.int64, device=device)
        return {"pos": pos, "peak": torch.zeros(batch_size, device=device, dtype=dtype), "h": z, "c": z.clone()}

    def _features(self, peaks: torch.Tensor, knobs: torch.Tensor | None) -> torch.Tensor:
        # peaks: (B, K) -> (B, K, 2 [+ n_knobs]); knobs: (B, K, n_knobs), each frame's value at its last sample
        feats = torch.stack([peaks, (amplitude_to_db(peaks, floor=1e-5) + 100.0) / 100.0], dim=-1)
        if self.n_knobs:
            feats = torch.cat([feats, knobs.to(feats.dtype)], dim=-1)
        return feats

    def forward(self, x, knobs=None, state=None):
        batch, n = x.shape[0], int(x.shape[-1])  # plain ints (a tracer hands out tensor sizes)
        if state is None:
            state = self.init_state(batch, x.device, x.dtype)
        hop, pos = self.hop, state["pos"]
        peak, h, c = state["peak"], state["h"], state["c"]
        held = torch.sigmoid(self.readout(h[-1]))  # (B, P): parameters of the current frame
        ax = x.abs().amax(dim=1)  # (B, n)
        if self.fixed_block is not None and isinstance(pos, torch.Tensor):
            return self._fixed_block_call(ax, knobs, pos, peak, h, c, held)
        n_first = hop - pos  # samples that complete the current frame
        if n < n_first:
            new_peak = torch.maximum(peak, ax.amax(dim=-1)) if n else peak
            params = held.unsqueeze(-1).expand(-1, -1, n)
            return params.to(x.dtype), {"pos": pos + n, "peak": new_peak, "h": h, "c": c}
        first = torch.maximum(peak, ax[:, :n_first].amax(dim=-1))
        rest = ax[:, n_first:]
        n_full, rem = divmod(n - n_first, hop)
        peaks = first[:, None]  # (B, K) completed frames
        if n_full:  # (no reshape of an empty run: ONNX's shape inference divides by its zero length)
            full = rest[:, : n_full * hop].reshape(batch, n_full, hop).amax(dim=-1)
            peaks = torch.cat([peaks, full], dim=1)
        frame_knobs = None
        if self.n_knobs:  # each completed frame sees the knobs at its last sample
            frame_knobs = knobs_at(knobs, [n_first - 1 + j * hop for j in range(1 + n_full)])
        out, (h, c) = self.lstm(self._features(peaks, frame_knobs).to(h.dtype), (h, c))
        new = torch.sigmoid(self.readout(out))  # (B, K, P)
        values = torch.cat([held[:, None], new], dim=1)  # (B, K + 1, P)
        lengths = [n_first] + [hop] * n_full + ([rem] if rem else [])  # (no empty run: exporters trip on it)
        values = values[:, : len(lengths)]
        params = torch.repeat_interleave(values, torch.tensor(lengths, device=x.device), dim=1).transpose(1, 2)
        new_peak = rest[:, n_full * hop:].amax(dim=-1) if rem else torch.zeros_like(peak)
        return params.to(x.dtype), {"pos": rem, "peak": new_peak, "h": h, "c": c}


    def _fixed_block_call(self, ax, knobs, pos, peak, h, c, held):
        """One call of ``fixed_block`` samples (a divisor of the hop): the same graph on every call."""
        n = ax.shape[-1]
        run = torch.maximum(peak, ax.amax(dim=-1))  # the peak resets to 0 after a frame; |x| ≥ 0
        frame_knobs = knobs_at(knobs, [n - 1]) if self.n_knobs else None
        _, (h_step, c_step) = self.lstm(self._features(run[:, None], frame_knobs).to(h.dtype), (h, c))
        params = held.unsqueeze(-1).expand(-1, -1, n).to(ax.dtype)
        return params, step_on_block_end(pos, n, self.hop, {"h": h_step, "c": c_step, "peak": torch.zeros_like(run)},
                                         {"pos": pos, "peak": run, "h": h, "c": c})


@register_controller("dynamic-cond")
class DynamicCondController(DynamicController):
    """The dynamic controller with the knobs appended to every frame's features."""

    uses_knobs = True
