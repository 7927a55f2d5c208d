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
    assert float(total) == pytest.approx(2 * float(metrics.l1(p, y)) + 0.5 * float(metrics.esr(p, y)), rel=1e-6)
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
