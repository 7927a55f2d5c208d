"""Audio I/O through soundfile (torchaudio ≥ 2.9 cannot load files without FFmpeg/torchcodec).

Every reader of audio in nablafx goes through :func:`read_audio` (or :func:`load_audio`, which
also returns the file's format): whatever goes wrong — a missing file, a broken symlink, bytes
libsndfile cannot decode (a truncated FLAC: "flac decoder lost sync"), a WAV whose header
declares more or fewer samples than the file holds, a wrong rate or channel count, NaN — ends in
one :class:`DatasetError` whose message starts with the file's path and says how to fix it.

Handling of formats: any WAV or FLAC libsndfile reads is accepted — 8/16/24/32-bit integer and
32/64-bit float — and returned as float32 in [-1, 1) (integers scaled by 2^-(bits-1), as soundfile
does).  Multi-channel files are refused (nablafx models one channel; no channel is picked or mixed
silently).  A WAV whose data chunk declares its size as 0 or 0xFFFFFFFF (written by a streaming
recorder that never went back to fill it in) is read to the end of the file, as libsndfile does.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import soundfile as sf

from nablafx.errors import DatasetError

AUDIO_SUFFIXES = (".wav", ".flac")
# Names a user may give audio that nablafx does not read (refused when named like a dataset file).
OTHER_AUDIO_SUFFIXES = (".aif", ".aiff", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".wma", ".caf", ".w64", ".rf64")
_REEXPORT = "re-export or re-download it"


def _check_path(path: Path) -> None:
    if path.is_symlink() and not path.exists():
        raise DatasetError(f"{path}: broken symbolic link (dangling, or a loop): point it at the audio file or remove it")
    if not path.exists():
        raise DatasetError(f"{path}: file not found")
    if not path.is_file():
        raise DatasetError(f"{path}: not a file")


def audio_info(path: str | Path) -> sf._SoundFileInfo:
    path = Path(path)
    _check_path(path)
    try:
        return sf.info(str(path))
    except Exception as err:  # soundfile raises LibsndfileError / RuntimeError / OSError
        raise DatasetError(f"{path}: unreadable audio ({_why(err)}): not a WAV/FLAC file libsndfile can decode, "
                           f"or corrupt; {_REEXPORT}") from err


def _why(err: Exception) -> str:
    """libsndfile's message on one line, without the "Error : " / "Error opening '<path>': " prefix."""
    text = " ".join(str(err).split())
    for prefix in ("Error : ", "Error: "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    if text.startswith("Error opening") and "': " in text:
        text = text.split("': ", 1)[1]
    return text.rstrip(".") or type(err).__name__


def _wav_header_problem(path: Path, info) -> str | None:
    """For a plain RIFF/WAVE file: does the data chunk's declared size match the bytes that follow?

    libsndfile silently reads only what is there when the header declares more (a truncated
    file) and only what the header declares when more follows (a header that lies short); both
    are refused here.  Unknown sizes (0, 0xFFFFFFFF) and non-RIFF containers are left to libsndfile.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos, block_align = 12, max(1, info.channels * _bytes_per_sample(info.subtype))
        while pos + 8 <= size:
            f.seek(pos)
            cid, csize = struct.unpack("<4sI", f.read(8))
            if cid == b"fmt ":
                fmt = f.read(min(csize, 16))
                if len(fmt) >= 14:
                    block_align = max(1, struct.unpack("<H", fmt[12:14])[0])
            if cid == b"data":
                available = size - pos - 8
                if csize in (0, 0xFFFFFFFF):
                    return None
                if csize > available:
                    return (f"truncated: the header declares {csize // block_align} samples, the file holds "
                            f"{available // block_align}; {_REEXPORT}")
                rest = pos + 8 + csize + (csize & 1)
                trailing = _trailing_junk(f, rest, size)
                if trailing:
                    return (f"the header declares {csize // block_align} samples but {trailing} more bytes of "
                            f"audio follow its data chunk (the header lies about the length); {_REEXPORT}")
                return None
            pos += 8 + csize + (csize & 1)
    return None


def _trailing_junk(f, pos: int, size: int) -> int:
    """Bytes after the data chunk that are neither valid chunks nor zero padding (0 if none)."""
    start = pos
    while pos + 8 <= size:
        f.seek(pos)
        cid, csize = struct.unpack("<4sI", f.read(8))
        if not all(32 <= c < 127 for c in cid) or pos + 8 + csize > size:
            break
        pos += 8 + csize + (csize & 1)
    if pos >= size:
        return 0
    f.seek(pos)
    rest = f.read()
    return 0 if not any(rest) else size - start


def _bytes_per_sample(subtype: str) -> int:
    return {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}.get(subtype, 1)


def full_scale(subtype: str) -> float:
    """The largest positive value a file of this subtype holds, as read (float: 1.0)."""
    bits = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32}.get(subtype)
    return 1.0 if bits is None else 1.0 - 2.0 ** (1 - bits)


def load_audio(path: str | Path, sample_rate: int, check_finite: bool = True) -> tuple[np.ndarray, sf._SoundFileInfo]:
    """Read a mono file as float32 ``(samples,)`` with its soundfile info; refuse anything
    unreadable, truncated, empty, at another rate, multi-channel or (``check_finite``) non-finite."""
    path = Path(path)
    info = audio_info(path)
    if info.samplerate != sample_rate:
        raise DatasetError(f"{path}: {info.samplerate} Hz, expected {sample_rate} (params data.sample_rate): "
                           f"resample it, e.g. `sox in.wav -r {sample_rate} out.wav`")
    if info.channels != 1:
        raise DatasetError(f"{path}: {info.channels} channels, expected 1 (mono): nablafx models one channel; "
                           f"export a mono file, e.g. `sox in.wav out.wav remix 1` for the first channel")
    return _read_checked(path, info, check_finite), info


def read_audio_any(path: str | Path, check_finite: bool = True) -> tuple[np.ndarray, int]:
    """Read a file at any sample rate and channel count as float32 ``(channels, samples)`` with its rate
    (``nablafx process``); the same checks as :func:`load_audio` otherwise."""
    path = Path(path)
    info = audio_info(path)
    data = _read_checked(path, info, check_finite)
    return (data[None, :] if data.ndim == 1 else np.ascontiguousarray(data.T)), int(info.samplerate)


def _read_checked(path: Path, info, check_finite: bool) -> np.ndarray:
    sample_rate = info.samplerate
    if info.format == "WAV" and (problem := _wav_header_problem(path, info)):
        raise DatasetError(f"{path}: {problem}")
    try:
        data, _ = sf.read(str(path), dtype="float32", always_2d=False)
    except Exception as err:  # LibsndfileError ("flac decoder lost sync"), RuntimeError, OSError
        raise DatasetError(f"{path}: truncated or corrupt audio ({_why(err)}); {_REEXPORT}") from err
    if info.frames > 0 and len(data) != info.frames:
        raise DatasetError(f"{path}: truncated: the header declares {info.frames} samples, {len(data)} could be "
                           f"read; {_REEXPORT}")
    if len(data) == 0:
        raise DatasetError(f"{path}: no samples (empty audio file); {_REEXPORT}")
    if check_finite and not np.all(np.isfinite(data)):
        bad = int(np.flatnonzero(~np.isfinite(data.reshape(len(data), -1)).any(axis=1))[0])
        raise DatasetError(f"{path}: contains NaN or infinite samples (first at sample {bad}, "
                           f"{bad / sample_rate:.3f} s): fix or re-render the file")
    return data


def read_audio(path: str | Path, sample_rate: int, check_finite: bool = True) -> np.ndarray:
    """Read a mono file as float32 ``(samples,)``; every problem is one DatasetError naming the file."""
    return load_audio(path, sample_rate, check_finite)[0]


def write_audio(path: str | Path, data: np.ndarray, sample_rate: int) -> None:
    """Write float audio atomically (temporary file + rename): WAV as float32, FLAC as 24 bit.
    ``data``: mono ``(samples,)`` or ``(channels, samples)``.
    Encoded in memory first: soundfile ignores errors raised by a file object it writes to."""
    import io

    from nablafx.fileio import write_bytes_atomic

    path = Path(path)
    fmt = {".wav": "WAV", ".flac": "FLAC"}.get(path.suffix.lower())
    if fmt is None:
        raise DatasetError(f"{path}: cannot write audio with suffix {path.suffix!r}; use {', '.join(AUDIO_SUFFIXES)}")
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 2:
        data = data[0] if data.shape[0] == 1 else np.ascontiguousarray(data.T)  # soundfile: (samples, channels)
    buf = io.BytesIO()
    sf.write(buf, data, sample_rate, format=fmt, subtype="FLOAT" if fmt == "WAV" else "PCM_24")
    write_bytes_atomic(path, buf.getvalue())
