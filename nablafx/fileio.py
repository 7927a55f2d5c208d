"""Atomic writes and safe loads: the only way nablafx writes a file or reads a torch file.

Every write goes to a temporary file beside its target (``.<name>.<random>.tmp``, created with the
permissions a plain ``open()`` would give, i.e. ``0o666`` minus the umask), is flushed to disk and
then renamed over the target with ``os.replace``: a reader or a crash sees the old file or the new
one, never half of one, and a failure removes the temporary file.  Folders are built beside their
target and swapped in whole (:func:`replace_dir`).

Torch files are only ever read with ``torch.load(weights_only=True)`` (:func:`load_torch`): a file
that would need to import or call anything beyond tensors and plain data is refused with a
one-line :class:`UnsafeFileError`, a truncated or garbage one is a :class:`CorruptFileError`.

This module imports nothing from nablafx (``data/`` and the models use it without layering cycles).
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import os
import pickletools
import re
import secrets
import shutil
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

# Test hook: "<seconds>[:<glob>]" pauses half-way through every write (of files whose name matches
# the glob), the temporary file then holding half the data, so that a test can kill a process inside
# a checkpoint write.  Unset in normal use.
WRITE_PAUSE_ENV = "NABLAFX_TEST_WRITE_PAUSE"


def _write_pause(path: Path) -> float:
    value = os.environ.get(WRITE_PAUSE_ENV)
    if not value:
        return 0.0
    seconds, _, pattern = value.partition(":")
    return float(seconds) if not pattern or fnmatch.fnmatch(path.name, pattern) else 0.0


class ArtifactError(ValueError):
    """A file nablafx wrote earlier cannot be used; the message starts with the file."""


class UnsafeFileError(ArtifactError):
    """A torch file holds Python objects beyond tensors and plain data (loading would run code)."""


class CorruptFileError(ArtifactError):
    """A torch file is truncated, empty or not a torch file at all."""


# ---------------------------------------------------------------------------------------------
# atomic writes


def _temp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator:
    """Open a temporary file beside ``path``; on a clean exit it is flushed, fsynced and renamed
    onto ``path``, on any exception (KeyboardInterrupt included) it is removed."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = _temp_sibling(path)
        try:  # os.open applies the umask to 0o666, as open() does (mkstemp would give 0o600)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
            break
        except FileExistsError:  # pragma: no cover - 32 random bits collided
            continue
    try:
        with os.fdopen(fd, mode, encoding=encoding if "b" not in mode else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    pause = _write_pause(Path(path))
    with atomic_open(path, "wb") as f:
        if pause > 0:  # test hook: leave a half-written temporary file for a while
            half = len(data) // 2
            f.write(data[:half])
            f.flush()
            time.sleep(pause)
            f.write(data[half:])
        else:
            f.write(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write via a temporary file + rename, so a failure never leaves a half-written file."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def save_torch(obj, path: str | os.PathLike) -> None:
    """``torch.save`` atomically (zip format; keep ``obj`` to tensors and plain data so that it
    loads with ``weights_only=True``)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes_atomic(path, buf.getvalue())


def savefig_atomic(fig, path: str | os.PathLike, **kwargs) -> None:
    """``fig.savefig`` atomically; the format comes from the suffix."""
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".") or "png", **kwargs)
    write_bytes_atomic(path, buf.getvalue())


def make_dir(path: str | os.PathLike) -> Path:
    """``mkdir`` with the umask's permissions (``tempfile.mkdtemp`` would give 0o700)."""
    path = Path(path)
    path.mkdir(mode=0o777, parents=True, exist_ok=True)
    return path


def new_sibling_dir(path: str | os.PathLike, tag: str = "new") -> Path:
    """An empty folder ``.<name>.<tag>-<random>`` beside ``path``, to build ``path``'s replacement in."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.with_name(f".{path.name}.{tag}-{secrets.token_hex(4)}")
        try:
            tmp.mkdir(mode=0o777)
            return tmp
        except FileExistsError:  # pragma: no cover
            continue


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return rc == 0


def replace_dir(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Put the folder ``new`` in place of ``target`` (which may not exist), then delete the old one.

    On Linux the swap is one atomic ``renameat2(RENAME_EXCHANGE)``; elsewhere the old folder is first
    renamed aside (``.<name>.old-<random>``), so a crash in between leaves it there, never deleted.
    """
    new, target = Path(new), Path(target)
    if not target.exists():
        os.rename(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # `new` now holds the old folder
        return
    old = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
    os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


def remove_stale(path: str | os.PathLike) -> None:
    """Delete leftovers of killed writes beside ``path``: ``.<name>.new-*`` / ``.old-*`` folders."""
    path = Path(path)
    if not path.parent.is_dir():
        return
    for p in path.parent.glob(f".{path.name}.*-*"):
        if p.is_dir() and p.name.split(".")[-1].startswith(("new-", "old-")):
            shutil.rmtree(p, ignore_errors=True)


def remove_temp_files(folder: str | os.PathLike) -> None:
    """Delete ``.<name>.<random>.tmp`` files (left by processes killed inside a write) in ``folder``."""
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.glob(".*.tmp"):
            if p.is_file():
                p.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# safe loads


def _pickle_imports(data: bytes) -> list[str] | None:
    """The globals a raw pickle stream imports, or None if ``data`` is not a complete pickle.
    Only parses opcodes (``pickletools.genops``): nothing is imported or called."""
    found: list[str] = []
    strings: list[str] = []
    stream = io.BytesIO(data)
    try:
        while stream.tell() < len(data):
            complete = False
            for op, arg, _ in pickletools.genops(stream):
                if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                    strings.append(str(arg))
                elif op.name in ("GLOBAL", "INST"):
                    found.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL":
                    found.append(".".join(strings[-2:]))
                elif op.name == "STOP":
                    complete = True
            if not complete:
                return None
    except Exception:
        return None
    return found


def _torch_reason(err: BaseException) -> str:
    """The informative line of a torch.load error (its weights-only messages open with boilerplate)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("Unsupported", "Trying to load")):
            return f"{type(err).__name__}: {line[:160]}"
    if not lines:
        return type(err).__name__
    first = lines[0].split(". ")[0] if len(lines[0]) > 100 else lines[0]
    return f"{type(err).__name__}: {first[:160]}"


def _why_unsafe(path: Path, err: BaseException) -> str | None:
    """Why ``torch.load(weights_only=True)`` refused ``path``, or None if the file is merely corrupt."""
    import pickle

    if not isinstance(err, pickle.UnpicklingError):
        return None
    if zipfile.is_zipfile(path):  # a well-formed torch zip whose pickle asks for something forbidden
        found = re.findall(r"GLOBAL ([\w.]+)", str(err))
        return f"it imports {', '.join(dict.fromkeys(found))}" if found else _torch_reason(err)
    imports = _pickle_imports(path.read_bytes())
    if imports:  # a complete pickle stream (not garbage) that imports something
        return "a plain pickle that imports " + ", ".join(dict.fromkeys(imports))
    return None


def load_torch(path: str | os.PathLike, what: str = "torch file"):
    """``torch.load(path, weights_only=True)`` on CPU with one-line errors naming ``path``:
    :class:`UnsafeFileError` for code-carrying pickles, :class:`CorruptFileError` otherwise."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = _why_unsafe(path, err)
        if reason is not None:
            raise UnsafeFileError(f"{path}: refused to load this {what}: it holds Python objects beyond "
                                  f"tensors and plain data ({reason}); nablafx never loads those — "
                                  "delete the file if you did not write it") from None
        raise CorruptFileError(f"{path}: unreadable {what} (truncated, empty or not a torch file: "
                               f"{_torch_reason(err)})") from None


# ---------------------------------------------------------------------------------------------
# which nablafx wrote a file


def written_by(format_version: int) -> dict:
    """What nablafx records in every folder/file it writes: its version and the layout's format."""
    from nablafx import __version__

    return {"nablafx_version": __version__, "format_version": int(format_version)}


def check_written_by(where, recorded, kind: str, format_version: int, hint: str) -> None:
    """Refuse (one-line :class:`ArtifactError`) what another nablafx wrote in another ``kind`` format."""
    from nablafx import __version__

    recorded = recorded if isinstance(recorded, dict) else {}
    fmt = recorded.get("format_version")
    if fmt == format_version:
        return
    theirs = recorded.get("nablafx_version") or "an older version (none recorded)"
    raise ArtifactError(f"{where}: written by nablafx {theirs} ({kind} format {fmt if fmt is not None else 'unrecorded'}), "
                        f"this is nablafx {__version__} ({kind} format {format_version}): {hint}")
