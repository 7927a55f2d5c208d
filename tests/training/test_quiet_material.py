"""Training on material with quiet gaps (digital silence, −60…−90 dBFS noise floors), hot sections
and an inverting device: every family's default variant trains finite and bounded, and
validation scores the whole validation set (docs/training.md, "Quiet material")."""

import math

import numpy as np
import pytest
import torch

from nablafx.data.prepare import prepare_device
from nablafx.training import system as system_mod
from nablafx.training.train import run_training
from nablafx.utils import write_json

from ..conftest import SR, make_quiet_dataset, params_with

# aliases in params.yaml → each family's default variant; over ~20 s on one idle core: slow
FAMILIES = ("lstm", "tcn", "gcn", pytest.param("s4", marks=pytest.mark.slow), pytest.param("gb", marks=pytest.mark.slow))


@pytest.fixture(scope="module")
def quiet(tmp_path_factory):
    base = tmp_path_factory.mktemp("quiet")
    root = make_quiet_dataset(base / "data", seconds=(6.0, 2.0), settings=("D030_T050", "D090_T020"),
                              devices=(("Quiet-Fuzz", True),))
    index = prepare_device(root, "Quiet-Fuzz", "DRY-with-markers", SR, 0.5, 0.1, 4)
    write_json(base / "index.json", index)
    return base, index


def _record_losses(monkeypatch) -> list[float]:
    losses: list[float] = []
    original = system_mod.EffectSystem.training_step

    def recording(self, batch, batch_idx):
        out = original(self, batch, batch_idx)
        losses.append(float(out))
        return out

    monkeypatch.setattr(system_mod.EffectSystem, "training_step", recording)
    return losses


def test_fixture_has_quiet_crops_hot_sections_and_inversion(quiet):
    _, index = quiet
    assert all(c["inverted"] for c in index["checks"])
    from nablafx.data.audio import read_audio

    train = next(i for i in index["items"] if i["split"] == "train")
    y = read_audio(train["wet"], SR)[train["start"] : train["end"]]
    frames = y[: len(y) // 2400 * 2400].reshape(-1, 2400)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-30)
    assert np.mean(db < -50) > 0.25 and np.any(db < -200)  # gaps, some digital silence
    assert np.max(np.abs(read_audio(train["dry"], SR))) > 0.99  # a hot section


@pytest.mark.parametrize("family", FAMILIES)
def test_default_variant_trains_on_quiet_material(quiet, family, monkeypatch, tmp_path):
    base, _ = quiet
    params = params_with(
        model=family,
        data={"root": str(base / "data"), "device": "Quiet-Fuzz", "val_seconds": 0.5, "guard_seconds": 0.1},
        train={"max_steps": 100, "batch_size": 2, "chunk_seconds": 0.05, "val_every_n_steps": 100,
               "accelerator": "cpu"},
    )
    losses = _record_losses(monkeypatch)
    info = run_training(params, base / "index.json", tmp_path / "model", tmp_path / "ckpt", live_dir=None)
    assert info["steps"] == 100 and len(losses) == 100
    assert all(math.isfinite(v) for v in losses)
    # bounded: a near-silent batch is scored against the floor (the data's level − 30 dB); the
    # per-example ESR of 377ce79 scored single silent crops 1e8–1e15 (benchmarks/results/quiet_material.md)
    assert max(losses) < 1e5, (family, max(losses))
    assert np.mean(losses[-10:]) < losses[0], (family, losses[0], losses[-10:])
    # the checkpoint was picked on the energy-weighted ESR of the whole validation set
    assert info["best_val_esr"] == pytest.approx(_val_esr(base, index_path=base / "index.json", params=params,
                                                          model_dir=tmp_path / "model"), rel=1e-4)


def test_an_inverted_output_scores_badly_on_quiet_material(quiet):
    """Polarity safety survives the floor: on the default recipe's batches of this material (quiet
    crops, hot ones, digital silence) the ESR term of an inverted copy of the target is exactly 4×
    that of a silent output (Σ(2y)² / (Σy² + N·floor)), ≥ 3 on every batch holding a crop of
    playing, and the whole default loss ranks it below saying nothing."""
    from nablafx.config import train_config
    from nablafx.data.datasets import AudioBank, RandomChunkDataset, target_power
    from nablafx.training.losses import WeightedLoss

    _, index = quiet
    tcfg = train_config(params_with())
    train = [i for i in index["items"] if i["split"] == "train"]
    bank = AudioBank(train, SR)
    floor = target_power(train, bank) * 10 ** (tcfg.loss_floor_db / 10)
    loss = WeightedLoss(tcfg.loss, floor=floor)
    ds = RandomChunkDataset(train, bank, int(0.25 * SR), 0, 12 * tcfg.batch_size, tcfg.seed)
    loud_batches = 0
    for b in range(12):
        y = torch.stack([ds[b * tcfg.batch_size + j][1] for j in range(tcfg.batch_size)])
        inverted, terms_inv = loss(-y, y)
        silent, terms_zero = loss(torch.zeros_like(y), y)
        assert float(terms_inv["esr"]) == pytest.approx(4 * float(terms_zero["esr"]), rel=1e-5)
        crop_db = 10 * torch.log10(torch.mean(y.double() ** 2, -1) + 1e-30)
        if float(crop_db.max()) > -30:
            loud_batches += 1
            assert float(terms_inv["esr"]) >= 3.0 and float(inverted) > float(silent), (b, crop_db.flatten())
    assert loud_batches >= 6


@pytest.mark.parametrize("cond", ["none", "film", "tfilm", "tinytfilm", "tvfilm"])
def test_untrained_s4_says_nothing_on_silence(cond):
    """S4 starts without offsets: digital silence in gives exactly silence out, and a playing
    input comes out below +12 dB of its level.  With the default 1×1-conv initialisation the
    untrained model's output was +9 … +34 dBFS on silence (input-independent: the biases' DC
    times the S4D layers' DC gain, plus their start-up transient), which turned every quiet
    crop's per-example ESR into 1e8+ (benchmarks/results/quiet_material.md)."""
    from nablafx.registry import build_model

    torch.manual_seed(0)
    model = build_model({"family": "s4", "blocks": 4, "state_dim": 32, "channels": 16, "cond": cond},
                        n_knobs=2, sample_rate=SR)
    knobs = torch.tensor([[0.6, 0.2]])
    x = 0.1 * torch.randn(1, 1, 6000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        silent, _ = model(torch.zeros(1, 1, 6000), knobs)
        y, _ = model(x, knobs)
    assert torch.count_nonzero(silent) == 0
    gain_db = 10 * math.log10(float(torch.mean(y[..., 2048:] ** 2) / torch.mean(x[..., 2048:] ** 2)))
    assert math.isfinite(gain_db) and gain_db < 12, gain_db


def _val_esr(base, index_path, params, model_dir) -> float:
    """Σ(y − ŷ)² / Σy² over every validation chunk, as the test stage scores (energy-weighted)."""
    import torch

    from nablafx.config import train_config
    from nablafx.data.datasets import AudioBank, SequentialChunkDataset
    from nablafx.data.index import load_index
    from nablafx.export import load_model
    from nablafx.training.train import context_for

    model, _ = load_model(model_dir)
    index = load_index(index_path, "Quiet-Fuzz")
    tcfg = train_config(params)
    val = [i for i in index["items"] if i["split"] == "val"]
    context = context_for(model, tcfg)
    ds = SequentialChunkDataset(val, AudioBank(val, SR), int(round(tcfg.chunk_seconds * SR)), context)
    err = energy = 0.0
    with torch.no_grad():
        for x, y, knobs in (ds[i] for i in range(len(ds))):
            y_hat, _ = model(x[None], knobs[None] if model.n_knobs else None)
            e = (y_hat[..., context:] - y[None, ..., context:]).double()
            err += float(torch.sum(e**2))
            energy += float(torch.sum(y[..., context:].double() ** 2))
    return err / energy
