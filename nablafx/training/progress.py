"""Training progress for people watching: step, loss, steps/s and the time left.

A Lightning callback (registered by :func:`nablafx.training.train.run_training`; Lightning's own bar
stays off): on a terminal one line redrawn in place, in the logs DVC captures a line every
``NABLAFX_PROGRESS_SECONDS`` seconds (:mod:`nablafx.progress`), e.g.::

    train: 400/800 steps (50%) loss 0.3121 val 0.2983, 3.91 steps/s, ETA 1:42

A resumed run counts from the step it resumes at (the rate covers this run's steps only).  Only the
rank-0 process reports.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import Callback

from nablafx.progress import Progress


class TrainProgress(Callback):
    def __init__(self, stream=None, every_s: float | None = None, tty: bool | None = None):
        super().__init__()
        self.kw = {"stream": stream, "every_s": every_s, "tty": tty}
        self.progress: Progress | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self.progress = Progress(trainer.max_steps, "train", unit="steps", initial=trainer.global_step,
                                     **self.kw)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.progress is None:
            return
        fields = {}
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            fields["loss"] = float(loss)
        val = trainer.callback_metrics.get("val/loss")
        if val is not None:
            fields["val"] = float(val)
        self.progress.set(trainer.global_step, **fields)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.progress is not None:
            self.progress.close()
            self.progress = None
