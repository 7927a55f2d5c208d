"""Running the reference implementation (mcomunita/nablafx) from a checkout given by path, never
vendored: its tree (a checkout, or a bare git directory exported to a temporary folder), importing
its package in a child process, and building objects from its jsonargparse configs.  Shared by
bench_training.py, quality.py and reference_params.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def reference_tree(path: Path, tmp: Path) -> tuple[Path, str, str]:
    """``(checkout, commit, commit date)``; a bare git directory is exported (git archive HEAD) into
    ``tmp``, an existing folder."""

    def git(*args, **kw):
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True, **kw).stdout.strip()

    if (path / "cfg" / "model").is_dir():  # a checkout
        try:
            commit = git("-C", str(path), "rev-parse", "HEAD")
        except subprocess.CalledProcessError:
            raise SystemExit(f"error: {path}: not a git checkout, so its commit cannot be recorded; "
                             "pass a clone or the bare git directory") from None
        date = git("-C", str(path), "log", "-1", "--format=%cI")
        return path, commit, date
    commit = git(f"--git-dir={path}", "rev-parse", "HEAD")
    date = git(f"--git-dir={path}", "log", "-1", "--format=%cI")
    archive = subprocess.run(["git", f"--git-dir={path}", "archive", "HEAD"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
    return tmp, commit, date


def import_reference(reference: Path):
    """Put the checkout first on ``sys.path`` and import its ``nablafx`` package (not this
    repository's); refuse to go on if the import resolved elsewhere."""
    sys.path.insert(0, str(reference))
    import nablafx

    where = Path(nablafx.__file__).resolve()
    if reference.resolve() not in where.parents:
        raise SystemExit(f"imported nablafx from {where}, not from the reference at {reference}")
    return nablafx


def import_class(class_path: str):
    """``package.module.Name`` → the object."""
    import importlib

    module, name = class_path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def instantiate(obj):
    """A jsonargparse ``{class_path, init_args}`` mapping, built (recursively) as the reference's CLI
    builds it; anything else is returned as is."""
    if isinstance(obj, dict) and "class_path" in obj:
        return import_class(obj["class_path"])(**{k: instantiate(v) for k, v in (obj.get("init_args") or {}).items()})
    return obj
