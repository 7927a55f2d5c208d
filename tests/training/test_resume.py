"""Resume after an interruption (same weights, same logs), refusal on changed settings, corrupt
checkpoints, a crash while finishing, non-finite loss, TBPTT."""

import pytest
import torch

from nablafx import fileio
from nablafx.export import load_model
from nablafx.registry import ConfigError
from nablafx.training import system as system_mod
from nablafx.training.checkpoints import ResumeError
from nablafx.training.train import run_training

from ..conftest import params_with, tiny_prepared


def _params(root, **train):
    return params_with(
        model="tcn-tiny",
        data={"root": str(root), "device": "Fake-Drive", "val_seconds": 1.0, "guard_seconds": 0.25},
        train={"max_steps": 6, "batch_size": 2, "chunk_seconds": 0.1, "val_every_n_steps": 2,
               "lr": 0.01, "accelerator": "cpu", **train},
        aliases={},
        variants={"tcn-tiny": {"family": "tcn", "channels": 4, "blocks": 2, "kernel_size": 3,
                               "dilation_growth": 2, "cond": "film"},
                  "lstm-4": {"family": "lstm", "hidden_size": 4}},
    )


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    base = tmp_path_factory.mktemp("resume")
    tiny_prepared(base)
    return base


def _train(base, tag, params):
    return run_training(params, base / "index.json", base / tag / "model", base / tag / "ckpt", base / tag / "live")


class Killed(Exception):
    """Stands for the process being killed (Lightning turns KeyboardInterrupt into sys.exit)."""


def _fail_at(monkeypatch, step):
    original = system_mod.EffectSystem.training_step

    def failing(self, batch, batch_idx):
        if self.global_step == step:
            raise Killed(f"killed at step {step}")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(system_mod.EffectSystem, "training_step", failing)


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def full(prepared):
    """The uninterrupted reference run."""
    info = _train(prepared, "full", _params(prepared / "data"))
    assert info["steps"] == 6 and info["resumed_from"] is None
    return info


def _same_as_full(prepared, tag, full, info):
    a, _ = load_model(prepared / "full/model")
    b, _ = load_model(prepared / f"{tag}/model")
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert info["best_val_esr"] == full["best_val_esr"] and info["steps"] == 6
    # the logs of the resumed run: same files, rows, steps and values as the uninterrupted run's
    ref, got = _files(prepared / "full/live"), _files(prepared / f"{tag}/live")
    assert ref.keys() == got.keys() and "plots/metrics/val/loss.tsv" in ref
    for k in ref:
        assert got[k] == ref[k], (k, ref[k].decode(), got[k].decode())
    assert not (prepared / f"{tag}/ckpt.partial").exists() and not (prepared / f"{tag}/live.partial").exists()


def test_resume_after_kill_matches_uninterrupted(prepared, monkeypatch, full, capsys):
    params = _params(prepared / "data")
    with monkeypatch.context() as m:
        _fail_at(m, 3)  # killed during the second epoch; last.ckpt holds the end of epoch 1
        with pytest.raises(Killed):
            _train(prepared, "cut", params)
    # the interrupted run lives in the .partial folders; nothing "finished" was written
    assert (prepared / "cut/ckpt.partial/last.ckpt").is_file() and (prepared / "cut/live.partial").is_dir()
    assert not (prepared / "cut/model").exists() and not (prepared / "cut/ckpt").exists()
    assert not (prepared / "cut/live").exists()
    capsys.readouterr()
    resumed = _train(prepared, "cut", params)
    assert f"train: resuming from {prepared / 'cut/ckpt.partial/last.ckpt'} (step 2)" in capsys.readouterr().err
    assert resumed["resumed_from"].endswith("last.ckpt")
    _same_as_full(prepared, "cut", full, resumed)
    assert sorted(p.name for p in (prepared / "cut/ckpt").iterdir()) == ["best.ckpt", "last.ckpt"]


def test_corrupt_last_falls_back_to_best_and_a_crash_while_finishing_is_redone(prepared, monkeypatch, full, capsys):
    params = _params(prepared / "data")
    with monkeypatch.context() as m:
        _fail_at(m, 5)  # last.ckpt: step 4; best.ckpt: the best of steps 2 and 4
        with pytest.raises(Killed):
            _train(prepared, "corrupt", params)
    last = prepared / "corrupt/ckpt.partial/last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # truncated
    best = last.with_name("best.ckpt")
    good_best = best.read_bytes()
    best.write_bytes(b"")
    require = _params(prepared / "data", resume="require")
    with pytest.raises(ResumeError) as err:  # nothing resumable left: one line naming the file, a hint
        _train(prepared, "corrupt", require)
    msg = str(err.value)
    assert msg.startswith(f"{last}: cannot resume (train.resume=require): unreadable checkpoint (truncated, empty "
                          "or not a torch file: RuntimeError: PytorchStreamReader failed reading zip archive: "
                          "failed finding central directory) (and 1 other checkpoints); delete it or set "
                          "train.resume=auto"), msg
    best.write_bytes(good_best)
    # auto: falls back to best.ckpt (as exact: it holds the whole training state of its epoch) and
    # says so; the run is then "killed" after exporting the model, before swapping in its checkpoints
    real_replace = fileio.replace_dir

    def crash_on_checkpoints(new, target):
        if str(target).endswith("ckpt"):
            raise Killed("killed while finishing")
        real_replace(new, target)

    capsys.readouterr()
    with monkeypatch.context() as m:
        m.setattr(fileio, "replace_dir", crash_on_checkpoints)
        with pytest.raises(Killed):
            _train(prepared, "corrupt", params)
    err = capsys.readouterr().err
    assert f"train: not resuming from {last}: unreadable checkpoint (truncated" in err
    assert f"train: resuming from {last.with_name('best.ckpt')}" in err
    assert (prepared / "corrupt/ckpt.partial/last.ckpt").is_file() and (prepared / "corrupt/model").is_dir()
    # rerun: the finished .partial run is resumed (nothing left to train) and finished again
    info = _train(prepared, "corrupt", params)
    _same_as_full(prepared, "corrupt", full, info)


def test_unreadable_checkpoints_start_afresh_and_unsafe_ones_are_refused(prepared, capsys, tmp_path):
    from ..test_fileio import crafted_torch_file

    params = _params(prepared / "data", max_steps=2)
    part = prepared / "garbage/ckpt.partial"
    part.mkdir(parents=True)
    (part / "last.ckpt").write_bytes(b"\x00garbage" * 100)
    (part / "best.ckpt").write_bytes(b"")
    capsys.readouterr()
    info = _train(prepared, "garbage", params)
    err = capsys.readouterr().err
    assert info["resumed_from"] is None and info["steps"] == 2
    assert f"not resuming from {part / 'last.ckpt'}: unreadable checkpoint" in err
    assert f"not resuming from {part / 'best.ckpt'}: unreadable checkpoint" in err
    assert f"train: starting afresh; discarding the interrupted run in {part}" in err
    before = _files(prepared / "garbage")
    # a checkpoint that would run code when unpickled: refused, never skipped, never run
    marker = tmp_path / "MARKER"
    for where in (part, prepared / "garbage/ckpt"):
        part.mkdir(exist_ok=True)
        crafted_torch_file(where / "last.ckpt", marker)
        with pytest.raises(fileio.UnsafeFileError, match=f"^{where / 'last.ckpt'}: refused to load this checkpoint"):
            _train(prepared, "garbage", params)
        assert not marker.exists()
        (where / "last.ckpt").unlink()
        if where == part:
            part.rmdir()
    (prepared / "garbage/ckpt/last.ckpt").write_bytes(before["ckpt/last.ckpt"])
    assert _files(prepared / "garbage") == before


def test_resume_require_refuses_changed_settings(prepared, monkeypatch):
    params = _params(prepared / "data")
    with monkeypatch.context() as m:
        _fail_at(m, 3)
        with pytest.raises(Killed):
            _train(prepared, "changed", params)
    changed = _params(prepared / "data", lr=0.02, resume="require")
    changed["variants"]["tcn-tiny"]["channels"] = 6
    with pytest.raises(ConfigError, match=r"different settings: spec\.channels, train\.lr"):
        _train(prepared, "changed", changed)
    # auto mode starts afresh instead
    info = _train(prepared, "changed", _params(prepared / "data", lr=0.02))
    assert info["resumed_from"] is None and info["steps"] == 6


def test_non_finite_loss_names_step_and_keeps_checkpoint(prepared, monkeypatch):
    original = system_mod.EffectSystem.forward

    params = _params(prepared / "data")
    calls = {"n": 0}

    def poisoned_model_forward(self, x, knobs=None, state=None):
        calls["n"] += 1
        y, s = orig_model_forward(self, x, knobs, state)
        return (y * float("nan"), s) if self.training and calls["n"] > 4 else (y, s)

    from nablafx.models.tcn import TCNModel as TCN

    orig_model_forward = TCN.forward
    monkeypatch.setattr(TCN, "forward", poisoned_model_forward)
    with pytest.raises(FloatingPointError, match=r"non-finite training loss at step \d"):
        _train(prepared, "nan", params)
    assert (prepared / "nan/ckpt.partial/last.ckpt").is_file()
    assert original is system_mod.EffectSystem.forward


def test_tbptt_gradient_truncated_but_forward_exact(prepared):
    """With TBPTT the LSTM trains in segments; the loss it reports equals the full-chunk loss
    at the first step (same forward), and training runs to the end."""
    params = _params(prepared / "data", tbptt_samples=4096, chunk_seconds=0.3, max_steps=2, val_every_n_steps=2)
    params["model"] = "lstm-4"
    info = _train(prepared, "tbptt", params)
    assert info["steps"] == 2 and info["best_val_esr"] > 0
    with pytest.raises(ConfigError, match="train.tbptt_samples: 512 is shorter"):
        _train(prepared, "tbptt2", {**params, "train": {**params["train"], "tbptt_samples": 512}})


def test_segment_bounds():
    from nablafx.training.system import segment_bounds

    assert segment_bounds(10000, 100, 0) == [0, 10000]
    assert segment_bounds(10000, 100, 4096) == [0, 4196, 10000]  # tail of 1708 merged
    assert segment_bounds(20000, 100, 4096) == [0, 4196, 8292, 12388, 20000]
    assert segment_bounds(5000, 100, 4096) == [0, 5000]


def test_tbptt_forward_equals_offline(prepared):
    """The segmented forward with carried (detached) state is exactly the offline forward."""
    from nablafx.registry import build_model
    from nablafx.streaming import detach_state
    from nablafx.training.system import segment_bounds

    model = build_model({"family": "lstm", "hidden_size": 4}, n_knobs=2)
    x, k = torch.randn(2, 1, 20000), torch.rand(2, 2)
    full, _ = model(x, k)
    outs, state = [], None
    b = segment_bounds(20000, 100, 4096)
    for s0, s1 in zip(b[:-1], b[1:]):
        y, state = model(x[..., s0:s1], k, state)
        outs.append(y)
        state = detach_state(state)
    torch.testing.assert_close(torch.cat(outs, -1), full, rtol=0, atol=1e-6)


def test_variant_lr_overrides_train_lr(prepared):
    params = _params(prepared / "data", max_steps=1, val_every_n_steps=1)
    params["variants"]["tcn-tiny"]["lr"] = 0.05
    assert _train(prepared, "lr", params)["lr"] == 0.05
    params["variants"]["tcn-tiny"]["lr"] = "fast"
    with pytest.raises(ConfigError, match="variants.tcn-tiny.lr: must be a number > 0"):
        _train(prepared, "lr2", params)
