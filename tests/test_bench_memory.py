"""benchmarks/bench_memory.py: a paper variant built and stepped as the train stage does, in its own
process, and the table that counts variants over the limit."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import bench_memory as bm  # noqa: E402


def _args(**kw):
    base = {"threads": 1, "steps": 1, "batch": 2, "seconds": 0.25, "sample_rate": 48000, "timeout": 300.0}
    return argparse.Namespace(**{**base, **kw})


def test_child_uses_the_paper_recipe_and_the_variants_own_training_keys():
    row = bm.child("paper-lstm-96", _args(seconds=0.3))
    assert row["tbptt"] == 4800  # the variant's own tbptt_samples (params.yaml), not train:'s 0
    assert row["loss"] == ["esr", "l1", "mrstft"]  # recipes.paper.loss
    assert row["context"] == 2048 and row["samples"] == 14400 and row["batch"] == 2
    assert row["params"] > 30000 and row["peak_rss_mb"] >= row["built_rss_mb"] > 0
    assert len(row["step_s"]) == 1 and row["step_s"][0] > 0


def test_main_writes_rows_and_counts_variants_over_the_limit(tmp_path, monkeypatch):
    out = tmp_path / "mem"
    assert bm.main(["paper-tcn-45-s-16", "--quick", "--threads", "1", "--out", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["complete"] and data["provenance"]["commit"]
    (row,) = data["rows"]
    assert row["variant"] == "paper-tcn-45-s-16" and row["batch"] == 2 and row["tbptt"] == 0
    assert "1 of 1 variants within 8 GB" in out.with_suffix(".md").read_text()
    hot = {**row, "variant": "big", "peak_rss_mb": 9 * 1024.0}
    text = bm.markdown({**data, "rows": [row, hot, {"variant": "bad", "error": "boom"}]})
    assert "1 of 3 variants within 8 GB**; above it: big; failed: bad." in text
    assert "| bad | — | — | — | — | — | error: boom | — |" in text
    assert row["recompute"] is True and "| paper-tcn-45-s-16 | 7,457 | 2 × 12000 (+ 2046) | whole chunk | true |" in text
    from nablafx import allocator

    assert row["heap_trim"] is allocator.enabled() and row["heap_trim_above_gib"] == allocator.trim_above() / 2**30
    assert (f"yes, every variant, while the process's resident set is ≥ {row['heap_trim_above_gib']:g} GiB"
            if allocator.enabled() else "no (not glibc") in text
    old = {k: v for k, v in row.items() if k != "heap_trim_above_gib"}  # a row from before the threshold was recorded
    assert "threshold: that commit's" in bm.markdown({**data, "rows": [old]}) or not allocator.enabled()
    assert "mixed" in bm.markdown({**data, "rows": [row, {**row, "heap_trim_above_gib": 0.0}]})
    assert row["training_heap"] is (allocator._glibc() is not None)  # as run_training sets it
    assert ("Large tensors kept in the heap, on huge pages, as training does (`nablafx.allocator.use_training_heap`): "
            + ("yes" if row["training_heap"] else "no")) in text
    assert "not recorded (before the setting existed)" in bm.markdown(
        {**data, "rows": [{k: v for k, v in row.items() if k not in ("training_heap", "huge_pages")}]})


def test_unknown_variant_is_refused_before_any_run(tmp_path):
    with pytest.raises(SystemExit, match="unknown variant.*paper-nope"):
        bm.main(["paper-nope", "--out", str(tmp_path / "m")])
    assert not (tmp_path / "m.json").exists()
