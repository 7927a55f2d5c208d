"""Data-parallel training through Lightning's DDP strategy, two CPU processes (gloo)."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nablafx.export import load_model

from ..conftest import params_with, tiny_prepared

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    root = tiny_prepared(tmp_path)
    params = params_with(
        model="tcn-tiny",
        data={"root": str(root), "device": "Fake-Drive", "val_seconds": 1.0, "guard_seconds": 0.25},
        train={"max_steps": 4, "batch_size": 2, "chunk_seconds": 0.1, "val_every_n_steps": 2,
               "accelerator": "cpu", "devices": 2, "strategy": "ddp", "num_nodes": 1},
        aliases={},
        variants={"tcn-tiny": {"family": "tcn", "channels": 4, "blocks": 2, "kernel_size": 3,
                               "dilation_growth": 2, "cond": "film"}},
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    res = subprocess.run(
        [sys.executable, str(REPO / "stages/train.py"), "--params", "params.yaml", "--index", "index.json",
         "--model-dir", "model", "--ckpt-dir", "ckpt", "--live-dir", "live"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "distributed_backend=gloo" in out and "All distributed processes registered" in out, out[-3000:]
    assert "4 steps" in res.stdout
    model, cfg = load_model(tmp_path / "model")
    assert cfg["steps"] == 4
