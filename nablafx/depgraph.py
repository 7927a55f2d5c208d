"""Which repository files each DVC stage runs, and whether the stage's ``deps`` cover them.

A stage's script (the ``*.py`` named in its ``cmd``, or ``python -m <module>``) imports library
modules, which import others.  :func:`stage_modules` follows those imports **statically** (``ast``,
no code runs): ``import a.b``, ``from a import b`` (``b`` a submodule or a name), relative imports,
imports inside functions, and every package ``__init__.py`` on the way (importing ``a.b.c`` runs
``a/__init__.py`` and ``a/b/__init__.py``, whose own imports count too).  A string literal that is
exactly the dotted name of a module of the package (``"nablafx.models"``, as handed to
``importlib.import_module``) counts as an import.  ``from a import *`` brings in only ``a``.

:func:`check_pipeline` then checks ``dvc.yaml``: every file a stage runs must lie under one of its
``deps`` (the file itself or a parent folder), and every dep must exist or be produced by the
pipeline (a stage's out, or a path tracked by a ``.dvc`` file).  ``${key.path}`` in ``dvc.yaml`` is
rendered from ``params.yaml`` (DVC's default vars) and the file's own ``vars:`` mappings.

``python -m nablafx.depgraph [repo]`` prints, per stage, the problems and the smallest dep list
(whole folders where every ``.py`` file under them is needed).
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import sys
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_VAR = re.compile(r"\$\{\s*([^}]+?)\s*\}")


class DepGraphError(ValueError):
    """dvc.yaml or a script cannot be analysed (unreadable, syntax error, unknown ``${var}``)."""


# ---------------------------------------------------------------------------------------------
# modules and their imports


def module_file(name: str, root: Path) -> Path | None:
    """The file that defines dotted module ``name`` under ``root`` (a package's ``__init__.py``)."""
    base = root.joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _module_name(path: Path, root: Path) -> tuple[str, bool]:
    """``(dotted name, is_package)`` of a file under ``root``."""
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    is_pkg = parts[-1] == "__init__"
    if is_pkg:
        parts = parts[:-1]
    return ".".join(parts), is_pkg


def imported_names(source: str, module: str = "", is_package: bool = False, filename: str = "<source>") -> set[str]:
    """Dotted names a module's code may import, anywhere in the file (functions included).

    ``from a.b import c`` gives ``a.b`` and ``a.b.c`` (the caller keeps ``a.b.c`` only if it is a
    module); relative imports are resolved against ``module``; string literals that look like a
    dotted name are returned too (the caller keeps those that name a module).
    """
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as e:
        raise DepGraphError(f"{filename}: cannot parse: {e}") from e
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = module.split(".") if is_package else module.split(".")[:-1]
                if node.level - 1 > len(pkg) or not module:
                    raise DepGraphError(f"{filename}:{node.lineno}: relative import beyond the top-level package")
                base_parts = pkg[: len(pkg) - (node.level - 1)]
                if node.module:
                    base_parts = base_parts + node.module.split(".")
                base = ".".join(base_parts)
            else:
                base = node.module or ""
            if base:
                names.add(base)
            for a in node.names:
                if a.name != "*":
                    names.add(f"{base}.{a.name}" if base else a.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _DOTTED.match(node.value):
            names.add(node.value)
    return names


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@dataclass
class ImportGraph:
    """Files reached from a start file, each with the file it was first reached from (for messages)."""

    files: dict[Path, Path | None] = field(default_factory=dict)  # file → importer (None: the start)

    def chain(self, path: Path) -> list[Path]:
        out = [path]
        while (prev := self.files.get(out[-1])) is not None:
            out.append(prev)
        return out[::-1]


def walk_imports(start: Path, root: Path, packages: Iterable[str]) -> ImportGraph:
    """Every file of ``packages`` (top-level names, found under ``root``) that running ``start``
    imports, transitively; ``start`` itself included."""
    packages = tuple(packages)
    start, root = Path(start), Path(root)
    graph = ImportGraph({start: None})
    todo = deque([start])  # breadth first: each chain is a shortest one
    while todo:
        path = todo.popleft()
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as e:
            raise DepGraphError(f"{path}: cannot read: {e}") from e
        try:
            module, is_pkg = _module_name(path, root)
        except ValueError:  # a script outside the package tree: only absolute imports
            module, is_pkg = "", False
        for name in sorted(imported_names(source, module, is_pkg, filename=str(path))):
            if name.split(".")[0] not in packages:
                continue
            for mod in _with_parents(name):
                f = module_file(mod, root)
                if f is not None and f not in graph.files:
                    graph.files[f] = path
                    todo.append(f)
    return graph


# ---------------------------------------------------------------------------------------------
# dvc.yaml


def _lookup(ctx: dict, key: str, where: str):
    cur = ctx
    for part in key.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            raise DepGraphError(f"{where}: ${{{key}}}: not defined in params.yaml or dvc.yaml vars")
    return cur


def render(value, ctx: dict, where: str):
    """Substitute ``${a.b}`` in strings (recursively in lists/dicts) like DVC's templating."""
    if isinstance(value, str):
        whole = _VAR.fullmatch(value.strip())
        if whole:
            return _lookup(ctx, whole.group(1), where)
        return _VAR.sub(lambda m: str(_lookup(ctx, m.group(1), where)), value)
    if isinstance(value, list):
        return [render(v, ctx, where) for v in value]
    if isinstance(value, dict):
        return {k: render(v, ctx, where) for k, v in value.items()}
    return value


def _context(repo: Path, dvc: dict) -> dict:
    ctx: dict = {}
    params = repo / "params.yaml"
    if params.is_file():
        ctx.update(yaml.safe_load(params.read_text()) or {})
    for entry in dvc.get("vars") or []:
        if isinstance(entry, dict):
            ctx.update(entry)
        elif isinstance(entry, str):
            f, _, keys = entry.partition(":")
            data = yaml.safe_load((repo / f).read_text()) or {}
            ctx.update({k: data[k] for k in keys.split(",")} if keys else data)
    return ctx


def _path_of(entry) -> str:
    """A deps/outs entry is a path or a one-key mapping ``{path: options}``."""
    return next(iter(entry)) if isinstance(entry, dict) else str(entry)


@dataclass
class Stage:
    name: str
    cmd: str
    deps: list[str]
    outs: list[str]


def load_stages(repo: Path, dvc_yaml: str = "dvc.yaml") -> list[Stage]:
    """The stages of ``dvc.yaml`` with ``${...}`` rendered; ``foreach``/``matrix`` are not supported."""
    repo = Path(repo)
    path = repo / dvc_yaml
    try:
        dvc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise DepGraphError(f"{path}: cannot read: {e}") from e
    ctx = _context(repo, dvc)
    stages = []
    for name, spec in (dvc.get("stages") or {}).items():
        where = f"{dvc_yaml}: stages.{name}"
        if "foreach" in spec or "matrix" in spec:
            raise DepGraphError(f"{where}: foreach/matrix stages are not supported")
        spec = render(spec, ctx, where)
        cmd = spec.get("cmd", "")
        cmd = " && ".join(cmd) if isinstance(cmd, list) else str(cmd)
        outs = [_path_of(o) for key in ("outs", "metrics", "plots") for o in (spec.get(key) or [])]
        stages.append(Stage(name, cmd, [str(_path_of(d)) for d in spec.get("deps") or []], outs))
    return stages


def stage_scripts(stage: Stage, repo: Path) -> list[Path]:
    """Files the stage's ``cmd`` runs: ``*.py`` arguments that exist, and ``-m module`` targets."""
    found = []
    for part in re.split(r"&&|\|\||;|\|", stage.cmd):
        try:
            tokens = shlex.split(part)
        except ValueError as e:
            raise DepGraphError(f"dvc.yaml: stages.{stage.name}.cmd: {e}") from e
        for i, tok in enumerate(tokens):
            if tok.endswith(".py") and (repo / tok).is_file():
                found.append(repo / tok)
            elif tok == "-m" and i + 1 < len(tokens):
                f = module_file(tokens[i + 1], repo)
                if f is not None:
                    found.append(f)
    return found


def _norm(repo: Path, p: str) -> Path:
    return Path(os.path.normpath(repo / p))


def covers(dep: Path, file: Path) -> bool:
    return file == dep or dep in file.parents


def _tracked_by_dvc_files(repo: Path) -> list[Path]:
    out = []
    for f in repo.glob("*.dvc"):
        if not f.is_file():
            continue
        meta = yaml.safe_load(f.read_text()) or {}
        out += [_norm(f.parent, o["path"]) for o in meta.get("outs") or [] if "path" in o]
    return out


@dataclass
class StageReport:
    stage: str
    scripts: list[Path]
    needed: dict[Path, list[Path]]  # file → import chain from the script
    problems: list[str]


def check_pipeline(repo: Path, packages: Iterable[str] = ("nablafx",), dvc_yaml: str = "dvc.yaml") -> list[StageReport]:
    """One report per stage: the files its scripts import transitively (within ``packages``) and
    the problems: a stage running no script, an import no dep covers, a dep that does not exist
    and that no stage or ``.dvc`` file produces."""
    repo = Path(os.path.abspath(repo))
    stages = load_stages(repo, dvc_yaml)
    produced = [_norm(repo, o) for s in stages for o in s.outs] + _tracked_by_dvc_files(repo)
    reports = []
    for st in stages:
        deps = [_norm(repo, d) for d in st.deps]
        problems = []
        for d, raw in zip(deps, st.deps):
            if not d.exists() and not any(covers(p, d) for p in produced):
                problems.append(f"stage '{st.name}': dep {raw} does not exist (and no stage or .dvc file produces it)")
        scripts = stage_scripts(st, repo)
        if not scripts:
            problems.append(f"stage '{st.name}': its cmd runs no .py file of the repo ({st.cmd!r})")
        needed: dict[Path, list[Path]] = {}
        for script in scripts:
            graph = walk_imports(script, repo, packages)
            for f in graph.files:
                needed.setdefault(f, graph.chain(f))
        for f, chain in sorted(needed.items()):
            if not any(covers(d, f) for d in deps):
                via = " → ".join(str(p.relative_to(repo)) for p in chain)
                problems.append(f"stage '{st.name}': deps do not cover {f.relative_to(repo)} (imported via {via})")
        reports.append(StageReport(st.name, scripts, needed, problems))
    return reports


def minimal_deps(files: Iterable[Path], repo: Path) -> list[str]:
    """The needed files as repo-relative paths, a folder standing for its files when every ``.py``
    file under it is needed (never the repo root or a top-level package as a whole)."""
    repo = Path(os.path.abspath(repo))
    files = set(files)
    folders = sorted({p for f in files for p in f.parents if repo in p.parents and p.parent != repo},
                     key=lambda p: len(p.parts))
    chosen: list[Path] = []
    for folder in folders:
        if any(covers(c, folder) for c in chosen):
            continue
        if all(f in files for f in folder.rglob("*.py")):
            chosen.append(folder)
    rest = [f for f in files if not any(covers(c, f) for c in chosen)]
    return sorted(str(p.relative_to(repo)) for p in chosen + rest)


def _is_code(raw: str, repo: Path, scripts: list[str], packages: tuple[str, ...]) -> bool:
    """A dep that :func:`fix_dvc_yaml` manages: a script, a .py file or a path in a package."""
    if "${" in raw:
        return False
    p = _norm(repo, raw)
    return raw in scripts or p.suffix == ".py" or any(covers(repo / pkg, p) for pkg in packages)


def fix_dvc_yaml(repo: Path, packages: Iterable[str] = ("nablafx",), dvc_yaml: str = "dvc.yaml") -> list[str]:
    """Rewrite each stage's code deps in ``dvc.yaml`` to exactly its script(s) + :func:`minimal_deps`
    (comments and the other deps, templated ones included, are kept); return the changed stages."""
    from ruamel.yaml import YAML  # a dependency of dvc

    repo = Path(os.path.abspath(repo))
    packages = tuple(packages)
    reports = {r.stage: r for r in check_pipeline(repo, packages, dvc_yaml)}
    ry = YAML()
    ry.preserve_quotes = True
    ry.width = 4096
    ry.indent(mapping=2, sequence=4, offset=2)
    path = repo / dvc_yaml
    doc = ry.load(path.read_text())
    changed = []
    for name, spec in doc["stages"].items():
        r = reports[name]
        scripts = [str(p.relative_to(repo)) for p in r.scripts]
        old = [_path_of(d) for d in spec.get("deps") or []]
        library = [d for d in minimal_deps(r.needed, repo) if d not in scripts]
        new = scripts + [d for d in old if not _is_code(d, repo, scripts, packages)] + library
        if [str(d) for d in old] != new:
            others = {_path_of(d): d for d in spec.get("deps") or []}  # keep options of non-code deps
            spec["deps"] = [others.get(d, d) for d in new]
            changed.append(name)
    if changed:
        with open(path, "w") as f:
            ry.dump(doc, f)
    return changed


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m nablafx.depgraph", description=__doc__.split("\n\n")[0])
    ap.add_argument("repo", nargs="?", default=".")
    ap.add_argument("--fix", action="store_true", help="rewrite the code deps in dvc.yaml to what the stages import")
    args = ap.parse_args(argv)
    repo = Path(args.repo)
    if args.fix:
        print(f"dvc.yaml: rewrote the code deps of {', '.join(fix_dvc_yaml(repo)) or 'no stage'}")
    reports = check_pipeline(repo)
    for r in reports:
        print(f"{r.stage}:")
        for line in minimal_deps(r.needed, repo):
            print(f"  - {line}")
        for p in r.problems:
            print(f"  ! {p}")
    return 1 if any(r.problems for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
