"""Save and load a trained model: ``model.pt`` (state dict) + ``config.yaml`` (how to rebuild it).

Loading needs neither Lightning nor DVC.  The folder is written beside its target and swapped in
whole; ``config.yaml`` records the nablafx version and folder format that wrote it and the SHA-256
of ``model.pt``.  Weights load with ``torch.load(weights_only=True)`` only; a folder of another
format is refused with both versions named.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import yaml
from torch import nn

from nablafx import fileio
from nablafx.modeldir import FORMAT_VERSION, RETRAIN, read_config
from nablafx.registry import build_model


def save_model(model: nn.Module, out_dir: str | Path, **info) -> None:
    out = Path(out_dir)
    fileio.remove_stale(out)
    tmp = fileio.new_sibling_dir(out)
    try:
        fileio.save_torch(model.state_dict(), tmp / "model.pt")
        config = {"spec": model.config(), "n_knobs": int(getattr(model, "n_knobs", 0)),
                  "sample_rate": int(model.sample_rate), **info, **fileio.written_by(FORMAT_VERSION),
                  "model_sha256": hashlib.sha256((tmp / "model.pt").read_bytes()).hexdigest()}
        fileio.write_text_atomic(tmp / "config.yaml", yaml.safe_dump(config, sort_keys=False))
        fileio.replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_model(model_dir: str | Path, map_location: str = "cpu") -> tuple[nn.Module, dict]:
    model_dir = Path(model_dir)
    config = read_config(model_dir)
    cfg_path = model_dir / "config.yaml"
    pt = model_dir / "model.pt"
    state = fileio.load_torch(pt, "model weights file")
    if hashlib.sha256(pt.read_bytes()).hexdigest() != config.get("model_sha256"):
        raise fileio.CorruptFileError(f"{pt}: does not match the SHA-256 recorded in {cfg_path}; {RETRAIN}")
    spec = dict(config["spec"])
    n_knobs = config["n_knobs"]
    model = build_model(spec, n_knobs=config.get("data_n_knobs", n_knobs), sample_rate=config["sample_rate"],
                        key="spec", file=str(cfg_path))
    model.load_state_dict(state)
    model.to(map_location)
    model.eval()
    return model, config
