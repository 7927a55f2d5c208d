"""Speed of every black-box variant on the CPU, one thread.

    python benchmarks/bench_models.py                  # all lstm/tcn/gcn/s4 variants of params.yaml
    python benchmarks/bench_models.py tcn-45 s4-b4-s32-c16 --seconds 2
    python benchmarks/bench_models.py paper-tcn-45-s-16  # the 56 paper-* variants only when named

Writes ``benchmarks/results/models_cpu.{md,json}`` (or ``--out``).  Speed is given as the
real-time factor RTF = audio duration / processing time (RTF 10 = ten times faster than real
time), measured under ``torch.inference_mode`` in float32 with 3 knobs (conditioned variants):
offline (one call on ``--seconds`` of audio) and streaming in blocks of 64 and 512 samples
carrying the state (``--stream-seconds`` of audio).  Targets (issue 4), for variants whose
receptive field is ≤ 250 ms: block 512 > 10×, block 64 > 2×; S4 streaming cost ≤ 2× offline.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nablafx.config import load_params  # noqa: E402
from nablafx.provenance import record, write_results  # noqa: E402
from nablafx.registry import build_model  # noqa: E402

FAMILIES = ("lstm", "tcn", "gcn", "s4")
SR = 48000


def timed(fn, repeats: int) -> float:
    """Best time of ``repeats`` runs (after the warm-up the caller did).

    CPU time of this process (one thread: equals the wall time on an idle core); the wall time of
    the same runs is kept in ``WALL`` so a loaded machine shows up in the results.
    """
    best, best_wall = float("inf"), float("inf")
    for _ in range(repeats):
        t0, w0 = time.process_time(), time.perf_counter()
        fn()
        best = min(best, time.process_time() - t0)
        best_wall = min(best_wall, time.perf_counter() - w0)
    WALL.append(best_wall)
    return best


WALL: list[float] = []


def stream(model, x, knobs, block):
    state = model.init_state(x.shape[0], dtype=x.dtype)
    for start in range(0, x.shape[-1], block):
        _, state = model(x[..., start : start + block], knobs, state)


def bench_variant(name: str, spec: dict, seconds: float, stream_seconds: float, repeats: int) -> dict:
    torch.manual_seed(0)
    model = build_model(spec, n_knobs=3, sample_rate=SR).eval()
    g = torch.Generator().manual_seed(0)
    x = 0.3 * torch.randn(1, 1, int(seconds * SR), generator=g)
    xs = x[..., : int(stream_seconds * SR)]
    knobs = torch.rand(1, model.n_knobs, generator=g) if model.n_knobs else None
    rf = model.receptive_field
    core = getattr(model, "core_receptive_field", None)
    row = {
        "variant": name, "family": spec["family"], "cond": getattr(getattr(model, "cond", None), "kind", spec.get("cond", "concat")),
        "params": sum(p.numel() for p in model.parameters()),
        "receptive_field": rf, "receptive_field_ms": None if rf is None else 1000 * rf / SR,
        "core_receptive_field_ms": None if core is None else 1000 * core / SR,
    }
    with torch.inference_mode():
        model(x[..., :SR], knobs)  # warm-up (caches, allocator)
        t = timed(lambda: model(x, knobs), repeats)
        row["offline_rtf"] = seconds / t
        row["offline_rtf_wall"] = seconds / WALL[-1]
        for block in (64, 512):
            stream(model, xs[..., : block * 20], knobs, block)
            t = timed(lambda block=block: stream(model, xs, knobs, block), repeats)
            row[f"block{block}_rtf"] = stream_seconds / t
            row[f"block{block}_rtf_wall"] = stream_seconds / WALL[-1]
    bounded = core if core is not None else rf
    row["targeted"] = bounded is not None and 1000 * bounded / SR <= 250 or spec["family"] == "s4"
    misses = []
    if row["targeted"]:
        if row["block512_rtf"] <= 10:
            misses.append("block 512 ≤ 10×")
        if row["block64_rtf"] <= 2:
            misses.append("block 64 ≤ 2×")
        if spec["family"] == "s4" and row["offline_rtf"] <= 10:
            misses.append("offline ≤ 10×")
    if spec["family"] == "s4":
        ratio = row["offline_rtf"] / row["block512_rtf"]
        row["s4_stream512_vs_offline_cost"] = ratio
        row["s4_stream64_vs_offline_cost"] = row["offline_rtf"] / row["block64_rtf"]
        if ratio > 2:
            misses.append("S4 block-512 cost > 2× offline")
    row["misses"] = misses
    return row


def fmt_rf(r: dict) -> str:
    if r["receptive_field_ms"] is not None:
        return f"{r['receptive_field_ms']:.1f}"
    if r["core_receptive_field_ms"] is not None:
        return f"∞ (conv {r['core_receptive_field_ms']:.1f})"
    return "∞"


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Model speed on the CPU (one thread)",
        "",
        f"{meta['threads']} thread, float32, `torch.inference_mode`, batch 1, 3 knobs.",
        f"RTF = audio duration / processing time (higher is faster; 1 = real time). Offline: one call on "
        f"{meta['seconds']:g} s; streaming: {meta['stream_seconds']:g} s in blocks of 64 / 512 samples with state; "
        f"best of {meta['repeats']}. Times are the process's CPU time (one thread, so the wall time on an idle "
        f"core); the machine's load average was {meta['load_before']} before and {meta['load_after']} after "
        "the run, and wall-clock RTFs are in the json.",
        "Targets (variants with receptive field ≤ 250 ms, and S4): block 512 > 10×, block 64 > 2×; "
        "S4 streaming (block 512) costs ≤ 2× offline per sample.",
        "",
        "| variant | family | cond | params | rf ms | offline RTF | block 512 RTF | block 64 RTF | misses |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        miss = ", ".join(r["misses"]) if r["targeted"] else "(no target: rf > 250 ms)"
        if r.get("s4_stream512_vs_offline_cost") is not None:
            miss = (miss + "; " if miss else "") + f"stream/offline cost {r['s4_stream512_vs_offline_cost']:.2f}× (512), " \
                f"{r['s4_stream64_vs_offline_cost']:.2f}× (64)"
        lines.append(f"| {r['variant']} | {r['family']} | {r['cond']} | {r['params']:,} | {fmt_rf(r)} | "
                     f"{r['offline_rtf']:.1f} | {r['block512_rtf']:.1f} | {r['block64_rtf']:.1f} | {miss} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="*")
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--seconds", type=float, default=10.0, help="offline signal length")
    ap.add_argument("--stream-seconds", type=float, default=3.0, help="streamed signal length")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "models_cpu"),
                    help="output path without extension ('' to only print)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = load_params(args.params)["variants"]
    names = args.variants or [n for n, s in variants.items()
                              if s.get("family") in FAMILIES and not n.startswith("paper-")]
    load_before = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    used = {"args": {k: v for k, v in vars(args).items() if k != "out"}, "variants": {n: variants[n] for n in names}}
    prov = record(used)  # the commit the measured code came from, taken before measuring
    rows = []
    for name in names:
        row = bench_variant(name, variants[name], args.seconds, args.stream_seconds, args.repeats)
        rows.append(row)
        print(f"{name:22s} params {row['params']:7,d}  offline {row['offline_rtf']:7.1f}×  "
              f"block512 {row['block512_rtf']:7.1f}×  block64 {row['block64_rtf']:6.1f}×  {', '.join(row['misses'])}",
              flush=True)
    meta = {"load_before": load_before, "load_after": " / ".join(f"{v:.1f}" for v in os.getloadavg()),
            "threads": args.threads, "seconds": args.seconds, "stream_seconds": args.stream_seconds,
            "repeats": args.repeats}
    if args.out:
        write_results(args.out, markdown(rows, meta), {"meta": meta, "rows": rows}, provenance=prov)
        print(f"wrote {args.out}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
