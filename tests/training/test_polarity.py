"""Polarity-aligned start: exact output negation per model, the alignment decision, and the trainer
calling it once, before step 0, only when ``train.align_polarity`` is on."""

from __future__ import annotations

import pytest
import torch

from nablafx.registry import build_model
from nablafx.streaming import process_in_blocks
from nablafx.training import system as system_mod
from nablafx.training.polarity import align_output_polarity, output_correlation

from ..models.test_graybox import PARAMS
from ..models.test_zoo import NAMES, VARIANTS, inputs, make
from .test_resume import _params, _train, prepared  # noqa: F401  (prepared: a fixture)

# one variant per family and conditioning kind is enough for exactness; the paper ones are those trained
EXACT = [n for n in NAMES if n.startswith("paper-") and n.endswith(("-32", "-45-s-16", "-b4-s4-c16"))]


def _rms(t):
    return float(t.pow(2).mean().sqrt())


@pytest.mark.parametrize("name", EXACT)
def test_negate_output_is_exact_offline_and_streaming(name):
    model = make(name)
    x, knobs = inputs(model, 3000)
    with torch.no_grad():
        y, _ = model(x, knobs)
        assert model.negate_output() is True
        y_neg, _ = model(x, knobs)
        y_stream = process_in_blocks(model, x, knobs, 700)  # the state protocol is unchanged
    tol = 1e-6 * _rms(y)
    assert _rms(y) > 1e-4  # an output that could be told from its negation
    assert torch.allclose(y_neg, -y, atol=tol, rtol=0), name
    assert torch.allclose(y_stream, -y, atol=1e-5 * _rms(y), rtol=0), name


def test_every_black_box_variant_without_a_direct_path_can_be_negated():
    for name in NAMES:
        model = build_model(VARIANTS[name], n_knobs=3)
        direct = VARIANTS[name]["family"] == "lstm" and model.residual
        assert model.negate_output() is (not direct), name


def test_a_residual_lstm_and_a_gray_box_chain_refuse_and_stay_unchanged():
    graybox = next(v for v in PARAMS["variants"].values() if v["family"] == "graybox")
    for spec in ({"family": "lstm", "hidden_size": 4, "residual": True}, graybox):
        model = build_model(spec, n_knobs=3)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        assert model.negate_output() is False
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


@pytest.mark.parametrize("align", [True, False])
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
    if not align:
        assert calls == []
        return
    assert len(calls) == 2 and calls[0][0] == 2  # once, on the first batch (batch_size 2)
    assert isinstance(calls[1]["corr"], float) and calls[1]["supported"]
