"""The prepare stage and ``nablafx process`` on bad data, as a user runs them (subprocesses).

A failing run prints exactly one line on stderr (``error: <file>: <problem and fix>``), exits 2,
and leaves the previous ``index.json`` and ``reports/prepare.json`` byte-identical; a passing run
with warnings prints each as ``warning: …`` and writes them into the report.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from ..conftest import params_with
from . import fuzzkit as fk

REPO = Path(__file__).resolve().parents[2]


def _run(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO), "DVC_NO_ANALYTICS": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _prepare(work):
    return _run([str(REPO / "stages" / "prepare.py"), "--params", "params.yaml", "--out", "out/index.json",
                 "--report", "out/prepare.json"], work)


def _break_truncated_flac(root):
    return fk.cut_bytes(fk.to_flac(fk.target(root)), 0.6)


def _break_clipped(root):
    return fk.rewrite(fk.target(root), lambda x: np.clip(50 * x, -1, 1), subtype="PCM_16")


def _break_empty_trainval_setting(root):
    folder = root / fk.DEVICE / "trainval" / "D050_T000"
    for f in folder.iterdir():
        f.unlink()
    return folder


def _break_swap(root):
    d, t = fk.dry_path(root), fk.target(root, code="D000_T050")
    d.rename(d.with_name("tmp"))
    t.rename(d)
    d.with_name("tmp").rename(t)
    return t


def _break_non_ascii_truncated(root):
    for p in sorted(root.rglob("*guitar*")):
        p.rename(p.with_name(p.name.replace("guitar", "Gitarre Übung")))
    return fk.cut_bytes(fk.target(root, name="Gitarre Übung"), 0.5)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A tree prepared once by the stage (index and report to compare against)."""
    work = tmp_path_factory.mktemp("stage")
    fk.make_tree(work / "data")
    params = params_with(data={"root": "data", "device": fk.DEVICE, "dry_dir": fk.DRY, "sample_rate": fk.SR,
                               "val_seconds": 0.25, "guard_seconds": 0.05, "max_latency_samples": 4})
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    res = _prepare(work)
    assert res.returncode == 0, res.stderr
    assert res.stderr == "" and "0 warning(s)" in res.stdout
    return work


@pytest.mark.parametrize("breaker", [_break_truncated_flac, _break_clipped, _break_empty_trainval_setting,
                                     _break_swap, _break_non_ascii_truncated])
def test_failing_prepare_leaves_outputs_and_says_one_line(prepared, tmp_path, breaker):
    import shutil

    work = tmp_path / "w"
    shutil.copytree(prepared, work, symlinks=True)
    before = {p: (work / "out" / p).read_bytes() for p in ("index.json", "prepare.json")}
    named = breaker(work / "data")
    res = _prepare(work)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and res.stderr.endswith("\n"), res.stderr
    assert lines[0].startswith(f"error: {named.relative_to(work)}: "), lines[0]
    assert "Traceback" not in res.stderr
    assert {p: (work / "out" / p).read_bytes() for p in before} == before
    assert sorted(os.listdir(work / "out")) == ["index.json", "prepare.json"]  # no temporary left behind


def test_warnings_are_printed_and_reported(prepared, tmp_path):
    import json
    import shutil

    work = tmp_path / "w"
    shutil.copytree(prepared, work, symlinks=True)
    (work / "data" / fk.DRY / "trainval" / "README.txt").write_text("hi\n")
    rng = np.random.default_rng(0)
    fk.rewrite(fk.target(work / "data"), lambda x: x + 0.02 * rng.standard_normal(len(x)))
    res = _prepare(work)
    assert res.returncode == 0, res.stderr
    warned = res.stderr.splitlines()
    assert len(warned) == 3 and all(w.startswith("warning: data") for w in warned), warned
    assert "not self-consistent" in warned[0] and "unlike" in warned[1] and "ignored 1 file(s)" in warned[2]
    report = json.loads((work / "out" / "prepare.json").read_text())
    assert [f"warning: {w}" for w in report["warnings"]] == warned
    assert report["ignored"] == [{"path": "data/DRY-with-markers/trainval/README.txt",
                                  "reason": "not a *.input.wav / *.input.flac file"}]
    assert "3 warning(s)" in res.stdout


def test_process_cli_names_an_unreadable_file(tmp_path, capsys):
    """`nablafx process` reads through read_audio: a truncated FLAC is one line naming it, exit 2."""
    from nablafx import cli
    from nablafx.export import save_model
    from nablafx.registry import build_model

    model = build_model({"family": "lstm", "hidden_size": 4}, n_knobs=0, sample_rate=fk.SR)
    save_model(model, tmp_path / "model", variant="lstm-4")
    src = fk.write(tmp_path / "in put ü.flac", fk.dry_signal("test", "x"), subtype="PCM_16")
    out = tmp_path / "out.wav"
    assert cli.main(["process", str(src), str(out), "--model-dir", str(tmp_path / "model")]) == 0
    out.unlink()
    fk.cut_bytes(src, 0.5)
    assert cli.main(["process", str(src), str(out), "--model-dir", str(tmp_path / "model")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {src}: truncated or corrupt audio (flac decoder lost sync); re-export or re-download it\n"
    assert not out.exists()


def test_training_and_evaluation_readers_give_the_same_error(tmp_path):
    """AudioBank (training), evaluation and plots read through read_audio: same one line."""
    from nablafx.data.audio import DatasetError, read_audio
    from nablafx.data.datasets import AudioBank

    root = fk.make_tree(tmp_path / "data")
    bad = fk.cut_bytes(fk.to_flac(fk.target(root)), 0.5)
    expected = f"{bad}: truncated or corrupt audio (flac decoder lost sync); re-export or re-download it"
    with pytest.raises(DatasetError) as direct:
        read_audio(bad, fk.SR)
    with pytest.raises(DatasetError) as bank:
        AudioBank([{"dry": str(fk.dry_path(root)), "wet": str(bad)}], fk.SR)
    assert str(direct.value) == str(bank.value) == expected
