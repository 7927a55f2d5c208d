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
