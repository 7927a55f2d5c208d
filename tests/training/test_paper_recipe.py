"""`recipe: paper` runs: one step of the papers' recipe (3 s × 16 chunks, AdamW, ReduceLROnPlateau,
clipping by value, 0.5·L1 + 0.5·MR-STFT + ESR) on a paper-* variant, with only its step count
overridden (slow: 16 × 3 s through a TCN on the CPU), and the same with batch 2; the checkpoint and
the effective params file show the values it trained with."""

import pytest
import torch
import yaml

from nablafx import fileio
from nablafx.training import system as system_mod
from nablafx.training.train import EFFECTIVE_PARAMS, run_training

from ..conftest import REPO_PARAMS, SR, params_with, tiny_prepared

PAPER = yaml.safe_load(REPO_PARAMS.read_text())["recipes"]["paper"]
VARIANT = "paper-tcn-f-45-s-16"  # FiLM on the knobs: the tiny dataset has three knob settings


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    base = tmp_path_factory.mktemp("paper-recipe")
    # a 3 s validation passage per setting (the recipe's chunk), 3.75 s of training audio before it
    tiny_prepared(base, seconds=(7.0, 1.0), val_seconds=3.0)
    return base


@pytest.mark.parametrize("overrides", [
    pytest.param({"max_steps": 1}, marks=pytest.mark.slow, id="steps"),
    pytest.param({"max_steps": 1, "batch_size": 2}, id="steps-batch2"),
])
def test_paper_recipe_one_step_trains_with_the_papers_settings(prepared, monkeypatch, overrides, tmp_path):
    params = params_with(
        model=VARIANT, recipe="paper", recipes={"smoke": {}, "paper": {**PAPER, **overrides}},
        data={"root": str(prepared / "data"), "device": "Fake-Drive", "val_seconds": 3.0, "guard_seconds": 0.25},
        train={"accelerator": "cpu"})
    seen = {}
    original = system_mod.EffectSystem.training_step

    def recording(self, batch, batch_idx):
        seen["batch"] = (tuple(batch[0].shape), tuple(batch[1].shape))
        seen["optimizer"] = self.optimizers().optimizer
        seen["system"] = (self.loss.weights, self.grad_clip, self.grad_clip_algorithm, self.lr_schedule, self.context)
        return original(self, batch, batch_idx)

    monkeypatch.setattr(system_mod.EffectSystem, "training_step", recording)
    info = run_training(params, prepared / "index.json", tmp_path / "model", tmp_path / "ckpt", tmp_path / "live")
    batch = overrides.get("batch_size", PAPER["batch_size"])  # 16 (tests/test_recipes.py)
    assert info["steps"] == 1
    # chunks of 3 s, each after the receptive field's 2046 samples of context (the loss sees the 3 s)
    weights, clip, clip_algorithm, schedule, context = seen["system"]
    assert context == 2046
    assert seen["batch"] == ((batch, 1, 3 * SR + context), (batch, 1, 3 * SR + context))
    assert weights == {"l1": 0.5, "mrstft": 0.5, "esr": 0.5}
    assert (clip, clip_algorithm, schedule) == (10.0, "value", "plateau")
    opt = seen["optimizer"]
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.param_groups[0]["weight_decay"] == 0.01 and opt.defaults["lr"] == 0.005  # the variant's lr
    ckpt = fileio.load_torch(tmp_path / "ckpt" / "last.ckpt", "checkpoint")
    sched = ckpt["lr_schedulers"][0]
    assert (sched["factor"], sched["patience"], sched["mode"]) == (0.5, 20, "min")
    assert sched["last_epoch"] == 1  # stepped after the one validation
    # the effective params file (a dvc.yaml params file: `dvc params diff` lists it)
    doc = yaml.safe_load((tmp_path / "live" / EFFECTIVE_PARAMS).read_text())
    assert doc["recipe"] == "paper" and doc["variant"] == VARIANT
    train = doc["train"]
    assert (train["max_steps"], train["batch_size"], train["chunk_seconds"]) == (1, batch, 3.0)
    assert (train["lr"], train["weight_decay"]) == (0.005, 0.01)
    assert (train["lr_schedule"], train["lr_plateau_factor"], train["lr_plateau_patience"]) == ("plateau", 0.5, 20)
    assert (train["grad_clip"], train["grad_clip_algorithm"]) == (10.0, "value")
    assert train["loss"] == {"l1": 0.5, "mrstft": 0.5, "esr": 0.5}
