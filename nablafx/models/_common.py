"""Helpers shared by the black-box families."""

from __future__ import annotations

import torch


def check_positive(**values) -> None:
    """Raise ValueError naming the first option that is not an integer ≥ 1."""
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{key} must be an integer ≥ 1, got {value!r}")


def dilated_receptive_field(kernel_size: int, dilations: list[int]) -> int:
    """Samples (current included) seen by a stack of causal convolutions."""
    return 1 + (kernel_size - 1) * sum(dilations)


def forward_in_segments(step, x, knobs, state, segment: int, gpu_segment: int | None = None):
    """Run ``step(x, knobs, state) -> (y, state)`` over ``x`` in segments of ``segment`` samples
    on the CPU (``gpu_segment`` elsewhere; None: one piece).

    Exact (the models stream), and faster offline: a cache-sized segment goes through every layer
    before the next one starts, where layer-by-layer over a long signal is memory-bound.
    """
    n = x.shape[-1]
    if x.device.type != "cpu":  # the memory argument is about CPU caches
        segment = gpu_segment or n
    if n <= segment:
        return step(x, knobs, state)
    outs = []
    for start in range(0, n, segment):
        y, state = step(x[..., start : start + segment], knobs, state)
        outs.append(y)
    return torch.cat(outs, dim=-1), state
