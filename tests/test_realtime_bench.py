"""benchmarks/realtime.py end to end on small variants: every path measured, the results written
after every variant (a stopped run keeps what it measured, marked partial), and the README table
refused from partial results."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import realtime as rt  # noqa: E402

FAST = ["--quick", "--seconds", "0.02", "--max-seconds", "0.1", "--concurrency", "1", "--concurrency-seconds", "0.1"]


def test_a_stopped_run_keeps_the_variants_it_measured(tmp_path, monkeypatch):
    real_stream, calls, me = rt.stream, [], os.getpid()

    def stream_then_stop(runner, block, seconds, max_seconds):
        if os.getpid() != me:  # the memory probe's forked child
            return real_stream(runner, block, seconds, max_seconds)
        calls.append(block)
        if len(calls) > 9:  # the second variant's first measurement: 3 paths × 3 blocks before it
            raise KeyboardInterrupt
        return real_stream(runner, block, seconds, max_seconds)

    monkeypatch.setattr(rt, "stream", stream_then_stop)
    out = tmp_path / "rt"
    with pytest.raises(KeyboardInterrupt):
        rt.main(["tcn-45-film", "gb-dist-cond", *FAST, "--out", str(out)])
    data = json.loads(out.with_suffix(".json").read_text())
    assert not data["complete"] and [v["variant"] for v in data["variants"]] == ["tcn-45-film"]
    assert {(r["path"], r["block"]) for r in data["rows"]} == {(p, b) for p in rt.PATHS for b in (64, 128, 512)}
    assert all(r["rtf"] > 0 for r in data["rows"])
    assert "**Partial: 1 of 2 variants measured" in out.with_suffix(".md").read_text()
    readme = tmp_path / "README.md"
    readme.write_text(f"x\n{rt.BEGIN}\nold\n{rt.END}\n")
    with pytest.raises(SystemExit, match="partial results"):
        rt.update_readme(readme, out.with_suffix(".json"), "python benchmarks/realtime.py --readme README.md")
    assert "old" in readme.read_text()


def test_a_complete_run_is_not_marked_partial_and_fills_the_readme(tmp_path):
    out = tmp_path / "rt"
    assert rt.main(["gb-dist-cond", *FAST, "--out", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["complete"] and "Partial" not in out.with_suffix(".md").read_text()
    readme = tmp_path / "README.md"
    readme.write_text(f"x\n{rt.BEGIN}\nold\n{rt.END}\n")
    rt.update_readme(readme, out.with_suffix(".json"), "python benchmarks/realtime.py --readme README.md")
    assert "old" not in readme.read_text() and "gb-dist-cond" in readme.read_text()


def test_a_child_that_dies_is_an_error_not_a_hang(monkeypatch):
    def die(spec, conn):
        os._exit(3)

    monkeypatch.setattr(rt, "_memory_child", die)
    with pytest.raises(RuntimeError, match=r"memory probe: the child process ended \(exit code 3\) without a result"):
        rt.peak_memory_mib({"family": "tcn"})


def test_group_names_and_the_group_table_count_targets():
    assert rt.group_of("paper-tcn-f-45-s-16") == "paper-tcn-f"
    assert rt.group_of("paper-s4-tvf-b8-s32-c16") == "paper-s4-tvf"
    assert rt.group_of("paper-lstm-tvc-96") == "paper-lstm-tvc"
    assert rt.group_of("s4-tvf-b8-s32-c16") == "s4-tvf" and rt.group_of("tcn-45-film") == "tcn"

    def row(v, path, block, rtf, p99=0.1):
        return {"variant": v, "path": path, "block": block, "rtf": rtf, "p99_share": p99}

    data = {"variants": [{"variant": "paper-tcn-45-s-16"}, {"variant": "paper-tcn-250-l-16"},
                         {"variant": "paper-s4-b4-s32-c16"}],
            "rows": [row("paper-tcn-45-s-16", "eager", 64, 1.5), row("paper-tcn-45-s-16", "onnx", 64, 3.0),
                     row("paper-tcn-45-s-16", "onnx", 512, 12.0), row("paper-tcn-45-s-16", "onnx", 128, 5.0, 0.2),
                     row("paper-tcn-250-l-16", "onnx", 64, 1.9), row("paper-tcn-250-l-16", "onnx", 512, 9.0),
                     row("paper-tcn-250-l-16", "onnx", 128, 4.0, 0.6),
                     row("paper-s4-b4-s32-c16", "torchscript", 512, 11.0)]}
    table = rt.group_table(data).splitlines()
    # the best path per variant: tcn-45's 3.0× (onnx), not its 1.5× (eager)
    assert table[2] == "| `paper-tcn-…` | 2 | 1.9× – 3.0× | 9.0× – 12.0× | 0.20 – 0.60 | 1 | 1 | 1 |"
    assert table[3] == "| `paper-s4-…` | 1 | — | 11.0× | — | 0 | 1 | 0 |"


def test_the_readme_summarises_a_second_results_file_by_group(tmp_path):
    out, paper = tmp_path / "rt", tmp_path / "rt_paper"
    assert rt.main(["gb-dist-cond", *FAST, "--out", str(out)]) == 0
    assert rt.main(["paper-tcn-45-s-16", *FAST, "--out", str(paper)]) == 0
    readme = tmp_path / "README.md"
    readme.write_text(f"x\n{rt.BEGIN}\nold\n{rt.END}\n")
    rt.main(["--readme", str(readme), "--out", str(out), "--groups", str(paper.with_suffix(".json"))])
    text = readme.read_text()
    assert "gb-dist-cond" in text and "| `paper-tcn-…` | 1 |" in text and text.rstrip().endswith(rt.END)
    data = json.loads(paper.with_suffix(".json").read_text())
    data["complete"] = False
    paper.with_suffix(".json").write_text(json.dumps(data))
    with pytest.raises(SystemExit, match="partial results"):
        rt.main(["--readme", str(readme), "--out", str(out), "--groups", str(paper.with_suffix(".json"))])


def test_the_machine_speed_probe_is_recorded_and_shown():
    assert rt.machine_speed(0.01) > 0
    assert rt._speed_note({}) == ""
    note = rt._speed_note({"machine_gflops": [3.04, 2.5]})
    assert note.endswith("3.0 GFLOP/s at the start, 2.5 at the end of the run.")
