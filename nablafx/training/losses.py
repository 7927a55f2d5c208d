"""Loss as a weighted sum of named terms (params.yaml ``train.loss: {name: weight}``).

Terms: ``l1``, ``mse``, ``esr``, ``dc`` (time domain; they see polarity) and ``mrstft``
(auraloss multi-resolution STFT loss, Yamamoto et al. 2020 / Steinmetz & Reiss 2020; blind to
polarity, so keep a time-domain term beside it: the reference's 0.5·L1 + 0.5·MR-STFT sometimes
settles on an inverted output).
"""

from __future__ import annotations

import torch
from torch import nn

from nablafx.evaluation import metrics
from nablafx.registry import ConfigError

TIME_TERMS = {"l1": metrics.l1, "mse": metrics.mse, "esr": metrics.esr, "dc": metrics.dc_error}
SPECTRAL_TERMS = ("mrstft",)
KNOWN_TERMS = tuple(TIME_TERMS) + SPECTRAL_TERMS


def check_loss_weights(weights: dict, key: str = "train.loss") -> None:
    if not weights:
        raise ConfigError(f"params.yaml: {key}: needs at least one term; known: {', '.join(KNOWN_TERMS)}")
    for name, w in weights.items():
        if name not in KNOWN_TERMS:
            raise ConfigError(f"params.yaml: {key}.{name}: unknown loss term; known: {', '.join(KNOWN_TERMS)}")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
            raise ConfigError(f"params.yaml: {key}.{name}: weight must be a number ≥ 0, got {w!r}")


def mrstft_loss() -> nn.Module:
    import auraloss

    return auraloss.freq.MultiResolutionSTFTLoss(
        fft_sizes=[1024, 2048, 512], hop_sizes=[120, 240, 50], win_lengths=[600, 1200, 240]
    )


class WeightedLoss(nn.Module):
    """``forward(pred, target) -> (total, {term: value})``."""

    def __init__(self, weights: dict):
        super().__init__()
        check_loss_weights(weights)
        self.weights = {k: float(v) for k, v in weights.items()}
        self.mrstft = mrstft_loss() if "mrstft" in self.weights else None

    def forward(self, pred: torch.Tensor, target: torch.Tensor):
        terms = {}
        for name in self.weights:
            if name == "mrstft":
                terms[name] = self.mrstft(pred, target)
            else:
                terms[name] = TIME_TERMS[name](pred, target)
        total = sum(self.weights[k] * v for k, v in terms.items())
        return total, terms
