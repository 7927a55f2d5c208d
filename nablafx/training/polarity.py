"""Polarity-aligned start: before the first optimiser step, make the untrained model's output
correlate positively with the target.

An untrained network's output is some random function of its input; for the papers' S4 (seed 0) it
is already −0.82 correlated with the input, so the model starts out as a phase-inverted copy.
L1 pulls such a start towards the right polarity only slowly and MR-STFT not at all (it compares
magnitudes), and at a short budget about half the runs of either implementation ended inverted
(benchmarks/results/quality_cpu.md, first run).  Negating the read-out layer (exact: the output
is negated for every input, see :meth:`StreamingModel.negate_output`) costs one forward pass and
removes the coin toss: the model starts on the side of the target's polarity.

It is not a guarantee of the end result — a loss blind to polarity can still drift — only of the
start; ESR in the loss (the smoke recipe) is what keeps polarity visible during training.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def output_correlation(model: nn.Module, x: torch.Tensor, y: torch.Tensor, knobs, context: int) -> float:
    """The output's uncentred correlation with the target, Σŷy / √(Σŷ² Σy²), over the batch after
    ``context`` warm-up samples (float64 sums), with the model in its current mode and its buffers
    (BatchNorm running statistics) left as they were."""
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    try:
        y_hat, _ = model(x, knobs if getattr(model, "n_knobs", 0) else None)
    finally:
        for k, v in model.named_buffers():
            v.copy_(buffers[k])
    p, t = y_hat[..., context:].double(), y[..., context:].double()
    den = torch.sqrt(torch.sum(p * p) * torch.sum(t * t))
    return float(torch.sum(p * t) / den) if den > 0 else 0.0


def align_output_polarity(model: nn.Module, x: torch.Tensor, y: torch.Tensor, knobs, context: int,
                          reduce=None) -> dict:
    """Negate the model's output (exactly, through ``model.negate_output()``) when it correlates
    negatively with the target on this batch.  ``reduce`` maps the local correlation to the one
    every process decides on (the mean over data-parallel ranks, whose first batches differ: each
    rank must take the same decision).  Returns ``{"corr": before, "flipped": bool, "supported":
    bool}``; a model that cannot be negated exactly is left alone."""
    corr = output_correlation(model, x, y, knobs, context)
    if reduce is not None:
        corr = float(reduce(corr))
    flip = corr < 0
    supported = True
    if flip:
        supported = bool(getattr(model, "negate_output", lambda: False)())
        flip = supported
    return {"corr": corr, "flipped": flip, "supported": supported}
