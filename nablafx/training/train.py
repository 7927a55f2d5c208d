"""The `train` stage's logic: build the variant, train it with Lightning, save the best model.

Epochs are ``val_every_n_steps`` long; each ends with validation and a checkpoint (best and
last).  A run killed mid-way restarts from ``last.ckpt`` when its signature (variant, model
options, training params, prepared index) matches — the data of every epoch is a pure function
of the seed and epoch number, so the resumed run ends where an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch

from nablafx.config import data_config, train_config
from nablafx.data.index import load_index
from nablafx.export import save_model
from nablafx.registry import ConfigError, build_model, resolve_variant

RECURRENT_CONTEXT = 2048  # warm-up samples for models with unbounded receptive field
# params that may differ between an interrupted run and its resumption
_RESUME_FREE = {"resume", "accelerator", "devices", "num_nodes", "strategy", "num_workers"}


def build_from_params(params: dict, n_knobs: int, sample_rate: int):
    """``(variant, model, lr)``; a variant's own ``lr`` key overrides ``train.lr``."""
    variant, spec = resolve_variant(params)
    lr = spec.pop("lr", None)
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0):
        raise ConfigError(f"params.yaml: variants.{variant}.lr: must be a number > 0, got {lr!r}")
    model = build_model(spec, n_knobs=n_knobs, sample_rate=sample_rate, key=f"variants.{variant}")
    return variant, model, lr


def context_for(model, cfg) -> int:
    if cfg.context_samples >= 0:
        return cfg.context_samples
    rf = model.receptive_field
    return RECURRENT_CONTEXT if rf is None else max(0, rf - 1)


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto``: bf16 mixed precision on a CUDA GPU that supports it, full float32 elsewhere."""
    if precision != "auto":
        return precision
    gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"


def _signature(variant: str, model, tcfg, index_path: Path) -> dict:
    train = {k: v for k, v in asdict(tcfg).items() if k not in _RESUME_FREE}
    return {"variant": variant, "spec": model.config(), "train": train,
            "index_md5": hashlib.md5(index_path.read_bytes()).hexdigest()}


def _diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += _diff_keys(va, vb, f"{prefix}{k}.")
        elif va != vb:
            keys.append(f"{prefix}{k}")
    return keys


def _resume_point(ckpt_dir: Path, signature: dict, mode: str) -> Path | None:
    last = ckpt_dir / "last.ckpt"
    if mode == "off":
        return None
    if not last.is_file():
        if mode == "require":
            raise ConfigError(f"params.yaml: train.resume=require but {last} does not exist")
        return None
    saved = torch.load(last, map_location="cpu", weights_only=False).get("nablafx_signature", {})
    diff = _diff_keys(saved, signature)
    if diff:
        if mode == "require":
            raise ConfigError(f"params.yaml: train.resume=require but {last} was trained with different "
                              f"settings: {', '.join(diff)}")
        print(f"train: not resuming {last}: settings changed ({', '.join(diff)})")
        return None
    return last


def run_training(params: dict, index_path, model_dir, ckpt_dir="artifacts/checkpoints",
                 live_dir="dvclive/train", pretrained_dir=None) -> dict:
    """Validate everything first, then train; ``model_dir`` is only replaced at the very end."""
    dcfg, tcfg = data_config(params), train_config(params)
    index_path = Path(index_path)
    index = load_index(index_path, dcfg.device)
    import lightning as L

    L.seed_everything(tcfg.seed, workers=True, verbose=False)  # before building: initial weights are seeded too
    variant, model, variant_lr = build_from_params(params, index["n_knobs"], index["sample_rate"])
    if variant_lr is not None:
        tcfg.lr = float(variant_lr)
    if pretrained_dir is not None:
        from nablafx import pretraining

        pretraining.load_pretrained(model, pretrained_dir)
    if 0 < tcfg.tbptt_samples < 4096 and set(tcfg.loss) & {"mrstft", "melstft"}:
        raise ConfigError(f"params.yaml: train.tbptt_samples: {tcfg.tbptt_samples} is shorter than the spectral "
                          "loss terms' largest window; use ≥ 4096 or time-domain terms only")
    signature = _signature(variant, model, tcfg, index_path)
    ckpt_dir = Path(ckpt_dir)
    resume_from = _resume_point(ckpt_dir, signature, tcfg.resume)

    from lightning.pytorch.callbacks import ModelCheckpoint
    from torch.utils.data import DataLoader

    from nablafx.data.datasets import (AudioBank, EpochSampler, RandomChunkDataset, SequentialChunkDataset,
                                       target_power)
    from nablafx.training.system import MONITOR, EffectSystem

    sr = index["sample_rate"]
    chunk = int(round(tcfg.chunk_seconds * sr))
    context = context_for(model, tcfg)
    items = [i for i in index["items"] if i["split"] in ("train", "val")]
    bank = AudioBank(items, sr)
    train_items = [i for i in items if i["split"] == "train"]
    val_items = [i for i in items if i["split"] == "val"]
    epoch_steps = min(tcfg.val_every_n_steps, tcfg.max_steps)
    train_ds = RandomChunkDataset(train_items, bank, chunk, context, epoch_steps * tcfg.batch_size, tcfg.seed)
    val_ds = SequentialChunkDataset(val_items, bank, chunk, context)
    if len(val_ds) == 0:
        raise ConfigError(f"params.yaml: train.chunk_seconds={tcfg.chunk_seconds} is longer than every validation passage")
    loader_kw = dict(num_workers=tcfg.num_workers, persistent_workers=False)
    sampler = EpochSampler(len(train_ds), epoch_steps)
    train_dl = DataLoader(train_ds, batch_size=tcfg.batch_size, sampler=sampler, drop_last=True, **loader_kw)
    val_dl = DataLoader(val_ds, batch_size=tcfg.batch_size, shuffle=False, **loader_kw)

    system = EffectSystem(model, tcfg.loss, tcfg.lr, tcfg.weight_decay, tcfg.max_steps, context,
                          warmup_steps=min(50, tcfg.max_steps // 10), grad_clip=tcfg.grad_clip,
                          tbptt=tcfg.tbptt_samples, sample_rate=sr, pre_emphasis=tcfg.pre_emphasis,
                          signature=signature,
                          loss_floor=target_power(train_items, bank, tcfg.pre_emphasis) * 10 ** (tcfg.loss_floor_db / 10))
    if resume_from is None:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        if live_dir:
            shutil.rmtree(live_dir, ignore_errors=True)
    ckpt = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=MONITOR, mode="min",
                           save_top_k=1, save_last=True, enable_version_counter=False)
    if live_dir:
        from dvclive.lightning import DVCLiveLogger
    # live_dir=None: no logger (e.g. a GPU check on a machine without dvclive)
    logger = DVCLiveLogger(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False,
                           resume=resume_from is not None) if live_dir else False
    precision = resolve_precision(tcfg.precision, tcfg.accelerator)
    trainer = L.Trainer(
        max_steps=tcfg.max_steps, accelerator=tcfg.accelerator, devices=tcfg.devices,
        num_nodes=tcfg.num_nodes, strategy=tcfg.strategy, precision=precision,
        logger=logger, callbacks=[ckpt], use_distributed_sampler=False,
        limit_train_batches=epoch_steps, max_epochs=-1, check_val_every_n_epoch=1,
        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=min(10, epoch_steps),
        num_sanity_val_steps=0, default_root_dir=str(ckpt_dir),
        deterministic=True if tcfg.accelerator == "cpu" else None,
    )
    sampler.step_fn = lambda: trainer.global_step
    t0 = time.perf_counter()
    trainer.fit(system, train_dl, val_dl, ckpt_path=str(resume_from) if resume_from else None)
    seconds = time.perf_counter() - t0
    if trainer.global_rank != 0:
        return {}
    best = Path(ckpt.best_model_path) if ckpt.best_model_path else ckpt_dir / "best.ckpt"
    if best.is_file():
        state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
        system.load_state_dict(state)
    model = system.model.cpu().float().eval()
    n_params = sum(p.numel() for p in model.parameters())
    best_score = ckpt.best_model_score
    info = {"variant": variant, "device": index["device"], "knob_letters": index["knob_letters"],
            "data_n_knobs": index["n_knobs"], "params": n_params, "receptive_field": model.receptive_field,
            "train_seconds": round(seconds, 1), "steps": int(trainer.global_step),
            "resumed_from": str(resume_from) if resume_from else None,
            "accelerator": type(trainer.accelerator).__name__.replace("Accelerator", "").lower(),
            "precision": precision, "lr": tcfg.lr,
            "best_val_esr": float(best_score) if best_score is not None else None}
    save_model(model, model_dir, **info)
    return info
