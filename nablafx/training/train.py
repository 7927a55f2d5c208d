"""The `train` stage's logic: build the variant, train it with Lightning, save the best model.

Epochs are ``val_every_n_steps`` long; each ends with validation and a checkpoint (best and
last).  A run killed mid-way restarts from its last checkpoint when its signature (variant, model
options, training params, prepared index) matches — the data of every epoch is a pure function
of the seed and epoch number, so the resumed run ends where an uninterrupted one would, with the
same logs.  Everything that can be checked is checked before anything is written; a run then
trains into ``<ckpt_dir>.partial`` and ``<live_dir>.partial`` and only replaces the model folder,
the checkpoints and the logs once it has finished (see :mod:`nablafx.training.checkpoints`).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict
from pathlib import Path

import torch

from nablafx import fileio
from nablafx.config import data_config, recipe_overrides, train_config
from nablafx.data.index import load_index
from nablafx.export import save_model
from nablafx.registry import TRAINING_KEYS, ConfigError, build_model, resolve_variant

RECURRENT_CONTEXT = 2048  # warm-up samples for models with unbounded receptive field
# params that may differ between an interrupted run and its resumption
_RESUME_FREE = {"resume", "accelerator", "devices", "num_nodes", "strategy", "num_workers"}


def build_from_params(params: dict, n_knobs: int, sample_rate: int):
    """``(variant, model, overrides)``: a variant's own ``lr`` / ``tbptt_samples`` keys
    (:data:`~nablafx.registry.TRAINING_KEYS`) override ``train.lr`` / ``train.tbptt_samples``."""
    variant, spec = resolve_variant(params)
    overrides = {k: spec.pop(k) for k in TRAINING_KEYS if k in spec}
    lr = overrides.get("lr")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0):
        raise ConfigError(f"params.yaml: variants.{variant}.lr: must be a number > 0, got {lr!r}")
    if "lr" in overrides:
        overrides["lr"] = float(lr)
    tbptt = overrides.get("tbptt_samples")
    if tbptt is not None and (isinstance(tbptt, bool) or not isinstance(tbptt, int) or tbptt < 0):
        raise ConfigError(f"params.yaml: variants.{variant}.tbptt_samples: must be an integer ≥ 0, got {tbptt!r}")
    model = build_model(spec, n_knobs=n_knobs, sample_rate=sample_rate, key=f"variants.{variant}")
    return variant, model, overrides


def apply_training_keys(tcfg, overrides: dict):
    """``tcfg`` (``train:`` with the recipe laid over it, :func:`~nablafx.config.train_config`) with
    the variant's own training keys (``overrides`` from :func:`build_from_params`) set on it: the
    settings a run trains with.  Returns ``tcfg``."""
    for key, value in overrides.items():
        setattr(tcfg, key, value)
    return tcfg


EFFECTIVE_PARAMS = "effective_params.yaml"  # in the live folder: dvc.yaml lists it as a params file


def write_effective_params(path: Path, params: dict, variant: str, tcfg) -> None:
    """The settings the run trained with — ``train:`` with the recipe and the variant's own training
    keys laid over it — as a params file, so ``dvc exp show`` / ``dvc params diff`` show them."""
    import yaml

    doc = {"recipe": recipe_overrides(params)[0], "variant": variant, "train": asdict(tcfg)}
    fileio.write_text_atomic(path, yaml.safe_dump(doc, sort_keys=False))


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


def check_accelerator(tcfg) -> None:
    """One-line ConfigError naming ``train.accelerator`` / ``train.devices`` when the machine lacks them."""
    acc = tcfg.accelerator
    if acc in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"params.yaml: train.accelerator: {acc!r} needs a CUDA GPU and none is available "
                              "here (torch.cuda.is_available() is False); use 'auto' or 'cpu'")
        n = torch.cuda.device_count()
        if tcfg.devices > n:
            raise ConfigError(f"params.yaml: train.devices: {tcfg.devices} GPUs asked for, this machine has {n}")
    elif acc == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError("params.yaml: train.accelerator: 'mps' is not available here; use 'auto' or 'cpu'")


def run_training(params: dict, index_path, model_dir, ckpt_dir="artifacts/checkpoints",
                 live_dir="dvclive/train", pretrained_dir=None) -> dict:
    """Validate everything first, then train in the ``.partial`` folders; the model folder, the
    checkpoints and the logs are only replaced once the run has finished."""
    from nablafx import allocator

    allocator.use_training_heap()  # first, before any large tensor: huge pages are decided at the first
    dcfg, tcfg = data_config(params), train_config(params)
    index_path = Path(index_path)
    index = load_index(index_path, dcfg.device)
    check_accelerator(tcfg)
    import lightning as L
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    L.seed_everything(tcfg.seed, workers=True, verbose=False)  # before building: initial weights are seeded too
    variant, model, overrides = build_from_params(params, index["n_knobs"], index["sample_rate"])
    apply_training_keys(tcfg, overrides)  # the variant's own training keys (lr, tbptt_samples)
    if pretrained_dir is not None:
        from nablafx import pretraining

        pretraining.load_pretrained(model, pretrained_dir)
    if 0 < tcfg.tbptt_samples < 4096 and set(tcfg.loss) & {"mrstft", "melstft"}:
        raise ConfigError(f"params.yaml: train.tbptt_samples: {tcfg.tbptt_samples} is shorter than the spectral "
                          "loss terms' largest window; use ≥ 4096 or time-domain terms only")
    signature = _signature(variant, model, tcfg, index_path)
    ckpt_dir, model_dir = Path(ckpt_dir), Path(model_dir)
    live_dir = Path(live_dir) if live_dir else None
    # DDP: every rank runs this function; only the launching rank (0) touches the file system
    rank0 = getattr(rank_zero_only, "rank", 0) == 0

    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from torch.utils.data import DataLoader

    from nablafx.data.datasets import (
        AudioBank,
        EpochSampler,
        RandomChunkDataset,
        SequentialChunkDataset,
        check_training_targets,
        target_power,
    )
    from nablafx.training.checkpoints import (
        RunCheckpoint,
        RunRecord,
        SafeCheckpointIO,
        find_resume_point,
        partial_dir,
        prepare_partial,
    )
    from nablafx.training.progress import TrainProgress
    from nablafx.training.system import MONITOR, EffectSystem, PlateauStep

    resume = find_resume_point(ckpt_dir, signature, tcfg.resume, verbose=rank0)  # reads only
    sr = index["sample_rate"]
    chunk = int(round(tcfg.chunk_seconds * sr))
    context = context_for(model, tcfg)
    items = [i for i in index["items"] if i["split"] in ("train", "val")]
    bank = AudioBank(items, sr)
    train_items = [i for i in items if i["split"] == "train"]
    check_training_targets(train_items, bank)  # silent / DC-only targets: one line, before any step
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

    plateau = tcfg.lr_schedule == "plateau"
    system = EffectSystem(model, tcfg.loss, tcfg.lr, tcfg.weight_decay, tcfg.max_steps, context,
                          warmup_steps=0 if plateau else min(50, tcfg.max_steps // 10), grad_clip=tcfg.grad_clip,
                          grad_clip_algorithm=tcfg.grad_clip_algorithm, lr_schedule=tcfg.lr_schedule,
                          plateau_factor=tcfg.lr_plateau_factor, plateau_patience=tcfg.lr_plateau_patience,
                          tbptt=tcfg.tbptt_samples, sample_rate=sr, pre_emphasis=tcfg.pre_emphasis,
                          signature=signature, align_polarity=tcfg.align_polarity,
                          loss_floor=target_power(train_items, bank, tcfg.pre_emphasis) * 10 ** (tcfg.loss_floor_db / 10))
    part = partial_dir(ckpt_dir)
    live_part = partial_dir(live_dir) if live_dir else None
    ckpt = RunCheckpoint(dirpath=part, filename="best", monitor=MONITOR, mode="min",
                         save_top_k=1, save_last=True, enable_version_counter=False)
    if live_dir:
        from dvclive.lightning import DVCLiveLogger
    # live_dir=None: no logger (e.g. a GPU check on a machine without dvclive)
    logger = DVCLiveLogger(dir=str(live_part), dvcyaml=None, save_dvc_exp=False,
                           resume=resume is not None) if live_dir else False
    precision = resolve_precision(tcfg.precision, tcfg.accelerator)
    try:
        trainer = L.Trainer(
            max_steps=tcfg.max_steps, accelerator=tcfg.accelerator, devices=tcfg.devices,
            num_nodes=tcfg.num_nodes, strategy=tcfg.strategy, precision=precision,
            logger=logger, callbacks=[PlateauStep(), ckpt, RunRecord(live_part), TrainProgress()], plugins=[SafeCheckpointIO()],
            use_distributed_sampler=False,
            limit_train_batches=epoch_steps, max_epochs=-1, check_val_every_n_epoch=1,
            enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=min(10, epoch_steps),
            num_sanity_val_steps=0, default_root_dir=str(part),
            deterministic=True if tcfg.accelerator == "cpu" else None,
        )
    except (MisconfigurationException, ValueError) as err:
        raise ConfigError(f"params.yaml: train.accelerator={tcfg.accelerator}, devices={tcfg.devices}, "
                          f"strategy={tcfg.strategy}, precision={precision}: "
                          f"{(str(err).strip().splitlines() or [type(err).__name__])[0]}") from None
    # everything that can be checked has been: from here on only the .partial folders change
    if rank0:
        resume_from = prepare_partial(ckpt_dir, live_dir, resume)
    else:
        resume_from = part / resume[0].name if resume is not None else None
    sampler.step_fn = lambda: trainer.global_step
    t0 = time.perf_counter()
    trainer.fit(system, train_dl, val_dl, ckpt_path=str(resume_from) if resume_from else None)
    seconds = time.perf_counter() - t0
    if trainer.global_rank != 0:
        return {}
    best = Path(ckpt.best_model_path) if ckpt.best_model_path else part / "best.ckpt"
    if best.is_file():
        system.load_state_dict(fileio.load_torch(best, "checkpoint")["state_dict"])
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
    # the run has finished: replace the earlier results, the checkpoints last (a run killed in
    # between still finds its finished .partial checkpoints and redoes these steps)
    save_model(model, model_dir, **info)
    if live_dir:
        write_effective_params(live_part / EFFECTIVE_PARAMS, params, variant, tcfg)
        fileio.replace_dir(live_part, live_dir)
    fileio.replace_dir(part, ckpt_dir)
    return info
