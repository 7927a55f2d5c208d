"""``nablafx process``: run a trained model over an audio file, block by block, as a plugin would.

* **Any sample rate**: a file at another rate is resampled to the model's rate with libsoxr
  (``soxr``, "VHQ"), processed, and resampled back, so the output has the input's rate and length.
* **Channels** (the stereo rule): every channel is processed on its own by the same model with the
  same knobs (dual mono, the channels as a batch), and the output has the input's channel count.
  The model is mono; nothing is mixed or picked.
* **Blocks**: the streaming engine (:class:`nablafx.streaming.StreamEngine`) carries the state from
  block to block; the last block may be shorter.  No latency is added: output sample n is the
  model's answer to input samples ≤ n.
* **Silence reference** (default; ``--raw`` turns it off): the output is the model's output minus its
  response to digital silence under the same knobs (see :class:`~nablafx.streaming.StreamEngine`):
  the DC offset an untrained or imperfect network adds, and any sound it makes when a knob moves
  over silence, are removed; digital silence in gives digital silence out.
* **Before any work** every argument is checked (output path, block size, knob names and values,
  the model folder's format, the input file's content): a mistake is one line ``error: ...``, exit
  status 2, and no output file.  The output is written atomically (temporary file + rename).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from nablafx.data.audio import AUDIO_SUFFIXES, read_audio_any, write_audio
from nablafx.errors import ConfigError
from nablafx.modeldir import read_config, resolve_knobs

RESAMPLE_QUALITY = "VHQ"


def check_output_path(path: str | Path) -> Path:
    """An output path nablafx can write audio to: a .wav/.flac name in an existing folder."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; give an output file name ending in .wav or .flac")
    if path.suffix.lower() not in AUDIO_SUFFIXES:
        what = f"extension {path.suffix!r}" if path.suffix else "no extension"
        raise ConfigError(f"{path}: output has {what}; name it .wav (32-bit float) or .flac (24-bit)")
    if not path.parent.is_dir():
        raise ConfigError(f"{path}: folder {path.parent} does not exist")
    return path


def check_block(block: int) -> int:
    if block <= 0:
        raise ConfigError(f"--block {block}: the block size must be a whole number of samples ≥ 1")
    return block


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """``(channels, samples)`` float32 from ``rate_in`` to ``rate_out`` (libsoxr, very high quality)."""
    if rate_in == rate_out:
        return x
    import soxr

    y = soxr.resample(np.ascontiguousarray(x.T, dtype=np.float32), rate_in, rate_out, quality=RESAMPLE_QUALITY)
    return np.ascontiguousarray(y.reshape(len(y), -1).T)


def process_file(model_dir, input_path, output_path, knob_assignments=(), knobs_positional=None, block=512,
                 progress: bool = True, silence_reference: bool = True, stream=None) -> dict:
    """Check everything, then process; returns a summary dict (seconds, rates, channels, knobs)."""
    stream = stream if stream is not None else sys.stderr
    block = check_block(int(block))
    output_path = check_output_path(output_path)
    config = read_config(model_dir)
    knobs = resolve_knobs(config, list(knob_assignments), knobs_positional, model_dir)
    x, rate_in = read_audio_any(input_path)
    model_rate = int(config["sample_rate"])
    # every check passed: the work starts here
    import torch

    from nablafx.export import load_model
    from nablafx.progress import Progress
    from nablafx.streaming import StreamEngine

    # one instance on one core, as in a host (small blocks only lose to more threads); the caller's grad
    # mode and thread count are restored afterwards (process_file also runs inside other programs)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            model, _ = load_model(model_dir)
            xm = resample(x, rate_in, model_rate)
            channels, n = xm.shape
            engine = StreamEngine(model, block, batch=channels, knobs=knobs or None, silence_reference=silence_reference)
            prog = Progress(n, "process", unit="s", scale=1.0 / model_rate, stream=stream, enabled=progress)
            xt = torch.from_numpy(np.ascontiguousarray(xm))[:, None, :]
            out = np.empty_like(xm)
            for start in range(0, n, block):
                y = engine.process(xt[..., start : start + block])
                out[:, start : start + block] = y[:, 0].numpy()
                prog.update(min(block, n - start))
            prog.close()
    finally:
        torch.set_num_threads(threads)
    y = resample(out, model_rate, rate_in)
    length = x.shape[1]
    if y.shape[1] < length:  # libsoxr's output length is rounded: pad or trim to the input's length
        y = np.pad(y, ((0, 0), (0, length - y.shape[1])))
    y = y[:, :length]
    if not np.all(np.isfinite(y)):
        raise FloatingPointError(f"{input_path}: the model's output is not finite (NaN or inf); nothing written")
    write_audio(output_path, y, rate_in)
    return {"seconds": length / rate_in, "sample_rate": rate_in, "model_rate": model_rate, "channels": channels,
            "knobs": knobs, "block": block, "variant": config.get("variant")}
