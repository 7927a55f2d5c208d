"""Shared fixtures: a tiny synthetic dataset in the ToneTwist layout, written per test."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from nablafx.config import load_params

SR = 48000
REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
TESTS = Path(__file__).resolve().parent

# Tests of small tensors (per-op overhead dominates; on a shared 2-core machine a second intra-op
# thread only adds contention) run with one torch thread: these folders and files.
ONE_THREAD = ("controllers", "dsp", "models", "nn", "processors", "test_export.py", "test_streaming_engine.py",
              "training/test_quiet_material.py")


@pytest.fixture
def one_thread():
    """One intra-op torch thread for the test, the previous count restored after it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config, items):
    for item in items:
        rel = Path(item.fspath).resolve().relative_to(TESTS).as_posix()
        if any(rel == p or rel.startswith(p + "/") for p in ONE_THREAD):
            item.fixturenames.insert(0, "one_thread")


def params_with(**sections) -> dict:
    """The repository's params.yaml with ``sections`` laid over it: a mapping given for a params
    section (data, train, fad, …) updates that section key by key; model / aliases / variants /
    recipes are replaced whole.  Every setting lives in params.yaml, so tests start from it."""
    params = copy.deepcopy(load_params(REPO_PARAMS))
    for name, value in sections.items():
        if name in ("model", "aliases", "variants", "recipes") or not isinstance(value, dict):
            params[name] = copy.deepcopy(value)
        else:
            params[name] = {**params[name], **copy.deepcopy(value)}
    return params


def _write(path, data, sr=SR):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data.astype(np.float32), sr, subtype="FLOAT")


def make_tiny_dataset(root, seconds=(4.0, 2.0), settings=("D000_T050", "D050_T000", "D100_T100"),
                      device="Fake-Drive", lag=0):
    """Dry: decaying tones; wet: tanh drive set by the D knob, delayed by ``lag`` samples."""
    rng = np.random.default_rng(0)
    for split, dur in zip(("trainval", "test"), seconds):
        n = int(dur * SR)
        t = np.arange(n) / SR
        dry = 0.5 * np.sin(2 * np.pi * 110 * t) * np.exp(-((t % 1.0) * 3)) + 0.01 * rng.standard_normal(n)
        _write(root / "DRY-with-markers" / split / f"{split}-a.input.wav", dry)
        for code in settings:
            drive = 1 + 9 * int(code[1:4]) / 100
            wet = np.tanh(drive * dry) * 0.5
            if lag:
                wet = np.concatenate([np.zeros(lag), wet[:-lag]])
            _write(root / device / split / code / f"{code}.{split}-a.target.wav", wet)
    return root


def tiny_prepared(base: Path, seconds=(3.0, 1.0), val_seconds: float = 1.0) -> Path:
    """The tiny dataset under ``base/data`` and its prepared index at ``base/index.json`` (what the
    training tests start from); returns the data root."""
    from nablafx.data.prepare import prepare_device
    from nablafx.utils import write_json

    root = make_tiny_dataset(base / "data", seconds=seconds)
    write_json(base / "index.json", prepare_device(root, "Fake-Drive", "DRY-with-markers", SR, val_seconds, 0.25, 4))
    return root


@pytest.fixture
def tiny_dataset(tmp_path):
    return make_tiny_dataset(tmp_path / "data")


# --------------------------------------------------------------------------- quiet material
def _plucks(n: int, rng, sr: int = SR) -> np.ndarray:
    """Guitar-like plucked notes (decaying harmonics), one every 0.2–0.6 s, peak-normalised to 1."""
    out = np.zeros(n)
    pos = 0
    while pos < n:
        length = min(n - pos, int(rng.uniform(0.2, 0.6) * sr))
        t = np.arange(length) / sr
        f0 = 82.4 * 2 ** (rng.integers(0, 30) / 12)
        note = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) * np.exp(-t * (2 + 1.5 * k)) / k
                   for k in range(1, 7) if k * f0 < sr / 2)
        out[pos : pos + length] += note * np.minimum(1, t / 0.002)  # 2 ms attack
        pos += length
    return out / np.max(np.abs(out))


def quiet_passage(seconds: float, rng, sr: int = SR) -> np.ndarray:
    """Dry DI-like passage with the troubles of a real capture: sections of playing at −30 … −6 dBFS
    peak and one hot section near 0 dBFS, separated by multi-second gaps that are digital silence
    (exact zeros) or a noise floor at −60 … −90 dBFS RMS.  It ends with 0.4/18 of its length of
    playing, then a gap: at 45 s with 2.5 s of validation, the first 1 s validation chunk is
    playing and the second near-silent."""
    n = int(seconds * sr)
    unit = n / 18.0  # 45 s: a unit is 2.5 s, the default validation length
    plan = [("zero", 1.5), ("play", 3, -6.0), ("noise", 2, -75.0), ("play", 3, 0.0), ("noise", 2, -90.0),
            ("play", 3, -30.0), ("noise", 1.5, -60.0), ("play", 1.4, -12.0), ("noise", 0.4, -70.0),
            ("zero", 0.2)]
    parts = []
    for kind, units, *level in plan:
        m = int(units * unit)
        if kind == "zero":
            parts.append(np.zeros(m))
        elif kind == "noise":
            parts.append(10 ** (level[0] / 20) * rng.standard_normal(m))
        else:
            parts.append(10 ** (level[0] / 20) * 0.999 * _plucks(m, rng, sr))
    x = np.concatenate(parts)
    return np.concatenate([x, np.zeros(n - len(x))])


def quiet_device(dry: np.ndarray, knobs: tuple, invert: bool, rng) -> np.ndarray:
    """A drive (D, T knobs) or, with ``invert``, a polarity-inverting fuzz: gain into an
    asymmetric soft clipper, a one-pole tone filter, output level, and the pedal's own hiss at
    −85 dBFS wherever the input is not digital silence."""
    from scipy.signal import lfilter

    drive, tone = knobs
    g = 10 ** ((6 + 34 * drive) / 20)
    v = g * dry
    y = np.tanh(v) if not invert else np.tanh(v + 0.3) - np.tanh(0.3)  # fuzz: asymmetric
    a = np.exp(-2 * np.pi * (800 + 6000 * tone) / SR)
    y = lfilter([1 - a], [1, -a], y)
    y = 0.5 * (-y if invert else y)
    hiss = 10 ** (-85 / 20) * rng.standard_normal(len(y)) * (dry != 0)
    return y + hiss


def make_quiet_dataset(root, seconds=(45.0, 15.0), settings=("D020_T050", "D060_T020", "D100_T080"),
                       devices=(("Quiet-Drive", False), ("Quiet-Fuzz", True))):
    """A ToneTwist-layout dataset of guitar-like material with quiet gaps (:func:`quiet_passage`)
    through two synthetic pedals, the second inverting polarity.  The default is the size of the
    report that motivated it (45 s per knob setting); tests pass a few seconds."""
    from nablafx.data.tonetwist import parse_knob_code

    rng = np.random.default_rng(11)
    for split, dur in zip(("trainval", "test"), seconds):
        dry = quiet_passage(dur, rng)
        _write(root / "DRY-with-markers" / split / f"{split}-q.input.wav", dry)
        for device, invert in devices:
            for code in settings:
                wet = quiet_device(dry, parse_knob_code(code)[1], invert, rng)
                _write(root / device / split / code / f"{code}.{split}-q.target.wav", wet)
    return root


def paper_big(name: str) -> bool:
    """A ``paper-*`` variant of the papers' larger sizes (TCN/GCN ``-l-16`` or ``-2500-``, S4 ``-b8-``):
    model tests run it as slow (every paper variant still runs, in CI)."""
    return name.startswith("paper-") and any(tag in name for tag in ("-l-16", "-2500-", "-b8-"))


def slow_if_paper_big(names) -> list:
    """``names`` for ``pytest.mark.parametrize``, the large paper variants marked slow."""
    return [pytest.param(n, marks=pytest.mark.slow) if paper_big(n) else n for n in names]
