"""`dvc status` sees every change a stage's result depends on (slow): editing a module a stage
imports lists exactly the stages that import it, and a change under a data root that lies
outside the repo (params data.root, templated into the deps) lists the stages that read it."""

import json
import os
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
import soundfile as sf
import yaml

from nablafx.depgraph import check_pipeline, covers, load_stages

from .test_dvc_pipeline import _copy_repo, _run

BIN = Path(sys.executable).parent

# Loaded by every Python process of the run (PYTHONPATH): a stage script records, at exit, the
# nablafx files it had imported, so the static import graph is checked against real runs.
HOOK = """
import atexit, json, os, sys

def _dump():
    script = sys.argv[0] if sys.argv else ""
    if os.path.basename(os.path.dirname(os.path.abspath(script))) != "stages":
        return
    files = sorted({m.__file__ for n, m in list(sys.modules.items())
                    if (n == "nablafx" or n.startswith("nablafx.")) and getattr(m, "__file__", None)})
    with open(os.path.join(os.environ["NABLAFX_IMPORT_LOG"], os.path.basename(script) + ".json"), "w") as f:
        json.dump(files, f)

atexit.register(_dump)
"""


def _status(work, env) -> dict:
    return json.loads(_run(["dvc", "status", "--json"], work, env) or "{}")


@pytest.mark.slow
def test_dvc_status_lists_stages_whose_modules_or_data_changed(tmp_path):
    work, outside, hook, log = (tmp_path / d for d in ("repo", "outside", "hook", "imports"))
    for d in (work, hook, log):
        d.mkdir()
    _copy_repo(work)
    (hook / "sitecustomize.py").write_text(textwrap.dedent(HOOK))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           # the copy's own nablafx (not the editable install's), and .pyc files written as usual
           "PYTHONPATH": f"{hook}{os.pathsep}{work}", "NABLAFX_IMPORT_LOG": str(log),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    root = outside / "tonetwist"  # data root outside the repo, absolute
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["data"]["root"] = str(root)
    params["train"].update(max_steps=2, batch_size=2, chunk_seconds=0.5, val_every_n_steps=2)
    params["cost"].update(audio_seconds=0.1, frame_sizes=[64], repeats=1)
    params["fad"].update(embeddings=["crepe_tiny"], dry_baseline=False, hop_ms=50.0)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["git", "init", "-q"], work, env)
    _run(["git", "add", "-A"], work, env)
    _run(["git", "commit", "-qm", "copy"], work, env)
    _run(["dvc", "pull", "-q", "data.dvc"], work, env)
    shutil.copytree(work / "data", root)

    _run(["dvc", "repro"], work, env)
    assert any(work.glob("nablafx/**/__pycache__/*.pyc"))  # written during the run, ignored by DVC
    assert _status(work, env) == {}
    index = json.loads((work / "artifacts/prepared/index.json").read_text())
    assert Path(index["items"][0]["wet"]).is_relative_to(root)

    # the static graph holds every nablafx file each stage really imported
    reports = {r.stage: r for r in check_pipeline(work)}
    for stage, r in reports.items():
        ran = {Path(f) for f in json.loads((log / f"{r.scripts[0].name}.json").read_text())}
        assert ran and ran <= set(r.needed), (stage, sorted(map(str, ran - set(r.needed))))

    # editing a module lists exactly the stages that import it
    def importers(rel):
        return {s for s, r in reports.items() if work / rel in r.needed}

    assert importers("nablafx/evaluation/loudness.py") == {"test"}
    assert importers("nablafx/plotting/report.py") == {"plots"}
    assert importers("nablafx/streaming.py") >= {"train", "test", "cost"}
    for rel in ("nablafx/streaming.py", "nablafx/evaluation/loudness.py", "nablafx/plotting/report.py",
                "nablafx/data/prepare.py", "nablafx/config.py", "nablafx/__init__.py"):
        f = work / rel
        original = f.read_bytes()
        f.write_bytes(original + b"\n# edited\n")
        assert set(_status(work, env)) == importers(rel), rel
        f.write_bytes(original)
    assert _status(work, env) == {}

    # a new file under the data root, outside the device's folders: prepare reruns, writes the same
    # index (same files, same content hash), and nothing downstream reruns
    (root / "Another-Device" / "trainval").mkdir(parents=True)
    (root / "Another-Device" / "trainval" / "notes.txt").write_text("new\n")
    assert set(_status(work, env)) == {"prepare"}
    out = _run(["dvc", "repro"], work, env)
    assert "Running stage 'prepare'" in out and "Running stage 'train'" not in out, out
    assert json.loads((work / "artifacts/prepared/index.json").read_text()) == index
    assert _status(work, env) == {}

    # one sample of one indexed audio file, by one step (FLAC: re-encoded, a raw byte flip would break
    # its checksums): every stage reading it is listed; prepare's content hash moves
    item = next(i for i in index["items"] if i["split"] == "train")
    wet = Path(item["wet"])
    info = sf.info(str(wet))
    audio, sr = sf.read(str(wet), dtype="int16")
    audio[len(audio) // 2] += 1 if audio[len(audio) // 2] < 0 else -1
    sf.write(str(wet), audio, sr, subtype=info.subtype, format=info.format)
    readers = {s.name for s in load_stages(work) if any(covers(Path(d), wet) for d in s.deps if Path(d).is_absolute())}
    assert readers == {"prepare", "train", "test", "fad", "plots"}
    assert set(_status(work, env)) == readers
    _run(["dvc", "repro", "prepare"], work, env)
    after = json.loads((work / "artifacts/prepared/index.json").read_text())
    rel = wet.relative_to(root).as_posix()
    assert after["data_hash"]["sha256"] != index["data_hash"]["sha256"]
    assert after["files"][rel]["sha256"] != index["files"][rel]["sha256"]
    assert set(_status(work, env)) == readers - {"prepare"}
