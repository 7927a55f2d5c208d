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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("init", sorted(RATIONAL_INITS))
def test_finite_on_extreme_inputs(init, dtype):
    """Silence, DC (±1e-9 … ±1e3), noise and a Nyquist square at ±1e3: output and gradients (input and
    both coefficient vectors) finite, for every initial fit; version A's Q ≥ 1 has no poles."""
    g = torch.Generator().manual_seed(0)
    inputs = {"silence": torch.zeros(2, 3, 256), "noise ±1e3": (400 * torch.randn(2, 3, 256, generator=g)).clamp(-1e3, 1e3),
              "square ±1e3": 1e3 * torch.tensor([1.0, -1.0]).repeat(128).expand(2, 3, 256)}
    for c in (1e-9, 1.0, -1.0, 1e3, -1e3):
        inputs[f"dc {c:g}"] = torch.full((2, 3, 256), c)
    act = Rational(init).to(dtype)
    for name, x in inputs.items():
        x = x.to(dtype).clone().requires_grad_()
        act.zero_grad()
        y = act(x)
        y.sum().backward()
        assert torch.isfinite(y).all(), name
        for grad in (x.grad, act.numerator.grad, act.denominator.grad):
            assert torch.isfinite(grad).all(), name


def test_finite_for_any_coefficients_up_to_10():
    """Hypothesis over coefficients in [−10, 10] and inputs in [−1e3, 1e3], float32."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=200, deadline=None, derandomize=True, database=None)
    @given(st.lists(st.floats(-10, 10), min_size=6, max_size=6), st.lists(st.floats(-10, 10), min_size=4, max_size=4),
           st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=32))
    def check(num, den, xs):
        num = torch.tensor(num, requires_grad=True)
        den = torch.tensor(den, requires_grad=True)
        x = torch.tensor(xs + [0.0, 1e3, -1e3], requires_grad=True)
        y = rational_a(x, num, den)
        assert torch.isfinite(y).all()
        y.sum().backward()
        for grad in (x.grad, num.grad, den.grad):
            assert torch.isfinite(grad).all()

    check()
