"""Causal convolution (linear and ring-buffer streaming paths) and the 1×1 layer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nablafx.nn.blocks import CausalConv1d, ChannelGain, Pointwise, make_residual


def _stream(conv, x, block, grad=False):
    state, outs = None, []
    with torch.set_grad_enabled(grad):
        for i in range(0, x.shape[-1], block):
            y, state = conv(x[..., i : i + block], state)
            outs.append(y)
    return torch.cat(outs, -1)


def _reference(conv, x):
    pad = (conv.kernel_size[0] - 1) * conv.dilation[0]
    return F.conv1d(F.pad(x, (pad, 0)), conv.weight, conv.bias, dilation=conv.dilation)


@pytest.mark.parametrize(("kernel", "dilation"), [(1, 1), (3, 1), (3, 7), (2, 9000), (11, 1000)])
@pytest.mark.parametrize("block", [1, 37, 512, 3000])
def test_streaming_equals_zero_padded_conv(kernel, dilation, block):
    torch.manual_seed(0)
    conv = CausalConv1d(3, 4, kernel, dilation).double()
    x = torch.randn(2, 3, 13000, dtype=torch.float64)
    ref = _reference(conv, x).detach()
    torch.testing.assert_close(_stream(conv, x, block), ref)  # no grad: ring buffer where it applies
    if block >= 512:
        torch.testing.assert_close(_stream(conv, x, block, grad=True).detach(), ref)  # functional path


def test_ring_state_converts_to_functional():
    """A state left by the in-place ring path continues correctly on the functional path."""
    torch.manual_seed(0)
    conv = CausalConv1d(2, 2, 3, 5000).double()
    x = torch.randn(1, 2, 12000, dtype=torch.float64)
    with torch.no_grad():
        y1, state = conv(x[..., :100], None)
        for i in range(100, 6000, 100):
            y, state = conv(x[..., i : i + 100], state)
    assert state[1] != 0  # the ring was rotated
    y2, _ = conv(x[..., 6000:], state)  # grad on: functional path from a rotated ring
    torch.testing.assert_close(y2.detach(), _reference(conv, x)[..., 6000:].detach())


def test_pointwise_matches_conv1d():
    torch.manual_seed(0)
    pw = Pointwise(5, 3)
    x = torch.randn(2, 5, 40)
    torch.testing.assert_close(pw(x), F.conv1d(x, pw.weight[..., None], pw.bias))
    pw = Pointwise(5, 3, bias=False)
    torch.testing.assert_close(pw(x), F.conv1d(x, pw.weight[..., None]))


def test_residual_kinds():
    """gain: the reference's depthwise bias-free 1×1 conv (one weight per channel); copy: no weights."""
    torch.manual_seed(0)
    x1, x4 = torch.randn(2, 1, 30), torch.randn(2, 4, 30)
    gain = make_residual("gain", 4, 4)
    assert isinstance(gain, ChannelGain) and sum(p.numel() for p in gain.parameters()) == 4
    torch.testing.assert_close(gain(x4), x4)  # starts as the identity
    with torch.no_grad():
        gain.weight.copy_(torch.randn(4, 1))
    torch.testing.assert_close(gain(x4), F.conv1d(x4, gain.weight[:, :, None], groups=4))
    first = make_residual("gain", 1, 4)  # the first block: one input channel, a gain per output channel
    torch.testing.assert_close(first(x1), x1.expand(-1, 4, -1))
    assert make_residual("copy", 1, 4) is None and make_residual("copy", 4, 4) is None
    assert make_residual("identity", 4, 4) is None
    assert isinstance(make_residual("identity", 1, 4), Pointwise)
    with pytest.raises(ValueError):
        ChannelGain(3, 4)
    torch.manual_seed(0)
    drawn = make_residual("gain-uniform", 1, 4096)  # the reference's start: U(−1, 1) per channel
    w = drawn.weight.detach()
    assert w.shape == (4096, 1) and float(w.abs().max()) <= 1.0 and abs(float(w.mean())) < 0.05
    assert abs(float(w.var()) - 1 / 3) < 0.03  # the variance of U(−1, 1)



@pytest.mark.parametrize(("cin", "cout", "kernel", "dilation"), [(3, 5, 3, 2), (4, 4, 11, 64), (2, 6, 2, 300),
                                                            (5, 3, 7, 1)])
def test_input_gradient_as_one_forward_convolution_equals_convolution_backward(cin, cout, kernel, dilation):
    """The training convolution's own input gradient (the full correlation with the reversed,
    transposed kernel; used on the CPU for dilated kernels) equals ATen's backward pass (float64)."""
    from nablafx.nn.blocks import _conv_input_grad

    g = torch.Generator().manual_seed(1)
    n = 700
    x = torch.randn(2, cin, n + (kernel - 1) * dilation, dtype=torch.float64, generator=g)
    w = torch.randn(cout, cin, kernel, dtype=torch.float64, generator=g)
    gy = torch.randn(2, cout, n, dtype=torch.float64, generator=g)
    (ref, _, _) = torch.ops.aten.convolution_backward(gy, x, w, None, [1], [0], [dilation], False, [0], 1,
                                                      [True, False, False])
    torch.testing.assert_close(_conv_input_grad(gy, w, dilation), ref, rtol=0, atol=1e-12)


def test_training_convolution_keeps_its_parts_and_has_exact_gradients():
    from nablafx.nn.blocks import _CatConv

    g = torch.Generator().manual_seed(0)
    past = torch.randn(2, 3, 8, dtype=torch.float64, generator=g, requires_grad=True)
    x = torch.randn(2, 3, 30, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(4, 3, 3, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, x, w, b: _CatConv.apply(x, w, b, 4, p), (past, x, w, b))
    assert torch.autograd.gradcheck(lambda p, x, w: _CatConv.apply(x, w, None, 4, p), (past, x, w))
    # the past in pieces (as a training segment shorter than the context leaves it)
    assert torch.autograd.gradcheck(lambda p, x, w, b: _CatConv.apply(x, w, b, 4, p[..., :3], p[..., 3:]),
                                    (past, x, w, b))
    conv = CausalConv1d(3, 4, 3, dilation=4).double()
    conv.direct_max = 0  # the training route at any length
    state = (torch.randn(2, 3, 8, dtype=torch.float64, generator=g), 0)
    y, (buf, _) = conv(x, state)
    with torch.no_grad():
        y_ref, (buf_ref, _) = conv(x, state)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(buf, buf_ref, rtol=0, atol=0)


def test_training_segments_under_a_long_context_keep_views_not_copies_and_exact_gradients():
    """Training segments shorter than the context: the state is a tuple of views of earlier inputs
    (no copy kept per segment), and output and gradients equal one call over the whole signal
    (float64, 1e-12)."""
    g = torch.Generator().manual_seed(1)
    conv = CausalConv1d(3, 4, 5, dilation=9).double()  # context 36
    conv.direct_max = 0  # the training route at any length
    x = torch.randn(2, 3, 100, dtype=torch.float64, generator=g, requires_grad=True)
    y_ref, _ = conv(x)
    gx_ref, gw_ref = torch.autograd.grad((y_ref * torch.linspace(-1, 1, 100)).sum(), (x, conv.weight))

    saved = []
    def pack(t):
        saved.append(t)
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        state, outs = None, []
        for s0 in range(0, 100, 10):  # segments of 10 < context 36
            y, state = conv(x[..., s0 : s0 + 10], state)
            outs.append(y)
            if s0 >= 40:
                assert isinstance(state[0], tuple) and sum(p.shape[-1] for p in state[0]) == 36
        y = torch.cat(outs, dim=-1)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    gx, gw = torch.autograd.grad((y * torch.linspace(-1, 1, 100)).sum(), (x, conv.weight))
    torch.testing.assert_close(gx, gx_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-12, atol=1e-12)
    # every signal-sized tensor kept is x itself or the initial zeros: no per-segment copy of the context
    big = [t for t in saved if t.dim() == 3 and t.shape[:2] == (2, 3)]  # inputs and pasts, not the weight
    storages = {t.untyped_storage().data_ptr() for t in big}
    assert storages <= {x.untyped_storage().data_ptr()} | {t.untyped_storage().data_ptr() for t in big if not t.any()}
    # a call without gradients takes such a state too (joined first) and continues the signal
    with torch.no_grad():
        y_next, _ = conv(torch.zeros(2, 3, 4, dtype=torch.float64), state)
        y_all, _ = conv(torch.cat([x, torch.zeros(2, 3, 4, dtype=torch.float64)], dim=-1))
    torch.testing.assert_close(y_next, y_all[..., 100:], rtol=1e-12, atol=1e-12)


def test_channel_mix_equals_matmul_and_passes_gradients():
    """The batched channel mix (the weight expanded over the batch) is torch.matmul's product, for
    3-D signals and any other shape, with the same gradients (float64)."""
    from nablafx.nn.blocks import channel_mix

    g = torch.Generator().manual_seed(2)
    w = torch.randn(5, 3, dtype=torch.float64, generator=g, requires_grad=True)
    x = torch.randn(4, 3, 50, dtype=torch.float64, generator=g, requires_grad=True)
    torch.testing.assert_close(channel_mix(w, x), torch.matmul(w, x), rtol=0, atol=1e-12)
    torch.testing.assert_close(channel_mix(w, x[0]), torch.matmul(w, x[0]), rtol=0, atol=0)
    assert torch.autograd.gradcheck(channel_mix, (w, x))
