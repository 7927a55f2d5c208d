"""S4 black-box model: stacked diagonal state-space (S4D) blocks with knob conditioning.

Input 1×1 conv to ``channels``; block i: 1×1 channel mix → ``pre_activation`` → S4D layer
(``state_dim`` real state per channel = state_dim/2 complex modes) → conditioning (FiLM, TVFiLM,
TFiLM, TinyTFiLM or none; laid out as ``cond_style``) → activation → plus the block input
(``residual``: as it is, or through a learnable gain per channel as the reference); a 1×1 conv maps
to the output sample (optionally tanh).

The SSMs are infinite-impulse-response filters: the receptive field is unbounded (``None``).
Offline and streaming share one exact chunked computation (:mod:`nablafx.nn.ssm`): the state
carried between blocks is each layer's complex SSM state plus the conditioning state.

Training (gradients recorded) runs each layer over the whole signal at once, and with ``recompute``
(default) keeps only each block's input for the backward pass, running the block again there: a
block's SSM internals are large (complex128 chunk states), and storing them for every block made a
batch of 16 × 3 s need tens of GB.
"""

from __future__ import annotations

import torch
from torch import nn

from nablafx.errors import ConfigError
from nablafx.models._common import ConditionedStack, check_positive, run_block
from nablafx.nn.activations import make_activation
from nablafx.nn.blocks import Pointwise, make_residual
from nablafx.nn.conditioning import Conditioning, check_cond
from nablafx.nn.ssm import S4D
from nablafx.registry import register


class S4Block(nn.Module):
    def __init__(self, channels: int, state_dim: int, activation: str, cond: Conditioning, ssm_init: str,
                 dt_min: float, dt_max: float, chunk: int, pre_activation: str = "identity",
                 residual: str = "identity"):
        super().__init__()
        self.mix = Pointwise(channels, channels)
        self.pre_act = make_activation(pre_activation, channels)
        self.ssm = S4D(channels, state_dim, ssm_init, dt_min, dt_max, chunk)
        self.mod = cond.make_layer(channels)
        self.act = make_activation(activation, channels)
        self.res = make_residual(residual, channels, channels)

    def init_state(self, batch_size, device=None, dtype=None):
        return (self.ssm.init_state(batch_size, device, dtype), self.mod.init_state(batch_size, device, dtype))

    def forward(self, x, ctx, state):
        ssm_state, mod_state = state
        h, ssm_state = self.ssm(self.pre_act(self.mix(x)), ssm_state)
        h, mod_state = self.mod(h, ctx, mod_state)
        res = x if self.res is None else self.res(x)
        return self.act(h) + res, (ssm_state, mod_state)


@register("s4")
class S4Model(ConditionedStack):
    def __init__(self, n_knobs: int = 0, sample_rate: int = 48000, blocks: int = 4, state_dim: int = 32,
                 channels: int = 16, activation: str = "prelu", cond: str = "none", ssm_init: str = "lin",
                 dt_min: float = 1e-3, dt_max: float = 1e-1, chunk: int = 64, segment: int = 4096,
                 cond_dim: int = 32, cond_block: int = 128, cond_hidden: int = 32, cond_style: str = "nablafx", film_norm: str = "none", film_scale: str = "unit",
                 output_tanh: bool = False, pre_activation: str = "identity", residual: str = "identity",
                 recompute: bool = True):
        super().__init__()
        check_positive(blocks=blocks, state_dim=state_dim, channels=channels, chunk=chunk, segment=segment,
                       cond_dim=cond_dim, cond_block=cond_block, cond_hidden=cond_hidden)
        check_cond(cond, "s4", cond_style)
        make_activation(activation, 1)
        try:
            make_activation(pre_activation, 1)
        except ConfigError as err:
            raise ConfigError(err.problem, key="pre_activation") from None
        if residual == "copy":
            raise ConfigError("unknown residual 'copy' for s4; known: identity, gain", key="residual")
        make_residual(residual, 1, 1)
        self.sample_rate = sample_rate
        self.cond = Conditioning(cond, n_knobs, "s4", embed_dim=cond_dim, block_size=cond_block, hidden=cond_hidden,
                                 style=cond_style, film_norm=film_norm, film_scale=film_scale)
        self.n_knobs = self.cond.n_knobs
        self.inp = Pointwise(1, channels)
        self.blocks = nn.ModuleList(
            S4Block(channels, state_dim, activation, self.cond, ssm_init, dt_min, dt_max, chunk, pre_activation,
                    residual)
            for _ in range(blocks)
        )
        self.out = Pointwise(channels, 1)
        self.output_tanh = output_tanh
        self.segment = segment
        self.grad_segment = None  # training: each layer over the whole signal (its matrices built once)
        self.recompute = recompute
        self._start_without_offsets(channels)

    def _start_without_offsets(self, channels: int) -> None:
        """Zero, at initialisation, every constant the network adds: the biases of the 1×1 convs
        and the shift half of each modulation's (scale, shift) projection.  A constant entering an
        S4D layer comes out multiplied by its DC gain ``D + 2·Re Σ C̃/(1 − dA)`` (the slow real
        mode alone: 4·Re C ~ N(0, 8)), block after block through the residual stack, and rings with
        the SSMs' start-up transient from the zero state of every training crop.  With the default
        1×1 conv initialisation the untrained model's output hardly depended on its input (seed 0:
        +9 dBFS on digital silence and 17 dB above the target for ``s4-film-b4-s32-c16``, +34 dBFS
        and 42 dB for ``s4-tvf-b8-s32-c16``), which per-example ESR on quiet crops turned into
        losses of 10¹³ (benchmarks/results/quiet_material.md; docs/training.md, "Quiet material").
        Zeroed, silence in gives silence out; training learns whatever offsets the device has."""
        with torch.no_grad():
            for conv in (self.inp, self.out, *(b.mix for b in self.blocks)):
                conv.bias.zero_()
            for block in self.blocks:
                for lin in block.mod.modules():
                    if isinstance(lin, nn.Linear) and lin.out_features == 2 * channels:  # (scale, shift)
                        lin.weight[channels:].zero_()
                        lin.bias[channels:].zero_()

    @property
    def receptive_field(self) -> int | None:
        return None

    def _forward(self, x, knobs, state):
        cond_state, block_states = state
        ctx, cond_state = self.cond(x, knobs, cond_state)
        h = self.inp(x)
        new_states = []
        for block, bstate in zip(self.blocks, block_states):
            # recomputed blocks hold one block's saved tensors at a time: room for the input's spectrum
            # (one FFT fewer in the backward pass)
            block.ssm.keep_spectrum = self.recompute
            h, bstate = run_block(block, self.recompute, h, ctx, bstate, trim_heap=True)
            new_states.append(bstate)
        y = self.out(h)
        if self.output_tanh:
            y = torch.tanh(y)
        return y, (cond_state, new_states)
