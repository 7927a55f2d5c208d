"""Polarity alignment: keep the model's output on the target's side of the sign.

An untrained network's output is some random function of its input and can be anti-correlated with
the target from the start; L1 pulls such a model towards the right polarity only slowly and MR-STFT
not at all (it compares magnitudes), so at a short budget about half the runs of either
implementation ended inverted with the reference's L1 + MR-STFT loss
(benchmarks/results/quality_cpu.md at commit af9231e).  A model's output can be negated exactly by
editing its read-out layer (:meth:`nablafx.streaming.StreamingModel.negate_output`), so a wrong
polarity need not be trained away:

* ``start`` — before the first optimiser step, negate the read-out when the untrained output
  correlates negatively with the first batch's target (:func:`align_output_polarity`);
* ``guard`` — that, and during training (:class:`PolarityGuard`): the correlation of every
  training batch's output with its target, smoothed over steps, is watched, and when it turns
  negative the read-out is negated again, with the optimiser's first moments for those parameters
  (so the run continues as the mirror image of itself, from the better-scoring side).

ESR in the loss (the smoke recipe) keeps polarity visible to the gradient; these keep it right under
losses that do not (the papers' L1 + MR-STFT).
"""

from __future__ import annotations

import math

import torch
from torch import nn

MODES = ("off", "start", "guard")


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
    return correlation(*correlation_sums(y_hat[..., context:], y[..., context:]))


def correlation_sums(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``[Σŷy, Σŷ², Σy²]`` in float64 (detached), to be added up over segments and ranks."""
    p, t = y_hat.detach().double(), y.detach().double()
    return torch.stack([torch.sum(p * t), torch.sum(p * p), torch.sum(t * t)])


def correlation(dot, pp, tt) -> float:
    den = math.sqrt(float(pp) * float(tt))
    return float(dot) / den if den > 0 else 0.0


def negate(model: nn.Module, optimizer=None) -> bool:
    """``model.negate_output()`` and, given the optimiser, the first-moment state of the negated
    parameters (Adam's ``exp_avg``, SGD's ``momentum_buffer``; second moments are even)."""
    params = model.negate_output() if hasattr(model, "negate_output") else []
    if not params:
        return False
    opt = getattr(optimizer, "optimizer", optimizer)  # Lightning wraps the torch optimiser
    if opt is not None:
        with torch.no_grad():
            for p in params:
                for key in ("exp_avg", "momentum_buffer"):
                    buf = opt.state.get(p, {}).get(key)
                    if isinstance(buf, torch.Tensor):
                        buf.neg_()
    return True


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
    flipped = corr < 0 and negate(model)
    return {"corr": corr, "flipped": flipped, "supported": corr >= 0 or flipped}


class PolarityGuard:
    """Watches the training batches' output/target correlation (exponentially smoothed over steps,
    ``decay`` per step) and negates the read-out when the smoothed value turns negative.

    ``observe(sums)`` takes the step's :func:`correlation_sums` (already reduced over ranks, so every
    rank decides alike) after the optimiser step and returns True when it negated.  The state
    (``ema``, ``flips``) goes into checkpoints so a resumed run decides as the uninterrupted one.
    """

    def __init__(self, decay: float = 0.9):
        self.decay = decay
        self.ema: float | None = None
        self.flips = 0

    def observe(self, model: nn.Module, optimizer, sums) -> bool:
        corr = correlation(*sums)
        self.ema = corr if self.ema is None else self.decay * self.ema + (1 - self.decay) * corr
        if self.ema >= 0 or not negate(model, optimizer):
            return False
        self.ema, self.flips = -self.ema, self.flips + 1
        return True

    def state_dict(self) -> dict:
        return {"ema": self.ema, "flips": self.flips}

    def load_state_dict(self, state: dict) -> None:
        self.ema, self.flips = state.get("ema"), int(state.get("flips", 0))
