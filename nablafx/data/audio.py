"""Audio I/O through soundfile (torchaudio ≥ 2.9 cannot load files without FFmpeg/torchcodec)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from nablafx.errors import DatasetError

AUDIO_SUFFIXES = (".wav", ".flac")


def audio_info(path: str | Path) -> sf._SoundFileInfo:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        return sf.info(str(path))
    except Exception as err:  # soundfile raises RuntimeError / LibsndfileError
        raise DatasetError(f"{path}: unreadable audio ({err})") from err


def read_audio(path: str | Path, sample_rate: int, check_finite: bool = True) -> np.ndarray:
    """Read a mono file as float32 ``(samples,)``; refuse wrong rate, channel count or NaN."""
    path = Path(path)
    info = audio_info(path)
    if info.samplerate != sample_rate:
        raise DatasetError(f"{path}: {info.samplerate} Hz, expected {sample_rate}")
    if info.channels != 1:
        raise DatasetError(f"{path}: {info.channels} channels, expected 1 (mono)")
    data, _ = sf.read(str(path), dtype="float32", always_2d=False)
    if check_finite and not np.all(np.isfinite(data)):
        raise DatasetError(f"{path}: contains NaN or infinite samples")
    return data


def write_audio(path: str | Path, data: np.ndarray, sample_rate: int) -> None:
    """Write mono float audio atomically (temporary file + rename): WAV as float32, FLAC as 24 bit.
    Encoded in memory first: soundfile ignores errors raised by a file object it writes to."""
    import io

    from nablafx.fileio import write_bytes_atomic

    path = Path(path)
    fmt = {".wav": "WAV", ".flac": "FLAC"}.get(path.suffix.lower())
    if fmt is None:
        raise DatasetError(f"{path}: cannot write audio with suffix {path.suffix!r}; use {', '.join(AUDIO_SUFFIXES)}")
    buf = io.BytesIO()
    sf.write(buf, np.asarray(data, dtype=np.float32), sample_rate, format=fmt, subtype="FLOAT" if fmt == "WAV" else "PCM_24")
    write_bytes_atomic(path, buf.getvalue())
