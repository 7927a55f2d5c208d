"""Metrics against closed forms / float64 numpy."""

import numpy as np
import pytest
import torch

from nablafx.evaluation import metrics
from nablafx.evaluation.evaluate import loudness_lufs
from nablafx.training.losses import WeightedLoss, pre_emphasis


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


def _bs1770_reference(x: np.ndarray) -> float:
    """Ungated BS.1770-4 loudness in float64 with the standard's 48 kHz K-weighting coefficients."""
    from scipy.signal import lfilter

    y = lfilter([1.53512485958697, -2.69169618940638, 1.19839281085285], [1, -1.69065929318241, 0.73248077421585], x)
    y = lfilter([1.0, -2.0, 1.0], [1, -1.99004745483398, 0.99007225036621], y)
    return -0.691 + 10 * np.log10(np.mean(y[4800:] ** 2))


def test_loudness_against_bs1770_reference():
    """Our BS.1770 loudness against a float64 scipy reference with the standard's printed
    coefficients: the standard's −3.01 LUFS for a 0 dBFS 997 Hz sine, and 0.001 LU agreement
    on noise; torchaudio's own loudness reads −3.28 there (it clamps inside its biquads)."""
    import torchaudio

    from nablafx.evaluation.loudness import k_weighting_coefficients

    (b1, a1), (b2, a2) = k_weighting_coefficients(48000)
    np.testing.assert_allclose(b1, [1.53512485958697, -2.69169618940638, 1.19839281085285], atol=1e-6)
    np.testing.assert_allclose(a1, [1, -1.69065929318241, 0.73248077421585], atol=1e-6)
    np.testing.assert_allclose(a2, [1, -1.99004745483398, 0.99007225036621], atol=1e-6)
    t = np.arange(48000 * 3) / 48000
    x = np.sin(2 * np.pi * 997 * t)
    assert loudness_lufs(torch.from_numpy(x), 48000) == pytest.approx(-3.01, abs=0.005)
    assert float(torchaudio.functional.loudness(torch.from_numpy(x)[None], 48000)) < -3.2  # the clamp
    assert loudness_lufs(torch.from_numpy(x), 48000) - loudness_lufs(torch.from_numpy(0.5 * x), 48000) \
        == pytest.approx(20 * np.log10(2), abs=1e-6)
    noise = np.random.default_rng(0).standard_normal(48000 * 3) * 0.1
    assert loudness_lufs(torch.from_numpy(noise), 48000) == pytest.approx(_bs1770_reference(noise), abs=0.01)
    assert loudness_lufs(torch.zeros(48000), 48000) is None


def test_loudness_gating_ignores_silence():
    """Relative/absolute gating: a tone followed by as much digital silence reads as the tone."""
    t = np.arange(48000 * 10) / 48000  # 10 s: the three blocks straddling the edge cost 0.07 LU
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    both = np.concatenate([tone, np.zeros_like(tone)])
    assert loudness_lufs(torch.from_numpy(both), 48000) == pytest.approx(
        loudness_lufs(torch.from_numpy(tone), 48000), abs=0.1)


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
