"""Atomic writes (old file intact after a failure mid-write, no temporary file left, umask
permissions) and safe loads (code-carrying pickles refused, corrupt files named)."""

import io
import os
import pickle
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from nablafx import fileio
from nablafx.data.audio import read_audio, write_audio


class Boom(Exception):
    pass


class Evil:
    """Unpickling this runs ``open(marker, "w")``: a marker file appears if code ever runs."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def crafted_torch_file(path, marker):
    torch.save({"state_dict": {"w": torch.zeros(2)}, "x": Evil(marker)}, path)


def crafted_raw_pickle(path, marker, protocol):
    path.write_bytes(pickle.dumps({"w": Evil(marker)}, protocol=protocol))


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _leftovers(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith("."))




@pytest.mark.parametrize("writer", ["text", "bytes", "json", "torch", "audio", "figure"])
def test_failure_mid_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch, writer):
    suffix = {"audio": ".flac", "figure": ".png", "torch": ".pt", "json": ".json"}.get(writer, ".txt")
    target = tmp_path / f"out{suffix}"
    target.write_bytes(b"old content")
    real_fdopen = os.fdopen

    class HalfThenFail:
        """A file that takes the first 8 bytes written to it and then fails (disk full, ...)."""

        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, b):
            if self.n + len(b) > 8:
                self.f.write(bytes(b)[: 8 - self.n])
                raise Boom("failed half-way")
            self.n += len(b)
            return self.f.write(b)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(fileio.os, "fdopen", lambda fd, mode, **kw: HalfThenFail(real_fdopen(fd, mode, **kw)))
    with pytest.raises(Boom):
        if writer == "text":
            fileio.write_text_atomic(target, "new text " * 100)
        elif writer == "bytes":
            fileio.write_bytes_atomic(target, b"new bytes " * 100)
        elif writer == "json":
            fileio.write_json(target, {"new": list(range(100))})
        elif writer == "torch":
            fileio.save_torch({"w": torch.ones(100)}, target)
        elif writer == "audio":
            write_audio(target, np.zeros(4800, dtype=np.float32), 48000)
        else:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig = plt.figure()
            fig.gca().plot([0, 1])
            try:
                fileio.savefig_atomic(fig, target)
            finally:
                plt.close(fig)
    assert target.read_bytes() == b"old content"
    assert _leftovers(tmp_path) == []


def test_writes_replace_whole_files_with_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        fileio.write_text_atomic(tmp_path / "a.txt", "one")
        fileio.save_torch({"w": torch.arange(3)}, tmp_path / "w.pt")
        write_audio(tmp_path / "x.wav", np.full(100, 0.25, dtype=np.float32), 48000)
        os.umask(0o077)
        fileio.write_text_atomic(tmp_path / "private.txt", "secret")
        d = fileio.new_sibling_dir(tmp_path / "folder")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.txt") == 0o644 and _mode(tmp_path / "w.pt") == 0o644
    assert _mode(tmp_path / "x.wav") == 0o644 and _mode(tmp_path / "private.txt") == 0o600
    assert _mode(d) == 0o700  # umask 077 at creation
    assert torch.equal(fileio.load_torch(tmp_path / "w.pt")["w"], torch.arange(3))
    assert np.all(read_audio(tmp_path / "x.wav", 48000) == 0.25)
    fileio.write_text_atomic(tmp_path / "a.txt", "two")
    assert (tmp_path / "a.txt").read_text() == "two"


def test_write_pause_hook_leaves_half_written_temp_only_while_paused(tmp_path, monkeypatch):
    import threading
    import time

    monkeypatch.setenv(fileio.WRITE_PAUSE_ENV, "0.5:*.bin")
    fileio.write_text_atomic(tmp_path / "other.txt", "not paused")  # another name: no pause
    (tmp_path / "c.bin").write_bytes(b"old")
    t = threading.Thread(target=fileio.write_bytes_atomic, args=(tmp_path / "c.bin", b"x" * 1000))
    t.start()
    deadline = time.time() + 5
    temps = []
    while time.time() < deadline and not temps:
        temps = [p for p in tmp_path.glob(".c.bin.*.tmp") if p.stat().st_size == 500]
    assert temps and (tmp_path / "c.bin").read_bytes() == b"old"  # half written, target untouched
    t.join()
    assert (tmp_path / "c.bin").read_bytes() == b"x" * 1000 and _leftovers(tmp_path) == []
    assert (tmp_path / "other.txt").read_text() == "not paused"


@pytest.mark.parametrize("exchange", [True, False])
def test_replace_dir(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(fileio, "_exchange", lambda a, b: False)
    target = tmp_path / "model"
    new = fileio.new_sibling_dir(target)
    (new / "a").write_text("1")
    fileio.replace_dir(new, target)  # target did not exist
    assert (target / "a").read_text() == "1" and not new.exists()
    new = fileio.new_sibling_dir(target)
    (new / "b").write_text("2")
    fileio.replace_dir(new, target)
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_remove_stale_and_temp_files(tmp_path):
    target = tmp_path / "ckpt"
    target.mkdir()
    (tmp_path / ".ckpt.new-1234abcd").mkdir()
    (tmp_path / ".ckpt.old-1234abcd").mkdir()
    (tmp_path / ".ckptx.new-1234abcd").mkdir()  # another folder's: kept
    (target / ".last.ckpt.0a1b2c3d.tmp").write_bytes(b"half")
    (target / "last.ckpt").write_bytes(b"whole")
    fileio.remove_stale(target)
    fileio.remove_temp_files(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ckptx.new-1234abcd", "ckpt"]
    assert [p.name for p in target.iterdir()] == ["last.ckpt"]


@pytest.mark.parametrize("kind", ["torch-zip", "pickle-protocol-2", "pickle-protocol-4"])
def test_code_carrying_pickles_are_refused_and_never_run(tmp_path, kind):
    marker = tmp_path / "MARKER"
    path = tmp_path / "weights.pt"
    if kind == "torch-zip":
        crafted_torch_file(path, marker)
    else:
        crafted_raw_pickle(path, marker, int(kind[-1]))
    with pytest.raises(fileio.UnsafeFileError) as err:
        fileio.load_torch(path, "model weights file")
    msg = str(err.value)
    assert msg.startswith(f"{path}: refused to load this model weights file") and "\n" not in msg, msg
    assert "open" in msg  # names what it would have imported/called
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"garbage" * 50, "truncated", os.urandom(2000), b"hello\n"])
def test_corrupt_files_are_named(tmp_path, content):
    path = tmp_path / "last.ckpt"
    if content == "truncated":
        buf = io.BytesIO()
        torch.save({"w": torch.zeros(1000)}, buf)
        content = buf.getvalue()[: len(buf.getvalue()) // 2]
    path.write_bytes(content)
    with pytest.raises(fileio.CorruptFileError) as err:
        fileio.load_torch(path, "checkpoint")
    msg = str(err.value)
    assert msg.startswith(f"{path}: unreadable checkpoint") and "\n" not in msg, msg


def test_check_written_by_names_both_versions(tmp_path):
    from nablafx import __version__

    fileio.check_written_by(tmp_path, fileio.written_by(3), "model folder", 3, "retrain")
    with pytest.raises(fileio.ArtifactError) as err:
        fileio.check_written_by(tmp_path, {"nablafx_version": "0.0.7", "format_version": 0}, "model folder", 3, "retrain")
    msg = str(err.value)
    assert f"written by nablafx 0.0.7 (model folder format 0), this is nablafx {__version__} (model folder format 3)" in msg
    with pytest.raises(fileio.ArtifactError, match="older version \\(none recorded\\)"):
        fileio.check_written_by(tmp_path, {}, "model folder", 3, "retrain")
