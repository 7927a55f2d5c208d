"""The whole DVC pipeline on a fresh copy of the repo, with a tiny training budget (slow): `dvc repro`,
then `dvc exp run -S model=<other> -S recipe=<another>` and what `dvc exp show` / `dvc params diff`
report."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(cmd, cwd, env):
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def _copy_repo(dst: Path):
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\0")
    for f in filter(None, files):
        src = REPO / f
        if src.is_file() and not f.startswith("data/"):
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)


def _metrics(exp_show: list) -> dict:
    """{(rev or exp name): test metrics} from `dvc exp show --json`."""
    found = {}

    def walk(entries):
        for e in entries:
            data = (e.get("data") or {})
            m = ((data.get("metrics") or {}).get("reports/metrics.json") or {}).get("data")
            params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
            if m:
                found[e.get("name") or data.get("rev") or e.get("rev")] = (params.get("model"), m)
            for exp in e.get("experiments") or []:
                walk(exp.get("revs") or [])

    walk(exp_show)
    return found


def _effective(exp_show: list) -> dict:
    """{(rev or exp name): (recipe, effective train settings)} from `dvc exp show --json`."""
    found = {}

    def walk(entries):
        for e in entries:
            params = ((e.get("data") or {}).get("params") or {})
            doc = (params.get("dvclive/train/effective_params.yaml") or {}).get("data")
            if doc:
                found[e.get("name") or e.get("rev")] = (doc["recipe"], doc["train"])
            for exp in e.get("experiments") or []:
                walk(exp.get("revs") or [])

    walk(exp_show)
    return found


@pytest.mark.slow
def test_dvc_repro_then_exp_run_other_variant(tmp_path):
    work = tmp_path / "repo"
    work.mkdir()
    _copy_repo(work)
    # PYTHONPATH: the copy's own nablafx, not the editable install of this checkout
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(work),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["train"].update(max_steps=4, batch_size=2, chunk_seconds=0.5, val_every_n_steps=2)
    params["recipes"]["tiny"] = {"max_steps": 2, "lr_schedule": "plateau"}
    params["cost"].update(audio_seconds=0.1, frame_sizes=[64, 4096], repeats=1)
    base_model = params["model"]
    other = "tcn" if params["aliases"].get("tcn") != base_model and base_model != "tcn" else "lstm"
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # the shipped remote (dvc-store/, tracked by git) came with the copy: pull needs no network
    assert (work / "dvc-store").is_dir()
    _run(["git", "init", "-q"], work, env)
    _run(["git", "add", "-A"], work, env)
    _run(["git", "commit", "-qm", "copy"], work, env)
    _run(["dvc", "pull", "-q", "data.dvc"], work, env)
    out = _run(["dvc", "repro"], work, env)
    assert "nablafx report" in out
    metrics = json.loads((work / "reports/metrics.json").read_text())
    assert metrics["test"]["passages"] > 0 and metrics["test"]["esr"] > 0
    # right after, nothing to do
    again = _run(["dvc", "repro"], work, env)
    assert "didn't change, skipping" in again and "Running stage" not in again
    _run(["git", "add", "-A"], work, env)
    _run(["git", "commit", "-qm", "baseline run"], work, env)
    _run(["dvc", "exp", "run", "-S", f"model={other}", "-S", "recipe=tiny"], work, env)
    exp_show = json.loads(_run(["dvc", "exp", "show", "--json"], work, env))
    shown = _metrics(exp_show)
    models = {m for m, _ in shown.values()}
    assert base_model in models and other in models, shown
    assert all("esr" in m["test"] for _, m in shown.values())
    # the recipe and the values it trained with show in exp show and params diff
    effective = _effective(exp_show)
    assert {"smoke", "tiny"} == {r for r, _ in effective.values()}, effective
    assert {(r, t["max_steps"], t["lr_schedule"]) for r, t in effective.values()} == {
        ("smoke", 4, "cosine"), ("tiny", 2, "plateau")}
    diff = _run(["dvc", "params", "diff", "--all"], work, env)
    assert "dvclive/train/effective_params.yaml" in diff and "train.lr_schedule" in diff
