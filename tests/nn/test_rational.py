"""The pure-PyTorch rational activation against the rational-activations package (CPU)."""

from __future__ import annotations

import pytest
import torch

from nablafx.nn.rational import RATIONAL_INITS, Rational, rational_a


def test_leaky_relu_fit_values():
    x = torch.arange(-3.0, 4.0)
    expected = torch.tensor([-0.042, -0.018, -0.011, 0.030, 1.001, 2.000, 2.996])
    torch.testing.assert_close(Rational("leaky_relu")(x), expected, atol=1e-3, rtol=0)


def _reference_a(x, num, den):
    """Direct float64 evaluation of version A: P(x) / (1 + Σ_j |b_j x^j|)."""
    p = sum(a * x**i for i, a in enumerate(num))
    q = 1 + sum(abs(b * x ** (j + 1)) for j, b in enumerate(den))
    return p / q


@pytest.mark.parametrize("init", sorted(RATIONAL_INITS))
def test_matches_closed_form(init):
    x = torch.linspace(-5, 5, 1001, dtype=torch.float64)
    num, den = RATIONAL_INITS[init]
    y = rational_a(x, torch.tensor(num, dtype=torch.float64), torch.tensor(den, dtype=torch.float64))
    torch.testing.assert_close(y, _reference_a(x, num, den), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("init", ["leaky_relu", "relu", "tanh", "sigmoid", "gelu", "swish"])
def test_matches_rational_activations_package(init):
    from rational.torch import Rational as PackageRational

    theirs = PackageRational(approx_func=init, degrees=(5, 4), version="A", cuda=False)
    ours = Rational(init)
    x = torch.linspace(-4, 4, 801)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.numerator.detach(), theirs.numerator.detach().float())
    torch.testing.assert_close(ours.denominator.detach(), theirs.denominator.detach().float())


def test_gradients_and_shape():
    act = Rational()
    x = torch.randn(2, 3, 50, requires_grad=True)
    y = act(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert act.numerator.grad.abs().sum() > 0 and act.denominator.grad.abs().sum() > 0
    assert x.grad is not None


def test_unknown_init_lists_known():
    with pytest.raises(ValueError, match=r"unknown function 'elu'; known: .*leaky_relu"):
        Rational("elu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_runs_on_gpu():
    act = Rational().cuda()
    x = torch.linspace(-3, 3, 7, device="cuda")
    torch.testing.assert_close(act(x).cpu(), Rational()(x.cpu()), rtol=1e-5, atol=1e-6)
