"""The activations by name; ``tanh`` as ``2·σ(2x) − 1`` against float64 ``torch.tanh``."""

from __future__ import annotations

import pytest
import torch

from nablafx.errors import ConfigError
from nablafx.nn.activations import Tanh, make_activation, tanh, training_tanh

GRID = torch.linspace(-20.0, 20.0, 400_001, dtype=torch.float64)


def test_training_tanh_is_tanh_within_float_rounding():
    ref = torch.tanh(GRID)
    err32 = (training_tanh(GRID.float()).double() - ref).abs().max().item()
    assert err32 <= 2.5e-7, err32  # float32: about two units in the last place near ±1
    err64 = (training_tanh(GRID) - ref).abs().max().item()
    assert err64 <= 1e-15, err64
    assert training_tanh(torch.tensor([0.0, 50.0, -50.0, 1e4])).tolist() == [0.0, 1.0, -1.0, 1.0]
    x = GRID.float().requires_grad_()
    torch.testing.assert_close(tanh(x).detach(), training_tanh(GRID.float()), rtol=0, atol=0)  # with gradients


def test_tanh_without_gradients_is_torch_tanh():
    x = GRID.float()
    assert torch.equal(tanh(x), torch.tanh(x))
    with torch.no_grad():
        assert torch.equal(tanh(x.clone().requires_grad_()), torch.tanh(x))


def test_tanh_gradient_is_one_minus_tanh_squared():
    x = torch.linspace(-4, 4, 41, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(tanh, (x,))
    (g,) = torch.autograd.grad(tanh(x).sum(), x)
    torch.testing.assert_close(g, 1 - torch.tanh(x.detach()) ** 2, rtol=0, atol=1e-15)


def test_tanh_keeps_only_its_output_for_the_backward_pass():
    x = torch.randn(4, 1000, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = tanh(x * 1.0)
    assert len(saved) == 1 and saved[0].data_ptr() == y.data_ptr()


def test_tanh_layer_loads_nn_tanh_checkpoints():
    layer = make_activation("tanh", 16)
    assert isinstance(layer, Tanh) and not list(layer.parameters())
    layer.load_state_dict(torch.nn.Tanh().state_dict())
    with pytest.raises(ConfigError, match="activation"):
        make_activation("swish", 4)
