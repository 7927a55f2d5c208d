"""nablafx.depgraph: static import walking on a tiny fake package, dvc.yaml checks, and the check
on the real dvc.yaml (every module a stage imports is one of its deps)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from nablafx.depgraph import (
    DepGraphError,
    check_pipeline,
    fix_dvc_yaml,
    imported_names,
    load_stages,
    minimal_deps,
    walk_imports,
)

REPO = Path(__file__).resolve().parents[1]

FAKE = {
    "stages/run.py": """
        import sys
        from pkg import a

        def main():
            import pkg.sub.deep as d  # inside a function
            return d
        """,
    "pkg/__init__.py": '"""top: mentions pkg.unused in prose, which is no import"""\n',
    "pkg/a.py": """
        import os

        def f():
            from pkg.b import thing  # a name, not a submodule
            return thing
        """,
    "pkg/b.py": "from .c import y  # relative\nthing = 1\n",
    "pkg/c.py": 'import importlib\ny = 2\nimportlib.import_module("pkg.d")\n',
    "pkg/d.py": "z = 3\n",
    "pkg/sub/__init__.py": "from . import helper\n",
    "pkg/sub/helper.py": "",
    "pkg/sub/deep.py": "from .. import e\n",
    "pkg/e.py": "",
    "pkg/unused.py": "import pkg.a\n",
    "pkg/sub/unused2.py": "",
    "other/x.py": "",
}


def _write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def fake(tmp_path):
    return _write_tree(tmp_path / "repo", FAKE)


def _rel(paths, root):
    return {str(Path(p).relative_to(root)) for p in paths}


def test_walk_follows_every_kind_of_import(fake):
    graph = walk_imports(fake / "stages/run.py", fake, ["pkg"])
    assert _rel(graph.files, fake) == {
        "stages/run.py", "pkg/__init__.py", "pkg/a.py", "pkg/b.py", "pkg/c.py", "pkg/d.py",
        "pkg/sub/__init__.py", "pkg/sub/helper.py", "pkg/sub/deep.py", "pkg/e.py"}
    # the chain names how a file was reached
    assert [str(p.relative_to(fake)) for p in graph.chain(fake / "pkg/d.py")] == [
        "stages/run.py", "pkg/a.py", "pkg/b.py", "pkg/c.py", "pkg/d.py"]


def test_walk_ignores_other_packages_and_names(fake):
    graph = walk_imports(fake / "pkg/b.py", fake, ["pkg"])
    assert _rel(graph.files, fake) == {"pkg/b.py", "pkg/__init__.py", "pkg/c.py", "pkg/d.py"}
    assert "other/x.py" not in _rel(walk_imports(fake / "stages/run.py", fake, ["pkg"]).files, fake)


def test_imported_names_relative_and_star():
    src = "from . import a\nfrom ..b import c\nfrom .d import *\nimport x.y as z\n"
    assert imported_names(src, "p.q.r", is_package=False) == {"p.q", "p.q.a", "p.b", "p.b.c", "p.q.d", "x.y"}
    assert imported_names("from . import a\n", "p.q", is_package=True) == {"p.q", "p.q.a"}
    with pytest.raises(DepGraphError, match="beyond the top-level package"):
        imported_names("from ... import a\n", "p.q", is_package=False, filename="p/q.py")
    with pytest.raises(DepGraphError, match="bad.py: cannot parse"):
        imported_names("def (:\n", filename="bad.py")


def _pipeline(root: Path, deps: list, extra: dict | None = None, params: dict | None = None):
    stages = {"run": {"cmd": "python stages/run.py --out out.txt", "deps": deps, "outs": ["out.txt"]}}
    stages.update(extra or {})
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    (root / "params.yaml").write_text(yaml.safe_dump(params or {"data": {"root": "data"}}))


def _problems(root):
    return [p for r in check_pipeline(root, packages=["pkg"]) for p in r.problems]


def test_check_passes_with_a_covering_folder(fake):
    _pipeline(fake, ["stages/run.py", "pkg"])
    assert _problems(fake) == []


def test_check_names_stage_and_uncovered_file(fake):
    _pipeline(fake, ["stages/run.py", "pkg/__init__.py", "pkg/a.py", "pkg/sub"])
    problems = _problems(fake)
    uncovered = {p.split("cover ")[1].split(" ")[0] for p in problems}
    assert uncovered == {"pkg/b.py", "pkg/c.py", "pkg/d.py", "pkg/e.py"}
    assert all(p.startswith("stage 'run': deps do not cover ") for p in problems)
    assert any("pkg/d.py (imported via stages/run.py → pkg/a.py → pkg/b.py → pkg/c.py → pkg/d.py)" in p
               for p in problems)


def test_check_requires_the_script_itself(fake):
    _pipeline(fake, ["pkg"])
    assert _problems(fake) == ["stage 'run': deps do not cover stages/run.py (imported via stages/run.py)"]


def test_check_missing_deps_but_not_produced_ones(fake):
    (fake / "data.dvc").write_text(yaml.safe_dump({"outs": [{"path": "data", "md5": "0" * 32}]}))
    extra = {"next": {"cmd": "python stages/run.py", "deps": ["stages/run.py", "pkg", "out.txt", "data/dev/sub",
                                                              "nowhere/file.txt"]}}
    _pipeline(fake, ["stages/run.py", "pkg"], extra)
    # out.txt comes from stage `run`, data/dev/sub lies in data.dvc's output: neither exists yet
    assert _problems(fake) == [
        "stage 'next': dep nowhere/file.txt does not exist (and no stage or .dvc file produces it)"]


def test_check_renders_params_templates(fake, tmp_path):
    outside = tmp_path / "elsewhere"
    (outside / "dev").mkdir(parents=True)
    _pipeline(fake, ["stages/run.py", "pkg", "${data.root}/${data.device}"],
              params={"data": {"root": str(outside), "device": "dev"}})
    [stage] = load_stages(fake)
    assert stage.deps[-1] == f"{outside}/dev"
    assert _problems(fake) == []
    _pipeline(fake, ["stages/run.py", "pkg", "${data.root}/${data.device}"],
              params={"data": {"root": str(outside), "device": "gone"}})
    assert _problems(fake) == [f"stage 'run': dep {outside}/gone does not exist (and no stage or .dvc file produces it)"]
    _pipeline(fake, ["stages/run.py", "pkg", "${data.nope}"])
    with pytest.raises(DepGraphError, match=r"stages.run: \$\{data.nope\}: not defined"):
        load_stages(fake)


def test_check_flags_a_stage_running_no_script(fake):
    _pipeline(fake, ["pkg"], {"shell": {"cmd": "echo hi > x.txt", "deps": ["pkg"]}})
    assert "stage 'shell': its cmd runs no .py file of the repo ('echo hi > x.txt')" in _problems(fake)


def test_python_dash_m_is_followed(fake):
    _pipeline(fake, ["pkg/sub"], {"mod": {"cmd": "python -m pkg.sub.deep", "deps": ["pkg/sub"]}})
    mod = next(r for r in check_pipeline(fake, packages=["pkg"]) if r.stage == "mod")
    assert [str(p.relative_to(fake)) for p in mod.scripts] == ["pkg/sub/deep.py"]
    assert {p.split("cover ")[1].split(" ")[0] for p in mod.problems} == {"pkg/__init__.py", "pkg/e.py"}


def test_minimal_deps_collapses_complete_folders(fake):
    needed = walk_imports(fake / "stages/run.py", fake, ["pkg"]).files
    # pkg/sub/unused2.py is not needed, so pkg/sub stays as files; the top-level package never collapses
    assert minimal_deps(needed, fake) == [
        "pkg/__init__.py", "pkg/a.py", "pkg/b.py", "pkg/c.py", "pkg/d.py", "pkg/e.py",
        "pkg/sub/__init__.py", "pkg/sub/deep.py", "pkg/sub/helper.py", "stages/run.py"]
    (fake / "pkg/sub/unused2.py").unlink()
    assert "pkg/sub" in minimal_deps(needed, fake)


def test_fix_rewrites_code_deps_and_keeps_the_rest(fake):
    (fake / "data").mkdir()
    (fake / "dvc.yaml").write_text(textwrap.dedent("""\
        # the pipeline
        stages:
          run:
            cmd: python stages/run.py --out out.txt
            deps:
              - stages/run.py
              - pkg/a.py        # too little
              - ${data.root}
              - pkg/unused.py
            outs:
              - out.txt:
                  persist: true
        """))
    (fake / "params.yaml").write_text("data:\n  root: data\n")
    assert _problems(fake)
    assert fix_dvc_yaml(fake, packages=["pkg"]) == ["run"]
    text = (fake / "dvc.yaml").read_text()
    assert text.startswith("# the pipeline\n") and "persist: true" in text
    deps = yaml.safe_load(text)["stages"]["run"]["deps"]
    assert deps[:2] == ["stages/run.py", "${data.root}"] and "pkg/unused.py" not in deps and "pkg/d.py" in deps
    assert _problems(fake) == []
    assert fix_dvc_yaml(fake, packages=["pkg"]) == []  # idempotent


# ---------------------------------------------------------------------------------------------
# the real pipeline

STAGES = list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])


@pytest.fixture(scope="module")
def reports():
    return {r.stage: r for r in check_pipeline(REPO)}


@pytest.mark.parametrize("stage", STAGES)
def test_stage_deps_cover_every_imported_module(stage, reports):
    report = reports[stage]
    assert report.scripts, f"stage {stage!r} runs no script"
    assert not report.problems, (
        "\n".join(report.problems)
        + "\nfix: `python -m nablafx.depgraph --fix` rewrites the code deps in dvc.yaml")


def test_real_graph_is_not_trivially_empty(reports):
    """Guards the walker itself: known edges of the library are found."""
    needed = {s: {str(p.relative_to(REPO)) for p in r.needed} for s, r in reports.items()}
    assert {"nablafx/__init__.py", "nablafx/config.py", "stages/test.py", "nablafx/streaming.py",
            "nablafx/evaluation/evaluate.py"} <= needed["test"]
    assert "nablafx/models/tcn.py" in needed["train"]  # reached through the registry's import_module
    assert "nablafx/plotting/report.py" in needed["plots"]
    assert not any(f.startswith("nablafx/plotting") for f in needed["train"])
    assert "nablafx/depgraph.py" not in set().union(*needed.values())


def test_data_root_is_a_templated_dep():
    """The data dependency follows params.yaml data.root (DVC renders ${...} from params.yaml)."""
    raw = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert "${data.root}" in raw["prepare"]["deps"]
    for stage in ("train", "test", "fad", "plots"):  # they read the indexed audio
        assert {"${data.root}/${data.device}", "${data.root}/${data.dry_dir}"} <= set(raw[stage]["deps"]), stage
    assert not any(d == "data" for s in raw.values() for d in s.get("deps", []))
