"""Comparison of experiments: rows from committed records (``reports/experiments/*.json``, made by
``nablafx record``) and from ``dvc exp show --json`` (what DVC knows of the workspace and its
experiments), merged into one sortable table for the page."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from nablafx.evaluation.table import COLUMNS, rows_from_exp_show, rows_from_records


def exp_show_rows(timeout_s: float = 120.0, cwd: str | Path = ".") -> tuple[list[dict], str | None]:
    """Rows from ``dvc exp show --json``, or ``([], why)`` when DVC or git cannot answer."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    beside = Path(sys.executable).with_name("dvc")  # the environment's own dvc, when PATH lacks it
    exe = shutil.which("dvc") or (str(beside) if beside.is_file() else "dvc")
    try:
        out = subprocess.run([exe, "exp", "show", "--json"], capture_output=True, text=True, timeout=timeout_s,
                             cwd=cwd, env=env, check=False)
    except FileNotFoundError:
        return [], "dvc is not on PATH"
    except subprocess.TimeoutExpired:
        return [], f"dvc exp show took more than {timeout_s:g} s"
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines()
        return [], f"dvc exp show failed: {lines[-1] if lines else out.returncode}"
    try:
        return rows_from_exp_show(json.loads(out.stdout)), None
    except (json.JSONDecodeError, AttributeError, TypeError) as err:
        return [], f"dvc exp show: unreadable output ({err})"


def record_rows(records_dir: str | Path) -> list[dict]:
    paths = sorted(Path(records_dir).glob("*.json")) if Path(records_dir).is_dir() else []
    return rows_from_records(paths) if paths else []


def comparison_rows(records: list[dict], exps: list[dict]) -> tuple[list[str], list[list]]:
    """Header and rows: every record (source ``record``) and every DVC experiment (source ``dvc``)."""
    cols = [c for c, _, _ in COLUMNS]
    header = ["experiment", "source"] + cols
    rows = [[r.get("experiment"), "record"] + [r.get(c) for c in cols] for r in records]
    rows += [[r.get("experiment"), "dvc exp"] + [r.get(c) for c in cols] for r in exps]
    return header, rows
