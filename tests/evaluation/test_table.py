from nablafx.evaluation.table import rows_from_exp_show, to_markdown


def test_rows_from_exp_show_json():
    def entry(rev, name, variant, esr):
        return {"rev": rev, "name": name, "data": {
            "metrics": {"reports/metrics.json": {"data": {"model": {"variant": variant, "params": 10},
                                                          "test": {"esr": esr, "mae": 0.1}}},
                        "reports/cost.json": {"data": {"rtf": {"512": 30.0}}}},
            "params": {"params.yaml": {"data": {"train": {"max_steps": 5}, "data": {"device": "X"}}}}}}

    shown = [entry("workspace", None, "tcn-45", 0.2),
             {**entry("a" * 40, "main", "tcn-45", 0.2),
              "experiments": [{"revs": [entry("b" * 40, "exp-lstm", "lstm-32", 0.4)]}]}]
    rows = rows_from_exp_show(shown)
    assert [(r["experiment"], r["variant"], r["test ESR"], r["RTF@512"]) for r in rows] == [
        ("workspace", "tcn-45", 0.2, 30.0), ("main", "tcn-45", 0.2, 30.0), ("exp-lstm", "lstm-32", 0.4, 30.0)]
    md = to_markdown(rows)
    assert md.splitlines()[0].startswith("| experiment | variant | params | steps")
    assert "| exp-lstm | lstm-32 | 10 | 5 | X | 0.4 |" in md


def _fake_workspace(root, variant="tcn-45", esr=0.25):
    import json
    import shutil
    from pathlib import Path

    from nablafx.provenance import record

    shutil.copy(Path(__file__).resolve().parents[2] / "params.yaml", root / "params.yaml")
    rep = root / "reports"
    rep.mkdir()
    (rep / "metrics.json").write_text(json.dumps({"model": {"variant": variant, "params": 123},
                                                  "test": {"esr": esr, "mae": 0.01}}))
    (rep / "fad.json").write_text(json.dumps({"fad": {"crepe_tiny": 3.5}}))
    (rep / "cost.json").write_text(json.dumps({"gmacs_per_second": 0.1, "rtf": {"64": 4.0, "512": 20.0}}))
    (rep / "provenance.json").write_text(json.dumps({"train": record({"p": 1}, command="python stages/train.py"),
                                                     "test": record({"p": 1}, command="python stages/test.py")}))
    return root


def test_record_then_table_then_readme(tmp_path):
    import json

    import pytest

    from nablafx.errors import ConfigError
    from nablafx.evaluation.table import BEGIN, END, main, record_experiment

    ws = _fake_workspace(tmp_path)
    out = record_experiment("default-run", ws, tmp_path / "exps")
    rec = json.loads(out.read_text())
    assert rec["variant"] == "tcn-45" and rec["params"]["model"]
    assert rec["provenance"]["train"]["command"] == "python stages/train.py"
    assert rec["provenance"]["record"]["command"] == "nablafx record default-run"
    with pytest.raises(ConfigError, match="record name"):
        record_experiment("../escape", ws, tmp_path / "exps")

    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{BEGIN}\nold table\n{END}\noutro\n")
    assert main(["--records", str(tmp_path / "exps"), "--out", str(tmp_path / "table"), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old table" not in text
    assert "| default-run | tcn-45 | 123 |" in text and "| 0.25 | 0.01 |" in text
    assert (tmp_path / "table.md").read_text().strip() in text
    # a second run changes nothing
    before = readme.read_text()
    main(["--records", str(tmp_path / "exps"), "--out", "", "--readme", str(readme)])
    assert readme.read_text() == before


def test_record_refuses_missing_reports(tmp_path):
    import shutil
    from pathlib import Path

    import pytest

    from nablafx.evaluation.table import record_experiment

    shutil.copy(Path(__file__).resolve().parents[2] / "params.yaml", tmp_path / "params.yaml")
    with pytest.raises(FileNotFoundError, match=r"reports/metrics.json: not found"):
        record_experiment("x", tmp_path, tmp_path / "exps")


def test_readme_results_block_matches_the_records():
    """The README's results table is exactly what `nablafx table --readme` makes from the committed records."""
    from pathlib import Path

    from nablafx.evaluation.table import BEGIN, END, readme_block, rows_from_records

    root = Path(__file__).resolve().parents[2]
    text = (root / "README.md").read_text()
    records = sorted((root / "reports" / "experiments").glob("*.json"))
    if BEGIN not in text:
        assert not records, "records exist but the README has no results block"
        return
    block = text[text.index(BEGIN): text.index(END) + len(END)]
    assert block == readme_block(rows_from_records(records)), "README results table is stale: run `nablafx table --readme README.md`"


def test_aliasing_ratio_is_a_column_when_the_report_wrote_it(tmp_path):
    import json

    from nablafx.evaluation.table import record_experiment, rows_from_records

    ws = _fake_workspace(tmp_path)
    without = record_experiment("before-report", ws, tmp_path / "exps")
    (ws / "reports/aliasing.json").write_text(json.dumps({"model": {"asr_db": -42.5}}))
    with_asr = record_experiment("after-report", ws, tmp_path / "exps")
    rows = {r["experiment"]: r for r in rows_from_records([without, with_asr])}
    assert rows["before-report"]["ASR dB"] is None and rows["after-report"]["ASR dB"] == -42.5
