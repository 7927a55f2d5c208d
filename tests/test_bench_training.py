"""benchmarks/bench_training.py: the side-by-side harness (lock-step children, memory and time
stops, the table) on stand-in children, and one end-to-end run against the reference checkout."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import bench_training as bt  # noqa: E402

REFERENCE = Path("/work/.mirror/mcomunita+nablafx/repo")

# A stand-in child speaking the protocol: "ready" line, one line per "step", peak at "done".
FAKE = """
import json, sys
name, times, log = sys.argv[1], [float(t) for t in sys.argv[2].split(",")], sys.argv[3]
print(json.dumps({"params": 7}), flush=True)
k = 0
for line in sys.stdin:
    if line.strip() != "step":
        break
    open(log, "a").write(name)
    print(json.dumps({"t": times[k % len(times)], "loss": 0.5}), flush=True)
    k += 1
print(json.dumps({"peak_rss_mb": 12.5}), flush=True)
"""


def fake(tmp_path, name, times, log="order.txt", body=FAKE):
    script = tmp_path / f"{name}.py"
    script.write_text(body)
    return [sys.executable, str(script), name, ",".join(map(str, times)), str(tmp_path / log)]


def test_pair_alternates_steps_and_takes_the_median(tmp_path):
    cmds = {"reference": fake(tmp_path, "R", [9.0, 3.0, 4.0, 5.0]), "nablafx": fake(tmp_path, "N", [9.0, 1.0, 1.5, 2.0])}
    res = bt.run_pair(cmds, warmup=1, steps=3, first=0, mem_limit_mb=4096, timeout=60, threads=1)
    ref, our = res["reference"], res["nablafx"]
    assert ref["times"] == [3.0, 4.0, 5.0] and ref["s_per_step"] == 4.0  # the warm-up step is not timed
    assert our["s_per_step"] == 1.5 and our["params"] == 7 and our["peak_rss_mb"] == 12.5
    assert len(ref["load_avg"]) == 3
    assert (tmp_path / "order.txt").read_text() == "RNNRRNNR"  # ABBA…: each side first every other step
    res = bt.run_pair(cmds, warmup=0, steps=2, first=1, mem_limit_mb=4096, timeout=60, threads=1)
    assert (tmp_path / "order.txt").read_text().endswith("NRRN")


def test_a_child_over_the_memory_limit_is_stopped(tmp_path):
    hog = "import time\nx = bytearray(400 * 2**20)\nx[::4096] = b'1' * len(x[::4096])\ntime.sleep(60)\n"
    kid = bt.Child(fake(tmp_path, "H", [1.0], body=hog), mem_limit_mb=150, timeout=60, threads=1)
    assert kid.ready is None and kid.error == "stopped: resident memory above 0.146 GB"
    assert kid.seen_mb > 150 and kid.proc.returncode is not None


def test_a_silent_child_times_out_and_a_crash_reports_its_last_line(tmp_path):
    kid = bt.Child(fake(tmp_path, "S", [1.0], body="import time\ntime.sleep(60)\n"), 4096, timeout=1, threads=1)
    assert kid.error == "stopped: no reply within 1 s" and kid.ask("step") is None
    crash = "import sys\nprint('noise', file=sys.stderr)\nraise MemoryError('out of memory in step')\n"
    kid = bt.Child(fake(tmp_path, "C", [1.0], body=crash), 4096, timeout=60, threads=1)
    assert kid.error == "MemoryError: out of memory in step"


def test_one_side_failing_leaves_the_other_measured(tmp_path):
    crash = "raise SystemExit('reference cannot build')\n"
    cmds = {"reference": fake(tmp_path, "R", [1.0], body=crash), "nablafx": fake(tmp_path, "N", [2.0, 1.0])}
    res = bt.run_pair(cmds, warmup=1, steps=2, first=0, mem_limit_mb=4096, timeout=60, threads=1)
    assert res["reference"]["error"] == "reference cannot build" and "s_per_step" not in res["reference"]
    assert res["nablafx"]["times"] == [1.0, 2.0]


def _side(s, peak=1024.0, params=100):
    return {"times": [s], "load_avg": [2.0], "params": params, "s_per_step": s, "peak_rss_mb": peak}


def test_table_shows_both_columns_the_ratio_and_differing_params():
    meta = {"device": "cpu", "batch": 16, "seconds": 3.0, "threads": 2, "steps": 3, "warmup": 1,
            "reference_commit": "0123456789abcdef"}
    rows = [{"config": "tcn/a.yaml", "variant": "paper-a", "context": 10, "reference": _side(3.0),
             "nablafx": _side(1.0, 2048.0), "speedup": 3.0},
            {"config": "s4/b.yaml", "variant": "paper-b", "context": 2048,
             "reference": {"error": "stopped: resident memory above 12 GB", "peak_rss_mb": 12400.0},
             "nablafx": _side(2.0, params=99), "speedup": None}]
    md = bt.markdown(meta, rows)
    assert "| `tcn/a.yaml` | `paper-a` | 100 / 100 | 10 | 3.000 | 1.000 | 3.00× | 1.00 | 2.00 | 2.0 / 2.0 |" in md
    assert "| error: stopped: resident memory above 12 GB | 2.000 | — | 12.11 |" in md
    assert "— / 99 |" in md
    assert "Partial" not in md  # a file from before the marker, or a complete run
    partial = bt.markdown({**meta, "planned": 5, "complete": False}, rows)
    assert "**Partial: 2 of 5 configs measured; the run was stopped or is still going.**" in partial


@pytest.mark.parametrize("config", sorted(bt.CONFIGS))
def test_every_benchmarked_config_has_its_variant(config):
    model, spec, variant = bt.build_nablafx(config, 1 if "-param" in config else 0)
    assert variant == "paper-" + Path(config).stem.split("_")[2] and spec["family"] in config.split("/")[0]
    assert bt.context_of(model) >= 2046


@pytest.mark.slow
@pytest.mark.skipif(not REFERENCE.is_dir(), reason="needs the reference's git mirror (mcomunita/nablafx)")
def test_quick_run_against_the_reference(tmp_path):
    out = tmp_path / "training"
    assert bt.main(["--reference", str(REFERENCE), "--quick", "--configs", "tcn/model_bb_tcn-45-s-16.yaml",
                    "--steps", "1", "--warmup", "0", "--threads", "1", "--out", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    (row,) = data["rows"]
    assert row["reference"]["params"] == row["nablafx"]["params"] == 7457
    assert row["speedup"] > 0 and row["reference"]["peak_rss_mb"] > 100 and row["nablafx"]["peak_rss_mb"] > 100
    from nablafx import allocator

    assert row["nablafx"]["heap"]["training_heap"] is (allocator._glibc() is not None)  # as run_training sets it
    assert row["reference"]["heap"]["training_heap"] is False and data["meta"]["reference_heap"] is False
    assert len(data["meta"]["reference_commit"]) == 40 and data["provenance"]["machine"]["load_avg"]
    assert out.with_suffix(".md").read_text().count("| `tcn/model_bb_tcn-45-s-16.yaml` |") == 1


def test_nablafx_sets_reach_the_model_and_the_table():
    sets = bt.parse_sets(["recompute=true", "hidden_size=8"])
    assert sets == {"recompute": True, "hidden_size": 8}
    model, spec, _ = bt.build_nablafx("lstm/model_bb-tbptt_lstm-96.yaml", 0, sets={"recompute": True})
    assert model.recompute is True and spec["recompute"] is True
    md = bt.markdown({"device": "cpu", "batch": 16, "seconds": 3.0, "threads": 2, "steps": 3, "warmup": 1,
                      "reference_commit": "0123456789abcdef", "nablafx_set": {"recompute": True}}, [])
    assert "Every nablafx variant with `recompute: True` (`--nablafx-set`)." in md
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        bt.parse_sets(["recompute"])


def test_table_says_which_heap_each_side_ran_with():
    meta = {"device": "cpu", "batch": 16, "seconds": 3.0, "threads": 2, "steps": 3, "warmup": 1,
            "reference_commit": "0123456789abcdef"}
    md = bt.markdown(meta, [])
    assert "the reference's side with the C library's defaults, as it runs" in md
    assert "the reference's side with the same settings (`--reference-heap`)." in bt.markdown({**meta, "reference_heap": True}, [])
    heap = bt.training_heap(False)  # reports what is in effect, changes nothing
    assert heap["training_heap"] is False and set(heap) == {"training_heap", "huge_pages"}


def test_readme_section_comes_from_the_results_file(tmp_path):
    import json

    rows = [{"config": "lstm/model_bb-tbptt_lstm-96.yaml", "overrides": {}, "reference": _side(3.0),
             "nablafx": _side(1.5, 2048.0), "speedup": 2.0},
            {"config": "lstm/model_bb_lstm-32.yaml", "overrides": {"residual": True}, "reference": _side(2.0),
             "nablafx": {"error": "stopped"}, "speedup": None}]
    prov = {"commit": "a" * 40, "machine": {"cpu": "CPU X", "load_avg": [1.0, 1.0, 1.0]}}
    results = tmp_path / "training_cpu.json"
    meta = {"threads": 2, "batch": 16, "seconds": 3.0, "reference_commit": "b" * 40}
    results.write_text(json.dumps({"provenance": prov, "meta": {**meta, "complete": True}, "rows": rows}))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{bt.BEGIN}\nold\n{bt.END}\nafter\n")
    bt.update_readme(readme, results, "python benchmarks/bench_training.py --readme README.md")
    text = readme.read_text()
    assert "| LSTM-96 (TBPTT) | 3.00 | 1.50 | 2.00× | 1.00 / 2.00 GB |" in text
    assert "| LSTM-32, residual | 2.00 | — | — | 1.00 / — GB |" in text
    assert "commit aaaaaaaaaaaa, reference bbbbbbbbbbbb" in text and "old" not in text and text.endswith("after\n")
    results.write_text(json.dumps({"provenance": prov, "meta": {**meta, "complete": False}, "rows": rows}))
    with pytest.raises(SystemExit, match="partial"):
        bt.update_readme(readme, results, "cmd")
