"""Metrics (nablafx.metrics) against closed forms / float64 numpy."""

import numpy as np
import pytest
import torch

from nablafx import metrics


def test_esr_matches_numpy_and_sees_polarity():
    rng = np.random.default_rng(0)
    y = rng.standard_normal((3, 1, 1000))
    p = y + 0.1 * rng.standard_normal(y.shape)
    ref = np.mean(np.sum((y - p) ** 2, -1) / np.sum(y**2, -1))
    got = metrics.esr(torch.from_numpy(p), torch.from_numpy(y))
    assert float(got) == pytest.approx(ref, rel=1e-12)
    # an inverted copy: spectrally perfect, ESR = 4
    assert float(metrics.esr(-torch.from_numpy(y), torch.from_numpy(y))) == pytest.approx(4.0, rel=1e-12)


def test_l1_mse_dc():
    y = torch.tensor([[[1.0, -1.0, 2.0, 0.0]]], dtype=torch.float64)
    p = torch.tensor([[[0.5, -1.0, 1.0, 0.5]]], dtype=torch.float64)
    assert float(metrics.l1(p, y)) == pytest.approx(0.5)
    assert float(metrics.mse(p, y)) == pytest.approx((0.25 + 0 + 1 + 0.25) / 4)
    # DC: (mean(y - p))^2 / mean(y^2) = (0.25)^2 / 1.5
    assert float(metrics.dc_error(p, y)) == pytest.approx(0.0625 / 1.5)


def test_pre_emphasis_first_order():
    x = torch.tensor([[[1.0, 2.0, 3.0]]])
    assert torch.equal(metrics.pre_emphasis(x, 0.5), torch.tensor([[[1.0, 1.5, 2.0]]]))


def test_loss_term_tables():
    assert metrics.LOSS_TERMS == ("l1", "mse", "esr", "dc", "mrstft", "melstft")
    y = torch.randn(1, 1, 8192)
    for name, build in metrics.SPECTRAL_TERMS.items():
        assert float(build(48000)(y, y)) < 1e-6, name
