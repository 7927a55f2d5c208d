"""What every report figure shares: the Agg backend, atomic PNG writes and the :class:`Figure` record
(file, title, caption, and the numbers drawn, so that tests can check them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nablafx.fileio import savefig_atomic

DPI = 96


def plt():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


@dataclass
class Figure:
    """One image of the report: ``file`` (relative to the report folder), its title and caption (what
    it shows, how to read it), and ``data``: the arrays drawn (for tests and the metrics files)."""

    file: str
    title: str
    caption: str
    data: dict = field(default_factory=dict)


def save(fig, out_dir: str | Path, name: str, dpi: int = DPI) -> str:
    """Write ``fig`` as ``<out_dir>/plots/<name>`` atomically, close it, return the relative path."""
    rel = f"plots/{name}"
    savefig_atomic(fig, Path(out_dir) / rel, dpi=dpi)
    plt().close(fig)
    return rel


def db(x, floor: float = 1e-12):
    """20·log10 of a magnitude, floored (numpy or torch in, numpy out)."""
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return 20 * np.log10(np.maximum(np.abs(x), floor))


def knob_label(code: str, knob_letters, knobs) -> str:
    """``D050_T100`` → ``D 0.50 · T 1.00`` (``(no knobs)`` for an unconditioned device)."""
    if not code:
        return "(no knobs)"
    return " · ".join(f"{k} {v:.2f}" for k, v in zip(knob_letters, knobs))


def settings_colors(n: int):
    """``n`` colours along a perceptual map (knob settings, sweep values, levels)."""
    cmap = plt().get_cmap("viridis")
    return [cmap(0.1 + 0.8 * i / max(1, n - 1)) for i in range(n)]


@torch.no_grad()
def run_model(model, x: torch.Tensor, knobs: torch.Tensor | None, batch: int = 64) -> torch.Tensor:
    """Offline forward of ``x (B, 1, n)`` with ``knobs (B, K)`` (ignored by unconditioned models), in
    batches of ``batch`` signals."""
    outs = []
    for s in range(0, x.shape[0], batch):
        k = knobs[s: s + batch] if (knobs is not None and getattr(model, "n_knobs", 0)) else None
        y, _ = model(x[s: s + batch], k)
        outs.append(y)
    return torch.cat(outs, dim=0)
