"""GPU check of the real training path: every family trains through `run_training`
(Lightning, accelerator=gpu) on the shipped data, in float32 and bf16 mixed precision, and is
scored on the test passages.  Writes <out>/gpu_training.{json,md}.

    python benchmarks/gpu_check.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = ["lstm-32", "tcn-45-film", "gcn-45-film", "s4-film-b4-s32-c16", "s4-tvf-b8-s32-c16", "gb-dist-cond"]


def score(model, index) -> dict:
    """ESR and MAE over the test passages, whole passages offline (CPU)."""
    import torch

    from nablafx.data.audio import read_audio

    err = tgt = abs_err = n = 0.0
    with torch.no_grad():
        for it in (i for i in index["items"] if i["split"] == "test"):
            x = torch.from_numpy(read_audio(it["dry"], index["sample_rate"]))[None, None]
            y = torch.from_numpy(read_audio(it["wet"], index["sample_rate"]))[None, None]
            k = torch.tensor([it["knobs"]]) if model.n_knobs else None
            e = (model(x, k)[0] - y).double()
            err, tgt = err + float((e**2).sum()), tgt + float((y.double() ** 2).sum())
            abs_err, n = abs_err + float(e.abs().sum()), n + y.shape[-1]
    return {"esr": err / tgt, "mae": abs_err / n}


def main(argv=None):
    import torch

    from nablafx.config import load_params
    from nablafx.data.prepare import prepare_device
    from nablafx.export import load_model
    from nablafx.training.train import run_training
    from nablafx.utils import write_json

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--accelerator", default="gpu")
    ap.add_argument("--variants", nargs="*", default=VARIANTS)
    ap.add_argument("--precisions", nargs="*", default=["32-true", "bf16-mixed"])
    args = ap.parse_args(argv)
    out = Path(args.out)
    work = Path("/tmp/nablafx_gpu")
    work.mkdir(parents=True, exist_ok=True)
    params = load_params(ROOT / "params.yaml")
    d = params["data"]
    index = prepare_device(ROOT / d["root"], d["device"], d["dry_dir"], d["sample_rate"], d["val_seconds"],
                           d["guard_seconds"], d["max_latency_samples"])
    write_json(work / "index.json", index)
    rows = []
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    for variant in args.variants:
        for precision in args.precisions:
            p = {**params, "model": variant,
                 "train": {**params["train"], "accelerator": args.accelerator, "precision": precision, "max_steps": args.steps,
                           "batch_size": 16, "chunk_seconds": 2.0, "val_every_n_steps": args.steps, "resume": "off"}}
            tag = f"{variant}_{precision}"
            try:
                t0 = time.perf_counter()
                info = run_training(p, work / "index.json", work / tag / "model", work / tag / "ckpt", live_dir=None)
                wall = time.perf_counter() - t0
                model, _ = load_model(work / tag / "model")
                res = score(model, index)
                rows.append({"variant": variant, "precision": precision, "steps": info["steps"],
                             "train_seconds": info["train_seconds"], "wall_seconds": round(wall, 1),
                             "s_per_step": round(info["train_seconds"] / max(1, info["steps"]), 4),
                             "accelerator": info["accelerator"], "test_esr": round(res["esr"], 4),
                             "test_mae": round(res["mae"], 5)})
            except Exception as err:  # record and go on: the table says which failed and why
                rows.append({"variant": variant, "precision": precision, "error": f"{type(err).__name__}: {err}"[:300]})
            print(json.dumps(rows[-1]), flush=True)
            write(out, rows, gpu, torch.__version__, args.steps, d["device"], params)


def write(out, rows, gpu, torch_version, steps, device, params):
    from nablafx.provenance import write_results

    meta = {"gpu": gpu, "torch": torch_version, "steps": steps, "batch": "16 × 2 s", "device_data": device,
            "loss": params["train"]["loss"]}
    lines = [f"# Training on {gpu} through `run_training` (Lightning), {steps} steps of 16 × 2 s on {device}", "",
             "s/step includes validation and checkpointing; test ESR after this short run (CPU evaluation).", "",
             "| variant | precision | s/step | train s | test ESR | test MAE |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['variant']} | {r['precision']} | error: {r['error']} | | | |")
        else:
            lines.append(f"| {r['variant']} | {r['precision']} | {r['s_per_step']} | {r['train_seconds']} | "
                         f"{r['test_esr']} | {r['test_mae']} |")
    write_results(Path(out) / "gpu_training", "\n".join(lines), {"meta": meta, "rows": rows}, params=params)


if __name__ == "__main__":
    main()
