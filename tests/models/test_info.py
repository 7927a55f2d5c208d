"""``nablafx info`` and the variants table in docs/models.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from nablafx import info
from nablafx.registry import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PARAMS = ROOT / "params.yaml"
FAMILIES = {"lstm", "tcn", "gcn", "s4"}


def test_one_variant(capsys):
    assert info.main(["tcn-45", "--params", str(PARAMS)]) == 0
    out = capsys.readouterr().out
    assert "family            tcn" in out
    assert "46.3 ms (2223 samples)" in out
    assert "parameters        2,449" in out


def test_alias_and_unbounded(capsys):
    assert info.main(["s4", "--params", str(PARAMS)]) == 0
    out = capsys.readouterr().out
    assert "(alias: s4)" in out and "unbounded" in out


def test_unknown_variant_lists_known():
    with pytest.raises(ConfigError, match=r"unknown variant 'tcn-9'; known: .*tcn-45"):
        info.main(["tcn-9", "--params", str(PARAMS)])


def test_all_table(capsys):
    assert info.main(["--all", "--params", str(PARAMS), "--family", "tcn"]) == 0
    out = capsys.readouterr().out
    assert "tcn-250-film" in out and "231.5" in out and "lstm-32" not in out


def test_docs_table_is_current():
    """docs/models.md documents the parameter count and receptive field of every black-box variant."""
    params = info.load_params(PARAMS)
    table = info.format_table(info.all_rows(params, 3, FAMILIES, exclude=("paper-",)), markdown=True)
    assert info.read_section(ROOT / "docs" / "models.md") == table.strip(), (
        "docs/models.md is stale: run python -m nablafx.info --all --markdown --family lstm --family tcn "
        "--family gcn --family s4 --exclude paper- --update docs/models.md")


def test_exclude_leaves_out_a_prefix(capsys):
    assert info.main(["--all", "--params", str(PARAMS), "--family", "tcn", "--exclude", "paper-"]) == 0
    out = capsys.readouterr().out
    assert "tcn-45-film" in out and "paper-" not in out
    assert info.main(["--all", "--params", str(PARAMS), "--family", "tcn"]) == 0
    assert "paper-tcn-45-s-16" in capsys.readouterr().out
