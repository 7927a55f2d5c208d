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


@pytest.fixture
def tiny_dataset(tmp_path):
    return make_tiny_dataset(tmp_path / "data")
