"""Helpers shared by the black-box families."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from nablafx import allocator
from nablafx.errors import ConfigError
from nablafx.streaming import StreamingModel, knob_slice


def check_positive(**values) -> None:
    """Raise ConfigError naming the first option that is not an integer ≥ 1."""
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"must be an integer ≥ 1, got {value!r}", key=key)


def dilated_receptive_field(kernel_size: int, dilations: list[int]) -> int:
    """Samples (current included) seen by a stack of causal convolutions."""
    return 1 + (kernel_size - 1) * sum(dilations)


def forward_in_segments(step, x, knobs, state, segment: int, gpu_segment: int | None = None):
    """Run ``step(x, knobs, state) -> (y, state)`` over ``x`` in segments of ``segment`` samples
    on the CPU (``gpu_segment`` elsewhere; None: one piece).

    Exact (the models stream), and faster offline: a cache-sized segment goes through every layer
    before the next one starts, where layer-by-layer over a long signal is memory-bound.  While
    gradients are recorded on the CPU, the heap's free pages go back to the system after each large
    segment, in the forward and the backward pass, once the resident set is large
    (:mod:`nablafx.allocator`: the kept tensors of many segments would otherwise pin the holes
    between them).
    """
    n = x.shape[-1]
    if x.device.type != "cpu":  # the memory argument is about CPU caches
        segment = gpu_segment or n
    if n <= segment:
        return step(x, knobs, state)
    outs = []
    trim = (torch.is_grad_enabled() and x.device.type == "cpu" and x.shape[0] * segment >= allocator.MIN_SAMPLES
            and allocator.enabled())
    for start in range(0, n, segment):
        y, state = step(x[..., start : start + segment], knob_slice(knobs, start, start + segment), state)
        outs.append(y)
        if trim:
            state = allocator.trim_point(state)
    return torch.cat(outs, dim=-1), state


BLOCK_TRIM_NUMEL = 1 << 22  # run_block: a block input this large (16 MiB in float32) may trim the heap


def run_block(block, recompute: bool, *args, trim_heap: bool = False):
    """``block(*args)``; with ``recompute`` while gradients are recorded, through
    :func:`torch.utils.checkpoint.checkpoint`: only the block's inputs are kept for the backward
    pass, which runs the block again (less memory for one more forward pass of it).  The second pass
    runs under :func:`nablafx.nn.film.recomputing`: batch normalisation there does not update its
    running statistics again.  With ``trim_heap`` (blocks run over the whole signal) a large block's
    input makes the heap give free pages back after the block and before its backward pass once the
    resident set is large (:func:`nablafx.allocator.release_free_heap`)."""
    if recompute and torch.is_grad_enabled():
        from torch.utils.checkpoint import checkpoint

        from nablafx.nn.film import recomputing

        out = checkpoint(block, *args, use_reentrant=False,
                         context_fn=lambda: (contextlib.nullcontext(), recomputing()))
    else:
        out = block(*args)
    x = args[0]
    if (trim_heap and torch.is_grad_enabled() and x.device.type == "cpu" and x.numel() >= BLOCK_TRIM_NUMEL
            and allocator.enabled()):
        # a whole-signal block (the S4 in training): the heap's free pages back once the resident set is
        # large, after the block and before its backward pass (as forward_in_segments does per segment)
        out = allocator.trim_point(out)
    return out


def negate_linear(layer: nn.Module) -> list:
    """``layer(h) → −layer(h)``: negate its weight and bias in place; returns them."""
    params = [p for p in (layer.weight, getattr(layer, "bias", None)) if p is not None]
    with torch.no_grad():
        for p in params:
            p.neg_()
    return params


class ConditionedStack(StreamingModel):
    """State and offline segmenting shared by the TCN, GCN and S4 families.

    Subclasses set ``self.cond`` (a ``Conditioning``), ``self.blocks`` (modules with
    ``init_state``), ``self.out`` (read-out layer; gives device and dtype), ``self.segment``
    (offline segment length), ``self.grad_segment`` (the same while gradients are recorded;
    None: the whole signal at once) and implement ``_forward(x, knobs, state) -> (y, state)``.
    """

    grad_segment: int | None = None

    def init_state(self, batch_size: int, device=None, dtype=None):
        device = device or self.out.weight.device
        dtype = dtype or self.out.weight.dtype
        return (self.cond.init_state(batch_size, device, dtype),
                [b.init_state(batch_size, device, dtype) for b in self.blocks])

    def negate_output(self) -> list:
        """The output is ``f(out(h))`` with ``f`` the identity or tanh (odd), so negating the read-out
        layer's weight and bias negates it exactly."""
        return negate_linear(self.out)

    def forward(self, x: torch.Tensor, knobs: torch.Tensor | None = None, state=None):
        knobs = self.check_knobs(x, knobs)
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        segment = self.segment if not torch.is_grad_enabled() else (self.grad_segment or x.shape[-1])
        return forward_in_segments(self._forward, x, knobs, state, segment)
