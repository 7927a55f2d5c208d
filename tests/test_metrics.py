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


@pytest.mark.parametrize("n", [4000, 20001])
def test_mrstft_equals_auralosss_value_and_gradient(n):
    """The reference's loss (auraloss MultiResolutionSTFTLoss, default resolutions), float64."""
    import auraloss

    ref = auraloss.freq.MultiResolutionSTFTLoss(fft_sizes=[1024, 2048, 512], hop_sizes=[120, 240, 50],
                                                win_lengths=[600, 1200, 240])
    g = torch.Generator().manual_seed(n)
    x = 0.3 * torch.randn(3, 1, n, generator=g, dtype=torch.float64)
    y = torch.tanh(3 * x) + 0.01 * torch.randn(3, 1, n, generator=g, dtype=torch.float64)
    y[..., 500:1500] = 0  # magnitudes under the 1e-4 floor: no gradient through the clamp
    x[..., 700:800] = 0
    values, grads = [], []
    for fn in (ref, metrics.MRSTFTLoss()):
        xg = x.clone().requires_grad_()
        loss = fn(xg, y)
        values.append(loss)
        grads.append(torch.autograd.grad(loss, xg)[0])
    torch.testing.assert_close(values[1], values[0], rtol=1e-12, atol=0)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-9, atol=1e-12 * float(grads[0].abs().max()))
    with torch.no_grad():  # evaluation: the value alone
        torch.testing.assert_close(metrics.MRSTFTLoss()(x, y), values[0].detach(), rtol=1e-12, atol=0)


def test_mrstft_gradient_passes_through_pre_emphasis_and_scales():
    g = torch.Generator().manual_seed(1)
    x = (0.3 * torch.randn(2, 1, 3000, generator=g, dtype=torch.float64)).requires_grad_()
    y = torch.tanh(2 * x.detach())
    fn = metrics.MRSTFTLoss()
    assert torch.autograd.gradcheck(lambda v: 3.0 * fn(metrics.pre_emphasis(v, 0.9), y), (x,), eps=1e-6, atol=1e-5,
                                    fast_mode=True)
