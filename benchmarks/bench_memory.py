"""Peak training memory of every paper variant under the paper recipe, one process per variant.

    python benchmarks/bench_memory.py                      # every paper-* variant (recipe=paper)
    python benchmarks/bench_memory.py paper-lstm-96 paper-s4-b8-s32-c16
    python benchmarks/bench_memory.py --quick              # smoke test: 3 variants, batch 2 × 0.25 s

Each variant runs in a child process (``--threads`` torch threads, default 2) that builds it as the
train stage does (:func:`nablafx.training.train.build_from_params` with ``model=<variant>`` and
``recipe=paper``: its own ``lr`` and ``tbptt_samples``, the recipe's batch, chunk and loss) and takes
``--steps`` training steps (default 1) on seeded noise with the train stage's step:
:func:`nablafx.training.system.tbptt_backward` (truncated back-propagation in the variant's segments,
or the whole chunk), clipping as the recipe says, one AdamW step.  Measured: the child's peak resident
set (``ru_maxrss``) and, for comparison, its resident set after building the model (the imports'
and model's share), and the seconds of the step.

The side-by-side step with the reference (:mod:`benchmarks.bench_training`) runs nine of the
papers' configurations with full back-propagation on both sides; this file covers every paper
variant the way it trains here.  Writes ``benchmarks/results/memory_cpu{,_quick}.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_KNOBS = 3
LIMIT_GB = 8.0  # the target: every paper variant trains at 16 × 3 s within 8 GB of RAM on CPU
QUICK = ("paper-lstm-32", "paper-tcn-45-s-16", "paper-s4-b4-s32-c16")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(variant: str, a) -> dict:
    """One variant's training steps, in this process; returns its measurements."""
    import torch

    from nablafx import allocator

    # as run_training: before any large tensor, so before importing lightning (through the training
    # system), whose import allocates one and so fixes PyTorch's huge-page switch
    training_heap = allocator.use_training_heap()
    from nablafx.config import load_params, train_config
    from nablafx.training.losses import WeightedLoss
    from nablafx.training.system import clip_gradients, tbptt_backward
    from nablafx.training.train import apply_training_keys, build_from_params, context_for

    huge_pages = allocator.huge_pages_in_use()  # before the steps: afterwards the heap serves the probe from pages it holds
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    params = load_params(ROOT / "params.yaml")
    params = {**params, "model": variant, "recipe": "paper"}
    _, model, overrides = build_from_params(params, N_KNOBS, a.sample_rate)
    tcfg = apply_training_keys(train_config(params), overrides)  # as run_training: the paper recipe, then the variant's keys
    batch = a.batch or tcfg.batch_size
    n = int(round((a.seconds or tcfg.chunk_seconds) * a.sample_rate))
    context = context_for(model, tcfg)
    g = torch.Generator().manual_seed(0)
    x = 0.3 * torch.randn(batch, 1, context + n, generator=g)
    y = torch.tanh(3 * x)
    knobs = torch.rand(batch, N_KNOBS, generator=g)
    loss_fn = WeightedLoss(tcfg.loss, sample_rate=a.sample_rate, pre_emphasis=tcfg.pre_emphasis)
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    built_mb = _rss_mb()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        tbptt_backward(model, loss_fn, x, y, knobs, context, tcfg.tbptt_samples)
        clip_gradients(model.parameters(), tcfg.grad_clip, tcfg.grad_clip_algorithm)
        opt.step()
        times.append(time.perf_counter() - t0)
    return {"variant": variant, "family": model.__class__.__name__, "batch": batch, "samples": n, "context": context,
            "tbptt": tcfg.tbptt_samples, "loss": sorted(tcfg.loss), "params": sum(p.numel() for p in model.parameters()),
            "training_heap": training_heap, "huge_pages": huge_pages,
            "heap_trim": allocator.enabled(), "heap_trim_above_gib": round(allocator.trim_above() / 2**30, 3),
            "recompute": getattr(model, "recompute", None),
            "built_rss_mb": round(built_mb, 1), "step_s": [round(t, 3) for t in times],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def run_child(variant: str, a) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--threads", str(a.threads), "--steps", str(a.steps),
           "--sample-rate", str(a.sample_rate)]
    if a.batch:
        cmd += ["--batch", str(a.batch)]
    if a.seconds:
        cmd += ["--seconds", str(a.seconds)]
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=a.timeout)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        return {"variant": variant, "error": (lines[-1] if lines else f"exit status {proc.returncode}")[:300]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _trim_text(rows: list[dict]) -> str:
    seen = {(r.get("heap_trim"), r.get("heap_trim_above_gib")) for r in rows if "error" not in r}
    if len(seen) > 1:
        return "mixed (see the JSON rows)"
    if not seen:
        return "—"
    ((on, above),) = seen
    if not on:
        return "no (not glibc, or NABLAFX_HEAP_TRIM=0)"
    if above is None:
        return "yes, every variant (threshold: that commit's `nablafx.allocator.TRIM_ABOVE`)"
    return f"yes, every variant, while the process's resident set is ≥ {above:g} GiB"


def _heap_text(rows: list[dict]) -> str:
    seen = {(r.get("training_heap"), r.get("huge_pages")) for r in rows if "error" not in r}
    if len(seen) != 1:
        return "mixed (see the JSON rows)" if seen else "—"
    ((heap, huge),) = seen
    if heap is None:
        return "not recorded (before the setting existed)"
    return (("yes" if heap else "no (not glibc, or NABLAFX_TRAINING_HEAP=0)")
            + ("; huge pages in use" if huge else "; huge pages not in use"))


def markdown(data: dict) -> str:
    over = [r for r in data["rows"] if "error" not in r and r["peak_rss_mb"] / 1024 > LIMIT_GB]
    failed = [r for r in data["rows"] if "error" in r]
    lines = [
        "# Training memory of the paper variants (CPU)",
        "",
        f"One process per variant, {data['threads']} torch threads, the paper recipe (batch × chunk as listed, the "
        "variant's own `tbptt_samples`, the recipe's loss), 3 knobs, seeded noise; "
        f"{data['steps']} training step(s) as the train stage takes them (`tbptt_backward`, clipping, AdamW). "
        "Peak RSS: the process's maximum resident memory (imports and model included; 'after build' is the "
        f"resident set before the first step). Target: ≤ {LIMIT_GB:g} GB.",
        "",
        "Heap given back after each training segment and S4 block (`nablafx.allocator`, glibc `malloc_trim`), forward and "
        "backward: " + _trim_text(data["rows"]) + ". Large tensors kept in the heap, on huge pages, as training does "
        "(`nablafx.allocator.use_training_heap`): " + _heap_text(data["rows"]) + ". `recompute`: the model's option (TCN, GCN, LSTM), as the variant sets it.",
        "",
        f"**{len(data['rows']) - len(over) - len(failed)} of {len(data['rows'])} variants within {LIMIT_GB:g} GB**"
        + (f"; above it: {', '.join(r['variant'] for r in over)}" if over else "")
        + (f"; failed: {', '.join(r['variant'] for r in failed)}" if failed else "") + ".",
        "",
        *([f"**Partial: {len(data['rows'])} of {data['planned']} variants measured.**", ""]
          if not data.get("complete") else []),
        "| variant | params | batch × samples (+ context) | TBPTT segment | recompute | after build GB | peak RSS GB | step s |",
        "|---|---:|---|---:|---|---:|---:|---:|",
    ]
    for r in data["rows"]:
        if "error" in r:
            lines.append(f"| {r['variant']} | — | — | — | — | — | error: {r['error']} | — |")
            continue
        seg = r["tbptt"] or "whole chunk"
        rec = r.get("recompute")
        rec = "—" if rec is None else str(rec).lower()
        lines.append(f"| {r['variant']} | {r['params']:,} | {r['batch']} × {r['samples']} (+ {r['context']}) | {seg} | {rec} | "
                     f"{r['built_rss_mb'] / 1024:.2f} | {r['peak_rss_mb'] / 1024:.2f} | {max(r['step_s']):.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="*")
    ap.add_argument("--quick", action="store_true", help=f"smoke test: {', '.join(QUICK)} at batch 2 × 0.25 s")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--batch", type=int, default=None, help="default: the paper recipe's")
    ap.add_argument("--seconds", type=float, default=None, help="chunk seconds; default: the paper recipe's")
    ap.add_argument("--sample-rate", type=int, default=48000)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per variant")
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.quick:
        a.batch, a.seconds = a.batch or 2, a.seconds or 0.25
    if a.child:
        print(json.dumps(child(a.child, a)), flush=True)
        return 0

    from nablafx.config import load_params
    from nablafx.provenance import record, write_results

    params = load_params(ROOT / "params.yaml")
    known = params["variants"]
    names = a.variants or (list(QUICK) if a.quick else [v for v in known if v.startswith("paper-")])
    unknown = [v for v in names if v not in known]
    if unknown:
        raise SystemExit(f"unknown variant(s): {', '.join(unknown)} (params.yaml: variants)")
    out = Path(a.out or ROOT / f"benchmarks/results/memory_cpu{'_quick' if a.quick else ''}")
    prov = record(params)
    data = {"threads": a.threads, "steps": a.steps, "limit_gb": LIMIT_GB, "planned": len(names), "rows": [],
            "complete": False}
    t0 = time.perf_counter()
    for name in names:
        row = run_child(name, a)
        data["rows"].append(row)
        shown = row.get("error") or f"peak {row['peak_rss_mb'] / 1024:.2f} GB, step {max(row['step_s']):.1f} s"
        print(f"{name:28s} {shown}  [{time.perf_counter() - t0:.0f} s]", flush=True)
        data["complete"] = len(data["rows"]) == len(names)
        data["wall_seconds"] = round(time.perf_counter() - t0, 1)
        write_results(out, markdown(data), data, provenance=prov)  # after every variant: a stopped run keeps its rows
    print(f"wrote {out}.md/.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
