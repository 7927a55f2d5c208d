"""Stages end to end on a tiny synthetic dataset (in-process, seconds)."""

import json

import numpy as np
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
    page = (workdir / "reports/index.html").read_text()
    for name in ("sig_spectrograms.png", "sig_worst_transient.png"):  # the report's signal figures
        assert (workdir / "reports/plots" / name).stat().st_size > 5_000
        assert f"plots/{name}" in page
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


def _outputs(workdir):
    """Every file of the finished results: model folder, checkpoints, training logs."""
    return {p.relative_to(workdir).as_posix(): p.read_bytes()
            for d in ("artifacts/model", "artifacts/checkpoints", "dvclive/train")
            for p in sorted((workdir / d).rglob("*")) if p.is_file()}


def _one_line_err(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and err[-1] == errors[0], err
    return errors[0]


def test_unavailable_accelerator_is_one_line_and_keeps_earlier_results(workdir, capsys, monkeypatch):
    before = _outputs(workdir)
    assert {"artifacts/checkpoints/last.ckpt", "artifacts/model/model.pt", "dvclive/train/metrics.json"} <= set(before)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without GPU, also on one with
    _write_params(workdir, _params(workdir / "data", max_steps=9, accelerator="gpu"))  # changed step count too
    capsys.readouterr()
    assert run_stage(train_stage.main, []) == 2
    err = _one_line_err(capsys)
    assert "train.accelerator: 'gpu' needs a CUDA GPU and none is available here" in err, err
    assert _outputs(workdir) == before
    assert not (workdir / "artifacts/checkpoints.partial").exists()


def test_run_failing_mid_training_keeps_earlier_results(workdir, capsys, monkeypatch):
    from nablafx.training.system import EffectSystem

    before = _outputs(workdir)
    original = EffectSystem.training_step

    def failing(self, batch, batch_idx):
        if self.global_step == 4:
            raise FloatingPointError("non-finite training loss at step 4 (injected)")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(EffectSystem, "training_step", failing)
    _write_params(workdir, _params(workdir / "data", max_steps=9))  # settings changed: a fresh run
    capsys.readouterr()
    assert run_stage(train_stage.main, []) == 2
    assert "non-finite training loss at step 4" in _one_line_err(capsys)
    assert _outputs(workdir) == before  # byte-identical: nothing removed or overwritten
    assert (workdir / "artifacts/checkpoints.partial/last.ckpt").is_file()  # the new run's progress is kept apart


def test_crafted_checkpoint_and_model_are_refused(workdir, capsys, tmp_path):
    from nablafx.cli import main as cli_main

    from ..test_fileio import crafted_torch_file

    marker = tmp_path / "MARKER"
    before = _outputs(workdir)
    for name in ("artifacts/checkpoints/last.ckpt", "artifacts/checkpoints.partial/last.ckpt"):
        (workdir / name).parent.mkdir(exist_ok=True)
        crafted_torch_file(workdir / name, marker)  # resume: auto would load it
        capsys.readouterr()
        assert run_stage(train_stage.main, []) == 2
        err = _one_line_err(capsys)
        assert err.startswith(f"error: {name}: refused to load this checkpoint") and "it imports" in err, err
        assert not marker.exists()
        (workdir / name).unlink()
    (workdir / "artifacts/checkpoints/last.ckpt").write_bytes(before["artifacts/checkpoints/last.ckpt"])
    assert _outputs(workdir) == before
    crafted_torch_file(workdir / "artifacts/model/model.pt", marker)
    assert run_stage(test_stage.main, []) == 2
    err = _one_line_err(capsys)
    assert err.startswith("error: artifacts/model/model.pt: refused to load this model weights file"), err
    wav = workdir / "in.wav"
    from nablafx.data.audio import write_audio

    write_audio(wav, np.zeros(4800, dtype=np.float32), 48000)
    assert cli_main(["process", str(wav), str(workdir / "out.wav"), "--knobs", "0.5,0.5"]) == 2
    assert "artifacts/model/model.pt: refused to load" in _one_line_err(capsys)
    assert not marker.exists() and not (workdir / "out.wav").exists()


def test_model_folder_of_another_version_is_refused(workdir, capsys):
    from nablafx import __version__

    cfg_path = workdir / "artifacts/model/config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    assert cfg["nablafx_version"] == __version__ and cfg["format_version"] == 1
    cfg.update(nablafx_version="0.0.9", format_version=0)
    cfg_path.write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert run_stage(test_stage.main, []) == 2
    err = _one_line_err(capsys)
    assert (f"error: artifacts/model: written by nablafx 0.0.9 (model folder format 0), this is nablafx "
            f"{__version__} (model folder format 1): retrain it (dvc repro train)") == err
    del cfg["nablafx_version"], cfg["format_version"]  # a folder from before versions were recorded
    cfg_path.write_text(yaml.safe_dump(cfg))
    assert run_stage(test_stage.main, []) == 2
    assert "written by nablafx an older version (none recorded)" in _one_line_err(capsys)
