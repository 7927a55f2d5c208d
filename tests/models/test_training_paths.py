"""The routes taken only while training equal the plain ones: the S4 FFT convolution and block
recomputation, the GCN's fused gate / mix / read-out.  Same outputs as the offline (no-gradient)
route and the same gradients as plain autograd, in float64."""

from __future__ import annotations

import pytest
import torch

from tests.models.test_zoo import inputs, make

CASES = ["paper-tcn-tf-250-s-16", "paper-tcn-tvf-45-s-16", "paper-tcn-f-45-s-16", "paper-gcn-250-s-16", "paper-gcn-tf-45-s-16", "paper-s4-b4-s4-c16", "paper-s4-tvf-b4-s4-c16",
         "paper-s4-tf-b4-s4-c16"]


def _plain(model, on: bool) -> None:
    """``on``: the training routes; off: plain autograd through the offline route."""
    if hasattr(model, "fused_gate"):
        model.fused_gate = on
    if hasattr(model, "recompute"):
        model.recompute = on
    for m in model.modules():
        if hasattr(m, "fft_train"):
            m.fft_train = on


def _loss_and_grads(model, x, knobs, w):
    y, _ = model(x, knobs)
    loss = (y * w).sum() + y.pow(2).sum()
    return y.detach(), torch.autograd.grad(loss, list(model.parameters()))


@pytest.mark.parametrize("name", CASES)
def test_training_routes_equal_plain_autograd(name):
    model = make(name, torch.float64).train()
    x, knobs = inputs(model, 3000, torch.float64)
    w = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y_offline, _ = model(x, knobs)
    _plain(model, True)
    y, grads = _loss_and_grads(model, x, knobs, w)
    _plain(model, False)
    y_ref, grads_ref = _loss_and_grads(model, x, knobs, w)
    torch.testing.assert_close(y, y_offline, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(y_ref, y_offline, rtol=1e-10, atol=1e-10)
    for (pname, _), g, g_ref in zip(model.named_parameters(), grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-8, atol=1e-10, msg=lambda m, p=pname: f"{name} {p}: {m}")
