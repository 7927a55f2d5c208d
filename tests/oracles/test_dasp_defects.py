"""dasp-pytorch's known defects are still there (so the adapter's workarounds are still needed), and the
adapter's workarounds do what they say.  When a release fixes a defect, the first test fails and names
it: drop that workaround from tests/oracles/dasp.py."""

from importlib.metadata import version

import pytest
import torch

from tests.oracles import dasp


def test_the_oracle_is_the_release_the_adapter_was_written_for():
    assert version("dasp-pytorch") == dasp.VERSION


@pytest.mark.parametrize("name", list(dasp.DEFECTS))
def test_defect_still_present(name):
    assert dasp.DEFECTS[name](), f"dasp-pytorch {version('dasp-pytorch')}: defect {name!r} is gone; " \
                                 "drop its workaround in tests/oracles/dasp.py"


def test_distortion_adapter_handles_stereo_per_channel():
    x = torch.linspace(-1, 1, 2 * 3 * 50, dtype=torch.float64).reshape(2, 3, 50)
    drive = torch.tensor([0.0, 12.0], dtype=torch.float64)
    y = dasp.distortion(x, 48000, drive)
    ref = torch.tanh(x * 10 ** (drive.reshape(2, 1, 1) / 20))
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-15)


def test_compressor_adapter_detects_each_channel_and_has_finite_gradients_at_a_hard_knee():
    # channel 0 loud, channel 1 quiet: dasp alone would sum them into one detector
    n = 2400
    x = torch.zeros(1, 2, n, dtype=torch.float64)
    x[:, 0] = 0.9
    x[:, 1] = 0.001
    thr = torch.tensor([-20.0], dtype=torch.float64, requires_grad=True)
    knee = torch.tensor([0.0], dtype=torch.float64, requires_grad=True)
    one = torch.tensor([1.0], dtype=torch.float64)
    y = dasp.compressor(x, 48000, thr, 4 * one, 1 * one, knee, 0 * one)
    torch.testing.assert_close(y[:, 1], x[:, 1], rtol=0, atol=1e-15)  # below threshold: untouched
    assert y[0, 0, -1] < 0.9 * 10 ** (-10 / 20)  # -0.9 dB over -20 dB by ratio 4: ≈ 14 dB of reduction
    y.sum().backward()
    assert torch.isfinite(thr.grad).all() and torch.isfinite(knee.grad).all()


def test_attack_conversion_is_the_time_constant():
    """After one time constant τ of a reduction step, our one-pole has reached 1 − 1/e of it; dasp
    given t = τ·ln 9 (its 10–90 % rise time) does the same."""
    fs, tau_ms = 48000, 2.0
    x = torch.full((1, 1, 4800), 1.0, dtype=torch.float64)  # constant 0 dBFS: a reduction step at n = 0
    one = torch.tensor([1.0], dtype=torch.float64)
    y = dasp.compressor(x, fs, -40 * one, 1e6 * one, tau_ms * one, 0 * one, 0 * one)
    red = -20 * torch.log10(y[0, 0])
    k = round(tau_ms * fs / 1000) - 1  # sample index after τ (the smoother's output at n holds n+1 steps)
    assert abs(float(red[k] / red[-1]) - (1 - torch.e ** -1)) < 1e-3
