"""LSTM black-box model: one LSTM layer, linear read-out, optional residual (skip) path.

Knob conditioning (``cond``):

* ``concat`` — the knob vector is appended to the input sample at every time step (the
  reference's "fixed" conditioning);
* ``tvconcat`` — time-varying concatenation (the papers' LSTM-TVC): a small conditioning LSTM
  (``cond_dim`` units) runs over blocks of ``cond_block`` samples, one step per block, on the
  block's max |x| and the knobs; its output, held constant over the next block, is appended to
  every input sample.  Causal as TFiLM/TVFiLM here (:mod:`nablafx.nn.blockpool`): block k is
  conditioned on blocks < k; the reference applies a block's own pooled value to that block, so
  its output looks up to 127 samples ahead.  The knobs enter through the conditioning LSTM only;
* ``none`` — knobs ignored.

``output_tanh`` passes the output through tanh (the reference always does).  ``recompute`` (training
memory and time; outputs and gradients unchanged): ``True`` keeps only each offline segment's input
and state for the backward pass and runs the segment again there; ``"auto"`` (default) does so when
the signal spans at least :data:`AUTO_RECOMPUTE_SEGMENTS` segments (full back-propagation through a
3 s chunk: LSTM-96 at 16 × 3 s kept 8.8 GB of per-step activations, whose fresh pages cost more than
the second forward pass: 5.8–6.5 s a step with it against 7–9 s without, 1.7 GB peak; truncated
back-propagation's short windows keep it off).  On the CPU the LSTM and its read-out run with the
batch split across PyTorch's intra-op threads, one thread per part, in the forward and the backward
pass (:mod:`nablafx.nn.batch_parallel`; same outputs and gradients).  Recurrent, so the
receptive field is unbounded; streaming carries the LSTM's (h, c) and, for ``tvconcat``, the
conditioning LSTM's state and its position in the block grid.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from nablafx.errors import ConfigError
from nablafx.models._common import check_positive, forward_in_segments, negate_linear
from nablafx.nn.batch_parallel import batch_parallel
from nablafx.nn.blockpool import CausalBlockLSTM, expand_blocks
from nablafx.registry import register
from nablafx.streaming import StreamingModel

LSTM_CONDS = ("concat", "tvconcat", "none")
AUTO_RECOMPUTE_SEGMENTS = 4  # recompute="auto": on from this many offline segments in one call


@register("lstm")
class LSTMModel(StreamingModel):
    def __init__(self, n_knobs: int = 0, sample_rate: int = 48000, hidden_size: int = 32,
                 num_layers: int = 1, residual: bool = True, cond: str = "concat", cond_dim: int = 16,
                 cond_block: int = 128, output_tanh: bool = False, recompute: bool | str = "auto"):
        super().__init__()
        if hidden_size < 1:
            raise ConfigError(f"must be ≥ 1, got {hidden_size}", key="hidden_size")
        if cond not in LSTM_CONDS:
            raise ConfigError(f"unknown conditioning {cond!r} for lstm; known: {', '.join(LSTM_CONDS)}", key="cond")
        check_positive(num_layers=num_layers, cond_dim=cond_dim, cond_block=cond_block)
        if recompute is not True and recompute is not False and recompute != "auto":
            raise ConfigError(f"must be true, false or 'auto', got {recompute!r}", key="recompute")
        self.n_knobs = n_knobs if cond != "none" else 0
        self.cond_kind = cond
        self.sample_rate = sample_rate
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.residual = residual
        self.output_tanh = output_tanh
        if cond == "tvconcat":
            self.cond_lstm = CausalBlockLSTM(1, cond_dim, cond_block, extra_features=self.n_knobs)
            n_in = 1 + cond_dim
        else:
            self.cond_lstm = None
            n_in = 1 + self.n_knobs
        self.lstm = nn.LSTM(n_in, hidden_size, num_layers=num_layers, batch_first=True)
        self.out = nn.Linear(hidden_size, 1)
        self.segment = 4096  # offline segment lengths on the CPU / elsewhere (see forward)
        self.gpu_segment = 32768
        # training: keep only each segment's input and state and run the segment again in the backward
        # pass (torch.utils.checkpoint): the LSTM's per-step activations of one segment at a time
        # instead of the whole signal's, for one more forward pass ("auto": for long signals)
        self.recompute = recompute

    @property
    def receptive_field(self) -> int | None:
        return None

    def negate_output(self) -> list:
        """Exact without the residual path (``out(h)``, then tanh or not, both odd); with it the
        output is ``out(h) + x`` and no parameter edit negates it."""
        return [] if self.residual else negate_linear(self.out)

    def init_state(self, batch_size: int, device=None, dtype=None):
        shape = (self.num_layers, batch_size, self.hidden_size)
        dtype = dtype or self.out.weight.dtype
        device = device or self.out.weight.device
        hc = (torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))
        if self.cond_lstm is None:
            return hc
        return (*hc, self.cond_lstm.init_state(batch_size, device, dtype))

    def forward(self, x: torch.Tensor, knobs: torch.Tensor | None = None, state=None):
        # x: (B, 1, T) -> seq: (B, T, 1 + n_knobs or 1 + cond_dim)
        knobs = self.check_knobs(x, knobs)
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        # long signals run in segments carrying the state (exact): on the CPU 4096 samples, 3–6× faster;
        # on a GPU 32768, as cuDNN's LSTM fails on sequences of 65536 steps or more
        recompute = self.recomputes(x)
        return forward_in_segments(lambda *a: self._forward(*a, recompute=recompute), x, knobs, state,
                                   self.segment, gpu_segment=self.gpu_segment)

    def recomputes(self, x: torch.Tensor) -> bool:
        """Whether a call on ``x`` runs its segments again in the backward pass (``recompute``)."""
        if not torch.is_grad_enabled() or self.recompute is False:
            return False
        segment = self.segment if x.device.type == "cpu" else self.gpu_segment
        return self.recompute is True or x.shape[-1] >= AUTO_RECOMPUTE_SEGMENTS * segment

    def _forward(self, x, knobs, state, recompute: bool = False):
        seq = x.transpose(1, 2)
        if self.cond_lstm is not None:
            h, c, cstate = state
            pos = cstate["pos"]
            hs, cstate = self.cond_lstm(x.abs(), knobs, cstate)  # (B, S, cond_dim): one row per block touched
            cond = expand_blocks(hs.transpose(1, 2), pos, x.shape[-1], self.cond_lstm.block_size)
            seq = torch.cat([seq, cond.transpose(1, 2).expand(-1, seq.shape[1], -1)], dim=-1)
            state = (h, c)
        elif knobs is not None:
            k = knobs[:, None, :].expand(-1, seq.shape[1], -1) if knobs.dim() == 2 else knobs.transpose(1, 2)
            seq = torch.cat([seq, k], dim=-1)
        # the LSTM and the read-out over parts of the batch on separate threads (CPU), only their
        # inputs kept for the backward pass with recompute
        params = [*self._lstm_weights(), self.out.weight, self.out.bias]
        y, hn, cn = batch_parallel(self._lstm_readout, [seq, *state], [0, 1, 1], params, [0, 1, 1],
                                   recompute=recompute)
        state = (hn, cn)
        y = y.transpose(1, 2)  # (B, 1, T)
        if self.residual:
            y = y + x
        if self.output_tanh:
            y = torch.tanh(y)
        if self.cond_lstm is not None:
            state = (*state, cstate)
        return y, state

    def _lstm_weights(self) -> list:
        return [w for layer in self.lstm.all_weights for w in layer]

    def _lstm_readout(self, seq, h0, c0, *params):
        """``out(lstm(seq))`` and the LSTM's final state, with the weights given (nn.LSTM's own call)."""
        lstm = self.lstm
        n = len(params) - 2
        h, hn, cn = torch._VF.lstm(seq, (h0, c0), list(params[:n]), lstm.bias, lstm.num_layers,
                                   float(lstm.dropout), self.training, lstm.bidirectional, lstm.batch_first)
        return F.linear(h, params[n], params[n + 1]), hn, cn
