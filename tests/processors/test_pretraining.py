"""Pretraining: curves and FIR responses are fitted, saved and loaded into a chain; chains without
anything to pretrain pass cleanly; the stage script runs (the reference's crashed) and fails
with one-line errors that leave earlier outputs untouched."""

import dataclasses
import json

import pytest
import torch
import yaml

from nablafx.errors import ConfigError
from nablafx.pretraining import (
    load_pretrained,
    pretrain_config,
    pretrain_entries,
    pretrain_variant,
    run_pretraining,
)
from nablafx.registry import build_model
from stages import pretrain as stage

from ..conftest import params_with

PARAMS = params_with()
FAST = {"steps": 150, "n_points": 256}
SETTINGS = pretrain_config(PARAMS)  # params.yaml's pretrain: section


def small_params(model, **variants):
    return params_with(model=model, variants={**PARAMS["variants"], **variants}, pretrain=FAST,
                       data={"sample_rate": 48000})


def test_every_params_variant_has_valid_pretrain_entries():
    for name, spec in PARAMS["variants"].items():
        if spec.get("family") == "graybox":
            pretrain_entries(spec["processors"], f"variants.{name}.processors")
    pretrain_config(PARAMS)


def test_mlp_fitted_to_tanh_and_loaded_into_chain(tmp_path):
    summary = run_pretraining(small_params("gb-dist", ), tmp_path / "pre")
    entry = summary["processors"]["p2-mlp"]
    assert entry["type"] == "mlp" and entry["target"] == {"curve": "tanh"}
    assert entry["max_abs_error"] < 0.1
    assert sorted(p.name for p in (tmp_path / "pre").iterdir()) == ["p2-mlp.pt", "summary.json"]
    model = build_model(PARAMS["variants"]["gb-dist"], n_knobs=0)
    assert load_pretrained(model, tmp_path / "pre") == ["p2-mlp"]
    x = torch.linspace(-2, 2, 101)
    err = (model.processors[2].transfer_curve(x) - torch.tanh(x)).abs().max()
    assert err < 0.1


def test_rational_and_fir_targets(tmp_path):
    spec = {"family": "graybox", "processors": [
        {"type": "fir", "n_taps": 64, "pretrain": {"response": "lowpass", "cutoff_hz": 3000.0}},
        {"type": "rational", "pretrain": {"curve": "asym"}},
    ]}
    weights, summary = pretrain_variant("gb-test", spec, dataclasses.replace(SETTINGS, **FAST))
    assert set(weights) == {"p0-fir", "p1-rational"}
    assert summary["processors"]["p0-fir"]["rms_error_db"] < 0.5
    assert summary["processors"]["p1-rational"]["max_abs_error"] < 0.1


@pytest.mark.parametrize("variant", ["gb-comp", "lstm-32"])
def test_nothing_to_pretrain_passes_cleanly(tmp_path, variant):
    summary = run_pretraining(small_params(variant), tmp_path / "pre")
    assert summary["processors"] == {}
    assert [p.name for p in (tmp_path / "pre").iterdir()] == ["summary.json"]
    model = build_model(PARAMS["variants"][variant], n_knobs=0)
    assert load_pretrained(model, tmp_path / "pre") == []


def test_mismatched_model_is_refused(tmp_path):
    run_pretraining(small_params("gb-dist"), tmp_path / "pre")
    other = build_model(PARAMS["variants"]["gb-dist-rational"], n_knobs=0)
    with pytest.raises(ValueError, match="rerun the pretrain stage"):
        load_pretrained(other, tmp_path / "pre")
    with pytest.raises(FileNotFoundError):
        load_pretrained(other, tmp_path / "missing")


def test_bad_pretrain_entries_name_the_key():
    bad = {"family": "graybox", "processors": [{"type": "gain"}, {"type": "peq", "pretrain": "tanh"}]}
    with pytest.raises(ValueError, match=r"variants\.v\.processors\[1\]\.pretrain: processor 'peq' cannot be pretrained"):
        pretrain_variant("v", bad, SETTINGS)
    bad = {"family": "graybox", "processors": [{"type": "mlp", "pretrain": "sinus"}]}
    with pytest.raises(ValueError, match=r"processors\[0\]\.pretrain\.curve: unknown curve 'sinus'; known: tanh"):
        pretrain_variant("v", bad, SETTINGS)
    with pytest.raises(ConfigError, match=r"params\.yaml: pretrain\.stepz: unknown key"):
        pretrain_config(params_with(pretrain={"stepz": 3}))


def test_stage_script(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(small_params("gb-fuzz")))
    out = tmp_path / "artifacts" / "pretrained"
    assert stage.main(["--params", str(params), "--out", str(out)]) is None
    assert "p3-mlp" in capsys.readouterr().out
    before = json.loads((out / "summary.json").read_text())
    # a bad config: one-line error, exit status 2, earlier outputs untouched
    bad = small_params("gb-fuzz")
    bad["pretrain"]["lr"] = "fast"
    params.write_text(yaml.safe_dump(bad))
    from nablafx.utils import run_stage

    assert run_stage(stage.main, ["--params", str(params), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: params.yaml: pretrain.lr: expected float, got 'fast'") and err.count("\n") == 1
    assert json.loads((out / "summary.json").read_text()) == before
    with pytest.raises(ConfigError, match="unknown variant 'nope'"):
        run_pretraining(small_params("gb-fuzz"), out, "nope")


def test_crafted_or_foreign_pretrained_folders_are_refused(tmp_path):
    from nablafx import __version__
    from nablafx.fileio import ArtifactError, UnsafeFileError

    from ..test_fileio import crafted_torch_file

    out = tmp_path / "pre"
    run_pretraining(small_params("gb-dist"), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pre"]  # built beside it and swapped in, nothing left
    summary = json.loads((out / "summary.json").read_text())
    assert summary["nablafx_version"] == __version__ and summary["format_version"] == 1
    model = build_model(PARAMS["variants"]["gb-dist"], n_knobs=0)
    marker = tmp_path / "MARKER"
    good = (out / "p2-mlp.pt").read_bytes()
    crafted_torch_file(out / "p2-mlp.pt", marker)
    with pytest.raises(UnsafeFileError) as err:
        load_pretrained(model, out)
    assert str(err.value).startswith(f"{out / 'p2-mlp.pt'}: refused to load this pretrained weights file")
    assert not marker.exists()
    (out / "p2-mlp.pt").write_bytes(good)
    (out / "summary.json").write_text(json.dumps({**summary, "format_version": 7, "nablafx_version": "9.9"}))
    with pytest.raises(ArtifactError, match=f"written by nablafx 9.9 \\(pretrained format 7\\), this is nablafx "
                                            f"{__version__} \\(pretrained format 1\\): rerun the pretrain stage"):
        load_pretrained(model, out)
