"""Tiny chains with known parameters for the report's figure tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nablafx.controllers.base import logit
from nablafx.models.graybox import GrayBoxModel

SR = 48000


def chain(processors: list[dict], n_knobs: int = 0, seed: int = 0) -> GrayBoxModel:
    torch.manual_seed(seed)
    return GrayBoxModel(n_knobs=n_knobs, sample_rate=SR, processors=processors).eval()


def set_static(model: GrayBoxModel, index: int, **real) -> None:
    """Set block ``index``'s static controller so that its parameters take the real values ``real``."""
    proc, ctrl = model.processors[index], model.controllers[index]
    with torch.no_grad():
        for name, value in real.items():
            j = proc.param_names.index(name)
            ctrl.logits[j] = logit(torch.tensor(proc.param_ranges[name].normalise(value)), eps=1e-7)


def assert_png(path: Path, min_bytes: int = 5000) -> None:
    """A real, non-trivial PNG: the signature, a size, and more than one colour in its pixels."""
    import matplotlib.image as mpimg

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > min_bytes, path
    img = mpimg.imread(path)
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert np.unique(img.reshape(-1, img.shape[-1]), axis=0).shape[0] > 10, f"{path}: blank image"
    assert path.stat().st_mode & 0o044 == 0o044, f"{path}: not readable by group and others"
