"""Torch datasets over a prepared index: random training chunks, sequential validation chunks.

Every example carries ``context`` extra samples *before* the chunk: the model sees them as
input (warm-up for its receptive field / recurrent state) and the loss ignores them.  Before a
file's first sample the input is zero, as the model's zero initial state assumes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from nablafx.data.audio import DatasetError, read_audio
from nablafx.data.checks import SILENCE_RMS, ac_rms


class AudioBank:
    """Loads each file of an index once (dry files are shared by every knob setting)."""

    def __init__(self, items: list[dict], sample_rate: int):
        self.sample_rate = sample_rate
        self._audio: dict[str, np.ndarray] = {}
        for it in items:
            for key in ("dry", "wet"):
                if it[key] not in self._audio:
                    self._audio[it[key]] = read_audio(it[key], sample_rate)

    def __getitem__(self, path: str) -> np.ndarray:
        return self._audio[path]


def target_power(items: list[dict], bank: AudioBank, pre_emphasis: float = 0.0) -> float:
    """Mean square of the wet audio over the items' [start, end) regions (all samples weighted
    alike), after the loss's first-order pre-emphasis ``y[n] − a·y[n−1]`` when ``a`` > 0: the
    level the training loss's energy floor is set against."""
    total, count = 0.0, 0
    for it in items:
        y = bank[it["wet"]][it["start"] : it["end"]].astype(np.float64)
        if pre_emphasis:
            y = np.concatenate([y[:1], y[1:] - pre_emphasis * y[:-1]])
        total += float(np.dot(y, y))
        count += len(y)
    return total / count if count else 0.0


def check_training_targets(items: list[dict], bank: AudioBank) -> None:
    """Refuse training targets with nothing to learn: an item's training region whose target is
    silent or only a DC offset (its RMS without the mean below the silence level).  ``prepare``
    refuses such files whole; this catches a region of one (the signal only in the validation
    part) or an index written before those checks, before a step is taken — the loss on such a
    target is scored against the floor alone, or, if every target is silent, against nothing."""
    sr = bank.sample_rate
    for it in items:
        y = bank[it["wet"]][it["start"] : it["end"]]
        if ac_rms(y) < SILENCE_RMS:
            what = "silent" if np.sqrt(np.mean(np.square(y, dtype=np.float64))) < SILENCE_RMS else \
                f"only a DC offset ({float(np.mean(y)):+.3g})"
            raise DatasetError(
                f"{it['wet']}: the training region {it['start'] / sr:.2f}–{it['end'] / sr:.2f} s of knob setting "
                f"{it['knob_code']} is {what} (RMS without the mean below {SILENCE_RMS}): nothing to train on; "
                f"re-record the target, or remove the setting's folder (then rerun prepare)")


def _slice(audio: np.ndarray, start: int, end: int) -> np.ndarray:
    """audio[start:end] with zeros where start < 0."""
    if start >= 0:
        return audio[start:end]
    return np.concatenate([np.zeros(-start, dtype=audio.dtype), audio[:end]])


def _example(bank: AudioBank, item: dict, start: int, chunk: int, context: int):
    s0, s1 = start - context, start + chunk
    x = torch.from_numpy(np.ascontiguousarray(_slice(bank[item["dry"]], s0, s1)))[None]
    y = torch.from_numpy(np.ascontiguousarray(_slice(bank[item["wet"]], s0, s1)))[None]
    knobs = torch.tensor(item["knobs"], dtype=torch.float32)
    return x, y, knobs


class RandomChunkDataset(Dataset):
    """Random chunks from the items' [start, end) regions.

    Example ``i`` is a pure function of ``(seed, i)``, so any index (not only ``< length``)
    is valid: :class:`EpochSampler` hands out a fresh, reproducible range per epoch, which makes
    a run resumed from an epoch-end checkpoint see exactly the data of an uninterrupted one.
    """

    def __init__(self, items: list[dict], bank: AudioBank, chunk: int, context: int, length: int, seed: int = 0):
        self.items = [it for it in items if it["end"] - it["start"] >= chunk]
        if not self.items:
            raise ValueError(f"no training region is at least {chunk} samples long")
        self.bank, self.chunk, self.context, self.length, self.seed = bank, chunk, context, length, seed
        spans = np.array([it["end"] - it["start"] - chunk + 1 for it in self.items], dtype=np.float64)
        self.weights = spans / spans.sum()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, i])
        item = self.items[rng.choice(len(self.items), p=self.weights)]
        start = int(rng.integers(item["start"], item["end"] - self.chunk + 1))
        return _example(self.bank, item, start, self.chunk, self.context)


class SequentialChunkDataset(Dataset):
    """Non-overlapping chunks tiling each item's region (a last partial chunk is dropped)."""

    def __init__(self, items: list[dict], bank: AudioBank, chunk: int, context: int):
        self.bank, self.chunk, self.context = bank, chunk, context
        self.index = [(it, s) for it in items for s in range(it["start"], it["end"] - chunk + 1, chunk)]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        item, start = self.index[i]
        return _example(self.bank, item, start, self.chunk, self.context)


class EpochSampler(torch.utils.data.Sampler):
    """Indices ``[e·n·W + r·n, e·n·W + (r+1)·n)`` for epoch ``e``, rank ``r`` of ``W`` processes.

    Lightning calls :meth:`set_epoch` before every training epoch.  Its epoch counter runs on
    after a resumed checkpoint, so when ``step_fn`` (the trainer's global step) is given the
    epoch is derived from the optimiser steps already taken instead: the resumed run then sees
    exactly the data of an uninterrupted one.  The rank is read from ``torch.distributed``
    when iterating, so data-parallel ranks draw disjoint examples.
    """

    def __init__(self, n_per_epoch: int, steps_per_epoch: int | None = None, step_fn=None):
        self.n = n_per_epoch
        self.steps_per_epoch = steps_per_epoch
        self.step_fn = step_fn
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        if self.step_fn is not None and self.steps_per_epoch:
            epoch = self.step_fn() // self.steps_per_epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        dist = torch.distributed
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
        base = (self.epoch * world + rank) * self.n
        return iter(range(base, base + self.n))
