"""The streaming protocol every model implements.

A model is a plain ``nn.Module`` with

* ``n_knobs``: number of knob values it is conditioned on (0 = unconditioned);
* ``receptive_field``: number of samples (current one included) that influence an output
  sample, or ``None`` when unbounded (recurrent models);
* ``init_state(batch_size, device=None, dtype=None)``: the state before any input
  (equivalent to an infinite run of digital silence);
* ``forward(x, knobs=None, state=None) -> (y, state)``: ``x`` is ``(batch, 1, samples)``,
  ``knobs`` ``(batch, n_knobs)`` in [0, 1] (constant over the call) or ``(batch, n_knobs, samples)``
  (one value per sample: knobs moving within the block); ``y`` has the same shape as ``x``.  With
  ``state=None`` the model starts from ``init_state``: offline processing is streaming with a
  single block.

Calling ``forward`` block after block, feeding back the returned state, must give the same
output as one offline call on the concatenated blocks (tests check 1e-5 relative to RMS).

Per-sample knobs reach every place a knob acts at the sample where it acts: FiLM scales and shifts
per sample, an LSTM input per step, a block-pooled LSTM (TFiLM, TVFiLM, dynamic controllers) the
value at the last sample of each block it completes, a gray-box controller per sample.  Recursive
filters driven by moving knobs update their coefficients every ``CONTROL_HOP`` samples of a call
(:mod:`nablafx.processors.eq`): exact streaming there needs blocks that are multiples of it.

:class:`StreamEngine` is what a host (``nablafx process``, a plugin loop) drives: fixed blocks with
the state carried, knob changes ramped per sample, and the output referenced to silence (below).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

State = Any  # nested tuples / lists / dicts of tensors, model specific


class StreamingModel(nn.Module):
    """Base class giving the protocol's shared helpers; subclasses implement the rest."""

    n_knobs: int = 0
    sample_rate: int = 48000

    @property
    def receptive_field(self) -> int | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def init_state(self, batch_size: int, device=None, dtype=None) -> State:  # pragma: no cover
        raise NotImplementedError

    def check_knobs(self, x: torch.Tensor, knobs: torch.Tensor | None) -> torch.Tensor | None:
        if self.n_knobs == 0:
            return None
        if knobs is None:
            raise ValueError(f"{type(self).__name__} is conditioned on {self.n_knobs} knobs, got none")
        if knobs.shape != (x.shape[0], self.n_knobs) and knobs.shape != (x.shape[0], self.n_knobs, x.shape[-1]):
            raise ValueError(
                f"{type(self).__name__}: knobs shape {tuple(knobs.shape)}, expected ({x.shape[0]}, {self.n_knobs}) "
                f"or ({x.shape[0]}, {self.n_knobs}, {x.shape[-1]})"
            )
        return knobs.to(x.dtype)

    def negate_output(self) -> list:
        """Negate the model's output exactly (``y → −y`` for every input, knobs and state) by
        editing its parameters; returns the parameters it negated, or ``[]``, changing nothing,
        where no such edit exists (:mod:`nablafx.training.polarity`)."""
        return []

    def config(self) -> dict:
        """Keyword arguments that rebuild this model through the registry (set by the builder)."""
        return dict(getattr(self, "_nablafx_spec", {}))


def detach_state(state: State) -> State:
    """Detach every tensor of a state (for truncated back-propagation through time)."""
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, dict):
        return {k: detach_state(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(detach_state(v) for v in state)
    return state


@torch.no_grad()
def process_in_blocks(model: nn.Module, x: torch.Tensor, knobs: torch.Tensor | None, block_size: int) -> torch.Tensor:
    """Run ``model`` over ``x`` block by block, carrying state; returns the concatenated output."""
    state = model.init_state(x.shape[0], device=x.device, dtype=x.dtype)
    outs = []
    for start in range(0, x.shape[-1], block_size):
        y, state = model(x[..., start : start + block_size], knob_slice(knobs, start, start + block_size), state)
        outs.append(y)
    return torch.cat(outs, dim=-1)


def state_leaves(state: State) -> list:
    """Every leaf of a state (tensors, ints, None), depth first."""
    if isinstance(state, dict):
        return [leaf for k in state for leaf in state_leaves(state[k])]
    if isinstance(state, (list, tuple)):
        return [leaf for v in state for leaf in state_leaves(v)]
    return [state]


def clone_state(state: State) -> State:
    if isinstance(state, torch.Tensor):
        return state.clone()
    if isinstance(state, dict):
        return {k: clone_state(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(clone_state(v) for v in state)
    return state


def state_distance(a: State, b: State) -> float:
    """Largest difference between the tensors of two states (inf when their structures differ;
    positions and other plain values are not compared)."""
    la, lb = state_leaves(a), state_leaves(b)
    if len(la) != len(lb):
        return math.inf
    dist = 0.0
    for x, y in zip(la, lb):
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            if x.shape != y.shape:
                return math.inf
            if x.numel():
                dist = max(dist, float((x - y).abs().max()))
        elif isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            return math.inf
    return dist


def knob_slice(knobs: torch.Tensor | None, start: int, stop: int) -> torch.Tensor | None:
    """The knobs of samples ``start:stop`` of a call (per-sample knobs are sliced, constant ones kept)."""
    if knobs is None or knobs.dim() == 2:
        return knobs
    return knobs[..., start:stop]


def knobs_at(knobs: torch.Tensor, index: torch.Tensor | list[int]) -> torch.Tensor:
    """Knob values at sample indices of a call, ``(B, len(index), K)`` (constant knobs: repeated)."""
    n = len(index)
    if knobs.dim() == 2:
        return knobs[:, None, :].expand(-1, n, -1)
    return knobs[..., index].transpose(1, 2)


def step_on_block_end(pos: torch.Tensor, n: int, period: int, stepped: dict, kept: dict) -> dict:
    """The fixed-graph state update of a call of ``n`` samples, ``n`` a divisor of ``period`` (the
    pooling block of a block LSTM or the frame of a dynamic controller), used by exports
    (:mod:`nablafx.portable`): every call computed the step (``stepped``); only the call that
    completes a period keeps it (a ``where``, so the graph is the same on every call).  ``pos`` is
    the position inside the period, a tensor of shape (1,).  Returns ``kept`` (the state as it is
    without a step; its key order is the state's layout) with each key of ``stepped`` chosen per
    call and ``pos`` advanced."""
    done = (pos + n) == period
    return {key: torch.remainder(pos + n, period) if key == "pos"
            else torch.where(done, stepped[key], value) if key in stepped else value
            for key, value in kept.items()}


class StreamEngine:
    """A model in a host's real-time loop: fixed-size blocks, carried state, smoothed knob changes.

    * ``process(x)`` takes ``(batch, 1, n)`` with ``n ≤ block_size`` (a ragged last block is fine) and
      returns the output of the same block: no latency is added, no lookahead is used.
    * ``set_knobs(values)`` sets new knob targets; the knobs move there along a raised-cosine ramp of
      ``smoothing_ms``, one value per sample, and the model sees the per-sample trajectory
      (``knobs (B, K, n)``), so a knob change has no step anywhere inside the model: no zipper noise.
    * ``silence_reference``: the output is ``model(x) − model(silence)`` under the same knob
      trajectory, computed by a second stream of the model fed zeros.  A network's response to
      silence — the DC its biases leave, a recurrent state's drift when a knob moves — is not sound
      the effect makes, and here it cancels exactly (digital silence in, digital silence out, knobs
      moving or not).  When the knobs are still and the silence stream has settled, its last value is
      reused and it stops running: the reference then costs nothing until the knobs move again.
      Settled: its output constant within ``settle_tol``, and its state at a fixed point — compared
      over spans of two periods of the model's slowest internal clock (block-pooled conditioning,
      dynamic controllers' frames: a state that did not step is not a settled one), the change over
      the last span is 0, or shrinking geometrically with ``change / (1 − ratio) ≤ settle_tol`` (the
      distance left to the fixed point: a slowly converging state is not frozen early).
      ``False`` gives the model's raw output.
    """

    def __init__(self, model, block_size: int, batch: int = 1, knobs=None, smoothing_ms: float = 20.0,
                 silence_reference: bool = True, settle_tol: float = 1e-7, dtype=torch.float32):
        if block_size < 1:
            raise ValueError(f"block_size must be ≥ 1, got {block_size}")
        self.model = model
        self.block_size = int(block_size)
        self.batch = int(batch)
        self.n_knobs = int(getattr(model, "n_knobs", 0))
        self.ramp = max(1, int(round(smoothing_ms * 1e-3 * getattr(model, "sample_rate", 48000))))
        self.dtype = dtype
        self.state = model.init_state(batch, dtype=dtype)
        self.silence_reference = silence_reference
        self.settle_tol = settle_tol
        self.ref_state = model.init_state(batch, dtype=dtype) if silence_reference else None
        self.ref_value: torch.Tensor | None = None  # the settled silence output, (B, 1, 1)
        self._ref_last: torch.Tensor | None = None
        self._ref_snapshot = None  # a copy of the silence state once its output is still
        self._ref_still = 0  # samples of still output since the snapshot
        self._ref_change = math.inf  # the state's change over the previous span
        clocks = [int(getattr(m, a, 0) or 0) for m in model.modules() for a in ("block_size", "hop")]
        self.settle_span = 2 * max([1, *clocks])
        self.clock_period = math.lcm(1, *[c for c in clocks if c > 0])  # every internal clock's phase repeats
        self._ref_skipped = 0  # samples the settled silence stream did not run
        self._ref_knobs = None  # the (still) knobs it settled under
        self.samples = 0
        self._ramp_from = self._ramp_to = None
        self._ramp_pos = 0
        if self.n_knobs:
            if knobs is None:
                raise ValueError(f"the model is conditioned on {self.n_knobs} knobs; give their values")
            k = self._as_knobs(knobs)
            self.current, self.target = k.clone(), k.clone()
        else:
            self.current = self.target = None

    def _as_knobs(self, values) -> torch.Tensor:
        k = torch.as_tensor(values, dtype=self.dtype).reshape(-1, self.n_knobs)
        if k.shape[0] not in (1, self.batch):
            raise ValueError(f"knobs for {k.shape[0]} streams, the engine runs {self.batch}")
        if not bool(((k >= 0) & (k <= 1)).all()):
            raise ValueError(f"knob values must be in [0, 1], got {k.tolist()}")
        return k.expand(self.batch, -1).clone()

    def set_knobs(self, values) -> None:
        """New targets (``(n_knobs,)`` or ``(batch, n_knobs)``); reached after ``smoothing_ms``."""
        if not self.n_knobs:
            raise ValueError("the model is not conditioned on knobs")
        k = self._as_knobs(values)
        if torch.equal(k, self.target):
            return
        self._ramp_from, self._ramp_to, self._ramp_pos = self.current.clone(), k, 0
        self.target = k

    @property
    def moving(self) -> bool:
        return self._ramp_to is not None

    def _trajectory(self, n: int) -> torch.Tensor | None:
        """The knobs for the next ``n`` samples: ``(B, K)`` when still, ``(B, K, n)`` while ramping."""
        if not self.n_knobs:
            return None
        if self._ramp_to is None:
            return self.current
        t = torch.arange(self._ramp_pos + 1, self._ramp_pos + n + 1, dtype=torch.float64) / self.ramp
        w = (0.5 - 0.5 * torch.cos(math.pi * t.clamp(max=1.0))).to(self.dtype)  # raised cosine, 0 → 1
        traj = self._ramp_from[..., None] + (self._ramp_to - self._ramp_from)[..., None] * w
        self._ramp_pos += n
        if self._ramp_pos >= self.ramp:
            self.current = self._ramp_to.clone()
            self._ramp_from = self._ramp_to = None
        else:
            self.current = traj[..., -1].clone()
        return traj

    def process(self, x: torch.Tensor) -> torch.Tensor:
        """One block ``(batch, 1, n)``, ``1 ≤ n ≤ block_size`` → the output block."""
        if x.dim() != 3 or x.shape[0] != self.batch or x.shape[1] != 1:
            raise ValueError(f"expected a block of shape ({self.batch}, 1, n), got {tuple(x.shape)}")
        n = x.shape[-1]
        if not 1 <= n <= self.block_size:
            raise ValueError(f"block of {n} samples; this engine takes 1 … {self.block_size}")
        x = x.to(self.dtype)
        knobs = self._trajectory(n)
        with torch.inference_mode():
            y, self.state = self.model(x, knobs, self.state)
            if self.silence_reference:
                y = y - self._silence(n, knobs)
        self.samples += n
        return y

    def _silence(self, n: int, knobs) -> torch.Tensor:
        moving = knobs is not None and knobs.dim() == 3
        if self.ref_value is not None and not moving:
            self._ref_skipped += n
            return self.ref_value  # settled: the silence stream would give this value again
        if self.ref_value is not None:  # the knobs move again: restart the settling from scratch
            self._ref_snapshot, self._ref_change = None, math.inf
            self._catch_up()
        self.ref_value = None
        zeros = torch.zeros(self.batch, 1, n, dtype=self.dtype)
        r, self.ref_state = self.model(zeros, knobs, self.ref_state)
        last = r[..., -1:]
        still = False
        if not moving and self._ref_last is not None:
            spread = torch.maximum((r - last).abs().amax(), (self._ref_last - last).abs().amax())
            still = float(spread) <= self.settle_tol
        if not still:
            self._ref_snapshot, self._ref_change = None, math.inf
        elif self._ref_snapshot is None:
            self._ref_snapshot, self._ref_still = clone_state(self.ref_state), 0  # (some states update in place)
        else:
            self._ref_still += n
            if self._ref_still >= self.settle_span:
                change = state_distance(self._ref_snapshot, self.ref_state)
                ratio = change / self._ref_change if self._ref_change > 0 else math.inf
                if change == 0.0 or (ratio < 1.0 and change / (1.0 - ratio) <= self.settle_tol):
                    self.ref_value = last.clone()  # at a fixed point: the same state, the same output
                    self._ref_knobs, self._ref_skipped = knobs, 0
                self._ref_snapshot, self._ref_still, self._ref_change = clone_state(self.ref_state), 0, change
        self._ref_last = None if moving else last.clone()
        return r

    def _catch_up(self) -> None:
        """Bring the settled silence stream back onto the main stream's clocks before it runs again.

        Its tensors sit at a fixed point, but block-pooled conditioning also carries a position in its
        block grid, which the samples it skipped would have advanced: it runs the skipped count modulo
        :attr:`clock_period` of zeros under the knobs it settled with (the same phase, the same state),
        so blocks complete, and see the moving knobs, at the same samples in both streams."""
        m = self._ref_skipped % self.clock_period
        if m:
            zeros = torch.zeros(self.batch, 1, m, dtype=self.dtype)
            _, self.ref_state = self.model(zeros, self._ref_knobs, self.ref_state)
        self._ref_skipped = 0

    def run(self, x: torch.Tensor, knob_events=(), progress=None) -> torch.Tensor:
        """Stream all of ``x (batch, 1, N)``; ``knob_events``: ``[(sample, values)]`` set at block starts
        (a host applies automation between blocks).  ``progress``: called with each block's length."""
        events = sorted(knob_events, key=lambda e: e[0])
        outs, i = [], 0
        for start in range(0, x.shape[-1], self.block_size):
            while i < len(events) and events[i][0] <= start:
                self.set_knobs(events[i][1])
                i += 1
            block = x[..., start : start + self.block_size]
            outs.append(self.process(block))
            if progress is not None:
                progress(block.shape[-1])
        return torch.cat(outs, dim=-1)
