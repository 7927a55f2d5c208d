"""benchmarks/quality.py: scoring (polarity flag, energy-weighted ESR against numpy), the table's
comparisons, failed children, the crops both sides share, the variants it trains, and one
end-to-end run against the reference checkout."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import quality as q  # noqa: E402

REFERENCE = Path("/work/.mirror/mcomunita+nablafx/repo")
SR = q.SAMPLE_RATE


def _targets(rng, n=SR // 2):
    t = np.arange(n) / SR
    return {"D000/a": (0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(n), "D000"),
            "D100/a": (0.5 * np.tanh(4 * np.sin(2 * np.pi * 110 * t)), "D100")}


def test_score_matches_numpy_and_flags_inverted_polarity(tmp_path):
    rng = np.random.default_rng(0)
    targets = _targets(rng)
    noise = {k: 0.05 * rng.standard_normal(len(y)) for k, (y, _) in targets.items()}
    good = {k: torch.from_numpy(y + noise[k]).float() for k, (y, _) in targets.items()}
    torch.save(good, tmp_path / "good.pt")
    s = q.score(tmp_path / "good.pt", targets)
    p = {k: good[k].double().numpy() for k in good}  # what was saved (float32), in float64
    err = sum(np.sum((p[k] - y) ** 2) for k, (y, _) in targets.items())
    energy = sum(np.sum(y**2) for y, _ in targets.values())
    assert s["esr"] == pytest.approx(err / energy, rel=1e-9)
    assert s["mae"] == pytest.approx(np.mean(np.abs(np.concatenate([p[k] - targets[k][0] for k in p]))), rel=1e-9)
    assert not s["inverted"] and s["settings_inverted"] == 0 and set(s["per_setting"]) == {"D000", "D100"}
    assert s["mrstft"] > 0 and s["loudness_diff_lu"] < 0.5

    flipped = {k: -v for k, v in good.items()}  # the same error energy would not show it: ESR ≈ 4
    torch.save(flipped, tmp_path / "flipped.pt")
    f = q.score(tmp_path / "flipped.pt", targets)
    assert f["inverted"] and f["settings_inverted"] == 2
    assert f["mrstft"] == pytest.approx(s["mrstft"], rel=1e-5)  # the spectral term is blind to polarity

    one = dict(good, **{"D100/a": -good["D100/a"]})  # one setting inverted, the set's correlation still positive
    torch.save(one, tmp_path / "one.pt")
    o = q.score(tmp_path / "one.pt", targets)
    assert o["settings_inverted"] == 1 and o["per_setting"]["D100"]["inverted"] and not o["per_setting"]["D000"]["inverted"]


def test_score_refuses_non_finite_or_misshapen_predictions(tmp_path):
    targets = _targets(np.random.default_rng(1))
    bad = {k: torch.from_numpy(y).float() for k, (y, _) in targets.items()}
    bad["D000/a"][100] = float("nan")
    torch.save(bad, tmp_path / "nan.pt")
    assert q.score(tmp_path / "nan.pt", targets) == {"error": "D000/a: prediction not finite"}
    short = {k: torch.from_numpy(y[:-1]).float() for k, (y, _) in targets.items()}
    torch.save(short, tmp_path / "short.pt")
    assert "of shape" in q.score(tmp_path / "short.pt", targets)["error"]


def _run(esr, mrstft, inverted=False, **kw):
    return {"params": 10, "esr": esr, "mrstft": mrstft, "mae": 0.1, "loudness_diff_lu": 0.5, "inverted": inverted,
            "settings_inverted": 5 if inverted else 0, "train_s": 12.0, "peak_rss_mb": 1024.0, **kw}


def test_table_counts_wins_and_never_averages_an_inverted_run():
    meta = {"device": "cpu", "steps": 3, "batch": 2, "seconds": 0.5, "threads": 1, "seed": 0,
            "reference_commit": "0123456789abcdef"}
    rows = [
        {"device": "D1", "family": "tcn", "variant": "paper-x", "setting": "A",
         "reference": _run(0.2, 1.0), "nablafx": _run(0.1, 1.1)},
        {"device": "D1", "family": "lstm", "variant": "paper-y", "setting": "A",
         "reference": _run(0.05, 0.5, inverted=True), "nablafx": _run(0.3, 2.0)},
        {"device": "D1", "family": "s4", "variant": "paper-z", "setting": "B",
         "reference": _run(0.4, 2.0), "nablafx": {"error": "stopped: no result within 10 s"}},
    ]
    md = q.markdown(meta, rows)
    assert "| D1 | tcn (`paper-x`) | A | 10 / 10 | 0.2000 | 0.1000 | 1.0000 | 1.1000 | 0.50 / 0.50 | yes, no | 0 / 0 |" in md
    assert "| D1 | lstm (`paper-y`) | A | 10 / 10 | inverted | 0.3000 | inverted | 2.0000 |" in md
    assert "| —, — | 5 / 0 |" in md
    assert "| D1 | s4 (`paper-z`) | B | 10 / — | 0.4000 | error |" in md
    assert "- D1 s4 B nablafx: stopped: no result within 10 s" in md
    assert ("Setting A (reference loss on both sides): nablafx ≤ reference on ESR in 1 and on MR-STFT in 0 of 1 "
            "comparable (device, family) pairs; runs inverted: reference 1, nablafx 0 of 2 each.") in md
    assert "of 0 comparable" in md.split("Setting B")[1]
    assert "polarity-aligned" not in md and "negated" not in md  # results from before the aligned start


def test_the_aligned_start_is_described_and_counted():
    meta = {"device": "cpu", "steps": 3, "batch": 2, "seconds": 0.5, "threads": 1, "seed": 0,
            "reference_commit": "0123456789abcdef", "align_polarity": True}
    rows = [{"device": f"D{i}", "family": "s4", "variant": "paper-z", "setting": "A", "reference": _run(0.2, 1.0),
             "nablafx": _run(0.1, 1.1, start_corr=c, start_flipped=c < 0)} for i, c in enumerate((-0.8, 0.3, -0.1))]
    md = q.markdown(meta, rows)
    assert "starts polarity-aligned in both settings" in md
    assert md.rstrip().endswith("runs inverted: reference 0, nablafx 0 of 3 each; nablafx read-out negated at the "
                                "start in 2 of 3.")
    guarded = [{**r, "nablafx": {**r["nablafx"], "guard_flips": i}} for i, r in enumerate(rows)]
    md = q.markdown({**meta, "align_polarity": "guard"}, guarded)
    assert "turns negative (`guard`)" in md
    assert md.rstrip().endswith("negated at the start in 2 of 3, by the guard during training in 2 of 3.")
    model, _, _ = q.build_nablafx("s4", 2, overlay={"align_polarity": "off"})  # a trainer key: not the variant's
    assert model.n_knobs == 2


def test_a_crashing_child_is_reported_with_its_last_line(tmp_path):
    ok = tmp_path / "ok.py"
    ok.write_text("import json; print('chatter'); print(json.dumps({'params': 3, 'train_s': 1.0}))\n")
    bad = tmp_path / "bad.py"
    bad.write_text("import sys; print('building', file=sys.stderr); raise SystemExit('reference cannot build')\n")
    res = q.run_pair({"reference": [sys.executable, str(bad), "--threads", "1"],
                      "nablafx": [sys.executable, str(ok), "--threads", "1"]}, timeout=60)
    assert res == {"reference": {"error": "reference cannot build"}, "nablafx": {"params": 3, "train_s": 1.0}}
    slow = tmp_path / "slow.py"
    slow.write_text("import time; time.sleep(30)\n")
    res = q.run_pair({"nablafx": [sys.executable, str(slow), "--threads", "1"]}, timeout=1)
    assert res["nablafx"]["error"] == "stopped: no result within 1 s"


# the reference's parameter counts of these configs at num_controls 1 (benchmarks/results/reference_params.json)
def _reference_counts():
    data = json.loads((ROOT / "benchmarks" / "results" / "reference_params.json").read_text())
    return {r["config"]: r["params"] for r in data["configs"] if r.get("params")}


@pytest.mark.parametrize("family", sorted(q.FAMILIES))
def test_each_family_builds_its_paper_variant(family):
    config, ref_over, over = q.FAMILIES[family]
    model, variant, keys = q.build_nablafx(family, 1)
    assert variant == "paper-" + Path(config).stem.split("_")[-1] and keys["lr"] > 0
    if not ref_over:  # as the reference config is written: the counts in reference_params must match
        counts = {k.removeprefix("cfg/model/"): v for k, v in _reference_counts().items()}
        assert sum(p.numel() for p in model.parameters()) == counts[config]
    assert model.n_knobs == 1


def test_crops_are_reproducible_and_carry_the_context(tmp_path):
    class A:
        steps, batch, seconds, seed = 3, 2, 0.05, 0

    data = q.device_data("Guitarix-TS9", tmp_path)
    q.draw_crops(data, 100, A, tmp_path / "c1.pt")
    q.draw_crops(data, 100, A, tmp_path / "c2.pt")
    c1, c2 = torch.load(tmp_path / "c1.pt"), torch.load(tmp_path / "c2.pt")
    assert len(c1["x"]) == 3 and c1["x"][0].shape == (2, 1, 100 + int(0.05 * SR)) and c1["knobs"][0].shape == (2, 2)
    assert all(torch.equal(a, b) for a, b in zip(c1["y"], c2["y"]))
    assert c1["target_power"] > 0 and data["n_knobs"] == 2 and len(data["targets"]) == 15  # 5 settings × 3 passages
    assert len({code for _, code in data["targets"].values()}) == 5


@pytest.mark.slow
@pytest.mark.skipif(not REFERENCE.is_dir(), reason="needs the reference's git mirror (mcomunita/nablafx)")
def test_quick_run_against_the_reference(tmp_path):
    out = tmp_path / "quality"
    assert q.main(["--reference", str(REFERENCE), "--quick", "--families", "tcn", "--settings", "A",
                   "--out", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    (row,) = data["rows"]
    assert row["reference"]["params"] == row["nablafx"]["params"] == 14945  # TCN-F-45-S-16 with FiLM on 2 knobs
    for side in ("reference", "nablafx"):
        assert row[side]["esr"] > 0 and row[side]["finite"] and len(row[side]["rows"]) == 15
    assert len(data["meta"]["reference_commit"]) == 40 and data["meta"]["complete"]


def test_readme_section_is_generated_from_the_results_file(tmp_path):
    data = {"meta": {"steps": 3, "batch": 2, "seconds": 0.5, "threads": 1, "seed": 0, "reference_commit": "ab" * 20},
            "provenance": {"commit": "cd" * 20},
            "rows": [{"device": "Guitarix-TS9", "family": "tcn", "variant": "paper-x", "setting": s,
                      "reference": _run(0.2, 1.0, inverted=s == "B"), "nablafx": _run(0.1, 1.5)} for s in "AB"]}
    results = tmp_path / "quality_cpu.json"
    results.write_text(json.dumps(data))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{q.BEGIN}\nold\n{q.END}\nafter\n")
    assert q.main(["--readme", str(readme), "--out", str(results.with_suffix(""))]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{q.END}\nafter\n") and "old" not in text
    assert "| TS9 | tcn | 0.2000 / 0.1000 | 1.0000 / 1.5000 | inverted / 0.1000 | inverted / 1.5000 |" in text
    assert "- Setting A (reference loss on both sides): nablafx ≤ reference on ESR in 1 and on MR-STFT in 0 of 1" in text
    assert "runs inverted: reference 1, nablafx 0 of 1 each." in text


def test_reference_is_required_for_a_run():
    with pytest.raises(SystemExit) as err:
        q.main(["--quick"])
    assert err.value.code == 2


def test_partial_results_are_marked_and_kept_out_of_the_readme(tmp_path):
    meta = {"device": "cpu", "steps": 3, "batch": 2, "seconds": 0.5, "threads": 1, "seed": 0,
            "reference_commit": "ab" * 20, "planned": 8, "complete": False}
    rows = [{"device": "Guitarix-TS9", "family": "tcn", "variant": "paper-x", "setting": "A",
             "reference": _run(0.2, 1.0), "nablafx": _run(0.1, 1.5)}]
    assert "**Partial: 1 of 8 runs so far" in q.markdown(meta, rows)
    assert "Partial" not in q.markdown({**meta, "complete": True}, rows)
    results = tmp_path / "quality_cpu.json"
    results.write_text(json.dumps({"meta": meta, "provenance": {"commit": "cd" * 20}, "rows": rows}))
    readme = tmp_path / "README.md"
    readme.write_text(f"{q.BEGIN}\nold\n{q.END}\n")
    with pytest.raises(SystemExit, match="partial results"):
        q.update_readme(readme, results, "python benchmarks/quality.py --readme README.md")
    assert "old" in readme.read_text()


def test_an_ablation_overlay_reaches_the_variant_and_the_table():
    model, _, _ = q.build_nablafx("tcn", 2, overlay={"film_norm": "none"})
    plain, _, _ = q.build_nablafx("tcn", 2)
    assert not any("running_mean" in k for k in model.state_dict()) and any("running_mean" in k for k in plain.state_dict())
    ap = __import__("argparse").ArgumentParser()
    assert q.parse_sets(ap, ["film_norm=none", "lr=0.01"]) == {"film_norm": "none", "lr": 0.01}
    with pytest.raises(SystemExit):
        q.parse_sets(ap, ["film_norm"])
    meta = {"device": "cpu", "steps": 3, "batch": 2, "seconds": 0.5, "threads": 1, "seed": 0,
            "reference_commit": "ab" * 20, "nablafx_set": {"film_norm": "none"}}
    assert '**Ablation: this project\'s variants with {"film_norm": "none"} laid over them.**' in q.markdown(meta, [])


def test_render_redraws_the_markdown_from_the_json_keeping_the_footer(tmp_path):
    from nablafx.provenance import write_results

    meta = {"device": "cpu", "steps": 3, "batch": 2, "seconds": 0.5, "threads": 1, "seed": 0,
            "reference_commit": "ab" * 20}
    rows = [{"device": "Guitarix-TS9", "family": "tcn", "variant": "paper-x", "setting": "A",
             "reference": _run(0.2, 1.0), "nablafx": _run(0.1, 1.5)}]
    stem = tmp_path / "quality_cpu"
    prov = write_results(stem, "# stale table", {"meta": meta, "rows": rows})
    assert q.main(["--render", str(stem)]) == 0
    md = stem.with_suffix(".md").read_text()
    assert "stale" not in md and "| Guitarix-TS9 | tcn (`paper-x`) | A |" in md and "Tables drawn again" in md
    from nablafx.provenance import markdown_footer
    assert md.endswith(markdown_footer(prov))
    header = next(line for line in md.splitlines() if line.startswith("| device |"))
    separator = md.splitlines()[md.splitlines().index(header) + 1]
    assert header.count("|") == separator.count("|")  # no stray pipes in a header cell

