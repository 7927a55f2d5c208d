"""The `prepare` stage's logic: validate one device's pairs and build the split index.

Validation covers format (rate, channels, finiteness), lengths, silence, knob codes and the
dry→wet latency measured by cross-correlation.  Validation/training separation is *by time*:
the last ``val_seconds`` of every trainval passage are validation, a guard gap before them is
unused, and the rest is training — chunks never straddle the two (the reference's random chunk
split leaks).  Test passages come from the dataset's own `test` folders.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from nablafx.data.audio import DatasetError, read_audio
from nablafx.data.tonetwist import scan_device

SILENCE_RMS = 1e-5


def measure_latency(dry: np.ndarray, wet: np.ndarray, max_lag: int) -> tuple[int, float]:
    """Dry→wet lag in samples (positive = wet late) within ±max_lag, and the peak's signed
    strength (negative = inverted polarity).

    Uses the phase-transform weighted cross-correlation (GCC-PHAT): every frequency counts
    equally, so a pedal's tone filters (whose phase shifts the plain cross-correlation peak
    by several samples on bass-heavy material) do not pass for latency; a real delay
    shifts all frequencies alike and still shows.
    """
    n = len(dry) + len(wet)
    nfft = 1 << (n - 1).bit_length()
    cross = np.fft.rfft(wet.astype(np.float64), nfft) * np.conj(np.fft.rfft(dry.astype(np.float64), nfft))
    mag = np.abs(cross)
    cross = cross / (mag + 1e-12 * mag.max() + 1e-30)
    xc = np.fft.irfft(cross, nfft)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    vals = np.concatenate([xc[: max_lag + 1], xc[-max_lag:]])
    i = int(np.argmax(np.abs(vals)))
    return int(lags[i]), float(vals[i])


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def content_hash(root: str | Path, files) -> tuple[dict, dict]:
    """``(summary, per_file)`` for the audio files an index reads.

    ``per_file`` maps each file's path relative to ``root`` (POSIX) to its size and SHA-256;
    ``summary["sha256"]`` is one SHA-256 over the sorted lines ``<relative path> TAB <file sha256>``,
    so it changes when any indexed file's bytes, name or place change, or a file joins or
    leaves the index — and does not depend on where ``root`` lies.
    """
    root = Path(root)
    per_file = {}
    for f in sorted({Path(f) for f in files}):
        rel = f.relative_to(root).as_posix()
        per_file[rel] = {"bytes": f.stat().st_size, "sha256": file_sha256(f)}
    h = hashlib.sha256()
    for rel in sorted(per_file):
        h.update(f"{rel}\t{per_file[rel]['sha256']}\n".encode())
    summary = {"sha256": h.hexdigest(), "files": len(per_file),
               "bytes": sum(v["bytes"] for v in per_file.values())}
    return summary, per_file


def prepare_device(root, device: str, dry_dir: str, sample_rate: int, val_seconds: float,
                   guard_seconds: float, max_latency_samples: int, min_train_seconds: float = 1.0) -> dict:
    """Return the index (a JSON-able dict) for ``device``; raise DatasetError on bad input."""
    pairs = scan_device(root, device, dry_dir)
    val_n = int(round(val_seconds * sample_rate))
    guard_n = int(round(guard_seconds * sample_rate))
    min_train_n = int(round(min_train_seconds * sample_rate))
    search = max(4 * max_latency_samples, sample_rate // 100)  # look ±10 ms at least
    dry_cache: dict[str, np.ndarray] = {}
    items, checks = [], []
    for p in pairs:
        key = str(p.dry)
        if key not in dry_cache:
            dry_cache[key] = read_audio(p.dry, sample_rate)
            if np.sqrt(np.mean(dry_cache[key] ** 2)) < SILENCE_RMS:
                raise DatasetError(f"{p.dry}: silent (RMS below {SILENCE_RMS})")
        dry = dry_cache[key]
        wet = read_audio(p.wet, sample_rate)
        if len(wet) != len(dry):
            raise DatasetError(f"{p.wet}: {len(wet)} samples, dry {p.dry.name} has {len(dry)}")
        if np.sqrt(np.mean(wet**2)) < SILENCE_RMS:
            raise DatasetError(f"{p.wet}: silent (RMS below {SILENCE_RMS})")
        lag, corr = measure_latency(dry, wet, search)
        if abs(lag) > max_latency_samples:
            raise DatasetError(
                f"{p.wet}: dry→wet latency {lag} samples exceeds data.max_latency_samples={max_latency_samples}"
                " (re-align the recording)"
            )
        checks.append({"wet": str(p.wet), "latency_samples": lag, "correlation": round(corr, 4),
                       "inverted": corr < 0, "rms_dry": float(np.sqrt(np.mean(dry**2))),
                       "rms_wet": float(np.sqrt(np.mean(wet**2)))})
        base = {"name": p.name, "dry": str(p.dry), "wet": str(p.wet), "knob_code": p.knob_code,
                "knobs": list(p.knobs)}
        n = len(dry)
        if p.split == "test":
            items.append({**base, "split": "test", "start": 0, "end": n})
            continue
        train_end = n - val_n - guard_n
        if train_end < min_train_n:
            raise DatasetError(
                f"{p.wet}: {n / sample_rate:.1f} s is too short for data.val_seconds={val_seconds} "
                f"+ data.guard_seconds={guard_seconds} + {min_train_seconds} s of training"
            )
        items.append({**base, "split": "train", "start": 0, "end": train_end})
        if val_n > 0:
            items.append({**base, "split": "val", "start": n - val_n, "end": n})
    letters = pairs[0].knob_letters
    data_hash, files = content_hash(root, [f for p in pairs for f in (p.dry, p.wet)])
    summary = {
        split: {"items": sum(i["split"] == split for i in items),
                "seconds": round(sum(i["end"] - i["start"] for i in items if i["split"] == split) / sample_rate, 2)}
        for split in ("train", "val", "test")
    }
    return {
        "device": device,
        "sample_rate": sample_rate,
        "knob_letters": list(letters),
        "n_knobs": len(letters),
        "settings": sorted({p.knob_code for p in pairs}),
        "splits": summary,
        "max_abs_latency_samples": max(abs(c["latency_samples"]) for c in checks),
        "data_hash": data_hash,  # over every indexed file: relative path + SHA-256 of its bytes
        "files": files,
        "items": items,
        "checks": checks,
    }
