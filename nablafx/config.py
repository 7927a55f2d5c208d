"""Typed views of params.yaml sections, validated with key paths in every error."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from nablafx.errors import ConfigError


@dataclass
class DataConfig:
    root: str = "data"
    dry_dir: str = "DRY-with-markers"
    device: str = "Guitarix-TS9"
    sample_rate: int = 48000
    val_seconds: float = 5.0
    guard_seconds: float = 0.5
    max_latency_samples: int = 4


@dataclass
class TrainConfig:
    seed: int = 0
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    max_steps: int = 800
    batch_size: int = 8
    chunk_seconds: float = 1.0
    context_samples: int = -1  # -1: receptive field − 1 (bounded models) or 2048 (recurrent)
    val_every_n_steps: int = 200  # also the epoch length: checkpoints (best, last) at every epoch end
    tbptt_samples: int = 0  # > 0: truncated back-propagation through time in segments of this many samples
    resume: str = "auto"  # auto: resume a matching interrupted run; require: refuse if none matches; off
    lr: float = 5e-3
    weight_decay: float = 0.01
    grad_clip: float = 10.0
    num_workers: int = 0
    pre_emphasis: float = 0.0
    loss: dict = field(default_factory=lambda: {"l1": 1.0, "mrstft": 0.5})


@dataclass
class TestConfig:
    block_seconds: float = 0.0


_POSITIVE = {"sample_rate", "max_steps", "batch_size", "chunk_seconds", "val_every_n_steps", "lr", "devices", "num_nodes"}
_NON_NEGATIVE = {"val_seconds", "guard_seconds", "max_latency_samples", "weight_decay", "grad_clip", "block_seconds",
                 "num_workers", "tbptt_samples", "pre_emphasis"}
_CHOICES = {"resume": ("auto", "require", "off"), "accelerator": ("auto", "cpu", "gpu", "cuda", "mps"),
            "precision": ("auto", "32-true", "32", "16-mixed", "bf16-mixed", "64-true")}


def _section(cls, raw, key: str):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"params.yaml: {key}: must be a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"params.yaml: {key}.{unknown[0]}: unknown key; known: {', '.join(fields)}")
    values = {}
    for name, value in raw.items():
        want = fields[name].type
        path = f"{key}.{name}"
        if want == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif want == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
        elif want == "str":
            ok = isinstance(value, str) and value != ""
        elif want == "dict":
            ok = isinstance(value, dict)
        else:  # pragma: no cover
            ok = True
        if not ok:
            raise ConfigError(f"params.yaml: {path}: expected {want}, got {value!r}")
        if name in _POSITIVE and value <= 0:
            raise ConfigError(f"params.yaml: {path}: must be > 0, got {value!r}")
        if name in _NON_NEGATIVE and value < 0:
            raise ConfigError(f"params.yaml: {path}: must be ≥ 0, got {value!r}")
        if name in _CHOICES and value not in _CHOICES[name]:
            raise ConfigError(f"params.yaml: {path}: {value!r} is not one of {', '.join(_CHOICES[name])}")
        values[name] = value
    return cls(**values)


def load_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: not found")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from err
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return params


def data_config(params: dict) -> DataConfig:
    return _section(DataConfig, params.get("data"), "data")


def check_loss_weights(weights: dict, key: str = "train.loss") -> None:
    from nablafx.metrics import LOSS_TERMS  # lazily: reading params needs no torch

    if not weights:
        raise ConfigError(f"params.yaml: {key}: needs at least one term; known: {', '.join(LOSS_TERMS)}")
    for name, w in weights.items():
        if name not in LOSS_TERMS:
            raise ConfigError(f"params.yaml: {key}.{name}: unknown loss term; known: {', '.join(LOSS_TERMS)}")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
            raise ConfigError(f"params.yaml: {key}.{name}: weight must be a number ≥ 0, got {w!r}")


def train_config(params: dict) -> TrainConfig:
    cfg = _section(TrainConfig, params.get("train"), "train")
    check_loss_weights(cfg.loss, key="train.loss")
    return cfg


def test_config(params: dict) -> TestConfig:
    return _section(TestConfig, params.get("test"), "test")


test_config.__test__ = False  # not a pytest test
