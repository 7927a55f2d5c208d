"""The page's pieces: the training-curve figure, tables (escaping, sort keys), audio players, and a
page that references nothing outside its folder."""

from __future__ import annotations

import re

import numpy as np

from nablafx.plotting import page
from nablafx.plotting.common import Figure
from nablafx.plotting.listening import Clip
from nablafx.plotting.report import loss_figure

from .conftest import assert_png


def test_loss_figure_reads_dvclive_tsv(tmp_path):
    live = tmp_path / "live/plots/metrics"
    (live / "train").mkdir(parents=True)
    (live / "val").mkdir()
    (live / "train/loss.tsv").write_text("step\tloss\n" + "".join(f"{s}\t{1 / (s + 1)}\n" for s in range(0, 100, 10)))
    (live / "val/loss.tsv").write_text("timestamp\tstep\tloss\n1\t49\t0.05\n2\t99\t0.02\n")
    (live / "val/esr.tsv").write_text("step\tesr\n49\t0.5\n99\t0.3\n")
    fig = loss_figure(tmp_path / "live", tmp_path)
    assert_png(tmp_path / fig.file)
    steps, values = fig.data["val/loss"]
    np.testing.assert_array_equal(steps, [49, 99])
    np.testing.assert_allclose(values, [0.05, 0.02])
    assert loss_figure(tmp_path / "nothing-here", tmp_path) is None


def test_table_escapes_and_keeps_sort_keys():
    html = page.table(["name", "ESR"], [["<b>x</b>", 0.123456789], ["y", None]], sortable=True, caption="a & b")
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x" not in html
    assert "data-v='0.123456789'" in html and ">0.1235<" in html
    assert "class='sortable'" in html and "a &amp; b" in html


def test_players_pair_target_and_prediction_per_setting():
    clips = [Clip("audio/a.dry.flac", "dry", "a", "", "dry input"),
             Clip("audio/K1.a.target.flac", "target", "a", "K1", "K 0.1"),
             Clip("audio/K1.a.pred.flac", "prediction", "a", "K1", "K 0.1")]
    html = page.players_html(clips)
    srcs = re.findall(r"<audio controls preload='metadata' src='([^']+)'", html)
    assert srcs == ["audio/a.dry.flac", "audio/K1.a.target.flac", "audio/K1.a.pred.flac"]


def test_page_is_self_contained():
    sec = page.Section("s1", "First", "intro <text>", ["<p>block</p>"], [Figure("plots/f.png", "F", "caption")])
    html = page.render_page("T & co", "sub", [page.kv([("k", "v")])], [sec])
    assert html.startswith("<!doctype html>") and "<style>" in html and "<script>" in html
    assert not re.search(r"(src|href)=['\"](https?:)?//", html)
    assert "<img src='plots/f.png'" in html and "<figcaption><b>F.</b> caption</figcaption>" in html
    assert "intro &lt;text&gt;" in html and "<title>T &amp; co</title>" in html
