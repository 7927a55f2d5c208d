"""What a model costs to run: parameters, multiply-accumulates per second of audio, CPU real-time factor.

**MACs** are counted, not estimated from the architecture: one offline call on ``seconds`` of
audio runs under ``torch.utils.flop_counter.FlopCounterMode`` and MACs = counted FLOPs / 2.  The
counter knows matmul / conv / attention; this module adds formulas for ops it does not count:

* ``aten.lstm`` / ``aten.gru`` / ``aten.rnn_*`` (fused on the CPU): per step and batch element,
  one MAC per element of every weight matrix (``4H·(I + H)`` per LSTM layer);
* ``aten.mv`` / ``aten.addmv`` / ``aten.dot``;
* FFTs (``aten._fft_r2c`` / ``_fft_c2r`` / ``_fft_c2c``): the textbook radix-2 count, 5·N·log₂N real
  FLOPs per complex transform of length N and half that for a real one — a convention; FFT
  libraries differ;
* torchaudio's IIR loop (``torchaudio._lfilter_core_loop``): ``order`` MACs per sample and channel
  (its FIR half is a conv1d, already counted).

Elementwise work (activations, gains, nonlinearities, oversampling filters' non-matmul parts) is
not counted, as is usual for MAC counts.  Any matmul-, conv-, FFT- or recurrence-like op that ran
without a formula is listed under ``uncounted_ops`` so an undercount never goes unnoticed.

**Real-time factor** (RTF) = seconds of audio / wall-clock seconds, so RTF > 1 is faster than real
time.  Measured on the CPU with ``threads`` threads (1 by default: one plugin instance on one core)
under ``torch.inference_mode``: offline (one call on ``audio_seconds``, best of ``repeats``) and
streaming in frames of 32 … 16384 samples carrying the state (``process_in_blocks``' loop), each
over ``audio_seconds`` of audio after a two-frame warm-up, stopping early once a frame size has
taken ``max_seconds_per_size`` of wall time (the RTF is then over the audio processed so far).
Timings move ±30 % with machine load.
"""

from __future__ import annotations

import math
import platform
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nablafx.config import read_section, section, setting


# --------------------------------------------------------------------------- configuration
@section("cost")
@dataclass
class CostConfig:
    """params.yaml ``cost:``."""

    frame_sizes: list[int] = setting(gt=0, nonempty=True)  # streaming frame sizes (samples)
    audio_seconds: float = setting(gt=0)  # audio streamed per frame size, and processed offline
    max_seconds_per_size: float = setting(gt=0)  # wall-clock cap per frame size (slow models stop early)
    mac_seconds: float = setting(gt=0)  # audio for the MAC count (reported per second)
    repeats: int = setting(ge=1)  # offline RTF: best of
    threads: int = setting(ge=1)
    seed: int = setting()


def cost_config(params: dict) -> CostConfig:
    """Validate params.yaml ``cost:``; errors name the key."""
    return read_section(params, CostConfig)


# --------------------------------------------------------------------------- parameters
def count_params(model: nn.Module) -> dict:
    return {"params": sum(p.numel() for p in model.parameters()),
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad)}


# --------------------------------------------------------------------------- FLOP formulas
# Formulas receive the op's arguments with tensors replaced by their shapes (flop_counter's
# shape_wrapper) and return FLOPs (2 per MAC).
def _prod(shape) -> int:
    return math.prod(int(s) for s in shape)


def _rnn_flops(input_shape, hx, params, has_biases, num_layers, dropout, train, bidirectional,
               batch_first, *args, out_shape=None, **kwargs) -> int:
    if len(input_shape) == 2:  # unbatched (T, I)
        steps = int(input_shape[0])
    else:
        steps = int(input_shape[0]) * int(input_shape[1])  # B·T either way round
    weight_elems = sum(_prod(p) for p in params if len(p) == 2)  # w_ih, w_hh (and projections), all layers
    return 2 * steps * weight_elems


def _mkldnn_rnn_layer_flops(input_shape, w_ih, w_hh, *args, out_shape=None, **kwargs) -> int:
    steps = _prod(input_shape[:-1])  # one layer, one direction: (T, B, I) or (B, T, I)
    return 2 * steps * (_prod(w_ih) + _prod(w_hh))


def _mv_flops(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * _prod(a_shape)


def _addmv_flops(bias_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * _prod(a_shape)


def _dot_flops(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * _prod(a_shape)


def _fft_len(shape, dim) -> tuple[int, int]:
    """(product of transformed lengths, number of transforms)."""
    dims = [d % len(shape) for d in (dim if isinstance(dim, (list, tuple)) else [dim])]
    n = _prod(shape[d] for d in dims)
    return n, _prod(shape) // max(n, 1)


def _fft_cost(n: int, count: int, real: bool) -> int:
    if n <= 1:
        return 0
    flops = 5.0 * n * math.log2(n) * count
    return int(round(flops / 2 if real else flops))


def _fft_r2c_flops(x_shape, dim, normalization, onesided, *args, out_shape=None, **kwargs) -> int:
    n, count = _fft_len(x_shape, dim)
    return _fft_cost(n, count, real=True)


def _fft_c2r_flops(x_shape, dim, normalization, last_dim_size, *args, out_shape=None, **kwargs) -> int:
    n, count = _fft_len(out_shape, dim)  # the real output carries the true length
    return _fft_cost(n, count, real=True)


def _fft_c2c_flops(x_shape, dim, normalization, forward, *args, out_shape=None, **kwargs) -> int:
    n, count = _fft_len(x_shape, dim)
    return _fft_cost(n, count, real=False)


def _lfilter_loop_flops(x_shape, a_flipped_shape, padded_shape, *args, out_shape=None, **kwargs) -> int:
    order = int(a_flipped_shape[-1]) - 1  # a is normalised: a0 = 1 costs nothing
    return 2 * _prod(x_shape) * order


def _extra_formulas() -> dict:
    """Formulas keyed by op packet *and* by each of its overloads: FlopCounterMode decomposes any op
    whose overload is not a key before counting it, and a decomposed CPU LSTM ends in an
    ``mkldnn_rnn_layer`` it cannot count (and runs ~10× slower under the counter)."""
    aten = torch.ops.aten
    packets = {aten.lstm: _rnn_flops, aten.gru: _rnn_flops, aten.rnn_tanh: _rnn_flops,
               aten.rnn_relu: _rnn_flops, aten.mv: _mv_flops, aten.addmv: _addmv_flops,
               aten.dot: _dot_flops, aten.vdot: _dot_flops, aten._fft_r2c: _fft_r2c_flops,
               aten._fft_c2r: _fft_c2r_flops, aten._fft_c2c: _fft_c2c_flops}
    if hasattr(aten, "mkldnn_rnn_layer"):
        packets[aten.mkldnn_rnn_layer] = _mkldnn_rnn_layer_flops
    try:  # only when torchaudio's extension is loaded (gray-box filters)
        import torchaudio.functional  # noqa: F401

        packets[torch.ops.torchaudio._lfilter_core_loop] = _lfilter_loop_flops
    except (ImportError, AttributeError, RuntimeError):  # pragma: no cover
        pass
    formulas = dict(packets)
    for packet, fn in packets.items():
        if packet in (aten.lstm, aten.gru, aten.rnn_tanh, aten.rnn_relu):
            formulas[packet.input] = fn  # the padded-sequence overload (.data) is left to decompose
        else:
            for name in packet.overloads():
                formulas[getattr(packet, name)] = fn
    return formulas


_HEAVY = re.compile(r"conv|mm|matmul|linear|einsum|lstm|gru|rnn|fft|filter|dot|mv|bilinear|attention")


class _Counter(FlopCounterMode):
    """FlopCounterMode that also records every op it executes without decomposing (``leaf_ops``)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.leaf_ops: set = set()

    def _count_flops(self, func_packet, out, args, kwargs):
        self.leaf_ops.add(func_packet)
        return super()._count_flops(func_packet, out, args, kwargs)


def count_flops(fn: Callable[[], object]) -> dict:
    """Run ``fn()`` under the flop counter: ``{"macs", "macs_by_op", "uncounted_ops"}``."""
    counter = _Counter(display=False, custom_mapping=_extra_formulas())
    with counter:
        fn()
    by_op = {str(op): v // 2 for op, v in counter.get_flop_counts().get("Global", {}).items() if v}
    uncounted = sorted(str(op) for op in counter.leaf_ops
                       if op not in counter.flop_registry and _HEAVY.search(str(op).split(".", 1)[-1]))
    return {"macs": sum(by_op.values()), "macs_by_op": dict(sorted(by_op.items())), "uncounted_ops": uncounted}


# --------------------------------------------------------------------------- models
def _inputs(model: nn.Module, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.randn(1, 1, n, generator=g)  # ~ -20 dBFS noise: cost does not depend on content
    n_knobs = int(getattr(model, "n_knobs", 0))
    return x, (torch.full((1, n_knobs), 0.5) if n_knobs else None)


def count_macs(model: nn.Module, sample_rate: int, seconds: float = 1.0, seed: int = 0) -> dict:
    """MACs of one offline call on ``seconds`` of audio, also per second (after a warm-up call,
    so caches built once per model — e.g. the S4 kernels — are not counted)."""
    n = max(1, int(round(seconds * sample_rate)))
    x, knobs = _inputs(model, n, seed)
    with torch.inference_mode():
        model(x, knobs)
        res = count_flops(lambda: model(x, knobs))
    scale = sample_rate / n
    res["macs_per_second"] = res["macs"] * scale
    res["macs_by_op_per_second"] = {k: int(round(v * scale)) for k, v in res["macs_by_op"].items()}
    return res


def rtf_offline(model: nn.Module, sample_rate: int, seconds: float = 2.0, repeats: int = 3, seed: int = 0) -> float:
    n = max(1, int(round(seconds * sample_rate)))
    x, knobs = _inputs(model, n, seed)
    best = math.inf
    with torch.inference_mode():
        model(x, knobs)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x, knobs)
            best = min(best, time.perf_counter() - t0)
    return (n / sample_rate) / max(best, 1e-9)


def rtf_streaming(model: nn.Module, sample_rate: int, frame: int, seconds: float = 2.0,
                  max_wall: float = 3.0, seed: int = 0) -> tuple[float, float]:
    """Stream ``seconds`` of audio in frames of ``frame`` samples; returns (RTF, audio seconds timed)."""
    n_frames = max(1, math.ceil(seconds * sample_rate / frame))
    x, knobs = _inputs(model, n_frames * frame, seed)
    frames = list(x.split(frame, dim=-1))
    with torch.inference_mode():
        state = model.init_state(1, device=x.device, dtype=x.dtype)
        for f in frames[:2]:  # warm-up: per-length caches, allocator
            _, state = model(f, knobs, state)
        state = model.init_state(1, device=x.device, dtype=x.dtype)
        done = 0
        t0 = time.perf_counter()
        for f in frames:
            _, state = model(f, knobs, state)
            done += 1
            elapsed = time.perf_counter() - t0
            if elapsed > max_wall:
                break
        elapsed = time.perf_counter() - t0
    audio = done * frame / sample_rate
    return audio / max(elapsed, 1e-9), audio


def measure_cost(model: nn.Module, sample_rate: int, cfg: CostConfig) -> dict:
    """Parameters, MACs per second of audio and real-time factors of ``model`` (see module doc)."""
    model = model.eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        macs = count_macs(model, sample_rate, cfg.mac_seconds, cfg.seed)
        rtf = {"offline": rtf_offline(model, sample_rate, cfg.audio_seconds, cfg.repeats, cfg.seed)}
        timed = {}
        for frame in cfg.frame_sizes:
            rtf[str(frame)], timed[str(frame)] = rtf_streaming(model, sample_rate, frame, cfg.audio_seconds,
                                                               cfg.max_seconds_per_size, cfg.seed)
    finally:
        torch.set_num_threads(threads)
    short = [f for f, s in timed.items() if s < cfg.audio_seconds - 1e-9]
    return {
        **count_params(model),
        "macs_per_second": int(round(macs["macs_per_second"])),
        "gmacs_per_second": round(macs["macs_per_second"] / 1e9, 6),
        "macs_per_second_by_op": macs["macs_by_op_per_second"],
        "uncounted_ops": macs["uncounted_ops"],
        "rtf": {k: round(v, 3) for k, v in rtf.items()},
        "settings": {"threads": cfg.threads, "sample_rate": sample_rate, "audio_seconds": cfg.audio_seconds,
                     "stopped_early": {f: round(timed[f], 3) for f in short},
                     "torch": torch.__version__, "cpu": platform.processor() or platform.machine()},
        "note": ("MACs = FLOPs/2 counted by torch.utils.flop_counter on an offline call, plus formulas for "
                 "fused RNNs, FFTs (5N*log2(N) FLOPs per complex transform) and IIR loops; elementwise ops "
                 "not counted. rtf = audio s / wall s on the CPU, offline and per frame size (samples)."),
    }
