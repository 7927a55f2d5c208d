"""nablafx.data.checks: the signal checks on their own, and on the shipped dataset (data/).

The swap rule and the repeat checks must stay silent on every shipped device — including
Guitarix-FuzzFace, which inverts polarity, and Guitarix-Compressor, which passes the sync
impulses unchanged at rest and answers them differently after the music — and the swap rule must
fire when dry and target of a shipped pair are exchanged, wherever the device smears impulses.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from nablafx.data import checks as chk
from nablafx.data.prepare import prepare_device

DATA = Path(__file__).resolve().parents[2] / "data"
SR = 48000
DEVICES = sorted(p.name for p in DATA.iterdir() if p.is_dir() and p.name != "DRY-with-markers") if DATA.is_dir() else []


@cache
def _audio(path: Path) -> np.ndarray:
    return sf.read(str(path), dtype="float32")[0]


def _pairs(device):
    for wet in sorted((DATA / device).glob("*/*/*.target.flac")):
        split, name = wet.parts[-3], wet.name.split(".")[1]
        yield DATA / "DRY-with-markers" / split / f"{name}.input.flac", wet


@pytest.mark.parametrize("subtype,value,counted", [
    ("PCM_16", 32767 / 32768, True), ("PCM_16", -1.0, True), ("PCM_16", -32767 / 32768, True),
    ("PCM_16", 32766 / 32768, False), ("PCM_24", 1 - 2**-23, True), ("PCM_24", 1 - 2**-22, False),
    ("PCM_U8", 127 / 128, True), ("PCM_U8", 126 / 128, False), ("PCM_32", 1.0, True),
])
def test_clipped_fraction_integer_full_scale(subtype, value, counted):
    x = np.zeros(100, dtype=np.float32)
    x[:10] = value
    assert chk.clipped_fraction(x, subtype) == (0.1 if counted else 0.0)


def test_clipped_fraction_counts_runs_not_lone_peaks():
    x = np.zeros(1000, dtype=np.float32)
    x[100] = x[300] = 1.0  # touches full scale twice: no flat top
    x[500:503] = -1.0      # a flat bottom of 3 samples
    assert chk.clipped_fraction(x, "PCM_16") == 0.003
    assert chk.clipped_fraction(x, "FLOAT") == 0.003


def test_clipped_fraction_float_counts_flat_extremes_not_overs():
    t = np.linspace(0, 20 * np.pi, 4000)
    hot = (1.5 * np.sin(t)).astype(np.float32)  # overs, not clipped
    assert chk.clipped_fraction(hot, "FLOAT") < 0.001
    clipped = np.clip(hot, -1, 1)
    assert chk.clipped_fraction(clipped, "FLOAT") > 0.4
    assert chk.clipped_fraction(np.clip(hot, -1, 0.9), "FLOAT") == pytest.approx(np.mean(clipped <= -1), abs=1e-9)


def test_silence_profile_and_mute():
    x = np.zeros(SR, dtype=np.float32)
    x[SR // 4:] = 0.5 * np.sin(np.arange(SR - SR // 4) * 0.05)
    x[100] = 0.5  # a lone impulse does not set the silence level
    lead, silent = chk.silence_profile(x, SR)
    assert lead == pytest.approx(100 / SR) and silent == pytest.approx(0.25, abs=0.011)
    wet = 0.01 * x  # quiet device: not muted
    assert chk.muted_fraction(x, wet, SR) == 0.0
    wet[SR // 2:] = 0  # output gone for the second half of the playing part
    assert chk.muted_fraction(x, wet, SR) == pytest.approx(2 / 3, abs=0.02)


def test_isolated_impulses_and_repeats():
    x = np.zeros(SR, dtype=np.float32)
    for p in (4800, 14400, SR - 14400, SR - 4800):
        x[p] = 0.5
    x[24000:30000] = 0.3 * np.sin(np.arange(6000) * 0.03)
    assert list(chk.isolated_impulses(x, SR)) == [4800, 14400, SR - 14400, SR - 4800]
    segs, groups = chk.repeated_segments(x, SR)
    assert len(segs) == 5 and groups == [[0, 1, 3, 4]]
    smeared = np.convolve(x, 0.8 ** np.arange(64))[:SR]
    assert len(chk.isolated_impulses(smeared, SR)) == 0
    assert chk.swapped_evidence(x, smeared, SR, 16) == []  # the true orientation
    assert chk.swapped_evidence(smeared, x, SR, 16) == [4800, 14400, SR - 14400, SR - 4800]
    reps = chk.repeat_consistency(x, smeared, segs, groups, SR, 16)
    assert reps[0]["lags"] == [0, 0, 0, 0] and reps[0]["leading_esr"] == 0.0


@pytest.mark.skipif(not DEVICES, reason="data/ not pulled")
@pytest.mark.parametrize("device", DEVICES)
def test_swap_rule_on_shipped_data(device):
    """Never fires on a shipped pair; fires on the exchanged pair unless the device passes the
    impulses (Guitarix-Compressor at rest: the target holds them too, so there is no evidence)."""
    fired_when_swapped = []
    for dry_path, wet_path in _pairs(device):
        dry, wet = _audio(dry_path), _audio(wet_path)
        assert chk.swapped_evidence(dry, wet, SR, 480) == [], wet_path
        fired_when_swapped.append(len(chk.swapped_evidence(wet, dry, SR, 480)) >= chk.SWAP_MIN_IMPULSES)
    if device == "Guitarix-Compressor":
        assert not any(fired_when_swapped)
    else:
        assert np.mean(fired_when_swapped) >= 0.75, fired_when_swapped  # DS1 at drive 0 passes them: 0.8


@pytest.mark.slow
@pytest.mark.skipif(not DEVICES, reason="data/ not pulled")
@pytest.mark.parametrize("device", DEVICES)
def test_every_shipped_device_passes_every_check(device):
    """prepare on each shipped device: no error, no warning, no ignored file, and the measured
    margins the thresholds were set against (docs/dataset-checks.md)."""
    index = prepare_device(DATA, device, "DRY-with-markers", SR, 2.5, 0.25, 4)
    assert index["warnings"] == [] and index["ignored"] == []
    checks = index["checks"]
    assert max(c["clipped_fraction"] for c in checks) == 0.0
    assert max(c["muted_fraction"] for c in checks) == 0.0
    assert max(r["leading_esr"] for c in checks for r in c["repeats"]) < chk.REPEAT_ESR_WARN / 2
    lags = [v for c in checks for r in c["repeats"] for v in r["lags"]]
    assert len(lags) == 4 * len(checks) and max(lags) - min(lags) <= 1
    assert max(d["silent_fraction"] for d in index["dry_checks"]) < chk.SILENT_WARN_FRACTION
    assert all(d["impulses"] == 4 for d in index["dry_checks"])
