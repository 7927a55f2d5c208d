"""Loss as a weighted sum of named terms (params.yaml ``train.loss: {name: weight}``).

Time-domain terms ``l1``, ``mse``, ``esr``, ``dc`` see polarity.  Spectral terms are from
auraloss: ``mrstft`` (multi-resolution STFT loss; Yamamoto et al. 2020, Steinmetz & Reiss 2020)
and ``melstft`` (mel-scaled STFT loss).  Spectral terms are blind to polarity: keep a
time-domain term beside them (the reference's 0.5·L1 + 0.5·MR-STFT sometimes settles on an
inverted output).  An optional first-order pre-emphasis ``y[n] − a·y[n−1]`` (Wright et al.
2019) is applied to prediction and target before every term.
"""

from __future__ import annotations

import torch
from torch import nn

from nablafx.evaluation import metrics
from nablafx.registry import ConfigError

TIME_TERMS = {"l1": metrics.l1, "mse": metrics.mse, "esr": metrics.esr, "dc": metrics.dc_error}
SPECTRAL_TERMS = ("mrstft", "melstft")
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


def melstft_loss(sample_rate: int) -> nn.Module:
    import auraloss

    return auraloss.freq.MelSTFTLoss(sample_rate, fft_size=2048, hop_size=512, win_length=2048, n_mels=128)


def pre_emphasis(x: torch.Tensor, coef: float) -> torch.Tensor:
    return torch.cat([x[..., :1], x[..., 1:] - coef * x[..., :-1]], dim=-1)


class WeightedLoss(nn.Module):
    """``forward(pred, target) -> (total, {term: value})``."""

    def __init__(self, weights: dict, sample_rate: int = 48000, pre_emphasis: float = 0.0):
        super().__init__()
        check_loss_weights(weights)
        self.weights = {k: float(v) for k, v in weights.items()}
        self.pre_emphasis = pre_emphasis
        self.spectral = nn.ModuleDict()
        if "mrstft" in self.weights:
            self.spectral["mrstft"] = mrstft_loss()
        if "melstft" in self.weights:
            self.spectral["melstft"] = melstft_loss(sample_rate)

    def forward(self, pred: torch.Tensor, target: torch.Tensor):
        if self.pre_emphasis:
            pred, target = pre_emphasis(pred, self.pre_emphasis), pre_emphasis(target, self.pre_emphasis)
        terms = {}
        for name in self.weights:
            fn = self.spectral[name] if name in self.spectral else TIME_TERMS[name]
            terms[name] = fn(pred.float(), target.float())
        total = sum(self.weights[k] * v for k, v in terms.items())
        return total, terms
