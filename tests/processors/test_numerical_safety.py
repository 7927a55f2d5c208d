"""No NaN or Inf — forward or backward — from the rational nonlinearities and the compressor, for inputs
up to ±1e3, silence and DC, in float32 (training) and float64, over the whole normalised parameter
range.  (nn.Rational, the TCN/GCN activation: tests/nn/test_rational.py.)"""

import itertools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nablafx.dsp.nonlinear import CURVES, rational
from nablafx.processors import build_processor

FS = 48000
DTYPES = [torch.float32, torch.float64]
N = 512


def extreme_inputs(dtype):
    """Silence, DC at several levels and both signs, full-band noise and a Nyquist square at ±1e3."""
    g = torch.Generator().manual_seed(0)
    out = {"silence": torch.zeros(2, 1, N)}
    for c in (1e-9, 1e-3, 1.0, -1.0, 1e3, -1e3):
        out[f"dc {c:g}"] = torch.full((2, 1, N), c)
    out["noise ±1e3"] = (400 * torch.randn(2, 1, N, generator=g)).clamp(-1e3, 1e3)
    out["square ±1e3"] = 1e3 * torch.tensor([1.0, -1.0]).repeat(N // 2).reshape(1, 1, N).expand(2, 1, N)
    out["step 0 → 1e3"] = torch.cat([torch.zeros(2, 1, N // 2), torch.full((2, 1, N // 2), 1e3)], -1)
    return {k: v.to(dtype).contiguous() for k, v in out.items()}


def assert_finite_forward_and_backward(proc, x, params):
    x = x.clone().requires_grad_()
    params = params.clone().requires_grad_()
    proc.zero_grad()
    y, _ = proc(x, params, proc.init_state(x.shape[0], dtype=x.dtype))
    assert torch.isfinite(y).all(), "forward"
    y.sum().backward()
    assert torch.isfinite(x.grad).all(), "gradient w.r.t. the input"
    if params.numel():
        assert torch.isfinite(params.grad).all(), "gradient w.r.t. the controller's parameters"
    for name, p in proc.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), f"gradient w.r.t. {name}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("oversample", [1, 4])
@pytest.mark.parametrize("init", list(CURVES))
def test_rational_processor_is_finite_on_extreme_inputs(init, oversample, dtype):
    proc = build_processor({"type": "rational", "init": init, "oversample": oversample}, FS).to(dtype)
    for name, x in extreme_inputs(dtype).items():
        try:
            assert_finite_forward_and_backward(proc, x, torch.zeros(2, 0, 1, dtype=dtype))
        except AssertionError as err:
            raise AssertionError(f"rational init={init} ×{oversample} {dtype}, input {name}: {err}") from None


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.lists(st.floats(-10, 10), min_size=7, max_size=7), st.lists(st.floats(-10, 10), min_size=5, max_size=5),
       st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=32))
def test_rational_function_is_finite_for_any_coefficients_up_to_10(num, den, xs):
    """Degrees (6, 5), any coefficients in [−10, 10] (trained values stay far inside), inputs in
    [−1e3, 1e3], float32: P/Q and its gradients stay finite (Q ≥ 1; |P| ≤ 7·10·1e18 < 3.4e38)."""
    num = torch.tensor(num, dtype=torch.float32, requires_grad=True)
    den = torch.tensor(den, dtype=torch.float32, requires_grad=True)
    x = torch.tensor(xs + [0.0, 1e3, -1e3], dtype=torch.float32, requires_grad=True)
    y = rational(x, num, den)
    assert torch.isfinite(y).all()
    y.sum().backward()
    for g in (x.grad, num.grad, den.grad):
        assert torch.isfinite(g).all()


@pytest.mark.parametrize("dtype", [torch.float32])
def test_compressor_is_finite_at_every_corner_of_its_range(dtype):
    """All 2^6 corners of the normalised range (threshold −60/0 dB, ratio 1/20, attack 0.1/100 ms,
    release 5/1000 ms, knee 0/24 dB, makeup −12/+24 dB) on every extreme input, in float32 (the
    training dtype; the detector runs in float64 internally either way)."""
    proc = build_processor({"type": "compressor"}, FS).to(dtype)
    inputs = extreme_inputs(dtype)
    for corner in itertools.product([0.0, 1.0], repeat=proc.n_params):
        params = torch.tensor(corner, dtype=dtype).reshape(1, -1, 1).expand(2, -1, 1)
        for name, x in inputs.items():
            try:
                assert_finite_forward_and_backward(proc, x, params)
            except AssertionError as err:
                raise AssertionError(f"compressor {dict(zip(proc.param_names, corner))}, {dtype}, {name}: {err}") \
                    from None


@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.floats(0.0, 1.0), min_size=6, max_size=6), st.floats(-1e3, 1e3),
       st.sampled_from(["silence", "dc 1", "dc -1000", "noise ±1e3", "square ±1e3", "step 0 → 1e3"]))
def test_compressor_is_finite_anywhere_in_its_range(values, scale, kind):
    """Hypothesis over [0, 1]^6 × input kind × an input scale in [−1e3, 1e3] (clamped to ±1e3), float32."""
    proc = build_processor({"type": "compressor"}, FS)
    x = (extreme_inputs(torch.float32)[kind] * scale / 1e3).clamp(-1e3, 1e3)
    params = torch.tensor(values, dtype=torch.float32).reshape(1, -1, 1).expand(2, -1, 1)
    assert_finite_forward_and_backward(proc, x, params)


def test_compressor_silence_and_dc_give_the_static_curve():
    """Not just finite: silence stays silence, and DC at +60 dBFS (1e3) with threshold 0, ratio 20,
    hard knee settles at the static curve, 60/20 = 3 dB over threshold: 1e3 → 10^(3/20)."""
    proc = build_processor({"type": "compressor"}, FS).double()
    r = proc.param_ranges
    p = torch.tensor([r["threshold_db"].normalise(0.0), 1.0, r["attack_ms"].normalise(1.0), 0.5, 0.0,
                      r["makeup_db"].normalise(0.0)], dtype=torch.float64).reshape(1, -1, 1)
    y, _ = proc(torch.zeros(1, 1, N, dtype=torch.float64), p, None)
    assert torch.equal(y, torch.zeros_like(y))
    y, _ = proc(torch.full((1, 1, 4800), 1e3, dtype=torch.float64), p, None)
    assert abs(float(y[0, 0, -1]) - 10 ** (3 / 20)) < 1e-6
