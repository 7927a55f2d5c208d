"""The report end to end on a tiny dataset and a tiny conditioned chain: every section filled,
every referenced file present and group-readable, nothing from the network, stale figures gone; then
the page in headless Chromium with the network off: every image and audio element loads."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from nablafx.evaluation.evaluate import evaluate
from nablafx.plotting import browser
from nablafx.plotting.report import Inputs, build_report, report_config

from ..conftest import make_tiny_dataset, params_with
from .conftest import SR, assert_png, chain

pytestmark = pytest.mark.slow  # end to end: evaluation, every figure, a browser

SECTIONS = ["metrics", "graybox", "blackbox", "signals", "listening", "comparison"]


def _index(root: Path) -> dict:
    items = []
    for code in ("D000_T050", "D050_T000", "D100_T100"):
        items.append({"name": "test-a", "dry": str(root / "DRY-with-markers/test/test-a.input.wav"),
                      "wet": str(root / f"Fake-Drive/test/{code}/{code}.test-a.target.wav"), "knob_code": code,
                      "knobs": [int(code[1:4]) / 100, int(code[6:9]) / 100], "split": "test"})
    return {"device": "Fake-Drive", "sample_rate": SR, "knob_letters": ["D", "T"], "n_knobs": 2, "items": items}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    old = os.umask(0o022)
    try:
        base = tmp_path_factory.mktemp("report")
        root = make_tiny_dataset(base / "data", seconds=(0.5, 1.0))
        index = _index(root)
        model = chain([{"type": "gain", "controller": "static-cond"}, {"type": "lowpass", "controller": "static-cond"},
                       {"type": "tanh", "controller": "static-cond"}], n_knobs=2, seed=2)
        result = evaluate(model, index, base / "pred")
        metrics = {"test": result["summary"], "model": {"variant": "gb-tiny", "family": "graybox",
                                                        "params": sum(p.numel() for p in model.parameters()),
                                                        "device": "Fake-Drive"}}
        records = base / "records"
        records.mkdir()
        (records / "older.json").write_text(json.dumps({
            "name": "older", "variant": "lstm-32", "params": {"train": {"max_steps": 10}, "data": {"device": "X"}},
            "files": {"reports/metrics.json": {"model": {"variant": "lstm-32", "params": 4513}, "test": {"esr": 0.5}}},
            "provenance": {}}))
        out = base / "reports"
        (out / "plots").mkdir(parents=True)
        (out / "plots/stale-from-another-model.png").write_bytes(b"old")
        cfg = report_config(params_with(report={"levels_db": [-24.0, -6.0, 0.0], "sine_hz": [200, 1000, 4000],
                                                "tone_seconds": 0.15, "sweep_points": 3, "excerpt_seconds": 0.5,
                                                "exp_show": False}))
        inp = Inputs(index=index, rows=result["rows"], metrics=metrics, model=model,
                     model_config={"spec": {"family": "graybox"}, "steps": 10}, pred_dir=base / "pred",
                     live_dir=base / "no-live", records_dir=records)
        summary = build_report(inp, cfg, out)
        yield out, summary
    finally:
        os.umask(old)


def test_every_section_is_filled_in_order(report):
    out, summary = report
    page = (out / "index.html").read_text()
    ids = re.findall(r"<section id='(\w+)'>", page)
    assert ids == SECTIONS
    assert "gb-tiny on Fake-Drive" in page and "D 0.50 · T 0.00" in page
    for sid in SECTIONS[1:4]:
        body = page.split(f"<section id='{sid}'>")[1].split("</section>")[0]
        assert body.count("<img") >= 3 and body.count("<figcaption>") == body.count("<img"), sid
    assert page.count("<audio") == 1 + 2 * 3  # dry once, target and prediction per setting
    assert "older" in page and "lstm-32" in page  # the comparison table lists the committed record
    assert "nablafx report: gb-tiny" in summary and "seconds per part" in summary


def test_every_referenced_file_exists_and_nothing_comes_from_the_network(report):
    out, _ = report
    page = (out / "index.html").read_text()
    refs = re.findall(r"(?:src|href)=['\"]([^'\"]+)['\"]", page)
    assert refs and not [r for r in refs if re.match(r"^[a-z]+:", r) or r.startswith("//")]
    for ref in refs:
        if not ref.startswith("#"):
            assert (out / ref).is_file(), ref
    for img in re.findall(r"<img src='([^']+)'", page):
        assert_png(out / img)
    assert not (out / "plots/stale-from-another-model.png").exists()
    assert sorted(p.name for p in (out / "plots").iterdir()) == sorted(Path(i).name for i in re.findall(r"<img src='([^']+)'", page))


def test_report_files_are_group_readable(report):
    out, _ = report
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 15
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {"0o644"}
    assert not [p for p in out.parent.glob(".*") if p.name.startswith(".reports")]  # no build folders left


def test_aliasing_metric_and_per_knob_summary(report):
    out, _ = report
    al = json.loads((out / "aliasing.json").read_text())
    assert set(al["model"]["per_knob"]) == {"D000_T050", "D050_T000", "D100_T100"}
    assert al["model"]["asr_db"] == max(al["model"]["per_knob"].values()) and al["target"]["asr_db"] is None
    rows = (out / "per_knob_summary.csv").read_text().splitlines()
    assert rows[0] == "knob_code,esr,l1,mrstft,loudness_diff_lu,asr_db" and len(rows) == 4


def test_page_loads_in_headless_chromium_with_the_network_off(report, tmp_path):
    if browser.find_chromium() is None:
        pytest.skip("chromium not installed (Debian: apt-get install chromium; .ci/run installs it)")
    out, _ = report
    found = browser.inspect_page(out / "index.html", tmp_path / "report.png")
    assert found["images"] and all(i["ok"] for i in found["images"]), found["images"]
    assert found["audio"] and all(a["ok"] and a["duration"] == pytest.approx(0.5, abs=0.01) for a in found["audio"])
    assert not found["failed_requests"] and not found["console_errors"] and not found["exceptions"], found
    assert all(u.startswith(("file://", "data:")) for u in found["requests"]), found["requests"]  # data: chromium's own icons
    assert found["height"] > 3000
    assert_png(tmp_path / "report.png")
    np.testing.assert_array_less(0, [i["width"] for i in found["images"]])
