"""Determinism, said precisely: the same short training run twice on this machine (CPU, same thread
count, separate processes) gives bit-identical weights, training logs and test metrics.

What holds across machines or thread counts is a measured statement in the README, not a test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ..conftest import make_tiny_dataset, params_with

REPO = Path(__file__).resolve().parents[2]


def _params(data_root: Path) -> dict:
    return params_with(
        model="tcn-tiny", aliases={},
        variants={"tcn-tiny": {"family": "tcn", "channels": 4, "blocks": 2, "kernel_size": 3,
                               "dilation_growth": 2, "activation": "tanh", "cond": "film"}},
        data={"root": str(data_root), "device": "Fake-Drive", "val_seconds": 1.0, "guard_seconds": 0.25},
        train={"max_steps": 6, "batch_size": 2, "chunk_seconds": 0.1, "val_every_n_steps": 3,
               "accelerator": "cpu", "resume": "off"})


def _run_stage(script: str, args: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "random"}
    res = subprocess.run([sys.executable, str(REPO / "stages" / script), *args], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{script}: {res.stderr[-2000:]}"


def _one_run(base: Path, tag: str) -> Path:
    work = base / tag
    work.mkdir()
    (work / "params.yaml").write_text(yaml.safe_dump(_params(base / "data"), sort_keys=False))
    _run_stage("prepare.py", ["--params", "params.yaml", "--out", "index.json", "--report", "prepare.json"], work)
    _run_stage("train.py", ["--params", "params.yaml", "--index", "index.json", "--model-dir", "model",
                            "--ckpt-dir", "ckpt", "--live-dir", "live"], work)
    _run_stage("test.py", ["--params", "params.yaml", "--index", "index.json", "--model-dir", "model",
                           "--metrics", "metrics.json", "--per-knob", "per_knob.csv", "--pred-dir", "pred"], work)
    return work


def _logged(work: Path) -> dict[str, list[str]]:
    """Every dvclive series as rows without the wall-clock column (the only thing allowed to differ)."""
    out = {}
    for tsv in sorted((work / "live" / "plots" / "metrics").rglob("*.tsv")):
        lines = tsv.read_text().splitlines()
        cols = lines[0].split("\t")
        keep = [i for i, c in enumerate(cols) if c != "timestamp"]
        out[str(tsv.relative_to(work))] = ["\t".join(r.split("\t")[i] for i in keep) for r in lines]
    return out


@pytest.mark.slow
def test_two_runs_are_bit_identical(tmp_path):
    make_tiny_dataset(tmp_path / "data", seconds=(3.0, 1.0))
    a, b = _one_run(tmp_path, "a"), _one_run(tmp_path, "b")
    wa = torch.load(a / "model" / "model.pt", weights_only=True)
    wb = torch.load(b / "model" / "model.pt", weights_only=True)
    wa = wa.get("state_dict", wa)
    wb = wb.get("state_dict", wb)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), f"weights differ: {name}"
    assert (a / "metrics.json").read_bytes() == (b / "metrics.json").read_bytes()
    assert (a / "per_knob.csv").read_bytes() == (b / "per_knob.csv").read_bytes()
    assert (a / "live" / "metrics.json").read_bytes() == (b / "live" / "metrics.json").read_bytes()
    logs = _logged(a)
    assert logs and logs == _logged(b)
    preds = sorted(p.relative_to(a) for p in (a / "pred").rglob("*") if p.is_file())
    assert preds and all((a / p).read_bytes() == (b / p).read_bytes() for p in preds)
