"""GCN black-box model: gated causal convolution blocks, all block outputs mixed at the end.

Block i: causal conv to 2·channels (kernel ``kernel_size``, dilation ``dilation_growth**i``) →
conditioning on the 2·channels pre-activations (FiLM, TFiLM, TinyTFiLM, TVFiLM or none) →
gated activation ``tanh(a) · sigmoid(b)`` → 1×1 mix → block output; the next block gets the
block output plus a residual path (``residual``: the input, through a 1×1 conv where the channel
count changes; ``copy``: the single input channel added to every channel, as the reference; or a
learnable gain per channel).  The outputs of all blocks are concatenated and a 1×1 conv mixes them
to the output sample (optionally through tanh).

Receptive field and streaming as for the TCN (:mod:`nablafx.models.tcn`).

Training (gradients recorded) runs the gate, the 1×1 mix and the block's columns of the read-out as
one step that keeps only the gate's input (:class:`_GateMixOut`), and sums the blocks' read-out
shares instead of concatenating all skip outputs: the same function, about half the memory.
``recompute`` (training memory; outputs and gradients unchanged): ``True`` (default) forms a
conditioned block's modulation again in the backward pass from the convolution's output instead of
keeping its output too (for ``cond: none`` there is nothing to recompute); ``"block"`` keeps only the
block's input and runs the convolution again as well — a third of the default's memory per block
(16 of 48 channels), for the long receptive fields whose warm-up context nearly doubles each
training item; ``False`` keeps everything.
"""

from __future__ import annotations

import torch
from torch import nn

from nablafx.errors import ConfigError
from nablafx.models._common import ConditionedStack, check_positive, dilated_receptive_field, run_block
from nablafx.nn.activations import tanh, training_tanh
from nablafx.nn.blocks import CausalConv1d, Pointwise, channel_mix, make_residual
from nablafx.nn.conditioning import Conditioning, _NoMod, check_cond

RECOMPUTE = (True, False, "block")
from nablafx.registry import register


class _GateMixOut(torch.autograd.Function):
    """``g = tanh(a)·σ(b)`` for ``h = [a; b]``, ``skip = W g + c`` and the block's share of the
    read-out ``o = V skip``, keeping only h for the backward pass (g, its factors and the skip
    output are formed again there): a third of what autograd keeps for the same three steps."""

    @staticmethod
    def forward(ctx, h, W, c, V):
        a, b = h.chunk(2, dim=1)
        g = training_tanh(a).mul_(torch.sigmoid(b))
        skip = channel_mix(W, g)
        if c is not None:
            skip += c[:, None]
        ctx.save_for_backward(h, W, c, V)
        return skip, channel_mix(V, skip)

    @staticmethod
    def backward(ctx, d_skip, d_o):
        h, W, c, V = ctx.saved_tensors
        a, b = h.chunk(2, dim=1)
        t, s = training_tanh(a), torch.sigmoid(b)
        g = t * s
        d = channel_mix(V.t(), d_o)  # (B, C, T): the read-out's share
        if d_skip is not None:
            d += d_skip
        dW = torch.matmul(d, g.transpose(1, 2)).sum(0)
        dc = d.sum((0, 2)) if c is not None else None
        q = torch.matmul(d_o, g.transpose(1, 2)).sum(0)  # (1, C): Σ d_o gᵀ
        dV = torch.matmul(q, W.t())
        if c is not None:
            dV += d_o.sum() * c[None]
        dg = channel_mix(W.t(), d)
        da = dg * s * (1 - t * t)
        db = dg.mul_(g).mul_(1 - s)
        return torch.cat([da, db], dim=1), dW, dc, dV


class GatedBlock(nn.Module):
    def __init__(self, in_ch: int, channels: int, kernel_size: int, dilation: int, cond: Conditioning,
                 bias: bool = True, residual: str = "identity"):
        super().__init__()
        self.channels = channels
        self.conv = CausalConv1d(in_ch, 2 * channels, kernel_size, dilation, bias=bias)
        self.mod = cond.make_layer(2 * channels)
        self.mix = Pointwise(channels, channels, bias=bias)
        self.res = make_residual(residual, in_ch, channels)

    def init_state(self, batch_size, device=None, dtype=None):
        return (self.conv.init_state(batch_size, device, dtype), self.mod.init_state(batch_size, device, dtype))

    def _fused_tail(self, h, x, ctx, mod_state, out_weight):
        h, mod_state = self.mod(h, ctx, mod_state)
        res = x if self.res is None else self.res(x)
        skip, share = _GateMixOut.apply(h, self.mix.weight, self.mix.bias, out_weight)
        return skip + res, share, mod_state

    def _fused_block(self, x, conv_state, ctx, mod_state, out_weight):
        h, conv_state = self.conv(x, conv_state)
        y, share, mod_state = self._fused_tail(h, x, ctx, mod_state, out_weight)
        return y, share, (conv_state, mod_state)

    def forward(self, x, ctx, state, out_weight=None, recompute=True):
        """``(next block's input, skip, state)``; given ``out_weight`` (the read-out's columns for
        this block) while gradients are recorded, the block's share of the read-out instead of its
        skip output (:class:`_GateMixOut`), with ``recompute`` as the model's."""
        conv_state, mod_state = state
        if out_weight is not None and torch.is_grad_enabled():
            if recompute == "block":
                return run_block(self._fused_block, True, x, conv_state, ctx, mod_state, out_weight)
            h, conv_state = self.conv(x, conv_state)  # (B, 2C, T)
            tail_again = bool(recompute) and not isinstance(self.mod, _NoMod)
            y, share, mod_state = run_block(self._fused_tail, tail_again, h, x, ctx, mod_state, out_weight)
            return y, share, (conv_state, mod_state)
        h, conv_state = self.conv(x, conv_state)  # (B, 2C, T)
        h, mod_state = self.mod(h, ctx, mod_state)
        res = x if self.res is None else self.res(x)
        a, b = h.split(self.channels, dim=1)
        skip = self.mix(tanh(a) * torch.sigmoid(b))  # (B, C, T)
        return skip + res, skip, (conv_state, mod_state)


@register("gcn")
class GCNModel(ConditionedStack):
    def __init__(self, n_knobs: int = 0, sample_rate: int = 48000, channels: int = 16, blocks: int = 4,
                 kernel_size: int = 3, dilation_growth: int = 10, cond: str = "none", cond_dim: int = 32,
                 cond_block: int = 128, cond_hidden: int = 32, cond_style: str = "nablafx", film_norm: str = "none", film_scale: str = "unit", output_tanh: bool = False,
                 bias: bool = True, residual: str = "identity", recompute: bool | str = True):
        super().__init__()
        check_positive(channels=channels, blocks=blocks, kernel_size=kernel_size, dilation_growth=dilation_growth,
                       cond_dim=cond_dim, cond_block=cond_block, cond_hidden=cond_hidden)
        if not any(recompute is r for r in RECOMPUTE[:2]) and recompute != "block":
            raise ConfigError(f"must be true, false or 'block', got {recompute!r}", key="recompute")
        check_cond(cond, "gcn", cond_style)
        make_residual(residual, 1, 1)
        self.sample_rate = sample_rate
        self.cond = Conditioning(cond, n_knobs, "gcn", embed_dim=cond_dim, block_size=cond_block, hidden=cond_hidden,
                                 style=cond_style, film_norm=film_norm, film_scale=film_scale)
        self.n_knobs = self.cond.n_knobs
        self.kernel_size = kernel_size
        self.dilations = [dilation_growth**i for i in range(blocks)]
        self.blocks = nn.ModuleList(
            GatedBlock(1 if i == 0 else channels, channels, kernel_size, d, self.cond, bias, residual)
            for i, d in enumerate(self.dilations)
        )
        self.out = Pointwise(blocks * channels, 1, bias=bias)
        self.output_tanh = output_tanh
        self.fused_gate = True  # training through _GateMixOut (False: plain autograd, for comparisons)
        self.recompute = recompute
        self.segment = 16384  # offline segment length (measured best for 45 ms … 2.5 s receptive fields)
        self.grad_segment = 16384  # also in training: faster and smaller than the whole signal at once

    @property
    def core_receptive_field(self) -> int:
        return dilated_receptive_field(self.kernel_size, self.dilations)

    @property
    def receptive_field(self) -> int | None:
        return None if self.cond.time_varying else self.core_receptive_field

    def _forward(self, x, knobs, state):
        cond_state, block_states = state
        ctx, cond_state = self.cond(x, knobs, cond_state)
        h = x
        skips, new_states = [], []
        fused = self.fused_gate and torch.is_grad_enabled()  # training: each block adds its share of the read-out
        C = self.blocks[0].channels
        for i, (block, bstate) in enumerate(zip(self.blocks, block_states)):
            h, skip, bstate = block(h, ctx, bstate, self.out.weight[:, i * C : (i + 1) * C] if fused else None,
                                    self.recompute)
            skips.append(skip)
            new_states.append(bstate)
        if fused:
            y = torch.stack(skips).sum(0)
            y = y if self.out.bias is None else y + self.out.bias[:, None]
        else:
            y = self.out(torch.cat(skips, dim=1))
        if self.output_tanh:
            y = torch.tanh(y)
        return y, (cond_state, new_states)
