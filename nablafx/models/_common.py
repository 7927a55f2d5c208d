"""Helpers shared by the black-box families."""

from __future__ import annotations


def check_positive(**values) -> None:
    """Raise ValueError naming the first option that is not an integer ≥ 1."""
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{key} must be an integer ≥ 1, got {value!r}")


def dilated_receptive_field(kernel_size: int, dilations: list[int]) -> int:
    """Samples (current included) seen by a stack of causal convolutions."""
    return 1 + (kernel_size - 1) * sum(dilations)
