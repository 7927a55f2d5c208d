"""The `train` stage's logic: build the variant, train it with Lightning, save the best model."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from nablafx.config import data_config, train_config
from nablafx.data.audio import DatasetError
from nablafx.export import save_model
from nablafx.registry import ConfigError, build_model, resolve_variant

RECURRENT_CONTEXT = 2048  # warm-up samples for models with unbounded receptive field


def load_index(path: str | Path, device: str | None = None) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: prepared index not found (run `dvc repro prepare`)")
    index = json.loads(path.read_text())
    if device is not None and index.get("device") != device:
        raise DatasetError(f"{path}: prepared for {index.get('device')!r}, params data.device is {device!r}")
    return index


def build_from_params(params: dict, n_knobs: int, sample_rate: int):
    variant, spec = resolve_variant(params)
    model = build_model(spec, n_knobs=n_knobs, sample_rate=sample_rate, key=f"variants.{variant}")
    return variant, model


def context_for(model, cfg) -> int:
    if cfg.context_samples >= 0:
        return cfg.context_samples
    rf = model.receptive_field
    return RECURRENT_CONTEXT if rf is None else max(0, rf - 1)


def run_training(params: dict, index_path, model_dir, ckpt_dir="artifacts/checkpoints",
                 live_dir="dvclive/train", pretrained_dir=None) -> dict:
    """Validate everything first, then train; ``model_dir`` is only replaced at the very end."""
    dcfg, tcfg = data_config(params), train_config(params)
    index = load_index(index_path, dcfg.device)
    variant, model = build_from_params(params, index["n_knobs"], index["sample_rate"])
    if pretrained_dir is not None:
        from nablafx import pretraining

        pretraining.load_pretrained(model, pretrained_dir)

    import lightning as L
    from dvclive.lightning import DVCLiveLogger
    from lightning.pytorch.callbacks import ModelCheckpoint
    from torch.utils.data import DataLoader

    from nablafx.data.datasets import AudioBank, RandomChunkDataset, SequentialChunkDataset
    from nablafx.training.system import EffectSystem

    L.seed_everything(tcfg.seed, workers=True, verbose=False)
    sr = index["sample_rate"]
    chunk = int(round(tcfg.chunk_seconds * sr))
    context = context_for(model, tcfg)
    items = [i for i in index["items"] if i["split"] in ("train", "val")]
    bank = AudioBank(items, sr)
    train_items = [i for i in items if i["split"] == "train"]
    val_items = [i for i in items if i["split"] == "val"]
    train_ds = RandomChunkDataset(train_items, bank, chunk, context, tcfg.max_steps * tcfg.batch_size, tcfg.seed)
    val_ds = SequentialChunkDataset(val_items, bank, chunk, context)
    if len(val_ds) == 0:
        raise ConfigError(f"params.yaml: train.chunk_seconds={tcfg.chunk_seconds} is longer than every validation passage")
    loader_kw = dict(num_workers=tcfg.num_workers, persistent_workers=tcfg.num_workers > 0)
    train_dl = DataLoader(train_ds, batch_size=tcfg.batch_size, shuffle=False, drop_last=True, **loader_kw)
    val_dl = DataLoader(val_ds, batch_size=tcfg.batch_size, shuffle=False, **loader_kw)

    system = EffectSystem(model, tcfg.loss, tcfg.lr, tcfg.weight_decay, tcfg.max_steps, context,
                          warmup_steps=min(50, tcfg.max_steps // 10))
    ckpt_dir = Path(ckpt_dir)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    ckpt = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/loss", mode="min",
                           save_top_k=1, save_last=True)
    shutil.rmtree(live_dir, ignore_errors=True)
    logger = DVCLiveLogger(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False)
    trainer = L.Trainer(
        max_steps=tcfg.max_steps, accelerator=tcfg.accelerator, devices=tcfg.devices,
        num_nodes=tcfg.num_nodes, strategy=tcfg.strategy, precision=tcfg.precision,
        gradient_clip_val=tcfg.grad_clip or None, logger=logger, callbacks=[ckpt],
        val_check_interval=min(tcfg.val_every_n_steps, tcfg.max_steps), check_val_every_n_epoch=None,
        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=10,
        num_sanity_val_steps=0, default_root_dir=str(ckpt_dir),
    )
    t0 = time.perf_counter()
    trainer.fit(system, train_dl, val_dl)
    seconds = time.perf_counter() - t0
    if ckpt.best_model_path:
        state = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=False)["state_dict"]
        system.load_state_dict(state)
    model = system.model.cpu().eval()
    n_params = sum(p.numel() for p in model.parameters())
    info = {"variant": variant, "device": index["device"], "knob_letters": index["knob_letters"],
            "data_n_knobs": index["n_knobs"], "params": n_params, "receptive_field": model.receptive_field,
            "train_seconds": round(seconds, 1), "steps": int(trainer.global_step),
            "accelerator": str(trainer.accelerator.__class__.__name__).replace("Accelerator", "").lower(),
            "best_val_loss": float(ckpt.best_model_score) if ckpt.best_model_score is not None else None}
    save_model(model, model_dir, **info)
    return info
