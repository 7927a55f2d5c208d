"""Static (memoryless) nonlinearities: driven tanh, rational functions, named target curves.

The learnable MLP nonlinearity is a module (:class:`nablafx.processors.nonlinear.MLPNonlinearity`);
here live the pure functions and the closed-form curves it can be pretrained on.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def tanh_drive(x: torch.Tensor, drive_db: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``tanh(g·x + bias) − tanh(bias)`` with ``g = 10^(drive_db/20)``.

    A nonzero ``bias`` makes the curve asymmetric (even harmonics); subtracting ``tanh(bias)`` keeps
    silence silent.
    """
    g = torch.pow(10.0, drive_db / 20.0)
    return torch.tanh(g * x + bias) - torch.tanh(bias)


def rational(x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """Safe rational function ``P(x) / Q(x)`` ("version A" of Molina et al., Padé activation units).

    ``P(x) = Σ_{i=0..m} p_i x^i`` (``numerator``, ascending, ``m+1`` values) and
    ``Q(x) = 1 + Σ_{j=1..n} |q_j x^j|`` (``denominator`` holds ``q_1 … q_n``), so ``Q ≥ 1``: no poles.
    """
    m = numerator.shape[-1] - 1
    n = denominator.shape[-1]
    powers = [torch.ones_like(x)]
    for _ in range(max(m, n)):
        powers.append(powers[-1] * x)
    p = sum(numerator[i] * powers[i] for i in range(m + 1))
    q = 1.0 + sum((denominator[j - 1] * powers[j]).abs() for j in range(1, n + 1))
    return p / q


def fit_rational(target: Callable[[np.ndarray], np.ndarray], degrees: tuple[int, int] = (6, 5),
                 x_range: float = 3.0, n_points: int = 2001, even_denominator: bool = True):
    """Linearised least-squares fit ``P(x) ≈ y·Q(x)`` of a rational to ``target`` on ``[−x_range, x_range]``.

    With ``even_denominator`` only even powers enter ``Q`` (odd ones are 0), which suits odd curves
    such as tanh and keeps ``Σ |q_j x^j| == Σ q_j x^j`` when the fitted ``q_j ≥ 0``.  Returns float64
    ``(numerator (m+1,), denominator (n,))`` arrays; negative even coefficients are clipped to 0.
    """
    m, n = degrees
    x = np.linspace(-x_range, x_range, n_points)
    y = target(x)
    q_powers = [j for j in range(1, n + 1) if (j % 2 == 0 or not even_denominator)]
    cols = [x ** i for i in range(m + 1)] + [-y * x ** j for j in q_powers]
    sol, *_ = np.linalg.lstsq(np.stack(cols, axis=1), y, rcond=None)
    num = sol[: m + 1]
    den = np.zeros(n)
    for j, v in zip(q_powers, sol[m + 1:]):
        den[j - 1] = max(v, 0.0) if even_denominator else v
    return num, den


def _hardclip(x):
    return x.clamp(-1.0, 1.0) if isinstance(x, torch.Tensor) else np.clip(x, -1.0, 1.0)


def _cubic(x):
    # cubic soft clipper: 1.5 x − 0.5 x³ on |x| ≤ 1, ±1 beyond
    c = _hardclip(x)
    return 1.5 * c - 0.5 * c ** 3


def _asym(x):
    # asymmetric tanh (fuzz-like): harder clipping on the negative half
    if isinstance(x, torch.Tensor):
        return torch.where(x >= 0, torch.tanh(x), torch.tanh(2.0 * x) / 2.0)
    return np.where(x >= 0, np.tanh(x), np.tanh(2.0 * x) / 2.0)


def _tanh(x):
    return torch.tanh(x) if isinstance(x, torch.Tensor) else np.tanh(x)


def _identity(x):
    return x * 1.0


#: Named target curves for pretraining; each takes a numpy array or a tensor.
CURVES: dict[str, Callable] = {
    "tanh": _tanh,
    "hardclip": _hardclip,
    "cubic": _cubic,
    "asym": _asym,
    "identity": _identity,
}


def curve(name: str) -> Callable:
    if name not in CURVES:
        raise ValueError(f"unknown curve {name!r}; known: {', '.join(CURVES)}")
    return CURVES[name]
