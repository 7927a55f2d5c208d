"""Stages end to end on a tiny synthetic dataset (in-process, seconds)."""

import json

import pytest
import torch
import yaml

from nablafx.export import load_model
from nablafx.utils import run_stage
from stages import plots as plots_stage
from stages import prepare as prepare_stage
from stages import test as test_stage
from stages import train as train_stage

from ..conftest import make_tiny_dataset, params_with


def _params(root, model="lstm-8", **train):
    return params_with(
        model=model,
        data={"root": str(root), "device": "Fake-Drive", "val_seconds": 1.0, "guard_seconds": 0.25,
              "max_latency_samples": 2},
        train={"max_steps": 6, "batch_size": 4, "chunk_seconds": 0.25, "val_every_n_steps": 3,
               "context_samples": 128, "lr": 0.01, "accelerator": "cpu", **train},
        aliases={"lstm": "lstm-8"},
        variants={"lstm-8": {"family": "lstm", "hidden_size": 8}},
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny dataset with prepare + train already run once (copied per test)."""
    import os

    base = tmp_path_factory.mktemp("trained")
    make_tiny_dataset(base / "data")
    _write_params(base, _params(base / "data"))
    cwd = os.getcwd()
    os.chdir(base)
    try:
        assert run_stage(prepare_stage.main, []) == 0
        assert run_stage(train_stage.main, []) == 0
    finally:
        os.chdir(cwd)
    return base


@pytest.fixture
def workdir(trained, tmp_path, monkeypatch):
    import shutil

    work = tmp_path / "w"
    shutil.copytree(trained, work)
    # index paths point into the module's copy of the data: the same files, read-only use
    monkeypatch.chdir(work)
    return work


def _write_params(workdir, params):
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))


def test_stages_run_and_write_outputs(workdir):
    assert run_stage(test_stage.main, []) == 0
    assert run_stage(plots_stage.main, []) == 0
    metrics = json.loads((workdir / "reports/metrics.json").read_text())
    assert metrics["model"]["variant"] == "lstm-8"
    assert metrics["test"]["passages"] == 3 and metrics["test"]["esr"] > 0
    assert (workdir / "reports/per_knob.csv").read_text().startswith("device,knob_code,name,knob_D,knob_T")
    assert (workdir / "reports/plots/test_example.png").stat().st_size > 10_000
    assert (workdir / "reports/index.html").is_file()
    # the saved model reloads without Lightning and reproduces its test predictions
    model, cfg = load_model(workdir / "artifacts/model")
    assert cfg["variant"] == "lstm-8" and cfg["knob_letters"] == ["D", "T"]
    x = torch.randn(1, 1, 500)
    y1, _ = model(x, torch.tensor([[0.3, 0.7]]))
    y2, _ = load_model(workdir / "artifacts/model")[0](x, torch.tensor([[0.3, 0.7]]))
    assert torch.equal(y1, y2)


@pytest.mark.parametrize("change,msg", [
    ({"model": "nope"}, "model: unknown variant 'nope'; known: lstm, lstm-8"),
    ({"train": {"lr": "fast"}}, "train.lr: expected float"),
    ({"train": {"max_steps": -1}}, "train.max_steps: must be > 0"),
    ({"train": {"bogus": 1}}, "train.bogus: unknown key"),
    ({"train": {"loss": {"l3": 1.0}}}, "train.loss.l3: unknown loss term"),
    ({"variants": {"lstm-8": {"family": "lstm", "hidden_size": 8, "colour": "red"}}}, "variants.lstm-8.colour"),
    ({"variants": {"lstm-8": {"family": "transformer"}}}, "variants.lstm-8.family: unknown family 'transformer'"),
])
def test_bad_params_one_line_error_and_outputs_untouched(workdir, capsys, change, msg):
    before = (workdir / "artifacts/model/model.pt").read_bytes()
    params = _params(workdir / "data")
    for k, v in change.items():
        params[k] = {**params[k], **v} if isinstance(v, dict) and k == "train" else v
    _write_params(workdir, params)
    capsys.readouterr()
    assert run_stage(train_stage.main, []) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and "\n" not in err, err
    assert (workdir / "artifacts/model/model.pt").read_bytes() == before


def test_malformed_yaml(workdir, capsys):
    (workdir / "params.yaml").write_text("model: [unclosed\n")
    assert run_stage(prepare_stage.main, []) == 2
    assert "params.yaml: not valid YAML" in capsys.readouterr().err


def test_prepare_error_keeps_previous_index(workdir, capsys):
    before = (workdir / "artifacts/prepared/index.json").read_text()
    params = _params(workdir / "data")
    params["data"]["device"] = "Missing-Pedal"
    _write_params(workdir, params)
    assert run_stage(prepare_stage.main, []) == 2
    assert "Missing-Pedal: device folder not found; devices here: Fake-Drive" in capsys.readouterr().err
    assert (workdir / "artifacts/prepared/index.json").read_text() == before
