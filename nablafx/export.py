"""Save and load a trained model: ``model.pt`` (state dict) + ``config.yaml`` (how to rebuild it).

Loading needs neither Lightning nor DVC.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from torch import nn

from nablafx.registry import build_model


def save_model(model: nn.Module, out_dir: str | Path, **info) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {"spec": model.config(), "n_knobs": int(getattr(model, "n_knobs", 0)),
              "sample_rate": int(model.sample_rate), **info}
    tmp_pt, tmp_cfg = out / "model.pt.tmp", out / "config.yaml.tmp"
    torch.save(model.state_dict(), tmp_pt)
    tmp_cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp_pt.replace(out / "model.pt")
    tmp_cfg.replace(out / "config.yaml")


def load_model(model_dir: str | Path, map_location: str = "cpu") -> tuple[nn.Module, dict]:
    model_dir = Path(model_dir)
    cfg_path = model_dir / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path}: not found (train a model first: dvc repro train)")
    config = yaml.safe_load(cfg_path.read_text())
    spec = dict(config["spec"])
    n_knobs = config["n_knobs"]
    model = build_model(spec, n_knobs=config.get("data_n_knobs", n_knobs), sample_rate=config["sample_rate"],
                        key="spec", file=str(cfg_path))
    model.load_state_dict(torch.load(model_dir / "model.pt", map_location=map_location, weights_only=True))
    model.eval()
    return model, config
