"""Checks of the shipped dataset in data/ against its metadata.json.

data/ is written by scripts/dataset/make_dataset.py and tracked by DVC (`dvc pull` restores
it).  These tests only read files: no lv2file, fluidsynth or network needed.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

DATA = Path(__file__).resolve().parents[1] / "data"
SR = 48_000
Q = 1 / 32768  # one 16-bit step


@cache
def meta() -> dict:
    path = DATA / "metadata.json"
    assert path.is_file(), f"{path} missing: restore the dataset with `dvc pull`"
    return json.loads(path.read_text())


@cache
def audio(rel: str) -> np.ndarray:
    path = DATA / rel
    assert path.is_file(), f"{path} missing"
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.format, info.subtype) == (SR, 1, "FLAC", "PCM_16"), (
        f"{rel}: {info.samplerate} Hz, {info.channels} ch, {info.format}/{info.subtype}"
    )
    x, _ = sf.read(str(path), dtype="float64")
    return x


def dry_files():
    return [(split, name, m) for split, files in meta()["dry"].items() for name, m in files.items()]


def renders():
    return [(dev, r) for dev, d in meta()["devices"].items() for r in d["renders"]]


def test_top_level_metadata():
    m = meta()
    assert m["sample_rate"] == SR and m["channels"] == 1
    assert set(m["dry"]) == {"trainval", "test"}
    assert m["generator"] == "scripts/dataset/make_dataset.py"
    assert (Path(__file__).resolve().parents[1] / m["generator"]).is_file()
    assert {d["category"] for d in m["devices"].values()} >= {"overdrive", "distortion", "fuzz", "compressor"}


def test_no_unlisted_files():
    listed = {m["file"] for _, _, m in dry_files()} | {r["file"] for _, r in renders()}
    on_disk = {p.relative_to(DATA).as_posix() for p in DATA.rglob("*.flac")}
    assert on_disk == listed


def test_size_budget():
    total = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file() and ".dvc" not in p.parts)
    assert total <= 30e6, f"data/ holds {total / 1e6:.1f} MB"


def test_dry_files_and_sync_impulses():
    m = meta()
    imp = m["sync_impulses"]
    for split, name, d in dry_files():
        assert re.fullmatch(r"[A-Za-z0-9_-]+", name), name
        assert d["file"] == f"DRY-with-markers/{split}/{name}.input.flac"
        x = audio(d["file"])
        assert len(x) == d["num_samples"]
        assert abs(d["duration_s"] - len(x) / SR) < 1e-3
        positions = list(imp["start"]) + [len(x) - k for k in imp["end_from_file_end"]]
        for p in positions:
            assert abs(x[p] - imp["amplitude"]) <= Q, f"{d['file']}: no sync impulse at {p}"
        c0, c1 = d["content"]
        margins = np.concatenate([x[:c0], x[c1:]])
        assert np.count_nonzero(margins) == len(positions), f"{d['file']}: head/tail not silent"
        content = x[c0:c1]
        assert np.sqrt(np.mean(content**2)) > 1e-3, f"{d['file']}: silent content"
        assert np.max(np.abs(content)) <= 0.99 + Q


def test_split_durations_and_sources_disjoint():
    dur = {s: sum(d["duration_s"] for d in files.values()) for s, files in meta()["dry"].items()}
    assert 29.5 <= dur["trainval"] <= 32.5, dur
    assert 8.5 <= dur["test"] <= 10.5, dur
    sources = {}
    for split, files in meta()["dry"].items():
        kinds = {d["source"]["type"] for d in files.values()}
        assert kinds == {"fluidsynth", "recording"}, kinds
        keys = set()
        for d in files.values():
            src = d["source"]
            keys |= {src["midi"]} if src["type"] == "fluidsynth" else set(src["notes"])
        sources[split] = keys
    assert not sources["trainval"] & sources["test"]


@pytest.mark.parametrize("device", sorted(json.loads((DATA / "metadata.json").read_text())["devices"])
                         if (DATA / "metadata.json").is_file() else ["<metadata.json missing>"])
def test_device_settings_and_codes(device):
    d = meta()["devices"][device]
    letters = d["knob_order"]
    assert letters == list(d["knobs"])
    assert len(d["settings"]) >= 4
    pattern = "_".join(f"{k}(\\d{{3}})" for k in letters)
    for st in d["settings"]:
        mt = re.fullmatch(pattern, st["code"])
        assert mt, f"{device}: bad knob code {st['code']}"
        for k, digits in zip(letters, mt.groups()):
            pos = int(digits)
            assert 0 <= pos <= 100
            assert st["values"][k] == pytest.approx(pos / 100)
            knob = d["knobs"][k]
            expect = knob["port_min"] + pos / 100 * (knob["port_max"] - knob["port_min"])
            assert st["ports"][knob["port"]] == pytest.approx(expect, abs=1e-6)
    # the main (first) knob reaches both ends of its range
    first = [int(st["code"][1:4]) for st in d["settings"]]
    assert min(first) == 0 and max(first) == 100
    codes = [st["code"] for st in d["settings"]]
    for split, files in meta()["dry"].items():
        folders = sorted(p.name for p in (DATA / device / split).iterdir())
        assert folders == sorted(codes)
        for code in codes:
            for name in files:
                assert (DATA / device / split / code / f"{code}.{name}.target.flac").is_file()
    assert len(d["renders"]) == len(codes) * len(dry_files())


def test_wet_files_aligned_non_silent_unclipped():
    m = meta()
    at = m["sync_impulses"]["start"][0]
    for device, r in renders():
        d = m["devices"][device]
        dry_meta = m["dry"][r["split"]][r["dry"]]
        assert r["file"] == f"{device}/{r['split']}/{r['code']}/{r['code']}.{r['dry']}.target.flac"
        assert r["code"] in {st["code"] for st in d["settings"]}
        wet = audio(r["file"])
        assert len(wet) == dry_meta["num_samples"], r["file"]
        c0, c1 = dry_meta["content"]
        assert np.sqrt(np.mean(wet[c0:c1] ** 2)) > 1e-4, f"{r['file']}: silent"
        assert np.max(np.abs(wet)) <= 0.99 + Q, f"{r['file']}: clips"
        # the device's response to the first sync impulse starts at the impulse, not before
        peak = np.max(np.abs(wet[at : at + SR // 50]))
        assert np.max(np.abs(wet[: at - 32])) <= 1e-3 * peak + Q, f"{r['file']}: output before the impulse"
        first = wet[at : at + 2]
        assert np.max(np.abs(first)) >= 0.05 * peak, f"{r['file']}: response starts late"
        sign = np.sign(first[np.argmax(np.abs(first))])
        assert (sign < 0) == d["inverts_polarity"], f"{r['file']}: polarity"
        assert 0 <= r["lag"] <= 8


def test_fuzz_inverts_and_others_do_not():
    inv = {name: d["inverts_polarity"] for name, d in meta()["devices"].items()}
    assert inv["Guitarix-FuzzFace"] is True
    assert not any(v for k, v in inv.items() if k != "Guitarix-FuzzFace")
