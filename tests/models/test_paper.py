"""The ``paper-*`` variants against the reference's black-box configurations.

``benchmarks/results/reference_params.json`` holds what ``benchmarks/reference_params.py`` measured
by running the reference's own classes on every config of its ``cfg/model/`` black-box tree.  Here:
every config has its variant (``paper-<model>`` for ``model_<system>_<model>.yaml``), every
``paper-*`` variant stands for at least one config, and each variant built with the config's knob
count has exactly the config's parameter count and receptive field.  The zoo tests
(``test_zoo.py``) check the same variants for gradients, causality, streaming and save/load.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nablafx import info
from nablafx.registry import build_model

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "reference_params.json"
DATA = json.loads(RESULTS.read_text())
CONFIGS = DATA["configs"]
PARAMS = info.load_params(ROOT / "params.yaml")
VARIANTS = PARAMS["variants"]
PAPER = sorted(v for v in VARIANTS if v.startswith("paper-"))
TREES = {"tcn", "tcn-param", "gcn", "s4", "s4-param", "lstm", "lstm-param"}


def rule(config: str) -> str:
    """``cfg/model/<tree>/model_<system>_<model>.yaml`` → ``paper-<model>``."""
    prefix, system, model = Path(config).stem.split("_")
    assert prefix == "model" and system in ("bb", "bb-param", "bb-tbptt", "bb-tbptt-param"), config
    return f"paper-{model}"


def reference_side(cfg: dict) -> dict:
    """The reference's measurement for ``cfg``: as written, or its retry when it cannot be built."""
    if cfg["error"] is None:
        return cfg
    assert cfg["retry"], f"{cfg['config']}: the reference cannot build it ({cfg['error']}) and there is no retry"
    return cfg["retry"]


def test_results_come_from_a_run_of_the_whole_black_box_tree():
    assert len(DATA["reference"]["commit"]) == 40
    assert {c["tree"] for c in CONFIGS} == TREES
    assert len(CONFIGS) == 71  # the reference's black-box configs at that commit
    # the only configs it cannot build: FiLM written without knobs (its own assertion num_controls > 0)
    for c in CONFIGS:
        if c["error"]:
            assert c["init_args"]["cond_type"] == "film" and c["num_controls"] == 0, c["config"]
            assert "AssertionError" in c["error"] and c["retry"]["num_controls"] == 1


@pytest.mark.parametrize("cfg", CONFIGS, ids=[c["config"].removeprefix("cfg/model/") for c in CONFIGS])
def test_every_reference_config_has_its_variant(cfg):
    assert cfg["variant"] == rule(cfg["config"])
    assert cfg["variant"] in VARIANTS, f"{cfg['config']}: no variant {cfg['variant']!r} in params.yaml"


def test_every_paper_variant_stands_for_a_reference_config():
    stray = sorted(set(PAPER) - {c["variant"] for c in CONFIGS})
    assert not stray, f"paper-* variants with no reference config: {stray}"


@pytest.mark.parametrize("cfg", CONFIGS, ids=[c["config"].removeprefix("cfg/model/") for c in CONFIGS])
def test_parameter_count_and_receptive_field_equal_the_reference(cfg):
    ref = reference_side(cfg)
    knobs = int(ref.get("num_controls", cfg["num_controls"]))
    model = build_model(VARIANTS[cfg["variant"]], n_knobs=knobs, sample_rate=DATA["sample_rate"])
    ours = sum(p.numel() for p in model.parameters())
    where = f"{cfg['variant']} ({cfg['config']}, {knobs} knob{'s' * (knobs != 1)})"
    assert ours == ref["params"], f"{where}: {ours:,} parameters here, {ref['params']:,} in the reference"
    # the reference's rf is its convolutions' (None for LSTM and S4); ours: the same part
    rf = model.receptive_field if model.receptive_field is not None else getattr(model, "core_receptive_field", None)
    assert rf == ref["receptive_field"], (
        f"{where}: receptive field {rf} samples here, {ref['receptive_field']} in the reference")
    if ref.get("receptive_field_measured") is not None:  # the reference's own rf is what its impulse shows
        assert ref["receptive_field_measured"] == ref["receptive_field"], cfg["config"]


def _chosen(configs: list[dict]) -> dict:
    """The config a variant follows where configs sharing a model name differ: -param, then TBPTT."""
    return max(configs, key=lambda c: ("param" in c["system"], "tbptt" in c["system"]))


@pytest.mark.parametrize("variant", PAPER)
def test_training_keys_and_lstm_options_follow_the_chosen_config(variant):
    """lr, TBPTT segment (and the LSTM's residual) are those of the -param config, else the TBPTT one."""
    cfg = _chosen([c for c in CONFIGS if c["variant"] == variant])
    spec = VARIANTS[variant]
    assert spec["lr"] == cfg["training"]["lr"], f"{variant}: lr {spec['lr']}, {cfg['config']} {cfg['training']['lr']}"
    assert spec.get("tbptt_samples", 0) == (cfg["training"]["tbptt_samples"] or 0), variant
    if spec["family"] == "lstm":
        assert spec["residual"] == cfg["init_args"]["residual"], variant


def test_the_papers_table_counts():
    """Counts quoted in the papers' tables (REFERENCE.md), from the measured file: LSTM-32 4.5k,
    LSTM-96 38.1k, TCN-45-S-16 7,457, S4 small 2.4k / large 19.0k, S4 with TFiLM 28.0k / 70.2k."""
    by_config = {Path(c["config"]).stem: c["params"] for c in CONFIGS}
    assert round(by_config["model_bb-tbptt_lstm-32"], -2) == 4500
    assert round(by_config["model_bb-tbptt_lstm-96"], -2) == 38100
    assert by_config["model_bb_tcn-45-s-16"] == 7457
    assert round(by_config["model_bb_s4-b4-s4-c16"], -2) == 2400
    assert round(by_config["model_bb_s4-b8-s32-c16"], -2) == 19000
    assert round(by_config["model_bb_s4-tf-b4-s4-c16"], -2) == 28000
    assert round(by_config["model_bb_s4-tf-b8-s32-c16"], -2) == 70200


def test_docs_paper_table_is_current():
    table = info.format_paper_table(info.paper_rows(PARAMS, DATA))
    assert "≠" not in table and "error:" not in table
    assert info.read_section(ROOT / "docs" / "models.md", info.PAPER_BEGIN, info.PAPER_END) == table.strip(), (
        "docs/models.md is stale: run python -m nablafx.info --paper benchmarks/results/reference_params.json "
        "--update docs/models.md")

