"""Imports run one way (DESIGN.md): read from the source with ``ast``, function-level imports included.

* evaluation, config and data never import training (metrics and spectral losses live in the
  neutral ``nablafx.metrics``; ``load_index`` in ``nablafx.data``);
* models never import Lightning, DVC or ``nablafx.data``;
* the library never imports a stage.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "nablafx"


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """Absolute names of every module ``path`` imports (``from a import b`` gives ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the package
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base]) if base else ".".join(parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def modules(*paths: str) -> list[Path]:
    out = []
    for p in paths:
        target = ROOT / p
        out += sorted(target.rglob("*.py")) if target.is_dir() else [target]
    assert out, paths
    return out


def _hits(files: list[Path], forbidden: tuple[str, ...], root: Path = ROOT) -> list[str]:
    hits = []
    for f in files:
        for name in sorted(imports_of(f, root)):
            if any(name == bad or name.startswith(bad + ".") for bad in forbidden):
                hits.append(f"{f.relative_to(root)} imports {name}")
    return hits


RULES = [
    (("nablafx/evaluation", "nablafx/config.py", "nablafx/data", "nablafx/metrics.py", "nablafx/errors.py"),
     ("nablafx.training",)),
    (("nablafx/models", "nablafx/nn", "nablafx/processors", "nablafx/controllers", "nablafx/dsp"),
     ("lightning", "pytorch_lightning", "dvc", "dvclive", "nablafx.data", "nablafx.training",
      "nablafx.evaluation")),
    (("nablafx",), ("stages",)),
    (("nablafx/errors.py",), ("nablafx",)),
]


@pytest.mark.parametrize("sources, forbidden", RULES, ids=[",".join(r[0]) for r in RULES])
def test_import_direction(sources, forbidden):
    hits = _hits(modules(*sources), forbidden)
    assert not hits, "\n".join(hits)


def test_the_checker_sees_every_kind_of_import(tmp_path):
    """The parser must catch lazy and relative imports, or the rules above prove nothing."""
    src = tmp_path / "nablafx" / "evaluation" / "probe.py"
    src.parent.mkdir(parents=True)
    src.write_text("import os\n\n\ndef f():\n    from ..training import losses\n    import nablafx.training.system\n\n\n"
                   "from nablafx.training.train import run_training\nfrom . import fad\n")
    names = imports_of(src, root=tmp_path)
    assert {"os", "nablafx.training", "nablafx.training.losses", "nablafx.training.system",
            "nablafx.training.train", "nablafx.evaluation.fad"} <= names
    assert len(_hits([src], ("nablafx.training",), tmp_path)) == 5  # four imports; ``from a import b`` gives two
    assert not _hits([src], ("nablafx.train",), tmp_path)  # a prefix of a name is not the module
