"""Static nonlinearities and gain staging against numpy; gradients."""

import numpy as np
import pytest
import torch

from nablafx.dsp import gain as G
from nablafx.dsp.nonlinear import CURVES, curve, fit_rational, rational, tanh_drive


def test_gain_dc_phase():
    x = torch.randn(2, 1, 50, dtype=torch.float64)
    np.testing.assert_allclose(G.gain(x, torch.tensor(6.0, dtype=torch.float64)).numpy(), x.numpy() * 10 ** 0.3)
    np.testing.assert_allclose(G.dc_offset(x, torch.tensor(0.25, dtype=torch.float64)).numpy(), x.numpy() + 0.25)
    np.testing.assert_allclose(G.phase_invert(x).numpy(), -x.numpy())
    np.testing.assert_allclose(G.amplitude_to_db(torch.tensor([0.1, 0.0])).numpy(), [-20.0, -160.0], rtol=1e-6)
    # per-sample gain
    g = torch.linspace(-6, 6, 50, dtype=torch.float64).reshape(1, 1, -1)
    np.testing.assert_allclose(G.gain(x, g).numpy(), x.numpy() * 10 ** (g.numpy() / 20))


def test_tanh_drive_matches_numpy_and_keeps_silence():
    x = np.linspace(-2, 2, 101)
    y = tanh_drive(torch.tensor(x), torch.tensor(12.0, dtype=torch.float64), torch.tensor(0.3, dtype=torch.float64))
    g = 10 ** (12 / 20)
    np.testing.assert_allclose(y.numpy(), np.tanh(g * x + 0.3) - np.tanh(0.3), rtol=1e-12)
    assert y[50].item() == 0.0


def test_rational_matches_numpy():
    x = np.linspace(-4, 4, 81)
    p = np.array([0.1, 1.0, -0.2, 0.3])
    q = np.array([0.5, -0.2, 0.1])
    y = rational(torch.tensor(x), torch.tensor(p), torch.tensor(q)).numpy()
    ref = np.polyval(p[::-1], x) / (1 + np.abs(q[0] * x) + np.abs(q[1] * x ** 2) + np.abs(q[2] * x ** 3))
    np.testing.assert_allclose(y, ref, rtol=1e-12)


def test_rational_fit_of_tanh():
    num, den = fit_rational(np.tanh, (6, 5))
    x = torch.linspace(-3, 3, 301, dtype=torch.float64)
    err = rational(x, torch.tensor(num), torch.tensor(den)) - torch.tanh(x)
    assert err.abs().max() < 1e-4
    assert (den >= 0).all() and np.all(den[0::2] == 0)  # even powers only
    # bounded well outside the fitted range (no poles, slow growth)
    assert rational(torch.tensor([30.0], dtype=torch.float64), torch.tensor(num), torch.tensor(den)).abs() < 3


@pytest.mark.parametrize("name", list(CURVES))
def test_curves_numpy_and_torch_agree(name):
    x = np.linspace(-3, 3, 61)
    np.testing.assert_allclose(curve(name)(torch.tensor(x)).numpy(), curve(name)(x), rtol=1e-12)


def test_unknown_curve_lists_known():
    with pytest.raises(ValueError, match="known: tanh, hardclip"):
        curve("sine")


def test_gradcheck_nonlinearities():
    x = torch.randn(1, 1, 12, dtype=torch.float64, requires_grad=True)
    d = torch.tensor(6.0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(tanh_drive, (x, d, b))
    p = torch.tensor([0.1, 1.0, -0.2, 0.3], dtype=torch.float64, requires_grad=True)
    q = torch.tensor([0.5, -0.2, 0.1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rational, (x, p, q))


def test_tanh_drive_matches_dasp_distortion():
    """dasp-pytorch's ``distortion`` is ``tanh(10^(drive/20)·x)``: ours at bias 0, drives −24…+24 dB,
    stereo (dasp alone raises on stereo: defect D1, handled by tests/oracles/dasp.py), to 1e-15."""
    from tests.oracles import dasp

    drive = torch.linspace(-24, 24, 13, dtype=torch.float64)
    x = 3 * torch.randn(13, 2, 500, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = tanh_drive(x, drive.reshape(-1, 1, 1), torch.zeros(13, 1, 1, dtype=torch.float64))
    torch.testing.assert_close(ours, dasp.distortion(x, 48000, drive), rtol=0, atol=1e-15)
