"""The papers' training recipe pieces: ReduceLROnPlateau after each validation (exact on resume),
gradient clipping by value, a variant's own lr / tbptt_samples, and the effective settings file."""

import pytest
import torch
import yaml

from nablafx import fileio
from nablafx.registry import ConfigError, build_model
from nablafx.training import system as system_mod
from nablafx.training.system import PLATEAU_MONITOR, EffectSystem, PlateauStep
from nablafx.training.train import EFFECTIVE_PARAMS, build_from_params

from .test_resume import Killed, _fail_at, _params, _train, prepared  # noqa: F401  (prepared: a fixture)


class _Trainer:
    sanity_checking = False

    def __init__(self):
        self.callback_metrics = {}


def _system(schedule, patience=1):
    model = build_model({"family": "lstm", "hidden_size": 4}, n_knobs=0)
    system = EffectSystem(model, {"l1": 1.0}, lr=0.01, weight_decay=0.0, max_steps=100, context=0,
                          lr_schedule=schedule, plateau_factor=0.5, plateau_patience=patience)
    conf = system.configure_optimizers()
    sched = conf["lr_scheduler"]["scheduler"]
    system.lr_schedulers = lambda: sched  # what Lightning returns once the trainer holds the optimizer
    return system, conf, sched


def test_plateau_halves_the_lr_after_patience_validations_without_improvement():
    system, conf, sched = _system("plateau", patience=1)
    assert isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert conf["lr_scheduler"]["monitor"] == PLATEAU_MONITOR == "val/loss"
    opt = conf["optimizer"]
    trainer, step = _Trainer(), PlateauStep()
    lrs = []
    for val_loss in (1.0, 0.9, 0.95, 0.95, 0.95, 0.8):
        trainer.callback_metrics[PLATEAU_MONITOR] = torch.tensor(val_loss)
        step.on_validation_end(trainer, system)
        lrs.append(opt.param_groups[0]["lr"])
    # improved, improved, worse (1 bad), worse (2 bad > patience: ×0.5, counter reset), worse (1), improved
    assert lrs == [0.01, 0.01, 0.01, 0.005, 0.005, 0.005]


def test_cosine_schedule_is_not_touched_by_the_plateau_callback():
    system, conf, sched = _system("cosine")
    assert isinstance(sched, torch.optim.lr_scheduler.LambdaLR)
    trainer = _Trainer()
    trainer.callback_metrics[PLATEAU_MONITOR] = torch.tensor(1.0)
    before = sched.state_dict()
    PlateauStep().on_validation_end(trainer, system)
    assert sched.state_dict() == before


def _paper_like(root, **train):
    """The paper recipe's schedule and clipping on the tiny budget of test_resume (recipe `tiny`)."""
    params = _params(root, **train)
    params["recipes"] = {"smoke": {}, "tiny": {"lr_schedule": "plateau", "lr_plateau_factor": 0.5,
                                               "lr_plateau_patience": 0, "grad_clip": 0.01,
                                               "grad_clip_algorithm": "value"}}
    params["recipe"] = "tiny"
    params["variants"]["tcn-tiny"]["lr"] = 0.02
    return params


def _scheduler_state(folder):
    ckpt = fileio.load_torch(folder / "last.ckpt", "checkpoint")
    return ckpt["global_step"], ckpt["lr_schedulers"][0]


def test_plateau_recipe_trains_records_its_settings_and_resumes_exactly(prepared, monkeypatch):  # noqa: F811
    params = _paper_like(prepared / "data")
    lrs: dict[str, dict[int, float]] = {}
    tag = ["full"]
    original = system_mod.EffectSystem.training_step

    def recording(self, batch, batch_idx):
        lrs.setdefault(tag[0], {})[self.global_step] = self.optimizers().param_groups[0]["lr"]
        return original(self, batch, batch_idx)

    monkeypatch.setattr(system_mod.EffectSystem, "training_step", recording)
    info = _train(prepared, "plateau", params)
    assert info["steps"] == 6 and info["lr"] == 0.02
    # the schedule was stepped on val/loss at each validation (every 2 steps), before the checkpoint
    step, state = _scheduler_state(prepared / "plateau/ckpt")
    assert state["patience"] == 0 and state["factor"] == 0.5 and state["last_epoch"] == step // 2 >= 1
    # it follows val/loss (the objective), not the checkpoint's val/esr: its best is the lowest val/loss logged
    rows = (prepared / "plateau/live/plots/metrics/val/loss.tsv").read_text().splitlines()[1:]
    assert state["best"] == pytest.approx(min(float(r.split("\t")[-1]) for r in rows))
    # patience 0: a validation that does not improve halves the LR (here the second one)
    assert sorted(set(lrs["full"].values()), reverse=True)[:2] == [0.02, 0.01], lrs
    # the effective settings: train: + recipe `tiny` + the variant's own lr
    doc = yaml.safe_load((prepared / "plateau/live" / EFFECTIVE_PARAMS).read_text())
    assert doc["recipe"] == "tiny" and doc["variant"] == "tcn-tiny"
    assert doc["train"]["lr"] == 0.02 and doc["train"]["lr_schedule"] == "plateau"
    assert doc["train"]["grad_clip_algorithm"] == "value" and doc["train"]["max_steps"] == 6
    # killed in the second epoch and resumed: the same LR at every step
    tag[0] = "cut"
    with monkeypatch.context() as m:
        _fail_at(m, 3)  # killed at step 3; last.ckpt holds step 2
        with pytest.raises(Killed):
            _train(prepared, "plateau-cut", params)
    tag[0] = "resumed"
    _train(prepared, "plateau-cut", params)
    assert lrs["resumed"] == {k: v for k, v in lrs["full"].items() if k >= 2}


def test_variant_training_keys_override_train():
    """A variant's lr and tbptt_samples (the papers' LSTMs train with TBPTT) override train:."""
    params = _params("data")
    params["model"] = "lstm-4"
    params["variants"]["lstm-4"].update(lr=0.001, tbptt_samples=4800)
    variant, model, overrides = build_from_params(params, 0, 48000)
    assert variant == "lstm-4" and overrides == {"lr": 0.001, "tbptt_samples": 4800}
    assert model.config() == {"family": "lstm", "hidden_size": 4}  # not model options
    params["variants"]["lstm-4"]["tbptt_samples"] = -1
    with pytest.raises(ConfigError, match=r"variants\.lstm-4\.tbptt_samples: must be an integer ≥ 0, got -1"):
        build_from_params(params, 0, 48000)


def test_clip_gradients_by_value_by_norm_and_off():
    """The trainer's clipping outside Lightning (benchmarks): elementwise to ±value, the joint norm to
    value, or nothing at 0."""
    from nablafx.training.system import clip_gradients

    def params(grads):
        out = []
        for g in grads:
            p = torch.nn.Parameter(torch.zeros(len(g)))
            p.grad = torch.tensor(g)
            out.append(p)
        return out

    ps = params([[3.0, -0.5], [-4.0]])
    clip_gradients(ps, 1.0, "value")
    assert ps[0].grad.tolist() == [1.0, -0.5] and ps[1].grad.tolist() == [-1.0]
    ps = params([[3.0, 0.0], [-4.0]])  # joint norm 5
    clip_gradients(ps, 1.0, "norm")
    torch.testing.assert_close(torch.cat([p.grad for p in ps]), torch.tensor([0.6, 0.0, -0.8]), rtol=0, atol=1e-6)
    ps = params([[3.0, 0.0], [-4.0]])
    clip_gradients(ps, 0.0, "value")
    assert ps[0].grad.tolist() == [3.0, 0.0] and ps[1].grad.tolist() == [-4.0]
