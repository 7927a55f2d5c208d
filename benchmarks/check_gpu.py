"""Every black-box variant on a CUDA GPU: streaming equals offline, gradients, speed.

    python benchmarks/check_gpu.py --out benchmarks/results/models_gpu

For each lstm/tcn/gcn/s4 variant of params.yaml (the ``paper-*`` ones only when named; 3 knobs,
float32): the offline output against
streaming in blocks of 512 and 4096 (TF32 off, relative to the RMS; also with TF32 on, as
training on Ampere+/Hopper runs by default); a training-like step (batch 16 × 1 s, forward +
backward) and its time; offline real-time factor on 10 s (batch 1) and streaming RTF at block
512.  Also the rational activation on the GPU against the CPU.  Writes ``<out>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nablafx.config import load_params  # noqa: E402
from nablafx.nn.rational import Rational  # noqa: E402
from nablafx.provenance import write_results  # noqa: E402
from nablafx.registry import build_model  # noqa: E402
from nablafx.streaming import process_in_blocks  # noqa: E402

SR = 48000


def sync_time(fn, repeats=3):
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def rel(a, b):
    return float((a - b).abs().max() / b.pow(2).mean().sqrt().clamp_min(1e-12))


def check(name, spec, dev):
    torch.manual_seed(0)
    model = build_model(spec, n_knobs=3, sample_rate=SR).to(dev).eval()
    core = getattr(model, "core_receptive_field", None) or model.receptive_field or 1
    n = min(core + 5000, 130000)
    g = torch.Generator(device="cpu").manual_seed(1)
    x = (0.3 * torch.randn(2, 1, n, generator=g)).to(dev)
    knobs = torch.rand(2, model.n_knobs, generator=g).to(dev) if model.n_knobs else None
    row = {"variant": name, "family": spec["family"], "params": sum(p.numel() for p in model.parameters())}
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        with torch.no_grad():
            y = model(x, knobs)[0]
            for block in (512, 4096):
                row[f"stream{block}_err{'_tf32' if tf32 else ''}"] = rel(process_in_blocks(model, x, knobs, block), y)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    # training-like step
    model.train()
    xb = 0.3 * torch.randn(16, 1, SR, device=dev)
    kb = torch.rand(16, model.n_knobs, device=dev) if model.n_knobs else None

    def step():
        model.zero_grad(set_to_none=True)
        out = model(xb, kb)[0]
        out.pow(2).mean().backward()

    row["train_step_ms"] = 1000 * sync_time(step, 2)
    row["grads_finite"] = all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in model.parameters())
    model.eval()
    x10 = 0.3 * torch.randn(1, 1, 10 * SR, device=dev)
    k1 = knobs[:1] if knobs is not None else None
    with torch.inference_mode():
        row["offline_rtf"] = 10 / sync_time(lambda: model(x10, k1), 2)
        x2 = x10[..., : 2 * SR]
        row["block512_rtf"] = 2 / sync_time(lambda: process_in_blocks(model, x2, k1, 512), 1)
    return row


def write_gpu_results(rows: list[dict], meta: dict, out: Path, used: dict) -> None:
    lines = [f"# Black-box variants on the GPU ({meta['gpu']}, torch {meta['torch']})", "",
             "Float32, 3 knobs. Streaming error = max |streamed − "
             "offline| / RMS(offline) with TF32 off (and on). Train step: batch 16 × 1 s, forward + backward. "
             f"Rational activation GPU vs CPU: max abs difference {meta['rational_gpu_vs_cpu_max_abs']:.1e}.", "",
             "| variant | params | err 512 | err 4096 | err 512 TF32 | train step ms | offline RTF (10 s) | block 512 RTF |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['variant']} | error: {r['error']} | | | | | | |")
            continue
        lines.append(f"| {r['variant']} | {r['params']:,} | {r['stream512_err']:.1e} | {r['stream4096_err']:.1e} | "
                     f"{r['stream512_err_tf32']:.1e} | {r['train_step_ms']:.0f} | {r['offline_rtf']:.0f} | "
                     f"{r['block512_rtf']:.1f} |")
    write_results(out, "\n".join(lines), {"meta": meta, "rows": rows}, params=used)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="*")
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "models_gpu"))
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device")
        return 1
    dev = torch.device("cuda")
    variants = load_params(args.params)["variants"]
    names = args.variants or [n for n, s in variants.items()
                              if s.get("family") in ("lstm", "tcn", "gcn", "s4") and not n.startswith("paper-")]
    xr = torch.linspace(-4, 4, 801)
    rational_err = float((Rational().to(dev)(xr.to(dev)).cpu() - Rational()(xr)).abs().max())
    rows = []
    for name in names:
        try:
            row = check(name, variants[name], dev)
        except Exception as err:  # report and go on
            row = {"variant": name, "error": f"{type(err).__name__}: {err}"}
        rows.append(row)
        print(json.dumps(row), flush=True)
    meta = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "rational_gpu_vs_cpu_max_abs": rational_err}
    write_gpu_results(rows, meta, Path(args.out), {"variants": {n: variants[n] for n in names}})
    bad = [r["variant"] for r in rows if "error" in r or r["stream512_err"] > 1e-5 or r["stream4096_err"] > 1e-5
           or not r["grads_finite"]]
    print("FAILED: " + ", ".join(bad) if bad else "all variants ok on the GPU")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
