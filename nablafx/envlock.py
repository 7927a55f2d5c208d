"""The installed environment against ``uv.lock``: which packages differ, by name and both versions.

``uv.lock`` is universal (one file for every platform): a package applies here when some path of
dependency edges from the project, with the requested extras, has every marker true on this
interpreter. :func:`locked_versions` walks those edges; :func:`lock_differences` compares the
result with what :mod:`importlib.metadata` finds installed.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

from packaging.markers import Marker


def canonical(name: str) -> str:
    """PEP 503 normalised project name (``Rational_Activations`` → ``rational-activations``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _marker_true(marker: str | None, env: dict | None) -> bool:
    if not marker:
        return True
    environment = {"extra": ""}
    environment.update(env or {})
    return Marker(marker).evaluate(environment)


def locked_versions(lock_path: str | Path, project: str = "nablafx", extras: tuple[str, ...] = ("dev",),
                    env: dict | None = None) -> dict[str, str]:
    """Name → version of every locked package that this platform installs for ``project[extras]``."""
    lock_path = Path(lock_path)
    try:
        lock = tomllib.loads(lock_path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"{lock_path}: cannot read the lock ({err})") from err
    by_name: dict[str, list[dict]] = {}
    for pkg in lock.get("package", []):
        by_name.setdefault(canonical(pkg["name"]), []).append(pkg)

    def entry(name: str, version: str | None) -> dict:
        candidates = by_name.get(canonical(name), [])
        if version is not None:
            candidates = [p for p in candidates if p.get("version") == version]
        if len(candidates) != 1:
            raise ValueError(f"{lock_path}: {name} {version or ''}: {len(candidates)} entries in the lock")
        return candidates[0]

    found: dict[str, str] = {}
    seen: set[tuple[str, str | None, str]] = set()
    todo: list[tuple[str, str | None, tuple[str, ...]]] = [(project, None, tuple(extras))]
    while todo:
        name, version, wanted = todo.pop()
        pkg = entry(name, version)
        key = canonical(pkg["name"])
        found[key] = pkg.get("version", "")
        edges = list(pkg.get("dependencies", []))
        for extra in wanted:
            edges += pkg.get("optional-dependencies", {}).get(extra, [])
        for dep in edges:
            if not _marker_true(dep.get("marker"), env):
                continue
            dep_extras = tuple(dep.get("extra", ()))
            for ex in ("",) + dep_extras:  # each extra of an edge is a separate visit
                mark = (canonical(dep["name"]), dep.get("version"), ex)
                if mark in seen:
                    continue
                seen.add(mark)
                todo.append((dep["name"], dep.get("version"), (ex,) if ex else ()))
    return found


def installed_versions() -> dict[str, str]:
    """Name → version of every distribution importable from this interpreter."""
    out: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            out.setdefault(canonical(name), dist.version)
    return out


def lock_differences(lock_path: str | Path, installed: dict[str, str] | None = None,
                     project: str = "nablafx", extras: tuple[str, ...] = ("dev",)) -> list[str]:
    """One line per package that differs: missing, another version, or installed but not locked."""
    locked = locked_versions(lock_path, project, extras)
    installed = installed_versions() if installed is None else {canonical(k): v for k, v in installed.items()}
    lines = []
    for name in sorted(set(locked) | set(installed)):
        want, have = locked.get(name), installed.get(name)
        if want == have:
            continue
        if have is None:
            lines.append(f"{name}: locked {want}, not installed")
        elif want is None:
            lines.append(f"{name}: installed {have}, not in {Path(lock_path).name}")
        else:
            lines.append(f"{name}: locked {want}, installed {have}")
    return lines
