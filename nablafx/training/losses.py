"""Loss as a weighted sum of named terms (params.yaml ``train.loss: {name: weight}``).

The terms live in :mod:`nablafx.metrics` (shared with evaluation).  Spectral terms are blind to
polarity: keep a time-domain term beside them (the reference's 0.5·L1 + 0.5·MR-STFT sometimes
settles on an inverted output).  An optional first-order pre-emphasis ``y[n] − a·y[n−1]`` (Wright
et al. 2019) is applied to prediction and target before every term.  ``floor`` is the energy floor
(a power, mean square per sample) of the ESR and DC terms and of the spectral terms' spectral
convergence: see :func:`nablafx.metrics.esr_loss` and :class:`nablafx.metrics.FlooredSpectralConvergence`.
"""

from __future__ import annotations

import torch
from torch import nn

from nablafx.config import TrainConfig, check_setting
from nablafx.metrics import FLOORED_TERMS, SPECTRAL_TERMS, TIME_TERMS, pre_emphasis


class WeightedLoss(nn.Module):
    """``forward(pred, target) -> (total, {term: value})``."""

    def __init__(self, weights: dict, sample_rate: int = 48000, pre_emphasis: float = 0.0, floor: float = 0.0):
        super().__init__()
        self.weights = check_setting(TrainConfig, "loss", weights)
        self.pre_emphasis = pre_emphasis
        if not (floor >= 0 and floor < float("inf")):
            raise ValueError(f"loss floor must be a finite power ≥ 0, got {floor!r}")
        self.floor = float(floor)
        self.spectral = nn.ModuleDict({name: build(sample_rate, self.floor) for name, build in SPECTRAL_TERMS.items()
                                       if name in self.weights})

    def forward(self, pred: torch.Tensor, target: torch.Tensor):
        if self.pre_emphasis:
            pred, target = pre_emphasis(pred, self.pre_emphasis), pre_emphasis(target, self.pre_emphasis)
        terms = {}
        for name in self.weights:
            if name in self.spectral:
                terms[name] = self.spectral[name](pred.float(), target.float())
            elif name in FLOORED_TERMS:
                terms[name] = TIME_TERMS[name](pred.float(), target.float(), self.floor)
            else:
                terms[name] = TIME_TERMS[name](pred.float(), target.float())
        total = sum(self.weights[k] * v for k, v in terms.items())
        return total, terms
