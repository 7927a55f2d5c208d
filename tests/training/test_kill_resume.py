"""SIGKILL a real `train` process again and again — at random points and inside checkpoint
writes — and resume each time: the final weights, checkpoints and logs (dvclive metrics and
plots) equal those of an uninterrupted run, for a TCN and for an LSTM trained with TBPTT."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from nablafx import fileio
from nablafx.training.checkpoints import partial_dir

from ..conftest import params_with, tiny_prepared

REPO = Path(__file__).resolve().parents[2]
PAUSE_S = 0.3  # every checkpoint write pauses half-way this long: kills can land inside them
# kill points, in order; "early": before this process saved anything, "in_write": inside a checkpoint
# write (a half-written temporary file exists), "random": a random moment after its first checkpoint
KILLS = ("in_write", "random", "early", "in_write", "random", "in_write")

VARIANTS = {
    "tcn": ({"family": "tcn", "channels": 4, "blocks": 2, "kernel_size": 3, "dilation_growth": 2, "cond": "film"}, {}),
    "lstm-tbptt": ({"family": "lstm", "hidden_size": 4}, {"tbptt_samples": 512, "context_samples": 256}),
}


class Forker:
    def __init__(self):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "DVC_NO_ANALYTICS": "1",
               "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.training.train_forker"], cwd=REPO, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def _read(self, timeout=300):
        line = self.proc.stdout.readline()
        assert line, "train_forker died"
        return json.loads(line)

    def start(self, cwd, argv, log, env=None) -> int:
        self.proc.stdin.write(json.dumps({"argv": argv, "cwd": str(cwd), "env": env or {}, "log": str(log)}) + "\n")
        self.proc.stdin.flush()
        return self._read()["pid"]

    def wait(self) -> str:
        return self._read()["status"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def forker():
    f = Forker()
    yield f
    f.close()


def _argv(tag):
    return ["--params", "params.yaml", "--index", "index.json", "--model-dir", f"{tag}/model",
            "--ckpt-dir", f"{tag}/ckpt", "--live-dir", f"{tag}/live"]


def _stamp(path: Path):
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _temps(folder: Path) -> set:
    return {p.name for p in folder.glob(".*.ckpt.*.tmp")} if folder.is_dir() else set()


def _wait_for(cond, pid, what, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.005)
    pytest.fail(f"train process {pid} ended or stalled before {what}")


def _files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(VARIANTS))
def test_sigkill_and_resume_equals_uninterrupted(tmp_path, forker, name):
    spec, extra = VARIANTS[name]
    root = tiny_prepared(tmp_path)
    params = params_with(model="m", aliases={}, variants={"m": spec},
                         data={"root": str(root), "device": "Fake-Drive", "val_seconds": 1.0, "guard_seconds": 0.25},
                         train={"max_steps": 20, "batch_size": 2, "chunk_seconds": 0.05, "val_every_n_steps": 2,
                                "lr": 0.01, "accelerator": "cpu", "loss": {"l1": 1.0, "esr": 1.0}, **extra})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    t0 = time.monotonic()
    forker.start(tmp_path, _argv("ref"), tmp_path / "ref.log")
    assert forker.wait() == "exit 0", (tmp_path / "ref.log").read_text()[-3000:]

    rng = random.Random(f"kill-{name}")
    part = partial_dir(tmp_path / "cut/ckpt")
    log = tmp_path / "cut.log"
    env = {fileio.WRITE_PAUSE_ENV: f"{PAUSE_S}:*.ckpt"}
    history = []
    for mode in KILLS:
        before, seen = _stamp(part / "last.ckpt"), _temps(part)
        pid = forker.start(tmp_path, _argv("cut"), log, env)
        if mode == "early":
            time.sleep(rng.uniform(0.0, 1.0))
        else:  # let this process save a checkpoint of its own first, so that every kill makes progress
            _wait_for(lambda b=before: _stamp(part / "last.ckpt") not in (None, b), pid, "its first checkpoint")
            if mode == "in_write":
                inside = _wait_for(lambda s=seen: [t for t in _temps(part) - s if (_stamp(part / t) or (0, 0, 0))[2]],
                                   pid, "a checkpoint write")
            else:
                time.sleep(rng.uniform(0.0, PAUSE_S))
        os.kill(pid, signal.SIGKILL)
        assert forker.wait() == "signal 9", log.read_text()[-3000:]
        if mode == "in_write":  # the kill landed inside the write: the half-written file is still there
            assert (part / inside[0]).is_file()
        step = torch.load(part / "last.ckpt", weights_only=True)["global_step"] if (part / "last.ckpt").is_file() else 0
        history.append((mode, step))
        assert not (tmp_path / "cut/model").exists()  # nothing finished yet
    forker.start(tmp_path, _argv("cut"), log)
    assert forker.wait() == "exit 0", log.read_text()[-3000:]
    seconds = time.monotonic() - t0
    print(f"{name}: {len(KILLS)} kills (mode, last.ckpt step after it): {history}; {seconds:.1f} s in all")

    text = log.read_text()
    assert text.count("train: resuming from") >= 4, text[-3000:]
    assert sum(1 for _, s in history if s > 0) >= 4 and history[-1][1] < 20  # kills spread over the run
    ref, cut = torch.load(tmp_path / "ref/model/model.pt", weights_only=True), torch.load(
        tmp_path / "cut/model/model.pt", weights_only=True)
    assert ref.keys() == cut.keys()
    for k in ref:
        assert torch.equal(ref[k], cut[k]), k
    for ck in ("last.ckpt", "best.ckpt"):
        a = torch.load(tmp_path / "ref/ckpt" / ck, weights_only=True)
        b = torch.load(tmp_path / "cut/ckpt" / ck, weights_only=True)
        assert a["global_step"] == b["global_step"]
        for k in a["state_dict"]:
            assert torch.equal(a["state_dict"][k], b["state_dict"][k]), (ck, k)
        assert a["nablafx"]["live"].keys() == b["nablafx"]["live"].keys()
    # the logs: same files, same rows, same steps, same values
    ref_live, cut_live = _files(tmp_path / "ref/live"), _files(tmp_path / "cut/live")
    assert ref_live.keys() == cut_live.keys() and "plots/metrics/train/loss.tsv" in ref_live
    for k in ref_live:
        assert ref_live[k] == cut_live[k], (k, ref_live[k].decode()[-300:], cut_live[k].decode()[-300:])
    cfg_ref = yaml.safe_load((tmp_path / "ref/model/config.yaml").read_text())
    cfg_cut = yaml.safe_load((tmp_path / "cut/model/config.yaml").read_text())
    assert cfg_ref["best_val_esr"] == cfg_cut["best_val_esr"] and cfg_cut["steps"] == 20
    # nothing left behind: no .partial folders, no temporary files
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith((".tmp", ".partial")) or ".new-" in p.name]
    assert leftovers == []
