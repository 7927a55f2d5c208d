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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(data, dtype=np.float32), sample_rate, subtype="FLOAT" if path.suffix == ".wav" else "PCM_24")
