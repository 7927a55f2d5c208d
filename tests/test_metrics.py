"""Metrics (nablafx.metrics) against closed forms / float64 numpy."""

import math

import numpy as np
import pytest
import torch

from nablafx import metrics

from .conftest import REPO_PARAMS


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


# --------------------------------------------------------------------------- loss terms, quiet material
def test_esr_and_dc_loss_sum_over_the_batch_with_a_floor():
    rng = np.random.default_rng(1)
    y = rng.standard_normal((3, 1, 500)) * np.array([1.0, 1e-4, 0.0])[:, None, None]  # loud, quiet, silent
    p = y + 0.01 * rng.standard_normal(y.shape)
    floor = 1e-3
    ref = np.sum((y - p) ** 2) / (np.sum(y**2) + y.size * floor)
    got = metrics.esr_loss(torch.from_numpy(p), torch.from_numpy(y), floor)
    assert float(got) == pytest.approx(ref, rel=1e-12)
    ref_dc = 500 * np.sum(np.mean(y - p, axis=-1) ** 2) / (np.sum(y**2) + y.size * floor)
    assert float(metrics.dc_loss(torch.from_numpy(p), torch.from_numpy(y), floor)) == pytest.approx(ref_dc, rel=1e-12)
    # one example without a floor: the per-example metrics
    one_p, one_y = torch.from_numpy(p[:1]), torch.from_numpy(y[:1])
    assert float(metrics.esr_loss(one_p, one_y)) == pytest.approx(float(metrics.esr(one_p, one_y)), rel=1e-9)
    assert float(metrics.dc_loss(one_p, one_y)) == pytest.approx(float(metrics.dc_error(one_p, one_y)), rel=1e-9)


def test_spectral_terms_without_floor_are_auralosses_and_the_floor_is_white_noise_at_that_power():
    import auraloss

    y = torch.randn(2, 1, 8192, dtype=torch.float64) * 0.1
    p = y + 0.01 * torch.randn_like(y)
    ref = auraloss.freq.MultiResolutionSTFTLoss(fft_sizes=[1024, 2048, 512], hop_sizes=[120, 240, 50],
                                                win_lengths=[600, 1200, 240])
    torch.testing.assert_close(metrics.mrstft_loss()(p, y), ref(p, y), rtol=1e-12, atol=0)
    ref_mel = auraloss.freq.MelSTFTLoss(48000, fft_size=2048, hop_size=512, win_length=2048, n_mels=128)
    assert float(metrics.melstft_loss(48000)(p.float(), y.float())) == float(ref_mel(p.float(), y.float()))
    floor = 1e-5
    # with a floor: auraloss's loss with its spectral convergence floored (FlooredSpectralConvergence),
    # value and gradient, on a batch with a silent and a quiet example
    y = torch.cat([y, torch.zeros_like(y[:1]), 1e-4 * torch.randn_like(y[:1])])
    p = y + 0.01 * torch.randn_like(y)
    ref = auraloss.freq.MultiResolutionSTFTLoss(fft_sizes=[1024, 2048, 512], hop_sizes=[120, 240, 50],
                                                win_lengths=[600, 1200, 240])
    for stft in ref.stft_losses:
        metrics._floor_spectral(stft, floor)
    ref = ref.double()
    values, grads = [], []
    for fn in (ref, metrics.mrstft_loss(floor)):
        pg = p.clone().requires_grad_()
        loss = fn(pg, y)
        values.append(loss)
        grads.append(torch.autograd.grad(loss, pg)[0])
    torch.testing.assert_close(values[1], values[0], rtol=1e-10, atol=0)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-8, atol=1e-10 * float(grads[0].abs().max()))
    assert float(values[1].detach()) < float(metrics.mrstft_loss()(p, y))  # the floor lowers the silent example's term
    # the floor's energy is white noise's at that power in each resolution's spectrogram
    noise = torch.randn(1, 48000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * floor**0.5
    fn = metrics.mrstft_loss(floor)
    for n_fft, hop, win in zip(fn.fft_sizes, fn.hop_sizes, fn.windows()):
        mag2 = metrics._stft(noise, n_fft, hop, win).abs() ** 2
        floor_energy = fn.floor_power * float(torch.sum(win.double() ** 2)) * mag2.numel()
        assert float(torch.sum(mag2) / floor_energy) == pytest.approx(1.0, abs=0.02)


def _crops(n=8192, seed=0):
    """All-silent, −80 dBFS (RMS) noise and a hot (0 dBFS peak, clipped) guitar-like crop."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 48000
    hot = 0.99 * torch.tanh(4 * torch.sin(2 * torch.pi * 110 * t) * torch.exp(-3 * t) + 0.5 * torch.sin(2 * torch.pi * 330 * t))
    return {"silent": torch.zeros(1, 1, n), "quiet": 1e-4 * torch.randn(1, 1, n, generator=g), "hot": hot[None, None]}


# data at −20 dBFS RMS, floor 30 dB under it (params.yaml train.loss_floor_db)
FLOOR = 0.1**2 * 10 ** (-30 / 10)


@pytest.mark.parametrize("term", metrics.LOSS_TERMS)
def test_each_loss_term_on_silent_quiet_and_hot_crops(term):
    from nablafx.training.losses import WeightedLoss

    loss = WeightedLoss({term: 1.0}, floor=FLOOR)
    crops = _crops()
    g = torch.Generator().manual_seed(1)
    hiss = lambda db: 10 ** (db / 20) * torch.randn(1, 1, 8192, generator=g)  # noqa: E731
    score = {}
    for name, y in crops.items():
        for pname, p in {"exact": y, "zero": torch.zeros_like(y), "inverted": -y, "hiss-80": y + hiss(-80),
                         "hiss-40": y + hiss(-40), "dc": y + 0.01}.items():
            value = float(loss(p, y)[0])
            assert math.isfinite(value), (term, name, pname)
            score[name, pname] = value
    for name in crops:  # the right answer scores 0
        assert score[name, "exact"] < 1e-6, (term, name)
    # bounded on the silent and the −80 dBFS crop: a −80 dBFS hiss is harmless (the per-example ESR
    # scored it ~1e6 on digital silence) and a −40 dBFS hiss costs more than it, but stays bounded
    for name in ("silent", "quiet"):
        assert score[name, "hiss-80"] < {"mrstft": 4.0, "melstft": 5.0}.get(term, 0.01), (term, name, score)
        assert score[name, "hiss-80"] < score[name, "hiss-40"] < {"mrstft": 15, "melstft": 15}.get(term, 15), (term, name)
        if term in ("l1", "mse", "esr"):  # a DC offset (−40 dBFS) is seen (mel bands start above 0 Hz)
            assert score[name, "dc"] > score[name, "hiss-80"], (term, name)
    # a hot crop is scored as usual: polarity shows in every time-domain term, not in spectral ones
    if term in ("esr", "mse"):
        assert score["hot", "inverted"] == pytest.approx(4 * score["hot", "zero"], rel=1e-3)
    if term == "l1":
        assert score["hot", "inverted"] == pytest.approx(2 * score["hot", "zero"], rel=1e-3)
    if term == "esr":
        assert score["hot", "inverted"] == pytest.approx(4.0, rel=1e-3)
        assert score["hot", "zero"] == pytest.approx(1.0, rel=1e-3)
    if term in metrics.SPECTRAL_TERMS:
        assert score["hot", "inverted"] < 1e-6 and score["hot", "zero"] > 1.0
    # an inverted near-silent crop is below the floor: no reason to blow the loss up
    assert score["quiet", "inverted"] <= max(score["quiet", "zero"], 1e-6) * 4 + 1e-6


def test_default_loss_keeps_polarity_safety_on_mixed_batches():
    """The params.yaml recipe: an output that is the inverted target scores far worse than a
    correct one and worse than silence, whether the batch is hot or mostly near-silent."""
    from nablafx.config import load_params
    from nablafx.training.losses import WeightedLoss

    weights = load_params(REPO_PARAMS)["train"]["loss"]
    loss = WeightedLoss(weights, floor=FLOOR)
    c = _crops()
    for batch in (c["hot"], torch.cat([c["hot"], c["silent"], c["quiet"], c["silent"]])):
        inverted = float(loss(-batch, batch)[0])
        assert inverted > 4 * weights["esr"] * 0.99
        assert inverted > float(loss(torch.zeros_like(batch), batch)[0])
        assert inverted > 20 * float(loss(0.95 * batch, batch)[0])


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
