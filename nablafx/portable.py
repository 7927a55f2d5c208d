"""``nablafx export``: a trained model as TorchScript or ONNX, its streaming state as explicit tensors.

    nablafx export artifacts/model --format onnx --block 512        # → artifacts/export/<variant>-b512.onnx

The exported graph processes one block of a fixed size ``N`` (the ``--block``) for one stream::

    y, *state_out = model(x, [knobs,] *state_in)
    x: (1, 1, N) float32;  knobs: (1, n_knobs) float32 in [0, 1] (conditioned models only)
    state_in / state_out: the model's streaming state, one tensor per leaf, in the order of the
    JSON sidecar (``<file>.json``: names, shapes, dtypes); the initial state is all zeros.

A host feeds ``state_out`` of one call as ``state_in`` of the next, so the exported model streams
exactly as the PyTorch model does (``tests/test_export.py`` checks 1e-5 of the RMS over ≥ 1 s with a
knob change in the middle, block by block, with ONNX Runtime and TorchScript).  A ragged last block
is zero-padded by the host (its extra output discarded).  Stereo: one stream per channel.

How each part becomes exportable:

* causal convolutions keep their context in a plain buffer (the in-place ring buffer used for short
  blocks in PyTorch moves its start index, which a fixed graph cannot);
* S4 layers run on real-valued float64 states (ONNX has no complex tensors), with the chunk matrices
  of the PyTorch model as constants;
* recursive filters (equalisers, tone stack, the compressor's attack stage) run their recursion as
  block matrices built in the graph from the coefficients (:func:`nablafx.dsp.filters.allpole_blocks`)
  instead of torchaudio's C++ loop, which neither format can carry; the compressor's running maximum
  becomes a log-depth scan (ONNX has no cumulative maximum).

What cannot be exported is refused with the reason, before anything is written
(:func:`export_blockers`, the list in docs/export.md, checked by the tests):

* block-pooled conditioning (TFiLM, TinyTFiLM, TVFiLM) and dynamic controllers, for a block size
  that is not a multiple of their block/frame size: their state holds a position inside the current
  block that changes from call to call, so one fixed graph cannot serve every call;
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import math
from pathlib import Path

import torch
from torch import nn

from nablafx import fileio
from nablafx.errors import ConfigError
from nablafx.streaming import step_on_block_end

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}
OPSET = 18
IIR_CHUNK = 64  # samples per block-matrix step of recursive filters in exported graphs


class ExportError(ConfigError):
    """The model cannot be exported as asked; the message says why (one line)."""


# --------------------------------------------------------------------------- state as tensors
def flatten_state(state) -> tuple[list[torch.Tensor], tuple]:
    """Tensors of a nested state (depth first) and a hashable spec of everything else."""
    tensors: list[torch.Tensor] = []

    def walk(s):
        if isinstance(s, torch.Tensor):
            tensors.append(s)
            return ("T", len(tensors) - 1)
        if isinstance(s, dict):
            return ("D", tuple((k, walk(v)) for k, v in s.items()))
        if isinstance(s, list):
            return ("L", tuple(walk(v) for v in s))
        if isinstance(s, tuple):
            return ("U", tuple(walk(v) for v in s))
        return ("V", s)

    return tensors, walk(state)


def unflatten_state(spec: tuple, tensors) -> object:
    kind, body = spec
    if kind == "T":
        return tensors[body]
    if kind == "D":
        return {k: unflatten_state(v, tensors) for k, v in body}
    if kind == "L":
        return [unflatten_state(v, tensors) for v in body]
    if kind == "U":
        return tuple(unflatten_state(v, tensors) for v in body)
    return body


def tensors_by_spec(spec: tuple, state) -> list[torch.Tensor]:
    """The tensors of ``state`` at the tensor leaves of ``spec`` (plain leaves — positions, which a
    tracer may turn into tensors — are fixed by the spec and dropped)."""
    kind, body = spec
    if kind == "T":
        return [state]
    if kind == "D":
        return [t for k, v in body for t in tensors_by_spec(v, state[k])]
    if kind in ("L", "U"):
        return [t for v, s in zip(body, state) for t in tensors_by_spec(v, s)]
    return []


def _leaf_paths(spec: tuple, path: str = "state") -> list[tuple[str, tuple]]:
    kind, body = spec
    if kind == "D":
        return [p for k, v in body for p in _leaf_paths(v, f"{path}.{k}")]
    if kind in ("L", "U"):
        return [p for i, v in enumerate(body) for p in _leaf_paths(v, f"{path}[{i}]")]
    return [(path, spec)]


# --------------------------------------------------------------------------- S4 with real states
class S4DExport(nn.Module):
    """An :class:`~nablafx.nn.ssm.S4D` layer for blocks of ``n`` samples with a real float64 state
    ``(B, H, N/2, 2)`` (re, im): the PyTorch layer's chunk matrices as constants, and the states
    before every chunk of a block in closed form, ``s_k = a^k s_0 + Σ_(j<k) a^(k-1-j) z_j``
    (``a = dA^L``, z_j the state a chunk gathers from a zero start): one small real float64 matmul
    per mode instead of a loop over the block's chunks."""

    def __init__(self, ssm, n: int):
        super().__init__()
        self.channels, self.modes = ssm.channels, ssm.modes
        self.size = min(ssm.chunk, n)
        self.nc, self.rest = divmod(n, self.size)
        with torch.no_grad():
            dtA, _ = ssm._discrete()
            for tag, length, count in (("main", self.size, self.nc), ("rest", self.rest, 1)):
                if length == 0 or count == 0:
                    continue
                conv, w_in, m_out, _, _ = ssm._matrices(length, torch.float32)
                if m_out is not None:  # FFT chunk (chunks above fft_above samples): not used for export
                    raise ExportError(f"S4 chunk of {length} samples uses the FFT path; export with chunk ≤ 2048")
                self.register_buffer(f"{tag}_conv", conv.contiguous())  # (H, L + 2m, L)
                self.register_buffer(f"{tag}_win", w_in.contiguous())  # (H, L, 2m)
                if count == 1:  # one chunk: s ← z + a ⊙ s written out (a batched 4 × 4 matmul per mode costs more)
                    a = torch.exp(dtA * length)
                    self.register_buffer(f"{tag}_a", torch.stack([a.real, a.imag], dim=-1).contiguous())  # (H, m, 2)
                else:
                    self.register_buffer(f"{tag}_mix", self._mixer(dtA * length, count))

    @staticmethod
    def _mixer(log_a: torch.Tensor, count: int) -> torch.Tensor:
        """(H, m, 2(c+1), 2(c+1)) float64: [re s_0..s_c, im s_0..s_c] = R @ [re z_0..z_(c-1), re s,
        im z_0..z_(c-1), im s] for c chunks; ``log_a`` = dt·A·L, complex (H, m)."""
        k = torch.arange(count + 1, dtype=torch.float64, device=log_a.device)
        j = torch.arange(count + 1, dtype=torch.float64, device=log_a.device)
        expo = k[:, None] - 1 - j[None, :]  # a^(k-1-j) from chunk j's input
        expo[:, count] = k  # the column of the state before the block: a^k
        live = (expo >= 0).to(torch.float64)
        w = torch.exp(log_a[..., None, None] * expo.clamp_min(0)) * live  # (H, m, c+1, c+1) complex
        return torch.cat([torch.cat([w.real, -w.imag], dim=-1), torch.cat([w.imag, w.real], dim=-1)], dim=-2).contiguous()

    def init_state(self, batch_size: int, device=None, dtype=None) -> torch.Tensor:
        return torch.zeros(batch_size, self.channels, self.modes, 2, dtype=torch.float64, device=device)

    def _chunks(self, u: torch.Tensor, s: torch.Tensor, tag: str):
        conv, w_in = getattr(self, f"{tag}_conv"), getattr(self, f"{tag}_win")
        bsz, h, nc, length = u.shape
        if nc == 1:
            a = getattr(self, f"{tag}_a")
            z = torch.matmul(u, w_in).double().reshape(bsz, h, self.modes, 2)
            sr, si, ar, ai = s[..., 0], s[..., 1], a[..., 0], a[..., 1]
            s_new = torch.stack([z[..., 0] + ar * sr - ai * si, z[..., 1] + ar * si + ai * sr], dim=-1)
            s_prev = s.reshape(bsz, h, 1, 2 * self.modes).to(u.dtype)
            return torch.matmul(torch.cat([u, s_prev], dim=-1), conv), s_new
        mix = getattr(self, f"{tag}_mix")
        z = torch.matmul(u, w_in).double().reshape(bsz, h, nc, self.modes, 2).permute(0, 1, 3, 4, 2)  # (B, H, m, 2, nc)
        v = torch.cat([z, s.unsqueeze(-1)], dim=-1).reshape(bsz, h, self.modes, 2 * (nc + 1), 1)
        states = torch.matmul(mix, v).reshape(bsz, h, self.modes, 2, nc + 1)  # s_0 … s_nc (re, im)
        s_prev = states[..., :nc].permute(0, 1, 4, 2, 3).reshape(bsz, h, nc, 2 * self.modes).to(u.dtype)
        return torch.matmul(torch.cat([u, s_prev], dim=-1), conv), states[..., nc].contiguous()

    def forward(self, u: torch.Tensor, state=None):
        bsz, h, n = u.shape
        s = self.init_state(bsz, u.device) if state is None else state
        outs = []
        if self.nc:
            y, s = self._chunks(u[..., : self.nc * self.size].reshape(bsz, h, self.nc, self.size), s, "main")
            outs.append(y.reshape(bsz, h, self.nc * self.size))
        if self.rest:
            y, s = self._chunks(u[..., self.nc * self.size :].reshape(bsz, h, 1, self.rest), s, "rest")
            outs.append(y.reshape(bsz, h, self.rest))
        return (torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]), s


class BlockLSTMExport(nn.Module):
    """A :class:`~nablafx.nn.blockpool.CausalBlockLSTM` for calls of ``n`` samples where ``n`` divides
    its pooling block (e.g. ``--block 64`` with blocks of 128): the position inside the block and the
    running maximum become state tensors, and every call computes the LSTM step for the running
    maximum but keeps it only when the call completes a block (a ``where``), so the graph is the same
    on every call.  The condition this call uses is the LSTM output before it, as in PyTorch (a
    call lies inside one block)."""

    def __init__(self, pool, n: int):
        super().__init__()
        self.pool, self.n, self.block_size = pool, n, pool.block_size

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict:
        st = self.pool.init_state(batch_size, device, dtype)
        dim = self.pool.in_features
        return {"pos": torch.zeros(1, dtype=torch.int64, device=st["h"].device),
                "max": st["h"].new_zeros(batch_size, dim), "h": st["h"], "c": st["c"]}

    def forward(self, z: torch.Tensor, extra, state: dict):
        pos, h, c = state["pos"], state["h"], state["c"]
        if not isinstance(pos, torch.Tensor):  # a PyTorch-layout state (a plain position, no running max yet)
            pos = torch.full((1,), int(pos), dtype=torch.int64, device=z.device)
        run_max = z.amax(-1)
        if state["max"] is not None:
            run_max = torch.where(pos == 0, run_max, torch.maximum(run_max, state["max"]))
        if extra is not None and extra.dim() == 3:  # per-sample: the value at the block's last sample
            extra = extra[..., -1]
        _, h_step, c_step = self.pool.run_lstm(run_max[..., None], extra, h, c)
        # the running max is kept as it is: the next call restarts it (pos == 0) after a completed block
        new = step_on_block_end(pos, z.shape[-1], self.block_size, {"h": h_step, "c": c_step},
                                {"pos": pos, "max": run_max, "h": h, "c": c})
        return h[0][:, None, :], new


def exportable_copy(model: nn.Module, block: int) -> nn.Module:
    """A copy of ``model`` whose every part runs in a fixed graph for blocks of ``block`` samples."""
    from nablafx.controllers.dynamic import DynamicController
    from nablafx.nn.blockpool import CausalBlockLSTM
    from nablafx.nn.blocks import CausalConv1d
    from nablafx.nn.ssm import S4D

    m = copy.deepcopy(model).eval().requires_grad_(False)  # a host runs it without autograd
    for module in list(m.modules()):
        if isinstance(module, CausalConv1d):
            module.ring = False
        for name, child in list(module.named_children()):
            if isinstance(child, S4D):
                setattr(module, name, S4DExport(child, block))
            elif isinstance(child, CausalBlockLSTM) and block < child.block_size and child.block_size % block == 0:
                setattr(module, name, BlockLSTMExport(child, block))
    for module in m.modules():
        if isinstance(module, DynamicController) and block < module.hop and module.hop % block == 0:
            module.fixed_block = block
    return m


# --------------------------------------------------------------------------- what can be exported
def _clocks(model: nn.Module) -> list[tuple[str, int]]:
    """Block-pooled conditioning and dynamic controllers: (what, samples per block/frame)."""
    from nablafx.controllers.dynamic import DynamicController
    from nablafx.nn.blockpool import CausalBlockLSTM

    out = []
    for name, module in model.named_modules():
        if isinstance(module, CausalBlockLSTM):
            out.append((f"block-pooled conditioning ({name})", module.block_size))
        elif isinstance(module, DynamicController):
            out.append((f"dynamic controller ({name})", module.hop))
    return out


def export_blockers(model: nn.Module, block: int, fmt: str) -> list[str]:
    """Why ``model`` cannot be exported as ``fmt`` for blocks of ``block`` samples (empty: it can)."""
    reasons = []
    for what, size in _clocks(model):
        if size % block == 0:  # a divisor: BlockLSTMExport / DynamicController.fixed_block
            continue
        if block % size:
            reasons.append(f"{what} pools blocks of {size} samples: its state holds the position inside the "
                           f"current block, which changes from call to call at --block {block}; export with "
                           f"--block a multiple or a divisor of {size}")
    return reasons


def check_fixed_state(model: nn.Module, block: int, n_knobs: int, blocks: int) -> tuple:
    """Run ``blocks`` blocks; the state's structure and plain values (positions) must never change,
    and the initial state must be all zeros.  Returns the state spec."""
    g = torch.Generator().manual_seed(0)
    state = model.init_state(1)
    tensors, spec = flatten_state(state)
    for path, leaf in _leaf_paths(spec):
        if leaf[0] == "T" and bool(tensors[leaf[1]].ne(0).any()):
            raise ExportError(f"{path}: the initial state is not zero; a host could not start it")
    knobs = torch.rand(1, n_knobs, generator=g) if n_knobs else None
    with torch.no_grad():
        for i in range(blocks):
            _, state = model(0.3 * torch.randn(1, 1, block, generator=g), knobs, state)
            new_tensors, new_spec = flatten_state(state)
            if new_spec != spec:
                old = dict(_leaf_paths(spec))
                changed = [p for p, leaf in _leaf_paths(new_spec) if old.get(p) != leaf] or ["its structure"]
                raise ExportError(f"{changed[0]}: the state changes form after block {i + 1} at --block {block}; "
                                  "a fixed graph cannot follow it")
            for a, b in zip(tensors, new_tensors):
                if a.shape != b.shape or a.dtype != b.dtype:
                    raise ExportError(f"a state tensor changes shape or type at --block {block}")
    return spec


class StreamingGraph(nn.Module):
    """``forward(x, [knobs,] *state) -> (y, *state)`` around a model, state flattened to tensors."""

    def __init__(self, model: nn.Module, spec: tuple, n_knobs: int):
        super().__init__()
        self.model = model
        self.spec = spec
        self.n_knobs = n_knobs

    def forward(self, x, *args):
        knobs, flat = (args[0], args[1:]) if self.n_knobs else (None, args)
        y, state = self.model(x, knobs, unflatten_state(self.spec, list(flat)))
        return (y, *tensors_by_spec(self.spec, state))


def build_graph(model: nn.Module, block: int, fmt: str) -> tuple[StreamingGraph, list[torch.Tensor]]:
    """The graph module and its example inputs (``x``, ``knobs``, zero state); ExportError if not exportable."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if block < 1:
        raise ExportError(f"--block {block}: the block size must be a whole number of samples ≥ 1")
    reasons = export_blockers(model, block, fmt)
    if reasons:
        raise ExportError(reasons[0])
    n_knobs = int(getattr(model, "n_knobs", 0))
    m = exportable_copy(model, block)
    period = max([size for _, size in _clocks(m)] + [1])
    spec = check_fixed_state(m, block, n_knobs, max(3, 2 * math.ceil(period / block) + 1))
    graph = StreamingGraph(m, spec, n_knobs).eval()
    g = torch.Generator().manual_seed(1)
    example = [0.3 * torch.randn(1, 1, block, generator=g)]
    if n_knobs:
        example.append(torch.rand(1, n_knobs, generator=g))
    example += flatten_state(m.init_state(1))[0]
    return graph, example


def io_names(n_knobs: int, n_state: int) -> tuple[list[str], list[str]]:
    inputs = ["x", *(["knobs"] if n_knobs else []), *[f"state_in_{i}" for i in range(n_state)]]
    return inputs, ["y", *[f"state_out_{i}" for i in range(n_state)]]


def export_bytes(model: nn.Module, block: int, fmt: str) -> tuple[bytes, dict]:
    """The exported file's bytes and its description (inputs, outputs, state shapes)."""
    from nablafx.dsp.filters import block_recursion

    graph, example = build_graph(model, block, fmt)
    n_knobs = graph.n_knobs
    n_state = len(example) - 1 - (1 if n_knobs else 0)
    in_names, out_names = io_names(n_knobs, n_state)
    with torch.no_grad(), block_recursion(IIR_CHUNK):
        outputs = graph(*example)
        buf = io.BytesIO()
        try:
            if fmt == "torchscript":
                traced = torch.jit.trace(graph, tuple(example), check_trace=False)
                torch.jit.save(traced, buf)
            else:
                torch.onnx.export(graph, tuple(example), buf, input_names=in_names, output_names=out_names,
                                  opset_version=OPSET, dynamo=False)
        except Exception as err:  # an operator the format lacks: say which, in one line
            raise ExportError(f"{fmt} export failed: {str(err).strip().splitlines()[0][:300]}") from err
    state = example[1 + (1 if n_knobs else 0):]
    desc = {
        "format": fmt, "block": block, "batch": 1, "n_knobs": n_knobs,
        "inputs": [{"name": n, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")}
                   for n, t in zip(in_names, example)],
        "outputs": [{"name": n, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")}
                    for n, t in zip(out_names, outputs)],
        "initial_state": "zeros", "state_tensors": len(state),
    }
    return buf.getvalue(), desc


# --------------------------------------------------------------------------- running an export
class ExportedRunner:
    """Run an exported file block by block (ONNX Runtime on the CPU, or torch.jit), carrying the state."""

    def __init__(self, path: str | Path, desc: dict, threads: int = 1):
        self.desc = desc
        self.fmt = desc["format"]
        self.block = desc["block"]
        self.n_knobs = desc["n_knobs"]
        self.state = [torch.zeros(i["shape"], dtype=getattr(torch, i["dtype"]))
                      for i in desc["inputs"] if i["name"].startswith("state_in_")]
        if self.fmt == "onnx":
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            self.state = [s.numpy() for s in self.state]
        else:
            self.module = torch.jit.load(str(path))

    def process(self, x, knobs=None):
        """One block ``(1, 1, block)``; returns ``y`` (numpy for ONNX, a tensor for TorchScript)."""
        if self.fmt == "onnx":
            feed = {"x": x.numpy() if isinstance(x, torch.Tensor) else x}
            if self.n_knobs:
                feed["knobs"] = knobs.numpy() if isinstance(knobs, torch.Tensor) else knobs
            feed.update({f"state_in_{i}": s for i, s in enumerate(self.state)})
            y, *self.state = self.session.run(None, feed)
            return y
        with torch.no_grad():
            y, *self.state = self.module(x, *([knobs] if self.n_knobs else []), *self.state)
        return y


def export_model(model_dir: str | Path, fmt: str, block: int, out: str | Path | None = None) -> Path:
    """Export the trained model in ``model_dir``; writes ``<out>`` and ``<out>.json`` atomically."""
    from nablafx.export import load_model
    from nablafx.modeldir import knob_names, read_config

    config = read_config(model_dir)  # a folder of another version: refused before torch does any work
    if block < 1:
        raise ExportError(f"--block {block}: the block size must be a whole number of samples ≥ 1")
    out = Path(out) if out else Path(model_dir).parent / "export" / f"{config.get('variant')}-b{block}{FORMATS[fmt]}"
    if out.is_dir():
        raise ExportError(f"{out}: is a folder; give a file name")
    model, config = load_model(model_dir)
    data, desc = export_bytes(model, block, fmt)
    desc.update(variant=config.get("variant"), sample_rate=config["sample_rate"],
                knobs=[{"letter": k, "name": n} for k, n in knob_names(config, model_dir)],
                model_sha256=config.get("model_sha256"), **fileio.written_by(1))
    fileio.write_bytes_atomic(out, data)
    fileio.write_json(Path(str(out) + ".json"), desc)
    return out


def main(argv=None) -> int:
    from nablafx.cli import Parser

    ap = Parser(prog="nablafx export", description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", nargs="?", default="artifacts/model", help="trained model folder")
    ap.add_argument("--format", required=True, choices=sorted(FORMATS))
    ap.add_argument("--block", type=int, default=512, help="block size in samples the graph processes (default 512)")
    ap.add_argument("--out", default=None, help="output file (default: <model_dir>/../export/<variant>-b<block>.<ext>)")
    args = ap.parse_args(argv)
    path = export_model(args.model_dir, args.format, args.block, args.out)
    desc = json.loads(Path(str(path) + ".json").read_text())
    print(f"{path}: {desc['variant']} as {args.format}, blocks of {args.block} samples, "
          f"{desc['state_tensors']} state tensors (see {path}.json)")
    return 0


# --------------------------------------------------------------------------- the support table (docs)
TABLE_BEGIN, TABLE_END = "<!-- export:begin -->", "<!-- export:end -->"


def support_table(params: dict, n_knobs: int = 3) -> str:
    """Markdown: every variant, whether it exports to each format, and at which block sizes."""
    from nablafx.registry import build_model

    lines = ["| variant | family | TorchScript | ONNX | block sizes |", "|---|---|---|---|---|"]
    for name, spec in params["variants"].items():
        torch.manual_seed(0)
        model = build_model(spec, n_knobs=n_knobs, sample_rate=48000)
        clocks = _clocks(model)
        period = math.lcm(*[size for _, size in clocks]) if clocks else 1
        cells = []
        for fmt in ("torchscript", "onnx"):
            reasons = export_blockers(model, period, fmt)
            cells.append("yes" if not reasons else "no: " + reasons[0])
        kinds = sorted({what.split(" (")[0] for what, _ in clocks})
        if not clocks:
            sizes = "any"
        elif len({size for _, size in clocks}) == 1:
            sizes = f"multiples and divisors of {period} ({', '.join(kinds)})"
        else:  # several clocks: a divisor of one may not divide another
            sizes = f"multiples of {period} ({', '.join(kinds)})"
        lines.append(f"| {name} | {spec['family']} | {cells[0]} | {cells[1]} | {sizes} |")
    return "\n".join(lines)


def read_table(path: str | Path) -> str:
    text = Path(path).read_text()
    if TABLE_BEGIN not in text or TABLE_END not in text:
        raise ConfigError(f"{path}: no '{TABLE_BEGIN}' … '{TABLE_END}' section")
    inner = text.split(TABLE_BEGIN, 1)[1].split(TABLE_END, 1)[0]
    return "\n".join(line for line in inner.strip().splitlines() if not line.startswith("<!--")).strip()


def update_table(path: str | Path, table: str, command: str) -> None:
    import re

    path = Path(path)
    read_table(path)  # checks the markers
    body = f"{TABLE_BEGIN}\n<!-- generated by `{command}` -->\n\n{table}\n\n{TABLE_END}"
    text = re.sub(re.escape(TABLE_BEGIN) + ".*?" + re.escape(TABLE_END), lambda m: body, path.read_text(), flags=re.S)
    fileio.write_text_atomic(path, text)


if __name__ == "__main__":  # python -m nablafx.portable --table [--update docs/export.md]
    import sys

    from nablafx.config import load_params

    ap = argparse.ArgumentParser(description="the export support table of params.yaml's variants")
    ap.add_argument("--table", action="store_true", required=True)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--update", metavar="FILE")
    a = ap.parse_args()
    table = support_table(load_params(a.params))
    if a.update:
        update_table(a.update, table, "python -m nablafx.portable " + " ".join(sys.argv[1:]))
        print(f"{a.update}: export table updated")
    else:
        print(table)
