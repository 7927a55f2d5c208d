"""The `prepare` stage's logic: validate one device's pairs and build the split index.

Validation covers the layout (:func:`nablafx.data.tonetwist.scan_layout`: names, knob codes, empty
folders, links), the audio format (:func:`nablafx.data.audio.load_audio`: readable, complete, rate,
channels, finiteness), and the signals (:mod:`nablafx.data.checks`: lengths, silence, clipping,
duplicates, dry/wet swap, latency and its drift, the wet's answers to repeated dry segments).
What cannot train is refused with one :class:`DatasetError` naming the file and the fix; the rest
is listed under ``warnings``.  Validation/training separation is *by time*:
the last ``val_seconds`` of every trainval passage are validation, a guard gap before them is
unused, and the rest is training — chunks never straddle the two (the reference's random chunk
split leaks).  Test passages come from the dataset's own `test` folders.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from nablafx.data import checks as chk
from nablafx.data.audio import DatasetError, load_audio
from nablafx.data.checks import measure_latency
from nablafx.data.tonetwist import scan_layout

__all__ = ["SILENCE_RMS", "content_hash", "file_sha256", "measure_latency", "prepare_device"]

SILENCE_RMS = chk.SILENCE_RMS


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


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.3g} %"


def _check_sane(path, x: np.ndarray, sample_rate: int) -> None:
    if (i := chk.insane_sample(x)) is not None:
        raise DatasetError(f"{path}: sample {i} ({i / sample_rate:.3f} s) is {x[i]:.3g}, beyond ±{chk.MAX_ABS:g} "
                           f"(+{20 * np.log10(chk.MAX_ABS):.0f} dBFS): corrupt float data, or audio stored unscaled; "
                           f"re-export it scaled to ±1")


def _check_not_dc_only(path, x: np.ndarray, fix: str) -> None:
    """Refuse a file that holds only a DC offset (constant, or signal below the silence level
    around a constant): nothing to learn, and the latency search on it reports a bogus lag."""
    if chk.ac_rms(x) < SILENCE_RMS:
        raise DatasetError(f"{path}: only a DC offset ({float(np.mean(x)):+.3g}; RMS without it below {SILENCE_RMS}): "
                           f"no signal: {fix}")


def _check_dry(path, x: np.ndarray, info, sample_rate: int, warnings: list) -> dict:
    """Silence, clipping and repeats of one dry file; refuse what cannot train, warn the rest."""
    _check_sane(path, x, sample_rate)
    if np.sqrt(np.mean(x.astype(np.float64) ** 2)) < SILENCE_RMS:
        raise DatasetError(f"{path}: silent (RMS below {SILENCE_RMS}): replace it with the dry recording")
    _check_not_dc_only(path, x, "replace it with the dry recording")
    clipped = chk.clipped_fraction(x, info.subtype)
    if clipped > chk.CLIP_REFUSE_FRACTION:
        raise DatasetError(f"{path}: {_pct(clipped)} of samples at full scale (clipped): re-record the dry with "
                           f"headroom — or, if this file is a device's output, dry and target are swapped")
    if clipped > chk.CLIP_WARN_FRACTION:
        warnings.append(f"{path}: {_pct(clipped)} of samples at full scale (clipping in the dry)")
    leading, silent = chk.silence_profile(x, sample_rate)
    if silent > chk.SILENT_REFUSE_FRACTION:
        raise DatasetError(f"{path}: silent (below its loudest frame {chk.SILENCE_DB:g} dB) for {_pct(silent)} of its length: "
                           f"trim the silence or replace the file")
    if silent > chk.SILENT_WARN_FRACTION:
        warnings.append(f"{path}: silent for {_pct(silent)} of its length")
    segs, groups = chk.repeated_segments(x, sample_rate)
    return {"dry": str(path), "clipped_fraction": clipped, "silent_fraction": round(silent, 4),
            "leading_silence_s": round(leading, 4), "impulses": int(len(chk.isolated_impulses(x, sample_rate))),
            "repeated_segments": [{"samples": segs[g[0]][1] - segs[g[0]][0],
                                   "at_s": [round(segs[k][0] / sample_rate, 4) for k in g]} for g in groups],
            "_segs": segs, "_groups": groups, "_digest": chk.audio_digest(x)}


def _check_duplicate_dry(dry_checks: dict, split_of: dict, warnings: list) -> None:
    """The same audio in trainval and test leaks the test set into training: refused; twice in one
    split: warned (it counts double)."""
    first: dict[str, str] = {}
    for path in sorted(dry_checks, key=lambda p: (split_of[p] != "trainval", p)):
        digest = dry_checks[path]["_digest"]
        if digest in first:
            other = first[digest]
            if split_of[other] != split_of[path]:
                raise DatasetError(f"{path}: same audio as {other}: a passage in both splits leaks the test set "
                                   f"into training; remove one of the two")
            warnings.append(f"{path}: same audio as {other} (the passage counts twice)")
        else:
            first[digest] = path


def _check_wet(p, dry: np.ndarray, dcheck: dict, wet: np.ndarray, info, sample_rate: int, search: int,
               max_latency_samples: int, warnings: list) -> dict:
    """One target against its dry; returns the check record (see :func:`prepare_device`)."""
    if len(wet) != len(dry):
        raise DatasetError(f"{p.wet}: {len(wet)} samples, dry {p.dry.name} has {len(dry)}: "
                           f"dry and wet must be sample-aligned recordings of the same length")
    _check_sane(p.wet, wet, sample_rate)
    if np.sqrt(np.mean(wet.astype(np.float64) ** 2)) < SILENCE_RMS:
        raise DatasetError(f"{p.wet}: silent (RMS below {SILENCE_RMS}): a failed render or recording; re-record it")
    _check_not_dc_only(p.wet, wet, "a failed render or recording; re-record it")
    clipped = chk.clipped_fraction(wet, info.subtype)
    if clipped > chk.CLIP_REFUSE_FRACTION:
        raise DatasetError(f"{p.wet}: {_pct(clipped)} of samples at full scale (clipped): the recording overloaded; "
                           f"re-record the device's output with headroom (peaks below 0 dBFS)")
    if clipped > chk.CLIP_WARN_FRACTION:
        warnings.append(f"{p.wet}: {_pct(clipped)} of samples at full scale (clipping in the target)")
    leading, silent = chk.silence_profile(wet, sample_rate)
    muted = chk.muted_fraction(dry, wet, sample_rate)
    if muted > chk.MUTED_REFUSE_FRACTION:
        raise DatasetError(f"{p.wet}: muted ({-chk.SILENCE_DB:g} dB below its usual level) in {_pct(muted)} of the "
                           f"time its dry plays: a failed render or recording; re-record it")
    if muted > chk.MUTED_WARN_FRACTION:
        warnings.append(f"{p.wet}: muted in {_pct(muted)} of the time its dry plays (a gate, or dropouts)")
    late = leading - dcheck["leading_silence_s"]
    if late > chk.WET_LATE_WARN_SECONDS:
        warnings.append(f"{p.wet}: starts {late:.3f} s after its dry (leading silence {leading:.3f} s): "
                        f"a late recording start, or a gate")
    hits = chk.swapped_evidence(dry, wet, sample_rate, search)
    if len(hits) >= chk.SWAP_MIN_IMPULSES:
        where = ", ".join(f"{h / sample_rate:.3f} s" for h in hits[:4])
        raise DatasetError(f"{p.wet}: dry and target look swapped: the target holds {len(hits)} isolated sync "
                           f"impulses (at {where}) where the dry {p.dry.name} has none but answers them; "
                           f"swap the two files")
    lag, corr = measure_latency(dry, wet, search)
    if abs(lag) > max_latency_samples:
        raise DatasetError(
            f"{p.wet}: dry→wet latency {lag} samples exceeds data.max_latency_samples={max_latency_samples}"
            " (re-align the recording)"
        )
    repeats = chk.repeat_consistency(dry, wet, dcheck["_segs"], dcheck["_groups"], sample_rate, search)
    for r in repeats:
        lags = [(t, v) for t, v in zip(r["at_s"], r["lags"]) if v is not None]
        lo, hi = min(lags, key=lambda tv: tv[1]), max(lags, key=lambda tv: tv[1])  # never empty: one answers
        if hi[1] - lo[1] > max_latency_samples:
            raise DatasetError(
                f"{p.wet}: the dry→wet lag drifts: {lo[1]} samples at {lo[0]:.3f} s, {hi[1]} at {hi[0]:.3f} s "
                f"(answers to the same dry segment; data.max_latency_samples={max_latency_samples}): the recorder's "
                f"clock differs from the player's, or samples were dropped; re-record with one clock")
        mute = [t for t, db in zip(r["at_s"], r["level_db"]) if db is None or db < chk.REPEAT_SILENT_DB]
        if mute:
            warnings.append(f"{p.wet}: no answer to the repeated dry segment at {', '.join(f'{t:.3f} s' for t in mute)} "
                            f"(the other repeats get one): a dropout, or the recording stops early")
        if r["leading_esr"] is not None and r["leading_esr"] > chk.REPEAT_ESR_WARN:
            warnings.append(f"{p.wet}: not self-consistent: its answers to the identical dry segments at "
                            f"{r['at_s'][0]:.3f} s and {r['at_s'][1]:.3f} s differ (ESR {r['leading_esr']:.3g} > "
                            f"{chk.REPEAT_ESR_WARN}): noise, a time-based effect, or a setting changed while recording")
    return {"wet": str(p.wet), "latency_samples": lag, "correlation": round(corr, 4), "inverted": corr < 0,
            "rms_dry": float(np.sqrt(np.mean(dry**2))), "rms_wet": float(np.sqrt(np.mean(wet**2))),
            "clipped_fraction": clipped, "silent_fraction": round(silent, 4), "muted_fraction": round(muted, 4),
            "leading_silence_s": round(leading, 4), "identical_to_dry": chk.audio_digest(wet) == dcheck["_digest"],
            "repeats": repeats}


def _check_same_setting(checks: list[dict], codes: list[str], warnings: list) -> None:
    """Every file starts with the device at rest: within one knob setting, the answers to the
    same leading dry segment (the first sync impulse) must agree across passages and splits."""
    first: dict[tuple, tuple[str, np.ndarray]] = {}
    for record, code in zip(checks, codes):
        for r in record["repeats"]:
            if r["_key"] is None:
                continue
            key = (code, r["_key"])
            if key not in first:
                first[key] = (record["wet"], r["_answer"])
                continue
            other, answer = first[key]
            esr = chk.answers_differ(answer, r["_answer"])
            if esr > chk.REPEAT_ESR_WARN:
                warnings.append(f"{record['wet']}: answers the leading sync segment unlike {other} of the same "
                                f"setting (ESR {esr:.3g} > {chk.REPEAT_ESR_WARN}): a knob moved between recordings, "
                                f"or the file sits in the wrong setting's folder")


def prepare_device(root, device: str, dry_dir: str, sample_rate: int, val_seconds: float,
                   guard_seconds: float, max_latency_samples: int, min_train_seconds: float = 1.0) -> dict:
    """Return the index (a JSON-able dict) for ``device``; raise DatasetError on bad input.

    Besides the split ``items``, the index carries ``checks`` (one record per target: latency,
    polarity, levels, clipping, silence, answers to repeated dry segments), ``dry_checks`` (per dry
    file), ``warnings`` (one line each, also printed by the stage) and ``ignored`` (files the
    layout scan skipped, with the reason).
    """
    layout = scan_layout(root, device, dry_dir)
    pairs = layout.pairs
    warnings = list(layout.warnings)
    val_n = int(round(val_seconds * sample_rate))
    guard_n = int(round(guard_seconds * sample_rate))
    min_train_n = int(round(min_train_seconds * sample_rate))
    search = max(4 * max_latency_samples, sample_rate // 100)  # look ±10 ms at least
    dry_audio: dict[str, np.ndarray] = {}
    dry_checks: dict[str, dict] = {}
    split_of: dict[str, str] = {}
    for p in pairs:
        key = str(p.dry)
        if key not in dry_audio:
            dry_audio[key], info = load_audio(p.dry, sample_rate)
            dry_checks[key] = _check_dry(p.dry, dry_audio[key], info, sample_rate, warnings)
            split_of[key] = p.split
    _check_duplicate_dry(dry_checks, split_of, warnings)
    items, checks = [], []
    wet_digests: dict[tuple[str, str], dict[str, str]] = {}
    for p in pairs:
        dry = dry_audio[str(p.dry)]
        wet, info = load_audio(p.wet, sample_rate)
        record = _check_wet(p, dry, dry_checks[str(p.dry)], wet, info, sample_rate, search, max_latency_samples, warnings)
        checks.append(record)
        seen = wet_digests.setdefault((p.split, p.name), {})
        digest = chk.audio_digest(wet)
        if digest in seen and digest != dry_checks[str(p.dry)]["_digest"]:  # several settings = dry: bypass-like
            warnings.append(f"{p.wet}: same audio as {seen[digest]}: a copied file, or knob settings without effect")
        seen.setdefault(digest, str(p.wet))
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
    _check_same_setting(checks, [p.knob_code for p in pairs], warnings)
    for record in checks:
        record["repeats"] = [{k: v for k, v in r.items() if not k.startswith("_")} for r in record["repeats"]]
    if all(c["identical_to_dry"] for c in checks):
        raise DatasetError(f"{Path(root) / device}: every target is identical to its dry input: the targets are "
                           f"copies of the dry (a failed render or recording?)")
    if layout.ignored:
        warnings.append(f"{root}: ignored {len(layout.ignored)} file(s)/folder(s) that are not dataset audio "
                        f"(listed under `ignored` in the report)")
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
        "dry_checks": [{k: v for k, v in d.items() if not k.startswith("_")} for d in dry_checks.values()],
        "warnings": warnings,
        "ignored": [{"path": path, "reason": reason} for path, reason in layout.ignored],
    }
