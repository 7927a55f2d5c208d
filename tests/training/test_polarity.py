"""Polarity alignment: exact output negation per model, the start's decision, the guard (mirror-exact
with the optimiser's moments, its state in checkpoints), and the trainer calling them only as
``train.align_polarity`` says."""

from __future__ import annotations

import pytest
import torch

from nablafx.registry import build_model
from nablafx.streaming import process_in_blocks
from nablafx.training import system as system_mod
from nablafx.training.losses import WeightedLoss
from nablafx.training.polarity import (
    PolarityGuard,
    align_output_polarity,
    correlation_sums,
    output_correlation,
)
from nablafx.training.system import tbptt_backward

from ..models.test_graybox import PARAMS
from ..models.test_zoo import NAMES, VARIANTS, inputs, make, rel_err
from .test_resume import _params, _train, prepared  # noqa: F401  (prepared: a fixture)

# one variant per family and conditioning kind is enough for exactness; the paper ones are those trained
EXACT = [n for n in NAMES if n.startswith("paper-") and n.endswith(("-32", "-45-s-16", "-b4-s4-c16"))]


@pytest.mark.parametrize("name", EXACT)
def test_negate_output_is_exact_offline_and_streaming(name):
    model = make(name)
    x, knobs = inputs(model, 3000)
    with torch.no_grad():
        y, _ = model(x, knobs)
        assert len(model.negate_output()) == 2  # the read-out's weight and bias
        y_neg, _ = model(x, knobs)
        y_stream = process_in_blocks(model, x, knobs, 700)  # the state protocol is unchanged
    assert float(y.pow(2).mean().sqrt()) > 1e-4  # an output that could be told from its negation
    assert rel_err(y_neg, -y) <= 1e-6, name
    assert rel_err(y_stream, -y) <= 1e-5, name


def test_every_black_box_variant_without_a_direct_path_can_be_negated():
    for name in NAMES:
        model = build_model(VARIANTS[name], n_knobs=3)
        direct = VARIANTS[name]["family"] == "lstm" and model.residual
        assert bool(model.negate_output()) is (not direct), name


def test_a_residual_lstm_and_a_gray_box_chain_refuse_and_stay_unchanged():
    graybox = next(v for v in PARAMS["variants"].values() if v["family"] == "graybox")
    for spec in ({"family": "lstm", "hidden_size": 4, "residual": True}, graybox):
        model = build_model(spec, n_knobs=3)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        assert model.negate_output() == []
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _target_like(model, x, knobs, sign):
    with torch.no_grad():
        y, _ = model(x, knobs)
    return sign * y + 0.01 * torch.randn_like(y)


@pytest.mark.parametrize("sign", [-1.0, 1.0])
def test_align_flips_only_an_anti_correlated_start(sign):
    model = make("paper-tcn-f-45-s-16").train()  # FiLM with BatchNorm: buffers must be left alone
    x, knobs = inputs(model, 4000, batch=4)
    y = _target_like(model, x, knobs, sign)
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    out = align_output_polarity(model, x, y, knobs, context=500)
    assert out["flipped"] is (sign < 0) and out["supported"]
    assert (out["corr"] < 0) is (sign < 0) and abs(out["corr"]) > 0.9
    assert all(torch.equal(buffers[k], v) for k, v in model.named_buffers())
    assert output_correlation(model, x, y, knobs, 500) > 0.9  # aligned either way


def test_align_uses_the_reduced_correlation_for_its_decision():
    model = make("paper-s4-f-b4-s4-c16")
    x, knobs = inputs(model, 3000)
    y = _target_like(model, x, knobs, 1.0)  # locally positive …
    out = align_output_polarity(model, x, y, knobs, context=0, reduce=lambda c: -c)  # … negative over all ranks
    assert out["flipped"] and out["corr"] < 0
    assert output_correlation(model, x, y, knobs, 0) < 0  # every rank took the same (global) decision


def test_an_unsupported_model_reports_it_and_is_left_alone():
    model = build_model({"family": "lstm", "hidden_size": 4, "residual": True}, n_knobs=0)
    g = torch.Generator().manual_seed(0)
    x = 0.3 * torch.randn(2, 1, 2000, generator=g)
    with torch.no_grad():
        y0, _ = model(x, None)
    out = align_output_polarity(model, x, -(y0 - x) - 2 * x, None, context=0)  # anti-correlated target
    assert out == {"corr": out["corr"], "flipped": False, "supported": False} and out["corr"] < 0


@pytest.mark.parametrize("align", ["start", "off"])
def test_the_trainer_aligns_once_before_step_zero_when_asked(prepared, monkeypatch, align):  # noqa: F811
    calls = []
    original = system_mod.align_output_polarity

    def spy(model, x, y, knobs, context, reduce=None):
        calls.append(x.shape)
        out = original(model, x, y, knobs, context, reduce=reduce)
        calls.append(out)
        return out

    monkeypatch.setattr(system_mod, "align_output_polarity", spy)
    _train(prepared, f"align-{align}", _params(prepared / "data", align_polarity=align, max_steps=3))
    if align == "off":
        assert calls == []
        return
    assert len(calls) == 2 and calls[0][0] == 2  # once, on the first batch (batch_size 2)
    assert isinstance(calls[1]["corr"], float) and calls[1]["supported"]


def _adam_steps(model, opt, x, y, knobs, steps):
    loss_fn = WeightedLoss({"l1": 1.0, "mrstft": 0.5})
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        tbptt_backward(model, loss_fn, x, y, knobs, 0, 0)
        opt.step()


def test_a_negation_with_its_first_moments_continues_as_the_mirror_image():
    """Negating the read-out and Adam's first moments mid-run, then training on −y, tracks the
    un-negated run on y, negated (L1 and MR-STFT are even, AdamW's decay is odd in the weights)."""
    torch.manual_seed(0)
    a = build_model({"family": "tcn", "channels": 4, "blocks": 2, "kernel_size": 3, "dilation_growth": 2,
                     "cond": "film"}, n_knobs=2).double()
    b = build_model({"family": "tcn", "channels": 4, "blocks": 2, "kernel_size": 3, "dilation_growth": 2,
                     "cond": "film"}, n_knobs=2).double()
    b.load_state_dict(a.state_dict())
    g = torch.Generator().manual_seed(1)
    x = 0.5 * torch.randn(2, 1, 1200, generator=g, dtype=torch.float64)
    knobs = torch.rand(2, 2, generator=g, dtype=torch.float64)
    y = torch.tanh(3 * x)
    opt_a = torch.optim.AdamW(a.parameters(), lr=1e-2, weight_decay=0.01)
    opt_b = torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=0.01)
    _adam_steps(a, opt_a, x, y, knobs, 3)
    _adam_steps(b, opt_b, x, y, knobs, 3)  # twins so far
    from nablafx.training.polarity import negate

    exp_avg = {id(p): opt_b.state[p]["exp_avg"].clone() for p in b.parameters()}
    assert negate(b, opt_b)
    for p in b.parameters():  # only the read-out's moments changed sign
        want = -exp_avg[id(p)] if p is b.out.weight or p is b.out.bias else exp_avg[id(p)]
        assert torch.equal(opt_b.state[p]["exp_avg"], want)
    _adam_steps(a, opt_a, x, y, knobs, 4)
    _adam_steps(b, opt_b, x, -y, knobs, 4)
    with torch.no_grad():
        ya, yb = a(x, knobs)[0], b(x, knobs)[0]
    assert torch.allclose(yb, -ya, atol=1e-9, rtol=0)


class _Sign(torch.nn.Module):
    """y = s·x with s = ±1 held in a read-out parameter; negate_output flips it."""

    n_knobs = 0

    def __init__(self, s):
        super().__init__()
        self.s = torch.nn.Parameter(torch.tensor(float(s)))

    def forward(self, x, knobs=None, state=None):
        return self.s * x, state

    def negate_output(self):
        with torch.no_grad():
            self.s.neg_()
        return [self.s]


def test_the_guard_negates_when_the_smoothed_correlation_turns_negative_and_keeps_its_state():
    model, guard = _Sign(1.0), PolarityGuard(decay=0.5)
    x = torch.randn(1, 1, 100, generator=torch.Generator().manual_seed(0))
    seen = []
    for target_sign in (1, 1, -1, -1, -1, -1):
        sums = correlation_sums(model(x)[0], target_sign * x).tolist()
        seen.append(guard.observe(model, None, sums))
    # ema: 1, 1, 0 (not < 0), −0.5 → negated (ema +0.5), then correlation +1: no more flips
    assert seen == [False, False, False, True, False, False] and guard.flips == 1 and float(model.s) == -1.0
    other = PolarityGuard(decay=0.5)
    other.load_state_dict(guard.state_dict())
    assert (other.ema, other.flips) == (guard.ema, guard.flips) == (0.875, 1)  # +0.5 → 0.75 → 0.875


def test_the_guard_leaves_a_model_it_cannot_negate_alone():
    model = build_model({"family": "lstm", "hidden_size": 4, "residual": True}, n_knobs=0)
    guard = PolarityGuard()
    assert guard.observe(model, None, [-1.0, 1.0, 1.0]) is False and guard.flips == 0


def test_guard_state_goes_into_the_checkpoint(prepared):  # noqa: F811
    import torch as _t

    _train(prepared, "guard", _params(prepared / "data", align_polarity="guard", max_steps=3))
    ckpt = _t.load(prepared / "guard" / "ckpt" / "last.ckpt", weights_only=True)
    state = ckpt["nablafx_polarity"]
    assert isinstance(state["ema"], float) and state["flips"] >= 0


def test_align_polarity_modes_match_the_config_choices():
    import dataclasses

    from nablafx.config import TrainConfig
    from nablafx.training.polarity import MODES

    field = next(f for f in dataclasses.fields(TrainConfig) if f.name == "align_polarity")
    assert field.metadata["nablafx"].choices == MODES


def test_correlation_sums_only_when_asked_and_over_the_scored_samples():
    model = make("paper-tcn-f-45-s-16").double()
    x, knobs = inputs(model, 2000, dtype=torch.float64)
    y = torch.tanh(2 * x)
    loss_fn = WeightedLoss({"l1": 1.0})
    assert tbptt_backward(model, loss_fn, x, y, knobs, 300, 0)[2] is None
    sums = tbptt_backward(model, loss_fn, x, y, knobs, 300, 600, correlate=True)[2]  # TBPTT: summed over segments
    with torch.no_grad():
        y_hat = model(x, knobs)[0][..., 300:]
    want = correlation_sums(y_hat, y[..., 300:])
    assert torch.allclose(sums, want, rtol=1e-9, atol=0)
