"""Causal, streamable layers shared by the convolutional families."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nablafx.errors import ConfigError


class _CatConv(torch.autograd.Function):
    """``conv1d(cat([*past, x]))`` keeping ``x`` and the ``past`` pieces for the backward pass, not
    their concatenation, which is formed again there.  x is kept anyway (by the residual path), and
    in training the past pieces are views of earlier segments' inputs, kept by their own
    convolutions (see :meth:`CausalConv1d.forward`): per layer and segment, no signal-sized copy is
    kept at all."""

    @staticmethod
    def forward(ctx, x, weight, bias, dilation: int, *past):
        y = F.conv1d(torch.cat([*past, x], dim=-1), weight, bias, dilation=dilation)
        ctx.save_for_backward(x, weight, *past)
        ctx.dilation, ctx.has_bias = dilation, bias is not None
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight, *past = ctx.saved_tensors
        need = ctx.needs_input_grad
        need_in = need[0] or any(need[4:])
        own = need_in and ctx.dilation > 1 and weight.shape[-1] > 1 and g.device.type == "cpu"  # see _conv_input_grad
        gi, gw, gb = torch.ops.aten.convolution_backward(
            g, torch.cat([*past, x], dim=-1), weight, [weight.shape[0]] if ctx.has_bias else None, [1], [0],
            [ctx.dilation], False, [0], 1, [need_in and not own, need[1], ctx.has_bias and need[2]])
        if own:
            gi = _conv_input_grad(g, weight, ctx.dilation)
        if gi is None:
            return (None, gw, gb, None, *([None] * len(past)))
        pieces = gi.split([p.shape[-1] for p in past] + [x.shape[-1]], dim=-1)
        return (pieces[-1], gw, gb, None, *pieces[:-1])


def _conv_input_grad(g: torch.Tensor, weight: torch.Tensor, dilation: int) -> torch.Tensor:
    """The gradient of ``conv1d(x, weight, dilation=dilation)`` (no padding) with respect to ``x``,
    given the output's gradient ``g``: the full correlation of ``g`` with the kernel reversed and
    transposed, as one forward convolution.  On the CPU oneDNN's own backward-data pass of a dilated
    convolution took 4–6× its forward pass (16 channels, 16 × 16384 samples, dilations 4–1024:
    ~50–60 ms against ~10–20 ms for this); undilated it is fast and is kept."""
    context = (weight.shape[-1] - 1) * dilation
    return F.conv1d(F.pad(g, (context, context)), weight.flip(-1).transpose(0, 1), dilation=dilation)


def _drop_front(pieces: tuple, n: int) -> tuple:
    """The pieces (oldest first) without their first ``n`` samples in all; views, no copies."""
    out = []
    for p in pieces:
        if n >= p.shape[-1]:
            n -= p.shape[-1]
            continue
        out.append(p[..., n:] if n else p)
        n = 0
    return tuple(out)


class CausalConv1d(nn.Conv1d):
    """Dilated 1-D convolution that sees only the present and the past.

    Streaming state ``(buf, start)``: the last ``context = (kernel_size - 1) * dilation`` input
    samples (zeros at the start, i.e. digital silence before the stream), kept as a ring buffer
    whose oldest sample sits at index ``start``.  ``forward(x, state) -> (y, state)``; ``y`` has
    x's length.

    When gradients are off and the block is much shorter than the context (long dilations in
    small streaming blocks), the ring buffer is updated **in place** and only the taps the block
    needs are read — copying the whole context per call would cost more than the convolution.
    A state passed to such a call must not be reused afterwards (``process_in_blocks`` never does).

    While gradients are recorded, a block longer than the context leaves a view of its tail as the
    state, and a shorter one (a training segment under a long dilation) leaves the context as a
    tuple of views of the last inputs (oldest first) instead of copying them together: the next
    training segment's convolution keeps those views for its backward pass, so the context is not
    stored once more per segment (the 2.5 s receptive fields: 1.7 GB of one step at 16 × 3 s).
    Any other call joins such a tuple first.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, bias: bool = True):
        if kernel_size < 1 or dilation < 1:
            raise ValueError(f"kernel_size and dilation must be ≥ 1, got {kernel_size}, {dilation}")
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias)
        self.context = (kernel_size - 1) * dilation
        self.direct_max = 1024  # blocks up to this length use the stacked-taps matmul
        self.ring = True  # in-place ring buffer for short blocks (off for export: the state then never moves)

    def init_state(self, batch_size: int, device=None, dtype=None):
        if self.context == 0:
            return None
        buf = torch.zeros(batch_size, self.in_channels, self.context, device=device or self.weight.device,
                          dtype=dtype or self.weight.dtype)
        return (buf, 0)

    def _taps_matmul(self, taps: list[torch.Tensor]) -> torch.Tensor:
        # one matmul over the stacked taps beats conv1d's per-call overhead on short blocks
        w = self.weight.transpose(1, 2).reshape(self.out_channels, -1)  # (out, k·in), tap-major
        y = torch.matmul(w, torch.cat(taps, dim=1))
        return y if self.bias is None else y + self.bias[:, None]

    def forward(self, x: torch.Tensor, state=None):
        if self.context == 0:
            return F.conv1d(x, self.weight, self.bias), None
        buf, start = self.init_state(x.shape[0], x.device, x.dtype) if state is None else state
        n, ctx, d = x.shape[-1], self.context, self.dilation[0]
        if n > self.direct_max and torch.is_grad_enabled():  # training: see _CatConv
            pieces = buf if isinstance(buf, tuple) else (buf if start == 0 else buf.roll(-start, -1),)
            y = _CatConv.apply(x, self.weight, self.bias, d, *pieces)
            return y, (x[..., n - ctx :] if n >= ctx else _drop_front(pieces, n) + (x,), 0)
        if isinstance(buf, tuple):  # left by a training call
            buf = torch.cat(buf, dim=-1)
        if self.ring and not torch.is_grad_enabled() and 8192 <= ctx and 16 * n <= ctx and n <= d:
            return self._ring_forward(x, buf, start)
        past = buf if start == 0 else torch.cat([buf[..., start:], buf[..., :start]], dim=-1)
        xx = torch.cat([past, x], dim=-1)
        if n <= self.direct_max:
            y = self._taps_matmul([xx[..., j * d : j * d + n] for j in range(self.kernel_size[0])])
        else:
            y = F.conv1d(xx, self.weight, self.bias, dilation=self.dilation)
        return y, (xx[..., -ctx:], 0)

    def _ring_forward(self, x, buf, start):
        n, ctx, d = x.shape[-1], self.context, self.dilation[0]
        taps = []
        for j in range(self.kernel_size[0] - 1):  # tap j reads past samples j·d … j·d+n-1 (n < d)
            lo = (start + j * d) % ctx
            hi = lo + n
            taps.append(buf[..., lo:hi] if hi <= ctx else torch.cat([buf[..., lo:], buf[..., : hi - ctx]], dim=-1))
        taps.append(x)  # the last tap is the block itself
        y = self._taps_matmul(taps)
        end = start + n  # overwrite the n oldest samples with the block
        if end <= ctx:
            buf[..., start:end] = x
        else:
            buf[..., start:] = x[..., : ctx - start]
            buf[..., : end - ctx] = x[..., ctx - start :]
        return y, (buf, end % ctx)


def channel_mix(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``weight @ x`` for a (out, in) matrix and a (B, in, T) signal, as one batched matmul over the
    weight expanded to the batch (no copy).  ``torch.matmul`` there folds the batch into the rows
    instead, which transposes x and the result through two copies: 8.1 against 1.6 ms for 16 × 16
    channels × 16 × 16384 samples on the 2-core CPU."""
    if x.dim() != 3:
        return torch.matmul(weight, x)
    return torch.bmm(weight.expand(x.shape[0], -1, -1), x)


class Pointwise(nn.Module):
    """1×1 convolution over ``(B, C_in, T)`` as one matmul (cheaper per call than ``conv1d``)."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        bound = 1.0 / in_channels**0.5  # nn.Conv1d's default initialisation
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return channel_mix(self.weight, x)
        return torch.baddbmm(self.bias[:, None], self.weight.expand(x.shape[0], -1, -1), x)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, bias={self.bias is not None}"


class ChannelGain(nn.Module):
    """A learnable gain per output channel: ``(B, C, T) → g ⊙ x``, or from one input channel
    ``(B, 1, T) → g · x`` (``out_channels`` parameters; starts at 1, the identity)."""

    def __init__(self, in_channels: int, out_channels: int, init: str = "one"):
        super().__init__()
        if in_channels not in (1, out_channels):
            raise ValueError(f"ChannelGain maps 1 or {out_channels} channels to {out_channels}, got {in_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.weight = nn.Parameter(torch.ones(out_channels, 1))
        if init == "uniform":  # the reference's depthwise 1×1 conv at PyTorch's default: U(−1, 1) (fan-in 1)
            nn.init.uniform_(self.weight, -1.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * x

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}"


RESIDUALS = ("identity", "gain", "gain-uniform", "copy")


def make_residual(kind: str, in_channels: int, out_channels: int) -> nn.Module | None:
    """The residual path of a block (``None``: the input itself, broadcast when it has one channel).

    ``identity``: the input; a bias-free 1×1 convolution where the channel count changes.
    ``gain``: a learnable gain per channel (the reference's TCN and S4 blocks), starting at 1;
    ``gain-uniform``: the same, starting at a random value in ±1 as the reference's.
    ``copy``: the input, a single input channel added to every channel (the reference's GCN).
    """
    if kind not in RESIDUALS:
        raise ConfigError(f"unknown residual {kind!r}; known: {', '.join(RESIDUALS)}", key="residual")
    if kind in ("gain", "gain-uniform"):
        return ChannelGain(in_channels, out_channels, init="uniform" if kind == "gain-uniform" else "one")
    if in_channels == out_channels or (kind == "copy" and in_channels == 1):
        return None
    return Pointwise(in_channels, out_channels, bias=False)
