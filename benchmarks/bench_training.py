"""Training throughput per family: one optimiser step on batch 16 × 3 s, L1 + MR-STFT, AdamW.

    python benchmarks/bench_training.py                       # CPU, 2 threads
    python benchmarks/bench_training.py --device cuda --precision bf16-mixed

Each variant runs in its own process (so its peak memory is its own), with the receptive
field as extra leading context as in training.  Writes benchmarks/results/training_<device>.{json,md}
with seconds per step, audio-seconds trained per wall-second and peak memory. No reference
timing is typed in here: a comparison with the reference implementation must run both in one run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VARIANTS = ["lstm-32", "tcn-45", "tcn-250", "tcn-250-tvf", "gcn-250-film", "s4-b8-s32-c16",
                    "s4-tvf-b8-s32-c16", "gb-dist-cond"]


def one(variant: str, device: str, precision: str, batch: int, seconds: float, steps: int, threads: int) -> dict:
    import torch

    from nablafx.config import load_params
    from nablafx.registry import build_model, resolve_variant
    from nablafx.training.losses import WeightedLoss

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    params = load_params(ROOT / "params.yaml")
    _, spec = resolve_variant(params, variant)
    model = build_model(spec, n_knobs=2).to(device)
    loss_fn = WeightedLoss({"l1": 0.5, "mrstft": 0.5}).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rf = model.receptive_field
    context = 2048 if rf is None else rf - 1
    n = int(seconds * 48000)
    x = (0.3 * torch.randn(batch, 1, n + context)).to(device)
    y = torch.tanh(3 * x)[..., context:]
    knobs = torch.rand(batch, 2, device=device)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None):
            y_hat, _ = model(x, knobs if model.n_knobs else None)
        loss, _ = loss_fn(y_hat[..., context:].float(), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        return float(loss)

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step()  # warm-up
    sync()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - t0)
    best = min(times)
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"variant": variant, "params": sum(p.numel() for p in model.parameters()),
            "s_per_step": round(best, 4), "s_per_step_median": round(sorted(times)[len(times) // 2], 4),
            "audio_s_per_s": round(batch * seconds / best, 2), "peak_mem_mb": round(peak / 2**20, 1),
            "loss_finite": bool(loss == loss)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="32-true")
    ap.add_argument("--variants", nargs="*", default=DEFAULT_VARIANTS)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one, args.device, args.precision, args.batch, args.seconds, args.steps, args.threads)))
        return
    rows = []
    for v in args.variants:
        cmd = [sys.executable, __file__, "--one", v, "--device", args.device, "--precision", args.precision,
               "--batch", str(args.batch), "--seconds", str(args.seconds), "--steps", str(args.steps),
               "--threads", str(args.threads)]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
        if res.returncode != 0:
            rows.append({"variant": v, "error": (res.stderr.strip().splitlines() or ["?"])[-1]})
        else:
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    tag = args.device if args.precision == "32-true" else f"{args.device}_{args.precision}"
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"training_{tag}")
    meta = {"device": args.device, "precision": args.precision, "batch": args.batch, "seconds": args.seconds,
            "threads": args.threads, "loss": "0.5 L1 + 0.5 MR-STFT", "optimizer": "AdamW"}
    lines = [f"# Training throughput ({args.device}, {args.precision}, batch {args.batch} × {args.seconds} s, "
             f"{args.threads} threads)", "",
             "| variant | params | s/step | audio s/s | peak MB |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['variant']} | error: {r['error']} | | | |")
            continue
        lines.append(f"| {r['variant']} | {r['params']} | {r['s_per_step']} | {r['audio_s_per_s']} | {r['peak_mem_mb']} |")
    used = {"args": {k: val for k, val in vars(args).items() if k not in ("out", "one")}}
    from nablafx.provenance import write_results

    write_results(out, "\n".join(lines), {"meta": meta, "rows": rows}, params=used)
    print(f"wrote {out}.md")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
