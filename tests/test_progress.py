"""Progress reports: a bar redrawn in place on a terminal, a line every N seconds in logs."""

from __future__ import annotations

import io
import re
import time
from types import SimpleNamespace

import torch

from nablafx.progress import Progress, format_seconds


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_log_lines_every_n_seconds(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(time, "perf_counter", clock)
    out = io.StringIO()
    prog = Progress(100, "work", unit="items", stream=out, every_s=10.0, tty=False)
    for _ in range(100):
        clock.t += 0.5  # 2 items/s: 50 s in all
        prog.update(1, loss=0.25)
    prog.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 5  # at 10, 20, 30, 40, 50 s
    assert lines[0] == "work: 20/100 items (20%) loss 0.25, 2 items/s, ETA 0:40"
    assert lines[-1].startswith("work: 100/100 items (100%)") and lines[-1].endswith("ETA 0:00")


def test_short_work_prints_nothing_in_a_log():
    out = io.StringIO()
    prog = Progress(10, "work", stream=out, every_s=60.0, tty=False)
    prog.update(10)
    prog.close()
    assert out.getvalue() == ""


def test_terminal_bar_is_redrawn_in_place(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(time, "perf_counter", clock)
    out = io.StringIO()
    prog = Progress(48000, "process", unit="s", scale=1 / 48000, stream=out, tty=True)
    for _ in range(4):
        clock.t += 0.25
        prog.update(12000)
    prog.close()
    text = out.getvalue()
    frames = text.split("\r")[1:]
    assert len(frames) == 4 and text.endswith("\n")
    assert frames[-1].startswith("[####################] process: 1.0/1.0 s (100%)")
    assert re.search(r"\[#####\.{15}\] process: 0\.2/1\.0 s \(25%\), 1 s/s, ETA 0:01", frames[0]), frames[0]


def test_format_seconds():
    assert format_seconds(0) == "0:00" and format_seconds(61.4) == "1:01" and format_seconds(3725) == "1:02:05"
    assert format_seconds(float("nan")) == "?"


def test_train_callback_reports_step_loss_rate_and_eta(monkeypatch):
    from nablafx.training.progress import TrainProgress

    clock = FakeClock()
    monkeypatch.setattr(time, "perf_counter", clock)
    out = io.StringIO()
    cb = TrainProgress(stream=out, every_s=1.0, tty=False)
    trainer = SimpleNamespace(is_global_zero=True, max_steps=100, global_step=40, callback_metrics={})
    cb.on_train_start(trainer, None)  # resumed at step 40
    for step in range(41, 101):
        clock.t += 0.25
        trainer.global_step = step
        if step == 60:
            trainer.callback_metrics["val/loss"] = torch.tensor(0.5)
        cb.on_train_batch_end(trainer, None, torch.tensor(0.125), None, step)
    cb.on_train_end(trainer, None)
    lines = out.getvalue().splitlines()
    assert lines[0] == "train: 44/100 steps (44%) loss 0.125, 4 steps/s, ETA 0:14"
    assert "val 0.5" in lines[-1] and lines[-1].startswith("train: 100/100 steps (100%)")
    assert cb.progress is None
    other_rank = SimpleNamespace(is_global_zero=False, max_steps=100, global_step=0, callback_metrics={})
    cb.on_train_start(other_rank, None)
    cb.on_train_batch_end(other_rank, None, torch.tensor(1.0), None, 0)
    assert cb.progress is None
