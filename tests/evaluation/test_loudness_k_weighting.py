"""BS.1770 loudness (nablafx.evaluation.loudness) against a float64 reference."""

import numpy as np
import pytest
import torch

from nablafx.evaluation.evaluate import loudness_lufs


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
