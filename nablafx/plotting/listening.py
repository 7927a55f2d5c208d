"""Listening excerpts: dry / target / prediction per knob setting, short 16-bit FLAC files (soundfile,
no FFmpeg) written atomically beside the page, for its ``<audio>`` players."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from nablafx.fileio import write_bytes_atomic
from nablafx.plotting.signals import Passage

FADE_SECONDS = 0.01  # raised-cosine fade in and out: no click at the cut


@dataclass
class Clip:
    """One audio file of the page: ``file`` relative to the report folder."""

    file: str
    role: str  # dry | target | prediction
    name: str  # passage
    code: str  # knob setting ("" for the dry input, shared by every setting)
    label: str


def _fade(x: np.ndarray, sample_rate: int) -> np.ndarray:
    n = min(len(x) // 2, int(FADE_SECONDS * sample_rate))
    if n == 0:
        return x
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
    y = x.astype(np.float64).copy()
    y[:n] *= ramp
    y[-n:] *= ramp[::-1]
    return y


def encode_flac(x: np.ndarray, sample_rate: int) -> bytes:
    """16-bit FLAC bytes of mono ``x`` (clipped to ±1 by the encoder's range)."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 1.0).astype(np.float32), sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def write_excerpts(passages: list[Passage], windows: dict[str, tuple[int, int]], sample_rate: int,
                   out_dir: str | Path) -> list[Clip]:
    """For every passage name in ``windows``: the dry excerpt once, and target and prediction per knob
    setting, as ``audio/<name>.dry.flac`` and ``audio/<code>.<name>.{target,pred}.flac``.

    All files of one passage share one gain: 1, or less when a peak would clip (levels stay comparable).
    """
    out_dir = Path(out_dir)
    clips = []
    for name, (s, e) in windows.items():
        group = [p for p in passages if p.name == name]
        if not group:
            continue
        peak = max(float(np.max(np.abs(np.concatenate([p.dry[s:e], p.target[s:e], p.pred[s:e]])))) for p in group)
        gain = 1.0 if peak <= 0.999 else 0.999 / peak
        rel = f"audio/{name}.dry.flac"
        write_bytes_atomic(out_dir / rel, encode_flac(_fade(group[0].dry[s:e] * gain, sample_rate), sample_rate))
        clips.append(Clip(rel, "dry", name, "", "dry input"))
        for p in group:
            for role, sig, tag in (("target", p.target, "target"), ("prediction", p.pred, "pred")):
                rel = f"audio/{p.code + '.' if p.code else ''}{name}.{tag}.flac"
                write_bytes_atomic(out_dir / rel, encode_flac(_fade(sig[s:e] * gain, sample_rate), sample_rate))
                clips.append(Clip(rel, role, name, p.code, p.label))
    return clips
