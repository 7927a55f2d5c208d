"""A small ToneTwist-style tree with sync markers, and the defects the fuzz tests inflict on it.

Every dry file carries the layout's sync impulses (two at the start, two at the end, amplitude
0.5, in digital silence) around decaying tones; every target is a causal "device": drive into
tanh, then a 2nd-order low-pass (so, like a real pedal, it smears the impulses).  16 kHz keeps
files tiny: trainval 2 s, test 1 s.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import butter, lfilter

SR = 16000
DEVICE = "Fuzz-Box"
DRY = "DRY-with-markers"
SECONDS = {"trainval": 2.0, "test": 1.0}
MARKERS_S = (0.05, 0.15)  # from the start, and the same distances before the end
ARGS = dict(device=DEVICE, dry_dir=DRY, sample_rate=SR, val_seconds=0.25, guard_seconds=0.05, max_latency_samples=4)


def dry_signal(split: str, name: str, seconds: float | None = None) -> np.ndarray:
    n = int((seconds or SECONDS[split]) * SR)
    rng = np.random.default_rng(zlib.crc32(f"{split}/{name}".encode()))
    x = np.zeros(n)
    for m in MARKERS_S:
        x[int(m * SR)] = x[n - int(m * SR)] = 0.5
    a, b = int(0.25 * SR), n - int(0.25 * SR)
    t = np.arange(b - a) / SR
    f0 = rng.uniform(80, 400)
    tone = np.sin(2 * np.pi * f0 * t) + 0.3 * np.sin(2 * np.pi * 2.01 * f0 * t + 1.0)
    x[a:b] = 0.3 * tone * np.exp(-3 * (t % 0.4)) + 0.002 * rng.standard_normal(b - a)
    return x


def device(dry: np.ndarray, drive: float) -> np.ndarray:
    bb, aa = butter(2, 1500, fs=SR)
    return lfilter(bb, aa, np.tanh((1 + 9 * drive) * dry)) * 0.5


def write(path: Path, data: np.ndarray, sr: int = SR, subtype: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if subtype is None:
        subtype = "PCM_24" if path.suffix == ".flac" else "FLOAT"
    sf.write(str(path), np.asarray(data, dtype=np.float64), sr, subtype=subtype)
    return path


def make_tree(root: Path, settings=("D000_T050", "D050_T000", "D100_T100"), passages=("guitar",),
              ext: str = ".wav", device_name: str = DEVICE) -> Path:
    for split in SECONDS:
        for name in passages:
            dry = dry_signal(split, name)
            write(root / DRY / split / f"{name}.input{ext}", dry)
            for code in settings:
                drive = int(code[1:4]) / 100
                write(root / device_name / split / code / f"{code}.{name}.target{ext}", device(dry, drive))
    return root


def target(root: Path, split="trainval", code="D050_T000", name="guitar", ext=".wav") -> Path:
    return root / DEVICE / split / code / f"{code}.{name}.target{ext}"


def dry_path(root: Path, split="trainval", name="guitar", ext=".wav") -> Path:
    return root / DRY / split / f"{name}.input{ext}"


def read(path: Path) -> np.ndarray:
    return sf.read(str(path), dtype="float64", always_2d=False)[0]


def rewrite(path: Path, fn, **kw) -> Path:
    """Replace ``path``'s audio by ``fn(audio)`` (same name and format unless ``kw`` says)."""
    info = sf.info(str(path))
    data = fn(read(path))
    write(path, data, kw.get("sr", SR), kw.get("subtype", info.subtype))
    return path


def to_flac(path: Path) -> Path:
    out = path.with_suffix(".flac")
    write(out, read(path), subtype="PCM_16")
    path.unlink()
    return out


def cut_bytes(path: Path, keep: float) -> Path:
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    return path


def xor_bytes(path: Path, start: float, count: int = 64) -> Path:
    raw = bytearray(path.read_bytes())
    i = int(len(raw) * start)
    for k in range(i, min(len(raw), i + count)):
        raw[k] ^= 0xA5
    path.write_bytes(bytes(raw))
    return path


def set_wav_data_size(path: Path, factor: float) -> Path:
    """Make the WAV header lie: declare ``factor`` × the real data chunk size."""
    raw = bytearray(path.read_bytes())
    i = raw.find(b"data")
    size = int.from_bytes(raw[i + 4: i + 8], "little")
    raw[i + 4: i + 8] = int(size * factor).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    return path


def symlink(link: Path, to: str | Path) -> Path:
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(to, link)
    return link


def check_index(index: dict, root: Path) -> None:
    """Every item points at a file of the tree, tiles its passage, and agrees with the summary."""
    assert all(isinstance(w, str) and "\n" not in w for w in index["warnings"])
    lengths = {}
    for it in index["items"]:
        for key in ("dry", "wet"):
            assert Path(it[key]).is_file() and Path(it[key]).is_relative_to(root), it[key]
        n = lengths.setdefault(it["dry"], len(read(Path(it["dry"]))))
        assert len(read(Path(it["wet"]))) == n
        assert 0 <= it["start"] < it["end"] <= n
        assert all(0.0 <= k <= 1.0 for k in it["knobs"]) and len(it["knobs"]) == index["n_knobs"]
    assert sorted({it["knob_code"] for it in index["items"]}) == index["settings"]
    for split in ("train", "val", "test"):
        assert index["splits"][split]["items"] == sum(it["split"] == split for it in index["items"])
    assert index["data_hash"]["files"] == len({it[k] for it in index["items"] for k in ("dry", "wet")})
    assert len(index["checks"]) == len({it["wet"] for it in index["items"]})
    for c in index["checks"]:
        assert abs(c["latency_samples"]) <= index["max_abs_latency_samples"]
        assert 0 <= c["clipped_fraction"] <= 0.01 and 0 <= c["muted_fraction"] <= 0.5
