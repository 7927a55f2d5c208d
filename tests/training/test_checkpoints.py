"""Units of nablafx.training.checkpoints: logs snapshots, relocation of restored paths, resume
candidates — without training."""

import pytest
import torch

from nablafx import fileio
from nablafx.registry import ConfigError
from nablafx.training.checkpoints import (
    FORMAT_VERSION,
    ResumeError,
    RunCheckpoint,
    find_resume_point,
    partial_dir,
    restore_dir,
    snapshot_dir,
)


def test_snapshot_round_trip_and_path_escape_refused(tmp_path):
    live = tmp_path / "live"
    (live / "plots/metrics/val").mkdir(parents=True)
    (live / "metrics.json").write_text('{"step": 3}\n')
    (live / "plots/metrics/val/loss.tsv").write_text("step\tloss\n1\t0.5\n")
    (live / "empty").write_bytes(b"")
    (live / ".x.tsv.0a1b2c3d.tmp").write_bytes(b"half")  # a killed write: not part of the logs
    snap = snapshot_dir(live)
    assert sorted(snap) == ["empty", "metrics.json", "plots/metrics/val/loss.tsv"]
    fileio.save_torch({"live": snap}, tmp_path / "c.ckpt")
    loaded = fileio.load_torch(tmp_path / "c.ckpt")["live"]  # weights-only safe
    other = tmp_path / "restored"
    (other / "stale").mkdir(parents=True)
    restore_dir(loaded, other, tmp_path / "c.ckpt")
    assert {p.relative_to(other).as_posix(): p.read_bytes() for p in other.rglob("*") if p.is_file()} == {
        "empty": b"", "metrics.json": b'{"step": 3}\n', "plots/metrics/val/loss.tsv": b"step\tloss\n1\t0.5\n"}
    for bad in ("../outside", "/etc/passwd", "a/../../b"):
        with pytest.raises(fileio.UnsafeFileError, match="names a path outside the logs folder"):
            restore_dir({bad: torch.zeros(1, dtype=torch.uint8)}, other, tmp_path / "c.ckpt")
    assert not (tmp_path / "outside").exists() and (other / "metrics.json").is_file()


def test_restored_checkpoint_paths_follow_a_moved_folder(tmp_path):
    old, new = str(tmp_path / "a"), str(tmp_path / "b")
    cb = RunCheckpoint(dirpath=new, filename="best", monitor="val/loss", save_last=True)
    score = torch.tensor(0.25)
    cb.load_state_dict({"monitor": "val/loss", "best_model_score": score, "best_model_path": f"{old}/best.ckpt",
                        "current_score": score, "dirpath": old, "best_k_models": {f"{old}/best.ckpt": score},
                        "kth_best_model_path": f"{old}/best.ckpt", "kth_value": score,
                        "last_model_path": f"{old}/last.ckpt"})
    assert cb.best_model_score == score  # Lightning's own would have dropped it (dirpath changed)
    assert cb.best_model_path == f"{new}/best.ckpt" and cb.last_model_path == f"{new}/last.ckpt"
    assert list(cb.best_k_models) == [f"{new}/best.ckpt"]


def _ckpt(path, signature, step=2, fmt=FORMAT_VERSION):
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {**fileio.written_by(fmt), "live": {}}
    fileio.save_torch({"global_step": step, "nablafx_signature": signature, "nablafx": record}, path)


def test_resume_candidates(tmp_path, capsys):
    ckpt_dir = tmp_path / "ckpt"
    part = partial_dir(ckpt_dir)
    sig = {"variant": "v", "train": {"lr": 0.01}}
    assert find_resume_point(ckpt_dir, sig, "auto") is None
    with pytest.raises(ConfigError, match="train.resume=require but there is no checkpoint in"):
        find_resume_point(ckpt_dir, sig, "require")
    # a finished run with the same settings is continued; an interrupted one is preferred
    _ckpt(ckpt_dir / "last.ckpt", sig, step=8)
    assert find_resume_point(ckpt_dir, sig, "auto")[0] == ckpt_dir / "last.ckpt"
    _ckpt(part / "last.ckpt", sig, step=4)
    assert find_resume_point(ckpt_dir, sig, "auto")[0] == part / "last.ckpt"
    assert find_resume_point(ckpt_dir, sig, "off") is None
    # other settings: skipped with the keys named; require refuses
    capsys.readouterr()
    other = {"variant": "v", "train": {"lr": 0.02}}
    assert find_resume_point(ckpt_dir, other, "auto") is None
    assert f"not resuming from {part / 'last.ckpt'}: trained with different settings: train.lr" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"train.resume=require but .*last.ckpt was trained with different settings: train.lr"):
        find_resume_point(ckpt_dir, other, "require")
    # another checkpoint format: skipped, both versions named
    _ckpt(part / "last.ckpt", sig, fmt=FORMAT_VERSION + 1)
    assert find_resume_point(ckpt_dir, sig, "auto")[0] == ckpt_dir / "last.ckpt"
    assert f"checkpoint format {FORMAT_VERSION + 1}), this is nablafx" in capsys.readouterr().err
    # corrupt last: best of the same run; require with nothing readable: one line naming the file
    (part / "last.ckpt").write_bytes(b"\x80\x02garbage")
    _ckpt(part / "best.ckpt", sig, step=2)
    assert find_resume_point(ckpt_dir, sig, "require")[0] == part / "best.ckpt"
    (ckpt_dir / "last.ckpt").unlink()
    (part / "best.ckpt").write_bytes(b"")
    with pytest.raises(ResumeError, match=rf"^{part / 'last.ckpt'}: cannot resume \(train.resume=require\): "
                                          r"unreadable checkpoint .*\(and 1 other checkpoints\); delete it"):
        find_resume_point(ckpt_dir, sig, "require")
