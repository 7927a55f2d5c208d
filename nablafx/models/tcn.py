"""TCN black-box model: stacked causal dilated convolutions with knob conditioning.

Block i: causal conv (kernel ``kernel_size``, dilation ``dilation_growth**i``) → conditioning
(FiLM, TFiLM, TinyTFiLM, TVFiLM or none; laid out as ``cond_style``) → activation (tanh, PReLU,
rational, …) → plus a residual path (``residual``: the input, with a 1×1 conv when the channel
count changes; or a learnable gain per channel, as the reference).  A 1×1 conv maps the last block
to the output, optionally through tanh.

Receptive field ``1 + (kernel_size - 1) * Σ_i dilation_growth**i`` samples; with time-varying
conditioning (TFiLM/TVFiLM) the LSTM carries information from the whole past, so the model's
receptive field is unbounded (``None``) and ``core_receptive_field`` is the convolutional one.
Streaming carries each conv layer's last ``(kernel_size - 1) * dilation`` input samples plus the
conditioning state.

Training memory: each convolution keeps its input, not the input joined to its context
(:class:`nablafx.nn.blocks._CatConv`), and with ``recompute`` (default) a block's modulation,
activation and residual sum are formed again in the backward pass from the convolution's output
and the block input instead of being kept (cheap elementwise work; two signal-sized tensors per
block kept instead of four or more).
"""

from __future__ import annotations

import torch
from torch import nn

from nablafx.models._common import ConditionedStack, check_positive, dilated_receptive_field, run_block
from nablafx.nn.activations import make_activation
from nablafx.nn.blocks import CausalConv1d, Pointwise, make_residual
from nablafx.nn.conditioning import Conditioning, check_cond
from nablafx.registry import register


class TCNBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, dilation: int, activation: str,
                 cond: Conditioning, bias: bool = True, residual: str = "identity"):
        super().__init__()
        self.conv = CausalConv1d(in_ch, out_ch, kernel_size, dilation, bias=bias)
        self.mod = cond.make_layer(out_ch)
        self.act = make_activation(activation, out_ch)
        self.res = make_residual(residual, in_ch, out_ch)

    def init_state(self, batch_size, device=None, dtype=None):
        return (self.conv.init_state(batch_size, device, dtype), self.mod.init_state(batch_size, device, dtype))

    def _tail(self, h, x, ctx, mod_state):
        h, mod_state = self.mod(h, ctx, mod_state)
        res = x if self.res is None else self.res(x)
        return self.act(h) + res, mod_state

    def forward(self, x, ctx, state, recompute: bool = False):
        conv_state, mod_state = state
        h, conv_state = self.conv(x, conv_state)
        y, mod_state = run_block(self._tail, recompute, h, x, ctx, mod_state)
        return y, (conv_state, mod_state)


@register("tcn")
class TCNModel(ConditionedStack):
    def __init__(self, n_knobs: int = 0, sample_rate: int = 48000, channels: int = 16, blocks: int = 4,
                 kernel_size: int = 3, dilation_growth: int = 10, activation: str = "tanh", cond: str = "none",
                 cond_dim: int = 32, cond_block: int = 128, cond_hidden: int = 32, cond_style: str = "nablafx", film_norm: str = "none", film_scale: str = "unit",
                 output_tanh: bool = False, bias: bool = True, residual: str = "identity", recompute: bool = True):
        super().__init__()
        check_positive(channels=channels, blocks=blocks, kernel_size=kernel_size, dilation_growth=dilation_growth,
                       cond_dim=cond_dim, cond_block=cond_block, cond_hidden=cond_hidden)
        check_cond(cond, "tcn", cond_style)
        make_activation(activation, 1)  # validates the name before building anything
        make_residual(residual, 1, 1)
        self.sample_rate = sample_rate
        self.cond = Conditioning(cond, n_knobs, "tcn", embed_dim=cond_dim, block_size=cond_block, hidden=cond_hidden,
                                 style=cond_style, film_norm=film_norm, film_scale=film_scale)
        self.n_knobs = self.cond.n_knobs
        self.dilations = [dilation_growth**i for i in range(blocks)]
        self.kernel_size = kernel_size
        self.blocks = nn.ModuleList(
            TCNBlock(1 if i == 0 else channels, channels, kernel_size, d, activation, self.cond, bias, residual)
            for i, d in enumerate(self.dilations)
        )
        self.out = Pointwise(channels, 1, bias=bias)
        self.output_tanh = output_tanh
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
        new_states = []
        for block, bstate in zip(self.blocks, block_states):
            h, bstate = block(h, ctx, bstate, self.recompute)
            new_states.append(bstate)
        y = self.out(h)
        if self.output_tanh:
            y = torch.tanh(y)
        return y, (cond_state, new_states)
