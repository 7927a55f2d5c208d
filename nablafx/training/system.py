"""The one LightningModule: wraps any model from the registry.

Batches are ``(x, y, knobs)`` with ``context`` leading warm-up samples that the loss ignores.
Learning-rate schedule (``lr_schedule``): ``cosine`` — linear warm-up, then cosine decay to 10 %,
stepped every training step; ``plateau`` — ReduceLROnPlateau on the validation loss (the papers'),
stepped after every validation by :class:`PlateauStep`.
Optimisation is manual so that every model trains the same way, with truncated
back-propagation through time when ``tbptt`` > 0: the chunk is cut into segments of ``tbptt``
samples, the model's streaming state is carried (detached) from one segment to the next and
each segment is back-propagated on its own — memory then scales with the segment, not the
chunk, and the forward pass is still exactly the offline one.

Validation scores the whole validation set at once: ``val/esr`` = Σ(y − ŷ)² / Σy² over every
validation chunk (energy-weighted, as the test stage's ``esr``), ``val/l1`` the mean absolute error
over every sample; checkpoints are picked on ``val/esr`` (:data:`MONITOR`).  A mean of per-chunk
ratios let one near-silent chunk outweigh all the others (val ESR 10³–10⁴ on quiet material for a
model whose energy-weighted ESR was < 1); see docs/training.md, "Quiet material".
"""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import nn

from nablafx.streaming import detach_state
from nablafx.training.losses import WeightedLoss
from nablafx.training.polarity import MODES as POLARITY_MODES
from nablafx.training.polarity import PolarityGuard, align_output_polarity, correlation_sums


def segment_bounds(length: int, context: int, tbptt: int) -> list[int]:
    """Segment edges for TBPTT: the first segment carries the context, every segment is
    ``tbptt`` samples long except the last, which absorbs a shorter tail (so spectral loss
    terms always see at least ``tbptt`` samples)."""
    if tbptt <= 0 or length - context < 2 * tbptt:
        return [0, length]
    bounds = [0, *range(context + tbptt, length, tbptt)]
    if length - bounds[-1] < tbptt:
        bounds.pop()
    return [*bounds, length]


def clip_gradients(parameters, value: float, algorithm: str = "norm") -> None:
    """``train.grad_clip`` / ``grad_clip_algorithm`` outside Lightning (which :class:`EffectSystem`
    uses): clip each gradient element to ±``value`` (``"value"``) or the gradients' joint norm to
    ``value`` (``"norm"``); nothing when ``value`` ≤ 0."""
    if value <= 0:
        return
    if algorithm == "value":
        torch.nn.utils.clip_grad_value_(parameters, value)
    else:
        torch.nn.utils.clip_grad_norm_(parameters, value)


def cosine_factor(step: int, warmup_steps: int, max_steps: int) -> float:
    """The ``cosine`` schedule's LR multiplier at ``step``: linear warm-up over ``warmup_steps``,
    then cosine decay to 10 % at ``max_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    t = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))


def tbptt_backward(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, knobs, context: int, tbptt: int,
                   backward=torch.Tensor.backward, step: int = 0,
                   correlate: bool = False) -> tuple[float, dict, torch.Tensor | None]:
    """One training step's forward and backward passes (no optimiser step): the chunk in
    :func:`segment_bounds` segments, the streaming state carried detached from one to the next, the
    loss on the samples after ``context``, each segment's loss weighted by its share of them and
    back-propagated through ``backward`` (Lightning's ``manual_backward`` in :class:`EffectSystem`).
    Returns the step's weighted loss, its loss terms and, with ``correlate``, the output/target
    correlation sums (:func:`nablafx.training.polarity.correlation_sums` over the scored samples;
    else None: the polarity guard is their only reader); a non-finite loss
    raises FloatingPointError naming ``step`` and the terms."""
    knobs = knobs if getattr(model, "n_knobs", 0) else None
    total_len = x.shape[-1] - context
    bounds = segment_bounds(x.shape[-1], context, tbptt)
    state = None
    loss_sum = 0.0
    term_sums: dict[str, float] = {}
    corr_sums = None  # on the model's device: no synchronisation unless the guard reads them
    for s0, s1 in zip(bounds[:-1], bounds[1:]):
        y_hat, state = model(x[..., s0:s1], knobs, state)
        keep = max(0, context - s0)
        if s1 - s0 - keep <= 0:
            state = detach_state(state)
            continue
        loss, terms = loss_fn(y_hat[..., keep:], y[..., s0 + keep : s1])
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss at step {step} ("
                + ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
                + "); the last good checkpoint is kept"
            )
        weight = (s1 - s0 - keep) / total_len
        if correlate:
            sums = correlation_sums(y_hat[..., keep:], y[..., s0 + keep : s1])
            corr_sums = sums if corr_sums is None else corr_sums + sums
        backward(loss * weight)
        loss_sum += float(loss.detach()) * weight
        for k, v in terms.items():
            term_sums[k] = term_sums.get(k, 0.0) + float(v.detach()) * weight
        state = detach_state(state)
    return loss_sum, term_sums, corr_sums


MONITOR = "val/esr"  # the validation metric that picks the best checkpoint (lower is better)


class EffectSystem(L.LightningModule):
    def __init__(self, model: nn.Module, loss_weights: dict, lr: float, weight_decay: float,
                 max_steps: int, context: int, warmup_steps: int = 0, grad_clip: float = 0.0,
                 grad_clip_algorithm: str = "norm", lr_schedule: str = "cosine", plateau_factor: float = 0.5,
                 plateau_patience: int = 20,
                 tbptt: int = 0, sample_rate: int = 48000, pre_emphasis: float = 0.0,
                 signature: dict | None = None, loss_floor: float = 0.0, align_polarity: str = "off"):
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        self.loss = WeightedLoss(loss_weights, sample_rate=sample_rate, pre_emphasis=pre_emphasis, floor=loss_floor)
        self.lr, self.weight_decay, self.max_steps = lr, weight_decay, max_steps
        self.context, self.warmup_steps, self.grad_clip, self.tbptt = context, warmup_steps, grad_clip, tbptt
        self.grad_clip_algorithm, self.lr_schedule = grad_clip_algorithm, lr_schedule
        self.plateau_factor, self.plateau_patience = plateau_factor, plateau_patience
        self.signature = signature or {}
        if align_polarity not in POLARITY_MODES:
            raise ValueError(f"align_polarity must be one of {', '.join(POLARITY_MODES)}, got {align_polarity!r}")
        self.align_polarity, self._aligned = align_polarity, False
        self.polarity_guard = PolarityGuard() if align_polarity == "guard" else None

    def _mean_over_ranks(self, value: float) -> float:
        if self.trainer.world_size <= 1:
            return value
        return float(self.trainer.strategy.reduce(torch.tensor(value, device=self.device), reduce_op="mean"))

    def _knobs(self, knobs):
        return knobs if getattr(self.model, "n_knobs", 0) else None

    def forward(self, x, knobs):
        y_hat, _ = self.model(x, self._knobs(knobs))
        return y_hat

    def training_step(self, batch, batch_idx):
        x, y, knobs = batch
        opt = self.optimizers()
        sched = self.lr_schedulers()
        if self.align_polarity != "off" and self.global_step == 0 and not self._aligned:
            self._aligned = True
            start = align_output_polarity(self.model, x, y, knobs, self.context, reduce=self._mean_over_ranks)
            self.print(f"polarity-aligned start: output/target correlation {start['corr']:+.3f}"
                       + (", read-out negated" if start["flipped"] else "")
                       + ("" if start["supported"] else " (this model cannot be negated exactly: left as is)"))
        opt.zero_grad(set_to_none=True)
        loss_sum, term_sums, corr_sums = tbptt_backward(self.model, self.loss, x, y, knobs, self.context, self.tbptt,
                                                        backward=self.manual_backward, step=self.global_step,
                                                        correlate=self.polarity_guard is not None)
        if self.grad_clip > 0:
            self.clip_gradients(opt, gradient_clip_val=self.grad_clip, gradient_clip_algorithm=self.grad_clip_algorithm)
        opt.step()
        if self.polarity_guard is not None:
            if self.trainer.world_size > 1:  # every rank decides on the sums over all ranks
                corr_sums = self.trainer.strategy.reduce(corr_sums, reduce_op="sum")
            if self.polarity_guard.observe(self.model, opt, corr_sums.tolist()):
                self.print(f"polarity guard: output anti-correlated with the target (smoothed), read-out negated "
                           f"at step {self.global_step}")
            self.log("train/polarity_flips", float(self.polarity_guard.flips))
        if self.lr_schedule != "plateau":  # ReduceLROnPlateau steps after each validation (PlateauStep)
            sched.step()
        self.log("train/loss", loss_sum, prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in term_sums.items()})
        return torch.tensor(loss_sum)

    def on_validation_epoch_start(self) -> None:
        # float64 sums over the whole validation set: squared error, target energy, absolute
        # error, samples; the weighted loss summed per example and the examples
        self._val_sums = torch.zeros(6, dtype=torch.float64)

    def validation_step(self, batch, batch_idx):
        x, y, knobs = batch
        y_hat = self(x, knobs)[..., self.context :]
        y = y[..., self.context :]
        loss, _ = self.loss(y_hat, y)
        e, yd = (y_hat - y).detach().double().cpu(), y.detach().double().cpu()
        self._val_sums += torch.stack([torch.sum(e**2), torch.sum(yd**2), torch.sum(e.abs()),
                                       torch.tensor(float(e.numel()), dtype=torch.float64),
                                       loss.detach().double().cpu() * y.shape[0],
                                       torch.tensor(float(y.shape[0]), dtype=torch.float64)])
        return loss

    def on_validation_epoch_end(self) -> None:
        # every rank validates on the whole set (no distributed sampler): identical values
        err2, tgt2, abs_err, n, loss_sum, count = self._val_sums.tolist()
        if not count:
            return
        self.log("val/loss", loss_sum / count, prog_bar=True, sync_dist=True)
        self.log("val/esr", err2 / (tgt2 + 1e-10), sync_dist=True)
        self.log("val/l1", abs_err / n, sync_dist=True)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        if self.lr_schedule == "plateau":  # the papers': LR × factor after `patience` validations without improvement
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=self.plateau_factor,
                                                               patience=self.plateau_patience)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": PLATEAU_MONITOR,
                                                       "interval": "epoch"}}

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: cosine_factor(step, self.warmup_steps, self.max_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["nablafx_signature"] = self.signature
        if self.polarity_guard is not None:
            checkpoint["nablafx_polarity"] = self.polarity_guard.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.polarity_guard is not None and isinstance(checkpoint.get("nablafx_polarity"), dict):
            self.polarity_guard.load_state_dict(checkpoint["nablafx_polarity"])


PLATEAU_MONITOR = "val/loss"  # what ReduceLROnPlateau follows: the training objective on the validation set


class PlateauStep(L.Callback):
    """Steps a ReduceLROnPlateau schedule once per validation, on ``val/loss``.

    Training is manually optimised, so Lightning steps no scheduler; this runs at the end of each
    validation, before the checkpoint of that epoch is written (Lightning runs checkpoint callbacks
    last), so a resumed run continues with the schedule's exact state.
    """

    def on_validation_end(self, trainer, pl_module) -> None:
        sched = pl_module.lr_schedulers()
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau) and not trainer.sanity_checking:
            value = trainer.callback_metrics.get(PLATEAU_MONITOR)
            if value is not None:
                sched.step(float(value))
