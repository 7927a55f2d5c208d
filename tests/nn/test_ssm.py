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


# slow decays: one group of just nc + 1 chunks (G would be 256); fast: groups of 7 chunks; of 1 (a_L^-1 overflows)
@pytest.mark.parametrize("dt_max", [0.1, 10.0, 100.0])
@pytest.mark.parametrize("grad", [False, True])
def test_many_scan_groups_equal_recurrence(dt_max, grad):
    layer = _layer(chunk=8)
    with torch.no_grad():
        layer.log_dt.copy_(torch.linspace(-4.6, float(torch.tensor(dt_max).log()), 6))
    u = torch.randn(2, 6, 333, dtype=torch.float64)
    s0 = torch.randn(2, 6, 8, dtype=torch.complex128)
    y_ref, s_ref = layer.recurrence(u, s0)
    with torch.set_grad_enabled(grad):
        y, s = layer(u, s0)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s, s_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("keep_spectrum", [False, True])  # FFT route: u or its spectrum kept for the backward pass
@pytest.mark.parametrize("start", ["zero", "given"])  # training: FFT convolution / the chunk scan
def test_gradients_equal_the_recurrences(start, keep_spectrum):
    layer = _layer(chunk=8)
    layer.keep_spectrum = keep_spectrum
    with torch.no_grad():
        layer.log_dt.copy_(torch.linspace(-4.6, 0.0, 6))  # slow and fast modes: several scan groups
    u = torch.randn(2, 6, 301, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 6, 301, dtype=torch.float64)
    s0 = None if start == "zero" else torch.randn(2, 6, 8, dtype=torch.complex128)
    outs, grads = [], []
    for run in (layer, layer.recurrence):
        y, s = run(u, s0)
        loss = (y * w).sum() + (0 if start == "zero" else s.abs().pow(2).sum())  # FFT route: state without gradient
        outs.append((y, s))
        grads.append(torch.autograd.grad(loss, [u, *layer.parameters()]))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    for g, g_ref in zip(*grads):
        torch.testing.assert_close(g, g_ref, rtol=1e-8, atol=1e-10)


def test_training_route_in_float32_matches_the_float64_recurrence():
    torch.manual_seed(0)
    layer = S4D(16, 64)
    u = 0.5 * torch.randn(2, 16, 20000)
    y, s = layer(u)  # gradients recorded: FFT route
    assert y.requires_grad and not s.requires_grad
    y_ref, s_ref = layer.double().recurrence(u.double())
    rms = y_ref.pow(2).mean().sqrt()
    assert (y.double() - y_ref).abs().max() / rms < 1e-5
    assert (s - s_ref).abs().max() / s_ref.abs().max() < 1e-5


def test_fft_lengths_are_5_smooth_and_minimal():
    from nablafx.nn.ssm import fast_fft_length

    def smooth(m):
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1

    for n in [1, 2, 7, 11, 97, 1000, 1025, 292095]:
        m = fast_fft_length(n)
        assert m >= n and smooth(m) and not any(smooth(k) for k in range(n, m))
