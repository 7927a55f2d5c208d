"""The streaming protocol every model implements.

A model is a plain ``nn.Module`` with

* ``n_knobs``: number of knob values it is conditioned on (0 = unconditioned);
* ``receptive_field``: number of samples (current one included) that influence an output
  sample, or ``None`` when unbounded (recurrent models);
* ``init_state(batch_size, device=None, dtype=None)``: the state before any input
  (equivalent to an infinite run of digital silence);
* ``forward(x, knobs=None, state=None) -> (y, state)``: ``x`` is ``(batch, 1, samples)``,
  ``knobs`` ``(batch, n_knobs)`` in [0, 1]; ``y`` has the same shape as ``x``.  With
  ``state=None`` the model starts from ``init_state``: offline processing is streaming with a
  single block.

Calling ``forward`` block after block, feeding back the returned state, must give the same
output as one offline call on the concatenated blocks (tests check 1e-5 relative to RMS).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

State = Any  # nested tuples / lists / dicts of tensors, model specific


class StreamingModel(nn.Module):
    """Base class giving the protocol's shared helpers; subclasses implement the rest."""

    n_knobs: int = 0
    sample_rate: int = 48000

    @property
    def receptive_field(self) -> int | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def init_state(self, batch_size: int, device=None, dtype=None) -> State:  # pragma: no cover
        raise NotImplementedError

    def check_knobs(self, x: torch.Tensor, knobs: torch.Tensor | None) -> torch.Tensor | None:
        if self.n_knobs == 0:
            return None
        if knobs is None:
            raise ValueError(f"{type(self).__name__} is conditioned on {self.n_knobs} knobs, got none")
        if knobs.shape != (x.shape[0], self.n_knobs):
            raise ValueError(
                f"{type(self).__name__}: knobs shape {tuple(knobs.shape)}, expected ({x.shape[0]}, {self.n_knobs})"
            )
        return knobs.to(x.dtype)

    def config(self) -> dict:
        """Keyword arguments that rebuild this model through the registry (set by the builder)."""
        return dict(getattr(self, "_nablafx_spec", {}))


def detach_state(state: State) -> State:
    """Detach every tensor of a state (for truncated back-propagation through time)."""
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, dict):
        return {k: detach_state(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(detach_state(v) for v in state)
    return state


@torch.no_grad()
def process_in_blocks(model: nn.Module, x: torch.Tensor, knobs: torch.Tensor | None, block_size: int) -> torch.Tensor:
    """Run ``model`` over ``x`` block by block, carrying state; returns the concatenated output."""
    state = model.init_state(x.shape[0], device=x.device, dtype=x.dtype)
    outs = []
    for start in range(0, x.shape[-1], block_size):
        y, state = model(x[..., start : start + block_size], knobs, state)
        outs.append(y)
    return torch.cat(outs, dim=-1)
