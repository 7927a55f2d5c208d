"""The one LightningModule: wraps any model from the registry.

Batches are ``(x, y, knobs)`` with ``context`` leading warm-up samples that the loss ignores.
"""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import nn

from nablafx.evaluation import metrics
from nablafx.training.losses import WeightedLoss


class EffectSystem(L.LightningModule):
    def __init__(self, model: nn.Module, loss_weights: dict, lr: float, weight_decay: float,
                 max_steps: int, context: int, warmup_steps: int = 0):
        super().__init__()
        self.model = model
        self.loss = WeightedLoss(loss_weights)
        self.lr, self.weight_decay, self.max_steps = lr, weight_decay, max_steps
        self.context = context
        self.warmup_steps = warmup_steps

    def _predict(self, x, knobs):
        y_hat, _ = self.model(x, knobs if getattr(self.model, "n_knobs", 0) else None)
        return y_hat[..., self.context :]

    def training_step(self, batch, batch_idx):
        x, y, knobs = batch
        y_hat = self._predict(x, knobs)
        loss, terms = self.loss(y_hat, y[..., self.context :])
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss at step {self.global_step} (terms: "
                + ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items()) + "); last good checkpoint kept"
            )
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y, knobs = batch
        y_hat = self._predict(x, knobs)
        y = y[..., self.context :]
        loss, terms = self.loss(y_hat, y)
        self.log("val/loss", loss, prog_bar=True)
        self.log("val/esr", metrics.esr(y_hat, y))
        self.log("val/l1", metrics.l1(y_hat, y))
        return loss

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)

        def schedule(step: int) -> float:  # linear warm-up, then cosine decay to 10 %
            if step < self.warmup_steps:
                return (step + 1) / self.warmup_steps
            t = min(1.0, (step - self.warmup_steps) / max(1, self.max_steps - self.warmup_steps))
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
