"""Training on a target with nothing to learn (pure silence, only a DC offset) ends with one
line naming the file and the fix — at `prepare`, or at the start of `train` when the index was
written before the target changed — never with NaNs; a target *with* a DC offset trains."""

import math

import numpy as np
import pytest
import soundfile as sf
import yaml

from nablafx.data.audio import DatasetError
from nablafx.training import system as system_mod
from nablafx.training.train import run_training
from nablafx.utils import run_stage
from stages import prepare as prepare_stage
from stages import train as train_stage

from ..conftest import make_tiny_dataset, params_with

SETTING = "D050_T000"


def _params(root, **train):
    return params_with(
        model="lstm-8",
        data={"root": str(root), "device": "Fake-Drive", "val_seconds": 1.0, "guard_seconds": 0.25,
              "max_latency_samples": 2},
        train={"max_steps": 8, "batch_size": 4, "chunk_seconds": 0.25, "val_every_n_steps": 8,
               "context_samples": 128, "lr": 0.01, "accelerator": "cpu", **train},
        aliases={"lstm": "lstm-8"},
        variants={"lstm-8": {"family": "lstm", "hidden_size": 8}},
    )


def _wet(root):
    return root / "Fake-Drive" / "trainval" / SETTING / f"{SETTING}.trainval-a.target.wav"


def _rewrite(path, fn):
    x, sr = sf.read(str(path), dtype="float64")
    sf.write(str(path), fn(x).astype(np.float32), sr, subtype="FLOAT")


BAD = {  # name → (rewrite of the wet, what the message says)
    "silent": (lambda x: 0 * x, "is silent"),
    "dc_only": (lambda x: 0 * x + 0.25, "is only a DC offset (+0.25)"),
}


@pytest.fixture
def work(tmp_path, monkeypatch):
    make_tiny_dataset(tmp_path / "data")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_params(tmp_path / "data")))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("case", sorted(BAD))
def test_prepare_refuses_a_target_with_nothing_to_learn(work, capsys, case):
    fn, _ = BAD[case]
    _rewrite(_wet(work / "data"), fn)
    capsys.readouterr()
    assert run_stage(prepare_stage.main, []) == 2
    err = capsys.readouterr().err.strip()
    expect = {"silent": "silent (RMS below 1e-05): a failed render or recording; re-record it",
              "dc_only": "only a DC offset (+0.25; RMS without it below 1e-05): no signal: a failed render"}[case]
    assert err.startswith(f"error: {_wet(work / 'data')}: {expect}") and "\n" not in err, err
    assert not (work / "artifacts").exists()


@pytest.mark.parametrize("case", sorted(BAD))
def test_train_refuses_it_before_a_step_when_the_index_predates_it(work, capsys, monkeypatch, case):
    """The target changed after `prepare` (or the index comes from older code): `train` stops with
    one line at its start — no step taken, nothing written — instead of training on it."""
    assert run_stage(prepare_stage.main, []) == 0
    fn, what = BAD[case]
    _rewrite(_wet(work / "data"), fn)
    steps = []
    monkeypatch.setattr(system_mod.EffectSystem, "training_step", lambda *a: steps.append(1))
    capsys.readouterr()
    assert run_stage(train_stage.main, []) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {_wet(work / 'data')}: the training region 0.00–2.75 s of knob setting {SETTING} {what} "
                   "(RMS without the mean below 1e-05): nothing to train on; re-record the target, or remove the "
                   "setting's folder (then rerun prepare)"), err
    assert steps == [] and not (work / "artifacts/model").exists()
    assert not list((work / "artifacts").glob("checkpoints*"))
    # the API raises the same DatasetError
    with pytest.raises(DatasetError, match="nothing to train on"):
        run_training(_params(work / "data"), work / "artifacts/prepared/index.json", work / "m", work / "c")


@pytest.mark.slow
def test_a_target_with_a_dc_offset_trains_finite_and_learns_the_offset(work, monkeypatch):
    """Every target −0.3 (a device or interface with a DC offset on a signal): accepted, and
    training on it is finite, its loss falls, and the output's mean moves toward the target's
    (the untrained LSTM's is +0.33 with this seed)."""
    import torch

    from nablafx.export import load_model

    for p in (work / "data/Fake-Drive").rglob("*.target.wav"):
        _rewrite(p, lambda x: x - 0.3)
    assert run_stage(prepare_stage.main, []) == 0
    losses = []
    original = system_mod.EffectSystem.training_step

    def recording(self, batch, batch_idx):
        out = original(self, batch, batch_idx)
        losses.append(float(out))
        return out

    monkeypatch.setattr(system_mod.EffectSystem, "training_step", recording)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        params = _params(work / "data", max_steps=20, val_every_n_steps=20, lr=0.02, chunk_seconds=0.1)
        info = run_training(params, work / "artifacts/prepared/index.json", work / "m", work / "c")
    finally:
        torch.set_num_threads(threads)
    assert info["steps"] == 20 and len(losses) == 20 and all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-5:]) < losses[0], losses
    model, _ = load_model(work / "m")
    x, _ = sf.read(str(work / "data/DRY-with-markers/trainval/trainval-a.input.wav"), dtype="float32")
    with torch.no_grad():
        trained = float(model(torch.from_numpy(x)[None, None], torch.tensor([[0.5, 0.0]]))[0].mean())
        torch.manual_seed(0)
        from nablafx.training.train import build_from_params

        untrained = float(build_from_params(params, 2, 48000)[1](torch.from_numpy(x)[None, None],
                                                                  torch.tensor([[0.5, 0.0]]))[0].mean())
    assert trained < untrained - 0.2, (trained, untrained)
