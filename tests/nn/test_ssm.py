"""S4D layer: the chunked (offline / block) computation equals the sample-by-sample recurrence."""

from __future__ import annotations

import pytest
import torch

from nablafx.nn.ssm import S4D


def _layer(init="lin", chunk=32, fft_above=2048, seed=0):
    torch.manual_seed(seed)
    return S4D(6, 16, init=init, chunk=chunk, fft_above=fft_above).double()


@pytest.mark.parametrize("init", ["lin", "inv"])
@pytest.mark.parametrize(("chunk", "fft_above"), [(32, 2048), (40, 16), (1000, 2048)])
def test_offline_equals_recurrence(init, chunk, fft_above):
    layer = _layer(init, chunk, fft_above)
    u = torch.randn(2, 6, 333, dtype=torch.float64)
    y_ref, s_ref = layer.recurrence(u)
    with torch.no_grad():
        y, s = layer(u)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s, s_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("block", [1, 5, 32, 77])
def test_blocks_equal_offline(block):
    layer = _layer()
    u = torch.randn(1, 6, 300, dtype=torch.float64)
    with torch.no_grad():
        y, _ = layer(u)
        state, outs = None, []
        for i in range(0, 300, block):
            out, state = layer(u[..., i : i + block], state)
            outs.append(out)
    torch.testing.assert_close(torch.cat(outs, -1), y, rtol=1e-10, atol=1e-10)


def test_float32_block_1_stays_within_1e5_of_rms():
    torch.manual_seed(0)
    layer = S4D(16, 32)
    u = 0.5 * torch.randn(2, 16, 3000)
    with torch.no_grad():
        y_ref, _ = layer.recurrence(u.double())
        state, outs = None, []
        for i in range(3000):
            out, state = layer(u[..., i : i + 1], state)
            outs.append(out)
    err = (torch.cat(outs, -1).double() - y_ref).abs().max() / y_ref.pow(2).mean().sqrt()
    assert err < 1e-5


def test_cache_follows_parameter_updates():
    layer = _layer()
    u = torch.randn(1, 6, 64, dtype=torch.float64)
    with torch.no_grad():
        y1, _ = layer(u)
        layer.D.add_(1.0)  # in-place update, like an optimizer step
        y2, _ = layer(u)
    torch.testing.assert_close(y2 - y1, u, rtol=1e-10, atol=1e-10)


def test_gradients_reach_all_parameters():
    layer = _layer()
    u = torch.randn(1, 6, 100, dtype=torch.float64)
    y, _ = layer(u)
    y.pow(2).sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
