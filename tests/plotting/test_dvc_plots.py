"""`dvc plots diff` draws offline: the repo's html template carries vega inline, and two revisions'
training curves and per-knob metrics land in one page whose charts render in headless Chromium."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nablafx.plotting import browser
from nablafx.plotting.dvc_template import template_html

from .conftest import assert_png

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _template_path() -> Path:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / ".dvc/config")
    return (REPO / ".dvc" / cfg["plots"]["html_template"]).resolve()


def test_repo_config_points_at_an_offline_template():
    page = _template_path().read_text()
    assert _template_path() == REPO / "tools/dvc-plots.html"
    assert "{plot_divs}" in page and "{scripts}" not in page  # DVC's CDN tags go into {scripts}
    assert "<script src" not in page and "cdn.jsdelivr" not in page
    assert "window.vegaEmbed=" in page and page.count("<script>") == 1


@pytest.mark.slow
def test_committed_template_is_what_the_locked_vl_convert_bundles():
    assert _template_path().read_text() == template_html(), "rerun: python -m nablafx.plotting.dvc_template"


def _run(cmd, cwd):
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{' '.join(cmd)}:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    return res.stdout


def _write_run(work: Path, scale: float):
    metrics = work / "dvclive/train/plots/metrics"
    for name, col in (("train/loss", "loss"), ("val/loss", "loss"), ("val/esr", "esr")):
        path = metrics / f"{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"step\t{col}\n" + "".join(f"{s}\t{scale / (1 + s / 100):.4f}\n" for s in range(0, 400, 50)))
    (work / "reports").mkdir(exist_ok=True)
    (work / "reports/per_knob_summary.csv").write_text(
        "knob_code,esr,l1,mrstft,loudness_diff_lu,asr_db\n"
        + "".join(f"D{d:03d},{scale * (1 + d / 100):.4f},0.01,1.0,0.1,{-40 - d / 10 * scale:.2f}\n" for d in (0, 50, 100)))


@pytest.mark.slow
def test_dvc_plots_diff_of_two_experiments_draws_offline(tmp_path):
    work = tmp_path / "repo"
    (work / "tools").mkdir(parents=True)
    shutil.copy2(REPO / "tools/dvc-plots.html", work / "tools/dvc-plots.html")
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    knob_plot = next(o for o in pipeline["stages"]["plots"]["plots"] if "reports/per_knob_summary.csv" in o)
    knob_plot = {k: v for k, v in knob_plot["reports/per_knob_summary.csv"].items() if k in ("x", "y", "template")}
    (work / "dvc.yaml").write_text(yaml.safe_dump({
        "plots": [*pipeline["plots"], {"dvclive/train/plots/metrics": {"x": "step"}},
                  {"reports/per_knob_summary.csv": knob_plot}]}))
    _run(["git", "init", "-q"], work)
    _run(["dvc", "init", "-q"], work)
    _run(["dvc", "config", "plots.html_template", "../tools/dvc-plots.html"], work)  # as the repo's .dvc/config
    _write_run(work, 1.0)
    _run(["git", "add", "-A"], work)
    _run(["git", "commit", "-qm", "exp a"], work)
    _run(["git", "tag", "exp-a"], work)
    _write_run(work, 0.5)
    _run(["git", "commit", "-qam", "exp b"], work)
    out = _run(["dvc", "plots", "diff", "exp-a", "HEAD", "-o", "diff"], work)
    assert "failed" not in out.lower(), out
    page = (work / "diff/index.html").read_text()
    assert "cdn.jsdelivr" not in page and "<script src" not in page
    assert page.count("vegaEmbed('#") >= 4 and '"exp-a"' in page and '"HEAD"' in page
    if browser.find_chromium() is None:
        pytest.skip("chromium not installed (Debian: apt-get install chromium; .ci/run installs it): "
                    "the page was written offline, its drawing not checked")
    found = browser.inspect_page(work / "diff/index.html", tmp_path / "diff.png")
    assert not found["failed_requests"] and not found["exceptions"], found
    assert found["svgs"] >= 4 and found["vega_marks"] >= 4, found
    assert_png(tmp_path / "diff.png")
