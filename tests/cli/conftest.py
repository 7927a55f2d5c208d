"""A model trained by the shipped pipeline's code (prepare + train stages, a few steps on the tiny
synthetic dataset), once per test session, and a way to run the ``nablafx`` command on it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nablafx.progress import ENV_EVERY as PROGRESS_ENV
from nablafx.utils import run_stage

from ..conftest import make_tiny_dataset, params_with

TINY_TCN = {"family": "tcn", "channels": 4, "blocks": 2, "kernel_size": 3, "dilation_growth": 4,
            "activation": "tanh", "cond": "film"}


def tiny_params(root: Path) -> dict:
    return params_with(
        model="tcn-tiny",
        data={"root": str(root), "device": "Fake-Drive", "val_seconds": 1.0, "guard_seconds": 0.25,
              "max_latency_samples": 2},
        train={"max_steps": 4, "batch_size": 2, "chunk_seconds": 0.1, "val_every_n_steps": 2,
               "context_samples": -1, "lr": 0.01, "accelerator": "cpu"},
        aliases={"tcn": "tcn-tiny"},
        variants={"tcn-tiny": TINY_TCN},
    )


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory) -> Path:
    """A working folder holding params.yaml, the data (with knob names in metadata.json),
    artifacts/model trained by the train stage, and reports/ from the test stage."""
    from stages import prepare as prepare_stage
    from stages import test as test_stage
    from stages import train as train_stage

    base = tmp_path_factory.mktemp("cli")
    make_tiny_dataset(base / "data")
    (base / "data/metadata.json").write_text(json.dumps(
        {"devices": {"Fake-Drive": {"knobs": {"D": {"name": "Drive"}, "T": {"name": "Tone"}}}}}))
    (base / "params.yaml").write_text(yaml.safe_dump(tiny_params(base / "data")))
    cwd = os.getcwd()
    os.chdir(base)
    logs = {}
    try:
        assert run_stage(prepare_stage.main, []) == 0
        # the stages' progress lines, as a log (not a terminal) would get them: one per report
        os.environ[PROGRESS_ENV] = "1e-9"
        for name, stage in (("train", train_stage), ("test", test_stage)):
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                assert run_stage(stage.main, []) == 0
            logs[name] = err.getvalue()
    finally:
        os.environ.pop(PROGRESS_ENV, None)
        os.chdir(cwd)
    (base / "stage_stderr.json").write_text(json.dumps(logs))
    return base


def nablafx(*args, cwd, env=None, timeout=600) -> subprocess.CompletedProcess:
    """Run the ``nablafx`` command (``python -m nablafx.cli``) as a separate process."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "nablafx.cli", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
