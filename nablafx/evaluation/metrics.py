"""Time-domain metrics on ``(batch, 1, samples)`` tensors.

ESR (error-to-signal ratio) = Σ(y − ŷ)² / Σy², per example then averaged; it sees polarity,
so an inverted output scores ≈ 4 however good its spectrum looks.
"""

from __future__ import annotations

import torch

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
