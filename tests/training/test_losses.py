"""The weighted training loss (nablafx.training.losses) built from metric terms."""

import pytest
import torch

from nablafx import metrics
from nablafx.errors import ConfigError
from nablafx.metrics import pre_emphasis
from nablafx.training.losses import WeightedLoss


def test_weighted_loss_sum_and_pre_emphasis():
    y = torch.randn(2, 1, 4096)
    p = y + 0.05 * torch.randn_like(y)
    loss = WeightedLoss({"l1": 2.0, "esr": 0.5})
    total, terms = loss(p, y)
    assert float(total) == pytest.approx(2 * float(metrics.l1(p, y)) + 0.5 * float(metrics.esr_loss(p, y)), rel=1e-6)
    x = torch.tensor([[[1.0, 2.0, 3.0]]])
    assert torch.equal(pre_emphasis(x, 0.5), torch.tensor([[[1.0, 1.5, 2.0]]]))
    total_pe, _ = WeightedLoss({"l1": 1.0}, pre_emphasis=0.95)(p, y)
    assert float(total_pe) == pytest.approx(float(metrics.l1(pre_emphasis(p, 0.95), pre_emphasis(y, 0.95))), rel=1e-6)


def test_spectral_terms_blind_to_polarity_time_terms_not():
    y = torch.randn(1, 1, 8192)
    _, terms = WeightedLoss({"l1": 1.0, "mrstft": 1.0, "melstft": 1.0})(-y, y)
    assert float(terms["mrstft"]) < 1e-3 and float(terms["melstft"]) < 1e-3
    assert float(terms["l1"]) > 1.0


@pytest.mark.parametrize("weights, message", [
    ({"l3": 1.0}, r"params\.yaml: train\.loss\.l3: unknown loss term 'l3'; known: l1, mse, esr, dc, mrstft, melstft"),
    ({"l1": -1.0}, r"params\.yaml: train\.loss\.l1: must be ≥ 0, got -1\.0"),
    ({"l1": "one"}, r"params\.yaml: train\.loss\.l1: expected float, got 'one'"),
    ({}, r"params\.yaml: train\.loss: must not be empty"),
])
def test_bad_weights_are_config_errors(weights, message):
    with pytest.raises(ConfigError, match=message):
        WeightedLoss(weights)


def test_floor_reaches_every_floored_term_and_must_be_a_power():
    silent = torch.zeros(2, 1, 8192)
    hiss = 1e-3 * torch.randn(2, 1, 8192)  # −60 dBFS over digital silence
    _, unfloored = WeightedLoss({"esr": 1.0, "dc": 1.0, "mrstft": 1.0, "melstft": 1.0})(hiss, silent)
    _, floored = WeightedLoss({"esr": 1.0, "dc": 1.0, "mrstft": 1.0, "melstft": 1.0}, floor=1e-5)(hiss, silent)
    assert float(unfloored["esr"]) > 1e5 and float(floored["esr"]) == pytest.approx(0.1, rel=0.05)
    for name in ("mrstft", "melstft"):  # spectral convergence against the floor, not the 1e-4 clamp
        assert float(floored[name]) < float(unfloored[name]) / 10
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="loss floor"):
            WeightedLoss({"l1": 1.0}, floor=bad)
