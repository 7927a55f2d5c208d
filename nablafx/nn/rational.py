"""Rational activation P(x)/Q(x) in pure PyTorch (runs on CPU and GPU).

Same form and initial fits as the ``rational-activations`` package (Molina et al., "Padé
Activation Units", ICLR 2020), version A ("safe" Padé unit):

    R(x) = (a_0 + a_1 x + ... + a_m x^m) / (1 + |b_1 x| + |b_2 x^2| + ... + |b_n x^n|)

with degrees ``(m, n) = (5, 4)``.  The denominator is ≥ 1, so R has no poles.  One set of
coefficients per module (shared over channels), as in the package.  The initial coefficients
below are the package's least-squares fits on [-3, 3] (``rationals_config.json``, version A, 5/4).
"""

from __future__ import annotations

import torch
from torch import nn

from nablafx.errors import ConfigError

# (numerator a_0..a_5, denominator b_1..b_4): fits of each function on [-3, 3], version A, degrees 5/4.
RATIONAL_INITS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "leaky_relu": (
        (0.029792778657264946, 0.6183735264987601, 2.323309062531321, 3.051936237265109,
         1.4854203263828845, 0.2510244961111299),
        (-1.1419548357285474, 4.393159974992486, 0.8714712309957245, 0.34719662339598834),
    ),
    "relu": (
        (0.029963801610813613, 0.6168978366891341, 2.37534759733888, 3.0659900472408443,
         1.5246831881677423, 0.2528070864040542),
        (-1.191550121923625, 4.4080487697236626, 0.9110357113686055, 0.34884977946384615),
    ),
    "tanh": (
        (-1.0804622559204184e-08, 1.0003008043819048, -2.5878199375289335e-08, 0.09632129918392647,
         3.4775841628196104e-09, 0.0004255709234726337),
        (-0.0013027181209176277, 0.428349017422072, 1.4524304083061898e-09, 0.010796648111337176),
    ),
    "sigmoid": (
        (0.4999992534599381, 0.25002157564685185, 0.14061924500301096, 0.049420492431596394,
         0.00876714851885483, 0.0006442412789159799),
        (2.1694506382753683e-09, 0.28122766100417684, 1.0123620714203357e-05, 0.017531988049946),
    ),
    "gelu": (
        (-0.0012423594497499122, 0.5080497063245629, 0.41586363182937475, 0.13022718688035761,
         0.024355900098993424, 0.00290283948155535),
        (-0.06675015696494944, 0.17927646217001553, 0.03746682605496631, 1.6561610853276082e-10),
    ),
    "swish": (
        (3.054879741161051e-07, 0.5000007853744493, 0.24999783422824703, 0.05326628273219478,
         0.005803034571292244, 0.0002751961022402342),
        (-4.111554955950634e-06, 0.10652899335007572, -1.2690007399796238e-06, 0.0005502331264140556),
    ),
    "identity": (
        (1.952558011965895e-18, 1.0000000418848929, 8.641766456193493e-11, 8.232316849838465,
         1.0465271232039494e-10, 1.1911050546350175),
        (1.2825296444093772e-07, 8.232316768047744, 1.3822412587561512e-08, 1.191105054054555),
    ),
}


def rational_a(x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """Version-A rational function of ``x`` (any shape); coefficients in increasing powers.

    ``numerator`` holds a_0..a_m, ``denominator`` b_1..b_n; Horner's scheme in x for P and in |x|
    (with |b_j|) for Q, since |b_j x^j| = |b_j| |x|^j.
    """
    p = numerator[-1]
    for a in numerator.flip(0)[1:]:
        p = torch.addcmul(a, p, x) if p.dim() else p * x + a
    ax = x.abs()
    b = denominator.abs()
    q = b[-1] * ax
    for bj in b.flip(0)[1:]:
        q = (q + bj) * ax
    return p / (q + 1.0)


class Rational(nn.Module):
    """Learnable rational activation, version A, degrees (5, 4) by default.

    ``init`` names the function whose fit seeds the coefficients (see :data:`RATIONAL_INITS`).
    Only degrees (5, 4) have stored fits.
    """

    def __init__(self, init: str = "leaky_relu", degrees: tuple[int, int] = (5, 4)):
        super().__init__()
        if init not in RATIONAL_INITS:
            raise ConfigError(f"unknown function {init!r}; known: {', '.join(sorted(RATIONAL_INITS))}", key="init")
        if tuple(degrees) != (5, 4):
            raise ConfigError(f"only (5, 4) have initial fits, got {tuple(degrees)}", key="degrees")
        num, den = RATIONAL_INITS[init]
        self.init = init
        self.numerator = nn.Parameter(torch.tensor(num, dtype=torch.float32))
        self.denominator = nn.Parameter(torch.tensor(den, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rational_a(x, self.numerator.to(x.dtype), self.denominator.to(x.dtype))

    def extra_repr(self) -> str:
        return f"init={self.init!r}, degrees=(5, 4), version='A'"
