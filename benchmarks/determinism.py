"""How far a training result moves with the thread count (and whether it moves at all on one machine).

    python benchmarks/determinism.py                 # default variant, 200 steps, threads 2, 2, 1
    python benchmarks/determinism.py --steps 100 --threads 1 1 2 4

Runs the real stages (prepare once, then train + test per entry of ``--threads``) on the shipped
data with params.yaml's settings except the step budget, each in its own process with
``OMP_NUM_THREADS`` set, and writes ``benchmarks/results/determinism.{md,json}``: per run the test
ESR/MAE and the largest weight difference from the first run. Run it on another machine and compare
the JSON files to see what moves across machines.
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nablafx.provenance import record, write_results  # noqa: E402


def stage(script: str, args: list[str], cwd: Path, threads: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    res = subprocess.run([sys.executable, str(ROOT / "stages" / script), *args], cwd=cwd, env=env,
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"{script} failed:\n{res.stderr[-2000:]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 2, 1])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "determinism"))
    args = ap.parse_args(argv)
    params = copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text()))
    params["data"]["root"] = str(ROOT / params["data"]["root"])
    params["train"].update(max_steps=args.steps, val_every_n_steps=min(args.steps, params["train"]["val_every_n_steps"]),
                           accelerator="cpu", resume="off")
    used = {"args": {"steps": args.steps, "threads": args.threads}, "params": params}
    prov = record(used)  # the commit the measured code came from, taken before measuring
    rows, first = [], None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        stage("prepare.py", ["--params", "params.yaml", "--out", "index.json", "--report", "prepare.json"], work, 1)
        for i, threads in enumerate(args.threads):
            run = f"run{i}"
            stage("train.py", ["--params", "params.yaml", "--index", "index.json", "--model-dir", f"{run}/model",
                               "--ckpt-dir", f"{run}/ckpt", "--live-dir", f"{run}/live"], work, threads)
            stage("test.py", ["--params", "params.yaml", "--index", "index.json", "--model-dir", f"{run}/model",
                              "--metrics", f"{run}/metrics.json", "--per-knob", f"{run}/per_knob.csv",
                              "--pred-dir", f"{run}/pred"], work, threads)
            weights = torch.load(work / run / "model" / "model.pt", weights_only=True)
            weights = weights.get("state_dict", weights)
            metrics = yaml.safe_load((work / run / "metrics.json").read_text())["test"]
            if first is None:
                first = (weights, metrics)
            max_diff = max(float((weights[k].double() - first[0][k].double()).abs().max()) for k in weights)
            rows.append({"run": i, "threads": threads, "test_esr": metrics["esr"], "test_mae": metrics["mae"],
                         "test_mrstft": metrics["mrstft"], "max_weight_diff_vs_run0": max_diff,
                         "bit_identical_to_run0": max_diff == 0.0})
            print(rows[-1], flush=True)
    base = rows[0]
    lines = [f"# Determinism: {params['model']}, {args.steps} steps on {params['data']['device']}, CPU", "",
             "Each run is prepare (shared) → train → test in fresh processes with `OMP_NUM_THREADS` set; "
             "ESR change is relative to run 0.", "",
             "| run | threads | test ESR | ΔESR vs run 0 | test MAE | max weight diff vs run 0 | bit-identical |",
             "|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        rel = (r["test_esr"] - base["test_esr"]) / base["test_esr"]
        lines.append(f"| {r['run']} | {r['threads']} | {r['test_esr']:.6f} | {100 * rel:+.2f} % | {r['test_mae']:.6f} | "
                     f"{r['max_weight_diff_vs_run0']:.2e} | {'yes' if r['bit_identical_to_run0'] else 'no'} |")
    write_results(args.out, "\n".join(lines), {"rows": rows}, provenance=prov)
    print(f"wrote {args.out}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
