"""Time-domain metrics and spectral loss terms on ``(batch, 1, samples)`` tensors, shared by
training (``nablafx.training.losses``) and evaluation (``nablafx.evaluation.evaluate``).

ESR (error-to-signal ratio) = Σ(y − ŷ)² / Σy², per example then averaged; it sees polarity,
so an inverted output scores ≈ 4 however good its spectrum looks.

Loss terms by name (params.yaml ``train.loss: {name: weight}``): time-domain ``l1``, ``mse``,
``esr``, ``dc`` see polarity; spectral ``mrstft`` (multi-resolution STFT loss; Yamamoto et al.
2020, Steinmetz & Reiss 2020) and ``melstft`` (mel-scaled STFT loss) come from auraloss and are
blind to polarity.  :func:`pre_emphasis` is the first-order filter ``y[n] − a·y[n−1]`` of
Wright et al. 2019.
"""

from __future__ import annotations

import torch
from torch import nn

EPS = 1e-10


def l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.mean(torch.abs(pred - target))


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.mean((pred - target) ** 2)


def esr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    num = torch.sum((target - pred) ** 2, dim=-1)
    den = torch.sum(target**2, dim=-1) + EPS
    return torch.mean(num / den)


def dc_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared difference of the means, relative to target energy (auraloss's DC loss)."""
    num = torch.mean(target - pred, dim=-1) ** 2
    den = torch.mean(target**2, dim=-1) + EPS
    return torch.mean(num / den)


def mrstft_loss() -> nn.Module:
    """Multi-resolution STFT loss (auraloss); its largest window is 2048 samples."""
    import auraloss

    return auraloss.freq.MultiResolutionSTFTLoss(
        fft_sizes=[1024, 2048, 512], hop_sizes=[120, 240, 50], win_lengths=[600, 1200, 240]
    )


def melstft_loss(sample_rate: int) -> nn.Module:
    """Mel-scaled STFT loss (auraloss), 2048-sample frames, 128 mel bands."""
    import auraloss

    return auraloss.freq.MelSTFTLoss(sample_rate, fft_size=2048, hop_size=512, win_length=2048, n_mels=128)


def pre_emphasis(x: torch.Tensor, coef: float) -> torch.Tensor:
    return torch.cat([x[..., :1], x[..., 1:] - coef * x[..., :-1]], dim=-1)


TIME_TERMS = {"l1": l1, "mse": mse, "esr": esr, "dc": dc_error}
SPECTRAL_TERMS = {"mrstft": lambda sample_rate: mrstft_loss(), "melstft": melstft_loss}  # name → builder(sample_rate)
LOSS_TERMS = (*TIME_TERMS, *SPECTRAL_TERMS)
