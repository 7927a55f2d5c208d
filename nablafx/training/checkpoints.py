"""Checkpoints of the train stage: weights-only I/O, runs in progress kept apart from finished
results, resume candidates with fallbacks, and training logs that resume exactly.

Layout (``ckpt_dir`` = ``artifacts/checkpoints``, ``live_dir`` = ``dvclive/train``)::

    artifacts/checkpoints/          the last *finished* run: best.ckpt, last.ckpt
    artifacts/checkpoints.partial/  the run in progress (or interrupted): best.ckpt, last.ckpt
    dvclive/train/                  the finished run's logs
    dvclive/train.partial/          the logs of the run in progress

A run trains into the ``.partial`` folders; only when it has finished and its model is exported
are they swapped in place of the finished ones (:func:`nablafx.fileio.replace_dir`), so a run
that fails or is killed never removes or overwrites earlier results.

Every checkpoint carries, besides Lightning's state, ``checkpoint["nablafx"]``: the nablafx version
and checkpoint format that wrote it and a byte snapshot of the logs folder at that moment; resuming
restores the logs from it, so a resumed run logs exactly the rows an uninterrupted one would.
Checkpoints are plain tensors/containers/numbers/strings and load with ``weights_only=True``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path, PurePosixPath

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from nablafx import fileio

FORMAT_VERSION = 1  # Lightning checkpoint + "nablafx" (versions, logs snapshot) + "nablafx_signature"
NAMES = ("last.ckpt", "best.ckpt")  # resume candidates in a folder, in order of preference


def partial_dir(path: str | os.PathLike) -> Path:
    """Where the run in progress writes what will replace ``path``."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O through :mod:`nablafx.fileio`: atomic writes with the umask's
    permissions, loads with ``weights_only=True`` only (one-line errors naming the file)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("SafeCheckpointIO: storage_options are not supported")
        fileio.save_torch(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        return fileio.load_torch(path, "checkpoint")


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose restored paths follow the folder when it moved (a finished run
    copied back for resuming, a repository copied elsewhere): Lightning would otherwise forget the
    best score and let a worse epoch overwrite best.ckpt."""

    def load_state_dict(self, state_dict: dict) -> None:
        old = state_dict.get("dirpath")
        if old and self.dirpath and old != self.dirpath:
            def moved(p):
                return os.path.join(self.dirpath, os.path.basename(p)) if isinstance(p, str) and p else p

            state_dict = {**state_dict, "dirpath": self.dirpath,
                          **{k: moved(state_dict.get(k)) for k in ("best_model_path", "kth_best_model_path",
                                                                   "last_model_path")},
                          "best_k_models": {moved(k): v for k, v in (state_dict.get("best_k_models") or {}).items()}}
        super().load_state_dict(state_dict)


class RunRecord(Callback):
    """Adds ``checkpoint["nablafx"]`` (versions + logs snapshot) to every checkpoint, and keeps the
    loggers' step equal to the optimiser step after a resume.

    Lightning 2.6 restores its logging step (``_batches_that_stepped``) one too high when the
    checkpoint was saved at validation end (it counts the pending increment twice), so a resumed run
    would log every row one step late.  With manual optimisation and one optimiser step per batch
    the two counters are equal by construction; this callback sets it before every batch (a no-op in
    an uninterrupted run).
    """

    def __init__(self, live_dir: str | os.PathLike | None):
        self.live_dir = Path(live_dir) if live_dir else None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        record = fileio.written_by(FORMAT_VERSION)
        if self.live_dir is not None and trainer.is_global_zero:
            record["live"] = snapshot_dir(self.live_dir)
        checkpoint["nablafx"] = record

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        trainer.fit_loop.epoch_loop._batches_that_stepped = trainer.global_step


def snapshot_dir(folder: Path) -> dict[str, torch.Tensor]:
    """Every file under ``folder`` as ``{relative posix path: uint8 tensor of its bytes}``."""
    snap = {}
    if folder.is_dir():
        for p in sorted(folder.rglob("*")):
            if p.is_file() and not p.name.endswith(".tmp"):
                data = p.read_bytes()
                snap[p.relative_to(folder).as_posix()] = (
                    torch.frombuffer(bytearray(data), dtype=torch.uint8).clone() if data else torch.zeros(0, dtype=torch.uint8))
    return snap


def restore_dir(snapshot: dict, folder: Path, source: Path) -> None:
    """Make ``folder`` hold exactly the files of ``snapshot`` (taken from checkpoint ``source``)."""
    if not isinstance(snapshot, dict):
        raise fileio.CorruptFileError(f"{source}: logs snapshot is not a mapping; delete the file")
    files = {}
    for rel, data in snapshot.items():
        parts = PurePosixPath(str(rel)).parts
        if not parts or PurePosixPath(str(rel)).is_absolute() or any(p in ("", ".", "..") for p in parts):
            raise fileio.UnsafeFileError(f"{source}: refused: its logs snapshot names a path outside the logs "
                                         f"folder ({rel!r}); delete the file if you did not write it")
        if not (isinstance(data, torch.Tensor) and data.dtype == torch.uint8 and data.dim() == 1):
            raise fileio.CorruptFileError(f"{source}: logs snapshot entry {rel!r} is not a byte tensor; delete the file")
        files[PurePosixPath(str(rel))] = data.numpy().tobytes()
    shutil.rmtree(folder, ignore_errors=True)
    fileio.make_dir(folder)
    for rel, data in files.items():
        fileio.write_bytes_atomic(folder.joinpath(*rel.parts), data)


def _diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += _diff_keys(va, vb, f"{prefix}{k}.")
        elif va != vb:
            keys.append(f"{prefix}{k}")
    return keys


class ResumeError(fileio.ArtifactError):
    """``train.resume=require`` and no checkpoint can be resumed; the message names the files and why."""


def find_resume_point(ckpt_dir: Path, signature: dict, mode: str, verbose: bool = True) -> tuple[Path, dict] | None:
    """The checkpoint to resume from and its content, or None to start afresh.

    Candidates, in order: the interrupted run's ``last.ckpt`` and ``best.ckpt`` (``<ckpt_dir>.partial``),
    then the finished run's (``ckpt_dir``; a finished run with the same settings is continued, i.e.
    re-exported).  Resuming from ``best.ckpt`` is as exact as from ``last.ckpt``: it holds the whole
    training state of its epoch, and the data of every epoch is a pure function of seed and epoch.
    A candidate that is corrupt (truncated, garbage; then ``best.ckpt`` of the same run is tried),
    written by another checkpoint format or with other settings is skipped with a note on stderr.  A candidate that would need to run code to load
    is never skipped silently: :class:`nablafx.fileio.UnsafeFileError`.  With ``mode == "require"``
    and no candidate left, :class:`ResumeError` names them and why.
    """
    if mode == "off":
        return None
    from nablafx.registry import ConfigError

    skipped: list[tuple[Path, str]] = []  # (file, why not resumable)
    for folder in (partial_dir(ckpt_dir), ckpt_dir):
        for name in NAMES:
            path = folder / name
            if not path.is_file():
                continue
            corrupt = False
            try:
                ckpt = fileio.load_torch(path, "checkpoint")
                if not isinstance(ckpt, dict):
                    raise fileio.CorruptFileError(f"{path}: not a checkpoint (a {type(ckpt).__name__})")
                fileio.check_written_by(path, ckpt.get("nablafx"), "checkpoint", FORMAT_VERSION, "not resumable")
            except fileio.UnsafeFileError:
                raise
            except fileio.ArtifactError as err:
                why, corrupt = str(err).split(": ", 1)[1], isinstance(err, fileio.CorruptFileError)
            else:
                diff = _diff_keys(ckpt.get("nablafx_signature") or {}, signature)
                if not diff:
                    return path, ckpt
                why = f"trained with different settings: {', '.join(diff)}"
            skipped.append((path, why))
            if verbose:
                note(f"train: not resuming from {path}: {why}")
            if not corrupt:
                break  # best.ckpt of the same folder is of the same run: same settings, same format
    if mode == "require":
        if not skipped:
            raise ConfigError(f"params.yaml: train.resume=require but there is no checkpoint in "
                              f"{partial_dir(ckpt_dir)} or {ckpt_dir}")
        path, why = skipped[0]
        if why.startswith("trained with different settings"):
            raise ConfigError(f"params.yaml: train.resume=require but {path} was {why}")
        more = f" (and {len(skipped) - 1} other checkpoints)" if len(skipped) > 1 else ""
        raise ResumeError(f"{path}: cannot resume (train.resume=require): {why}{more}; delete it or set "
                          "train.resume=auto to fall back to an older checkpoint or start afresh")
    return None


def prepare_partial(ckpt_dir: Path, live_dir: Path | None, resume: tuple[Path, dict] | None) -> Path | None:
    """Set up the ``.partial`` folders for this run (rank 0 only); returns the checkpoint to resume.

    Fresh run: empty ``.partial`` folders.  Resuming a finished run: its checkpoints are linked into
    ``<ckpt_dir>.partial`` first.  Resuming: the logs folder is restored from the checkpoint's snapshot.
    Nothing outside the ``.partial`` folders is modified.
    """
    part = partial_dir(ckpt_dir)
    fileio.remove_stale(ckpt_dir)
    if live_dir is not None:
        fileio.remove_stale(live_dir)
    if resume is None:
        if part.exists():
            note(f"train: starting afresh; discarding the interrupted run in {part}")
        shutil.rmtree(part, ignore_errors=True)
        fileio.make_dir(part)
        if live_dir is not None:
            live_part = partial_dir(live_dir)
            shutil.rmtree(live_part, ignore_errors=True)
            fileio.make_dir(live_part)
        return None
    path, ckpt = resume
    if path.parent != part:  # a finished run: continue it in .partial (hard links, files are never rewritten in place)
        shutil.rmtree(part, ignore_errors=True)
        shutil.copytree(ckpt_dir, part, copy_function=_link_or_copy)
        path = part / path.name
    fileio.remove_temp_files(part)
    if live_dir is not None:
        restore_dir(ckpt["nablafx"].get("live", {}), partial_dir(live_dir), path)
    note(f"train: resuming from {path} (step {ckpt.get('global_step')})")
    return path


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst
