"""Training recipes: named overrides of params.yaml ``train:`` keys, picked by ``recipe:``.

``dvc exp run -S recipe=paper`` must train with the papers' recipe, the effective values must be
visible to DVC (the train stage tracks ``recipe`` / ``recipes`` and writes the values it used to a
params file listed in dvc.yaml), and a wrong name is a one-line error listing the known ones.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from nablafx.config import ConfigError, load_params, recipe_overrides, train_config

from .conftest import params_with

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "params.yaml")


def test_default_recipe_is_smoke_and_smoke_is_train_as_written():
    assert PARAMS["recipe"] == "smoke"
    assert recipe_overrides(PARAMS) == ("smoke", {})
    cfg = train_config(PARAMS)
    assert dataclasses.asdict(cfg) == {**PARAMS["train"], "lr": float(PARAMS["train"]["lr"]),
                                      "loss": {k: float(v) for k, v in PARAMS["train"]["loss"].items()}}


def test_recipe_paper_gives_the_papers_values():
    cfg = train_config(params_with(recipe="paper"))
    # the papers' recipe (REFERENCE.md): 3 s chunks, batch 16, AdamW wd 0.01, ReduceLROnPlateau (×0.5 after
    # 20), gradient clip 10 by value, ~15k steps, 0.5·L1 + 0.5·MR-STFT (+ ESR here: polarity)
    assert (cfg.chunk_seconds, cfg.batch_size, cfg.weight_decay, cfg.max_steps) == (3.0, 16, 0.01, 15000)
    assert (cfg.lr_schedule, cfg.lr_plateau_factor, cfg.lr_plateau_patience) == ("plateau", 0.5, 20)
    assert (cfg.grad_clip, cfg.grad_clip_algorithm) == (10.0, "value")
    assert cfg.loss == {"l1": 0.5, "mrstft": 0.5, "esr": 0.5}
    # keys the recipe leaves alone come from train: (machine, data loading, resume)
    for key in ("seed", "accelerator", "devices", "precision", "num_workers", "resume", "context_samples"):
        assert getattr(cfg, key) == PARAMS["train"][key], key
    # and nothing else differs from the recipe as written
    paper = PARAMS["recipes"]["paper"]
    assert {k: getattr(cfg, k) for k in paper} == {k: (float(v) if isinstance(getattr(cfg, k), float) else v)
                                                   for k, v in paper.items()}


def test_recipe_overrides_train_but_a_recipe_loss_replaces_the_whole_loss():
    params = params_with(recipe="short", recipes={"smoke": {}, "short": {"max_steps": 3, "loss": {"l1": 1}}})
    cfg = train_config(params)
    assert cfg.max_steps == 3 and cfg.loss == {"l1": 1.0}
    assert cfg.batch_size == PARAMS["train"]["batch_size"]


def test_unknown_recipe_is_one_line_listing_the_known_ones():
    with pytest.raises(ConfigError) as err:
        train_config(params_with(recipe="papr"))
    assert str(err.value) == "params.yaml: recipe: unknown recipe 'papr'; known: paper, smoke"
    params = params_with()
    del params["recipe"]
    with pytest.raises(ConfigError, match=r"^params\.yaml: recipe: missing; known: paper, smoke$"):
        train_config(params)


@pytest.mark.parametrize("recipes, message", [
    ({"smoke": {}, "x": {"max_stepz": 3}}, "params.yaml: recipes.x.max_stepz: unknown train key; known: seed,"),
    ({"smoke": {}, "x": {"lr": "fast"}}, "params.yaml: recipes.x.lr: expected float, got 'fast'"),
    ({"smoke": {}, "x": {"lr_plateau_factor": 1.5}}, "params.yaml: recipes.x.lr_plateau_factor: must be < 1, got 1.5"),
    ({"smoke": {}, "x": {"lr_schedule": "step"}},
     "params.yaml: recipes.x.lr_schedule: unknown value 'step'; known: cosine, plateau"),
    ({"smoke": {}, "x": [1]}, "params.yaml: recipes.x: expected a mapping of train keys, got [1]"),
    ({}, "params.yaml: recipes: expected a non-empty mapping of recipe name → train keys"),
])
def test_every_recipe_is_checked_with_its_own_key_path(recipes, message):
    """Selected or not: a typo in a recipe fails before any training."""
    with pytest.raises(ConfigError) as err:
        train_config(params_with(recipe="smoke", recipes=recipes))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_dvc_tracks_the_recipe_and_the_effective_values():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    train = dvc["stages"]["train"]
    assert {"recipe", "recipes", "train"} <= set(train["params"])
    effective = "dvclive/train/effective_params.yaml"
    assert effective in dvc["params"]  # a params file: `dvc exp show` and `dvc params diff` read it
    assert any(isinstance(o, dict) and effective in o and o[effective].get("cache") is False for o in train["outs"])
