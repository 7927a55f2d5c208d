"""Results trace to a run: the provenance block, and every committed results file carries one."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from nablafx.provenance import git_state, markdown_footer, params_hash, record, write_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = sorted((ROOT / "benchmarks" / "results").glob("*.json"))


def test_params_hash_is_order_free_and_value_sensitive():
    assert params_hash({"a": 1, "b": [1, 2]}) == params_hash({"b": [1, 2], "a": 1})
    assert params_hash({"a": 1}) != params_hash({"a": 2})
    assert len(params_hash({})) == 16


def test_record_names_commit_machine_and_command():
    prov = record({"x": 1}, command="python benchmarks/x.py --fast")
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert prov["commit"] == head
    assert prov["command"] == "python benchmarks/x.py --fast"
    assert prov["params_hash"] == params_hash({"x": 1})
    m = prov["machine"]
    assert m["cpu"] and m["logical_cpus"] >= 1 and m["torch_threads"] >= 1 and m["torch"].startswith("2.")


def test_git_state_outside_a_repository(tmp_path):
    assert git_state(tmp_path) == {"commit": None, "dirty": None}


def test_dirty_flag_follows_code_not_outputs(tmp_path):
    def git(*a):
        subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "nablafx").mkdir()
    (tmp_path / "nablafx" / "m.py").write_text("x = 1\n")
    (tmp_path / "metrics.json").write_text("{}\n")
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "r.md").write_text("old\n")
    (tmp_path / "benchmarks" / "b.py").write_text("y = 1\n")
    git("add", ".")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "init")
    assert git_state(tmp_path)["dirty"] is False
    (tmp_path / "metrics.json").write_text('{"esr": 1}\n')  # a stage output changed: not dirty
    assert git_state(tmp_path)["dirty"] is False
    (tmp_path / "benchmarks" / "results" / "r.md").write_text("new\n")  # an earlier benchmark's results: not dirty
    assert git_state(tmp_path)["dirty"] is False
    (tmp_path / "benchmarks" / "b.py").write_text("y = 2\n")  # a benchmark's code: dirty
    assert git_state(tmp_path)["dirty"] is True
    (tmp_path / "benchmarks" / "b.py").write_text("y = 1\n")
    (tmp_path / "nablafx" / "m.py").write_text("x = 2\n")
    assert git_state(tmp_path)["dirty"] is True


def test_write_results_writes_both_files_with_provenance(tmp_path):
    write_results(tmp_path / "r", "# Title\n\n| a |\n|---|\n| 1 |", {"rows": [{"a": 1}]}, params={"k": 1},
                  command="python benchmarks/r.py")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["rows"] == [{"a": 1}] and data["provenance"]["params_hash"] == params_hash({"k": 1})
    md = (tmp_path / "r.md").read_text()
    assert md.startswith("# Title") and "Made by `python benchmarks/r.py` at commit" in md
    assert md.endswith(markdown_footer(data["provenance"]))


@pytest.mark.parametrize("path", RESULTS, ids=[p.name for p in RESULTS])
def test_every_results_file_traces_to_a_run(path):
    prov = json.loads(path.read_text()).get("provenance")
    assert prov, f"{path.name}: no provenance block (regenerate it with its script)"
    assert prov["commit"] and len(prov["commit"]) == 40, path.name
    assert prov["dirty"] is False, f"{path.name}: made from uncommitted code"
    assert prov["params_hash"] and prov["command"].startswith("python benchmarks/"), path.name
    assert {"cpu", "torch_threads", "torch", "logical_cpus"} <= set(prov["machine"]), path.name
    md = path.with_suffix(".md")
    assert md.is_file() and md.read_text().endswith(markdown_footer(prov)), f"{md.name}: not what its script wrote"
    # the commit that made it is an ancestor of this checkout
    rc = subprocess.run(["git", "-C", str(ROOT), "merge-base", "--is-ancestor", prov["commit"], "HEAD"],
                        capture_output=True).returncode
    assert rc == 0, f"{path.name}: made at {prov['commit'][:12]}, which is not in this history"


def test_results_folder_holds_only_paired_generated_files():
    for p in (ROOT / "benchmarks" / "results").iterdir():
        assert p.suffix in (".json", ".md") and p.with_suffix(".json").is_file(), p.name
