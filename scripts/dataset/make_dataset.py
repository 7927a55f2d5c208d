#!/usr/bin/env python3
"""Deterministic generator of a small ToneTwist-AFx-style dataset built from real material.

Dry material (48 kHz mono):
  * DI-style guitar and bass parts rendered by the ``fluidsynth`` CLI from the MIDI files in
    ``scripts/dataset/midi/`` through FluidR3_GM.sf2 (reverb and chorus off);
  * real single-note acoustic-guitar recordings from the ``guitarsounds==1.2.0`` sdist (MIT).
Every dry file is peak-normalised per source item, given a random (fixed-seed) gain per
5 s segment in [-20, 0] dB with 10 ms ramps, and framed by two sync impulses in a silent head
and two in a silent tail.

Wet material: every dry file is processed by four Guitarix LV2 plugins (real circuit models),
hosted headless by ``lv2file``, at five knob settings each.  Each render gets 5 s of silent
lead-in that is trimmed afterwards, so dry and wet stay sample-aligned (the DS-1 plugin's own
32-sample resampler delay is removed).  The script aborts unless, for every render: the response
to the first sync impulse starts at the impulse (nothing earlier, something at samples 0-1);
the GCC-PHAT dry->wet lag over the music is 0..8 samples (a filter's dominant tap; the plain
cross-correlation peak is moved by tens of samples by the devices' filters on bass material);
the render is not silent; its polarity agrees across settings; nothing exceeds 0.99 (else ONE
fixed gain per device is applied).  Runs byte-identically (checked with md5sum).

Layout (ToneTwist AFx)::

    <out>/DRY-with-markers/{trainval,test}/<file>.input.flac
    <out>/<Device>/{trainval,test}/<KNOBS>/<KNOBS>.<file>.target.flac
    <out>/metadata.json, <out>/README.md

Only numpy and soundfile are needed in Python; ``lv2file``, ``fluidsynth``,
``guitarix-lv2`` and ``fluid-soundfont-gm`` are Debian packages.  Usage::

    pip download --no-deps --no-binary :all: guitarsounds==1.2.0 -d /tmp/gs
    python scripts/dataset/make_dataset.py --out data --guitarsounds /tmp/gs/guitarsounds-1.2.0.tar.gz

``--write-midi`` regenerates the MIDI files from the note lists below (byte-identical).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 48_000
SEED = 20250214
DATASET_NAME = "nablafx-tinytwist-guitarix"
HERE = Path(__file__).resolve().parent
MIDI_DIR = HERE / "midi"
DEFAULT_SF2 = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
FLUID_GAIN = 0.5

# --- sync markers: single-sample impulses in a silent head and a silent tail ----------------
MARGIN = SR // 2  # 0.5 s of head and of tail around the musical content
IMPULSE_AMP = 0.5
HEAD_IMPULSES = (4_800, 14_400)  # samples from the file start
TAIL_IMPULSES = (14_400, 4_800)  # samples before the file end (impulse index = len - value)

# --- level variation --------------------------------------------------------------------------
PEAK = 0.99  # peak normalisation of each source item (linear)
SEGMENT_S = 5.0
GAIN_RANGE_DB = (-20.0, 0.0)
RAMP_S = 0.010

# --- rendering --------------------------------------------------------------------------------
LEAD_IN = 5 * SR
BLOCK = 512
CLIP_LIMIT = 0.99
SILENCE_RMS = 1e-4  # -80 dBFS
MAX_LAG = 64
TAIL_PAD = 1024  # silence appended to each render input (room for latency compensation)
MAX_FILTER_LAG = 8  # allowed dry->wet GCC-PHAT lag (a filter's dominant tap; never negative)

GS_NAME = "guitarsounds-1.2.0"
GS_URL = "https://pypi.org/project/guitarsounds/1.2.0/"
ACOUSTIC_NOTE_S = 0.8

# --- MIDI passages ----------------------------------------------------------------------------
TEMPO_BPM = 120  # one beat = 0.5 s
PPQ = 480
GM = {24: "Acoustic Guitar (nylon)", 25: "Acoustic Guitar (steel)", 26: "Electric Guitar (jazz)",
      27: "Electric Guitar (clean)", 28: "Electric Guitar (muted)", 29: "Overdriven Guitar",
      30: "Distortion Guitar", 32: "Acoustic Bass", 33: "Electric Bass (finger)",
      34: "Electric Bass (pick)"}

# Open-chord voicings (MIDI pitches, low to high) and power chords.
E_MAJ = (40, 47, 52, 56, 59, 64)
A_MAJ = (45, 52, 57, 61, 64)
D_MAJ = (50, 57, 62, 66)
G_MAJ = (43, 47, 50, 55, 59, 67)
C_MAJ = (48, 52, 55, 60, 64)
A_MIN = (45, 52, 57, 60, 64)


def power(root: int) -> tuple[int, int, int]:
    return (root, root + 7, root + 12)


def _guitar_trainval() -> tuple[dict[int, int], list]:
    programs = {0: 25, 1: 27, 2: 29, 3: 30}
    ev = []  # (channel, start_beat, duration_beats, pitch, velocity)
    # A (steel acoustic): single-note pentatonic line, mixed staccato/legato and velocities
    line = (52, 55, 57, 59, 62, 64, 62, 59)
    vels = (96, 52, 110, 40, 84, 120, 64, 100)
    for i, (p, v) in enumerate(zip(line, vels)):
        ev.append((0, 0.5 * i, 0.2 if i % 3 == 1 else 0.48, p, v))
    ev[-1] = (0, 3.5, 1.0, 59, 100)
    # B (clean electric): strummed open chords, down and up strokes
    ev += _strum(1, 4.0, 2.0, E_MAJ, 92, 0.03)
    ev += _strum(1, 6.0, 1.0, A_MAJ, 58, 0.025)
    ev += _strum(1, 7.0, 1.0, D_MAJ[::-1], 110, 0.02)
    # C (overdriven): staccato power-chord eighths, hard then soft
    for i, (root, vel) in enumerate([(40, 118), (40, 112), (40, 118), (40, 105),
                                     (43, 116), (43, 100), (45, 70), (45, 62)]):
        ev += _strum(2, 8.0 + 0.5 * i, 0.18, power(root), vel, 0.005)
    # D (distortion): long sustained power chords, loud then soft
    ev += _strum(3, 12.0, 2.0, power(50), 104, 0.01)
    ev += _strum(3, 14.0, 1.8, power(48), 44, 0.01)
    # E (steel acoustic): soft fingerpicked A-minor arpeggio, notes ringing
    for i, p in enumerate((45, 52, 57, 60, 64, 60, 57, 52, 45, 52, 57, 64)):
        ev.append((0, 16.0 + 0.25 * i, 1.2, p, 38 + (i * 7) % 35))
    # F (clean electric): fast staccato notes, then a long sustained G-major chord
    for i, p in enumerate((64, 67, 69, 71, 72, 71)):
        ev.append((1, 19.5 + 0.25 * i, 0.12, p, 100 if i % 2 == 0 else 76))
    ev += _strum(1, 21.5, 2.6, G_MAJ, 84, 0.035)
    return programs, ev


def _bass_trainval() -> tuple[dict[int, int], list]:
    programs = {0: 33, 1: 34}
    ev = []
    # A (finger): legato root eighths with accents
    for i, v in enumerate((104, 60, 82, 58, 110, 62, 86, 70)):
        ev.append((0, 0.5 * i, 0.45, 28, v))
    # B (pick): staccato sixteenths, octave jumps
    for i in range(16):
        ev.append((1, 4.0 + 0.25 * i, 0.1, 33 if i % 2 == 0 else 45, 112 if i % 4 == 0 else 72))
    # C (finger): soft walking quarters
    for i, p in enumerate((31, 33, 35, 38)):
        ev.append((0, 8.0 + i, 0.9, p, 48 + 6 * i))
    # D (pick): long loud sustained low E, then short notes and a soft ending
    ev.append((1, 12.0, 2.4, 28, 122))
    ev.append((1, 14.5, 0.22, 38, 96))
    ev.append((1, 15.0, 0.22, 36, 80))
    ev.append((0, 15.5, 1.1, 35, 44))
    return programs, ev


def _guitar_test() -> tuple[dict[int, int], list]:
    programs = {0: 30, 1: 25}
    ev = []
    # palm-muted F#5 eighths, then a sustained B5 (distortion guitar)
    for i, vel in enumerate((108, 90, 116)):
        ev += _strum(0, 0.5 * i, 0.16, power(42), vel, 0.004)
    ev += _strum(0, 1.5, 1.0, power(47), 98, 0.01)
    # strummed open C major, then a soft high melody (steel acoustic)
    ev += _strum(1, 2.5, 1.6, C_MAJ, 76, 0.03)
    ev.append((1, 4.1, 0.3, 69, 58))
    ev.append((1, 4.4, 0.5, 72, 66))
    return programs, ev


def _bass_test() -> tuple[dict[int, int], list]:
    programs = {0: 34, 1: 33}
    ev = []
    for i, vel in enumerate((118, 64, 96, 54)):
        ev.append((0, 0.5 * i, 0.2 if i % 2 else 0.45, 30, vel))
    ev.append((1, 2.0, 1.5, 35, 90))
    return programs, ev


def _strum(ch, start, dur, pitches, vel, spread):
    return [(ch, start + spread * k, dur - spread * k, p, vel) for k, p in enumerate(pitches)]


PASSAGES = {  # midi file stem -> (composer, content length in seconds)
    "trainval-guitar": (_guitar_trainval, 12.3),
    "trainval-bass": (_bass_trainval, 8.5),
    "test-guitar": (_guitar_test, 2.6),
    "test-bass": (_bass_test, 2.0),
}

# --- the dry files ----------------------------------------------------------------------------
ACOUSTIC_SPLIT = {
    "trainval": ("Carbon_E1", "Carbon_B2", "Carbon_D4", "Carbon_E6", "Carbon_A5",
                 "Wood_B2", "Wood_D4", "Wood_G3", "Wood_E6"),
    "test": ("Carbon_G3", "Wood_E1", "Wood_A5"),
}
DRY_FILES = {  # split -> [(file name, kind, source)]
    "trainval": [("guitar-midi", "midi", "trainval-guitar"), ("bass-midi", "midi", "trainval-bass"),
                 ("acoustic-notes", "acoustic", "trainval")],
    "test": [("guitar-midi", "midi", "test-guitar"), ("bass-midi", "midi", "test-bass"),
             ("acoustic-notes", "acoustic", "test")],
}

# --- devices ----------------------------------------------------------------------------------
# knobs: letter -> (name, LV2 port symbol, port value at position 000, at position 100), in the
# fixed order of the knob code; the first knob is the main one (its settings include 000 and 100).
# Positions map linearly onto the port's full range as declared in the plugin's TTL (checked).
# fixed: ports held constant (output level, bypass...), not encoded in the code.
# latency: samples dropped from the start of each render (plugin-internal resampling delay).
GX = "http://guitarix.sourceforge.net/plugins/"
DEVICES = {
    "Guitarix-TS9": {
        "uri": GX + "gxts9#ts9sim", "category": "overdrive", "model_of": "Ibanez TS-9 Tube Screamer",
        "knobs": {"D": ("Drive", "fslider2_", 0.0, 1.0), "T": ("Tone", "fslider1_", 100.0, 1000.0)},
        "fixed": {"fslider0_": -2.0, "BYPASS": 1.0}, "latency": 0,
        "settings": [{"D": 0, "T": 50}, {"D": 30, "T": 100}, {"D": 50, "T": 50}, {"D": 70, "T": 0},
                     {"D": 100, "T": 50}],
    },
    "Guitarix-DS1": {
        "uri": GX + "gx_bossds1_#_bossds1_", "category": "distortion", "model_of": "Boss DS-1",
        "knobs": {"D": ("DRIVE", "DRIVE", 0.0, 1.0), "T": ("TONE", "TONE", 0.0, 1.0)},
        "fixed": {"LEVEL": 4.0, "BYPASS": 1.0},
        # the plugin runs at 96 kHz through guitarix's FixedRateResampler (2 x 16-tap half delays):
        # a pure 32-sample latency at 48 kHz that a hardware pedal does not have -> compensated
        "latency": 32,
        "settings": [{"D": 0, "T": 50}, {"D": 25, "T": 0}, {"D": 50, "T": 100}, {"D": 75, "T": 50},
                     {"D": 100, "T": 30}],
    },
    "Guitarix-FuzzFace": {
        "uri": GX + "gx_fuzzface_#_fuzzface_", "category": "fuzz", "model_of": "Dallas Arbiter Fuzz Face",
        "knobs": {"F": ("FUZZ", "FUZZ", 0.0, 1.0)},
        "fixed": {"LEVEL": 0.5}, "latency": 0,  # LEVEL barely changes the level: default
        "settings": [{"F": 0}, {"F": 25}, {"F": 50}, {"F": 75}, {"F": 100}],
    },
    "Guitarix-Compressor": {
        "uri": GX + "gx_compressor#_compressor", "category": "compressor", "model_of": "Guitarix compressor",
        "knobs": {"R": ("RATIO", "RATIO", 1.0, 20.0), "T": ("THRESHOLD", "THRESHOLD", -96.0, 10.0),
                  "A": ("ATTACK", "ATTACK", 0.0, 1.0)},
        "fixed": {"KNEE": 3.0, "RELEASE": 0.5, "BYPASS": 1.0}, "latency": 0,
        "settings": [{"T": 60, "R": 0, "A": 5}, {"T": 50, "R": 25, "A": 1}, {"T": 60, "R": 50, "A": 10},
                     {"T": 70, "R": 100, "A": 0}, {"T": 40, "R": 75, "A": 100}],
    },
}


# ==============================================================================================
# Standard MIDI File writer (type 0, one track)
# ==============================================================================================
def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def smf_bytes(programs: dict[int, int], events: list, end_beats: float) -> bytes:
    def tick(beats: float) -> int:
        return round(beats * PPQ)

    msgs = [(0, 0, b"\xff\x51\x03" + (60_000_000 // TEMPO_BPM).to_bytes(3, "big"))]
    for ch, prog in sorted(programs.items()):
        msgs.append((0, 1, bytes([0xC0 | ch, prog])))
    for ch, start, dur, pitch, vel in events:
        assert 0 < vel < 128 and 0 <= pitch < 128 and dur > 0 and ch in programs
        msgs.append((tick(start), 3, bytes([0x90 | ch, pitch, vel])))
        msgs.append((tick(start + dur), 2, bytes([0x80 | ch, pitch, 0])))  # offs before ons
    msgs.sort(key=lambda m: (m[0], m[1], m[2]))
    end = tick(end_beats)
    assert msgs[-1][0] <= end, "a note ends after the passage"
    track, now = bytearray(), 0
    for t, _, data in msgs:
        track += _vlq(t - now) + data
        now = t
    track += _vlq(end - now) + b"\xff\x2f\x00"
    return (b"MThd" + struct.pack(">IHHH", 6, 0, 1, PPQ)
            + b"MTrk" + struct.pack(">I", len(track)) + bytes(track))


def write_midi(midi_dir: Path) -> None:
    midi_dir.mkdir(parents=True, exist_ok=True)
    for stem, (compose, seconds) in PASSAGES.items():
        programs, events = compose()
        (midi_dir / f"{stem}.mid").write_bytes(smf_bytes(programs, events, seconds * TEMPO_BPM / 60))
        print(f"wrote {midi_dir / stem}.mid")


# ==============================================================================================
# helpers
# ==============================================================================================
def die(msg: str) -> None:
    sys.exit(f"make_dataset: ERROR: {msg}")


def run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if r.returncode != 0:
        die(f"command failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")


def to_int16(x: np.ndarray) -> np.ndarray:
    """Float in [-1, 1) -> int16 with the same 1/32768 scale soundfile uses when reading."""
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def write_flac(path: Path, x: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), to_int16(x), SR, format="FLAC", subtype="PCM_16")


def read_mono(data, name: str) -> np.ndarray:
    x, sr = sf.read(data, dtype="float64", always_2d=True)
    if sr != SR:
        die(f"{name}: sample rate {sr}, expected {SR}")
    return x.mean(axis=1)


def fade(x: np.ndarray, n_in: int, n_out: int) -> np.ndarray:
    x = x.copy()
    if n_in:
        x[:n_in] *= 0.5 - 0.5 * np.cos(np.pi * np.arange(n_in) / n_in)
    if n_out:
        x[-n_out:] *= 0.5 + 0.5 * np.cos(np.pi * (np.arange(n_out) + 1) / n_out)
    return x


def normalise(x: np.ndarray, name: str) -> np.ndarray:
    peak = np.max(np.abs(x))
    if not peak > 1e-4:
        die(f"{name}: source is silent")
    return x * (PEAK / peak)


def n_segments(n: int) -> int:
    return max(1, int(np.ceil(n / (SEGMENT_S * SR))))


def split_gains(split: str, lengths: list[int]) -> list[list[float]]:
    """Gains (dB) for all SEGMENT_S segments of the files of one split: stratified over
    GAIN_RANGE_DB (one draw per equal-width stratum, strata shuffled), so that even a split with
    few segments covers loud and quiet levels; fixed seed."""
    counts = [n_segments(n) for n in lengths]
    k = sum(counts)
    rng = np.random.default_rng([SEED, zlib.crc32(split.encode())])
    edges = np.linspace(*GAIN_RANGE_DB, k + 1)
    draws = np.round(edges[:-1] + rng.uniform(size=k) * np.diff(edges), 2)[rng.permutation(k)]
    out, i = [], 0
    for c in counts:
        out.append([float(g) for g in draws[i: i + c]])
        i += c
    return out


def gain_curve(n: int, gains_db: list[float]) -> np.ndarray:
    """Piecewise-constant gain per SEGMENT_S with linear RAMP_S ramps (in dB) at the joins."""
    seg = int(SEGMENT_S * SR)
    db = np.repeat(np.asarray(gains_db), seg)[:n]
    ramp = int(RAMP_S * SR)
    for k in range(1, len(gains_db)):
        a, b = k * seg - ramp // 2, k * seg + ramp // 2
        db[a:b] = np.linspace(gains_db[k - 1], gains_db[k], b - a)
    return 10.0 ** (db / 20.0)


def add_markers(content: np.ndarray) -> np.ndarray:
    x = np.concatenate([np.zeros(MARGIN), content, np.zeros(MARGIN)])
    for i in HEAD_IMPULSES:
        x[i] = IMPULSE_AMP
    for i in TAIL_IMPULSES:
        x[len(x) - i] = IMPULSE_AMP
    return x


def gcc_phat(dry: np.ndarray, wet: np.ndarray) -> tuple[int, float]:
    """Dry->wet lag in samples (> 0: wet later) from the phase-transform cross-correlation
    (GCC-PHAT), and the sign of its peak.  Unlike the plain
    cross-correlation, whose peak the devices' filters move by tens of samples on bass-heavy
    material, its peak sits at the dominant tap of the device's (linearised) impulse response."""
    n = 1 << int(np.ceil(np.log2(len(dry) + len(wet))))
    cross = np.fft.rfft(wet, n) * np.conj(np.fft.rfft(dry, n))
    mag = np.abs(cross)
    c = np.fft.irfft(cross / (mag + 1e-12 * mag.max()), n)
    c = np.concatenate([c[-MAX_LAG:], c[: MAX_LAG + 1]])
    k = int(np.argmax(np.abs(c)))
    return k - MAX_LAG, float(np.sign(c[k]))


def corr_at(dry: np.ndarray, wet: np.ndarray, lag: int) -> float:
    """Normalised dry/wet correlation with the wet shifted back by ``lag``."""
    d, w = (dry[: len(dry) - lag], wet[lag:]) if lag >= 0 else (dry[-lag:], wet[: len(wet) + lag])
    return float(np.dot(d, w) / (np.sqrt(np.dot(d, d) * np.dot(w, w)) + 1e-30))


def impulse_check(wet: np.ndarray) -> tuple[float, float, float, int]:
    """Response to the first head sync impulse (silence before it).  Returns, relative to the
    response peak within 20 ms: the largest level more than 32 samples before the impulse, in
    the 32 samples before it (a resampler's pre-ringing), and at the impulse (samples 0 and 1);
    and the sign of the immediate response (-1: the device inverts polarity)."""
    at = HEAD_IMPULSES[0]
    peak = np.max(np.abs(wet[at: at + SR // 50])) + 1e-30
    far = np.max(np.abs(wet[: at - 32])) / peak
    near = np.max(np.abs(wet[at - 32: at])) / peak
    first = wet[at: at + 2]
    start = np.max(np.abs(first)) / peak
    return float(far), float(near), float(start), int(np.sign(first[np.argmax(np.abs(first))]))


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# ==============================================================================================
# dry material
# ==============================================================================================
def load_guitarsounds(path: Path) -> dict[str, tuple[np.ndarray, str]]:
    """Return {note name: (mono float signal, sha256 of the wav)} from the sdist or a folder."""
    wanted = {n for names in ACOUSTIC_SPLIT.values() for n in names}
    found: dict[str, tuple[np.ndarray, str]] = {}
    if path.is_file():
        with tarfile.open(path) as tar:
            for m in tar.getmembers():
                stem = Path(m.name).stem
                if m.isfile() and m.name.endswith(".wav") and "/example_sounds/" in m.name and stem in wanted:
                    data = tar.extractfile(m).read()
                    found[stem] = (read_mono(io.BytesIO(data), m.name), sha256(data))
    elif path.is_dir():
        for f in sorted(path.rglob("*.wav")):
            if f.stem in wanted:
                data = f.read_bytes()
                found[f.stem] = (read_mono(io.BytesIO(data), str(f)), sha256(data))
    missing = sorted(wanted - set(found))
    if missing:
        die(f"guitarsounds recordings not found in {path}: {missing}")
    return found


def acoustic_content(notes: dict, names: tuple[str, ...]) -> np.ndarray:
    n = int(ACOUSTIC_NOTE_S * SR)
    parts = []
    for name in names:
        x, _ = notes[name]
        a = np.abs(x)
        onset = max(0, int(np.argmax(a >= 0.2 * a.max())) - int(0.005 * SR))
        seg = x[onset: onset + n]
        if len(seg) < n:
            die(f"{name}: shorter than {ACOUSTIC_NOTE_S} s after its onset")
        parts.append(fade(normalise(seg, name), int(0.002 * SR), int(0.08 * SR)))
    return np.concatenate(parts)


def midi_content(stem: str, sf2: str, tmp: Path) -> np.ndarray:
    mid = MIDI_DIR / f"{stem}.mid"
    if not mid.is_file():
        die(f"{mid} missing (run with --write-midi)")
    programs, events = PASSAGES[stem][0]()
    if mid.read_bytes() != smf_bytes(programs, events, PASSAGES[stem][1] * TEMPO_BPM / 60):
        die(f"{mid} differs from the passage defined in this script (run with --write-midi)")
    wav = tmp / f"{stem}.fluid.wav"
    run(["fluidsynth", "-ni", "-q", "-g", str(FLUID_GAIN), "-r", str(SR), "-R", "0", "-C", "0",
         "-T", "wav", "-O", "float", "-F", str(wav), sf2, str(mid)])
    x = read_mono(str(wav), str(wav))
    n = round(PASSAGES[stem][1] * SR)
    x = np.concatenate([x, np.zeros(max(0, n - len(x)))])[:n]
    return fade(normalise(x, stem), 0, int(0.02 * SR))


def build_dry(out: Path, gs_path: Path, sf2: str, tmp: Path) -> dict:
    notes = load_guitarsounds(gs_path)
    meta: dict = {}
    for split, files in DRY_FILES.items():
        meta[split] = {}
        contents, sources = [], []
        for _name, kind, src in files:
            if kind == "midi":
                contents.append(midi_content(src, sf2, tmp))
                programs, _ = PASSAGES[src][0]()
                sources.append({"type": "fluidsynth", "midi": f"scripts/dataset/midi/{src}.mid",
                                "soundfont": Path(sf2).name, "fluidsynth_gain": FLUID_GAIN,
                                "gm_programs": {str(p): GM[p] for p in sorted(programs.values())}})
            else:
                contents.append(acoustic_content(notes, ACOUSTIC_SPLIT[src]))
                sources.append({"type": "recording", "package": GS_NAME, "url": GS_URL, "licence": "MIT",
                                "note_seconds": ACOUSTIC_NOTE_S,
                                "notes": {k: f"sha256:{notes[k][1]}" for k in ACOUSTIC_SPLIT[src]}})
        gains = split_gains(split, [len(c) for c in contents])
        for (name, _, _), content, source, gains_db in zip(files, contents, sources, gains):
            x = add_markers(content * gain_curve(len(content), gains_db))
            write_flac(out / "DRY-with-markers" / split / f"{name}.input.flac", x)
            meta[split][name] = {
                "file": f"DRY-with-markers/{split}/{name}.input.flac",
                "num_samples": len(x), "duration_s": round(len(x) / SR, 4),
                "content": [MARGIN, len(x) - MARGIN], "segment_gains_db": gains_db, "source": source,
            }
    return meta


# ==============================================================================================
# wet material
# ==============================================================================================
def knob_code(device: dict, setting: dict) -> str:
    return "_".join(f"{k}{setting[k]:03d}" for k in device["knobs"])


def port_values(device: dict, setting: dict) -> dict[str, float]:
    vals = dict(device["fixed"])
    for k, (_, port, lo, hi) in device["knobs"].items():
        vals[port] = round(lo + (hi - lo) * setting[k] / 100.0, 6)
    return vals


def lv2_render(uri: str, ports: dict[str, float], dry: np.ndarray, latency: int, tmp: Path,
               tag: str) -> np.ndarray:
    """Render ``dry`` through the plugin with LEAD_IN silent samples before it (trimmed) and
    TAIL_PAD after it; drop ``latency`` samples so that the result is aligned with ``dry``."""
    src, dst = tmp / f"{tag}.in.wav", tmp / f"{tag}.out.wav"
    x = np.concatenate([np.zeros(LEAD_IN), dry, np.zeros(TAIL_PAD)]).astype(np.float32)
    sf.write(str(src), x, SR, subtype="FLOAT")
    cmd = ["lv2file", "-i", str(src), "-o", str(dst), "-b", str(BLOCK), "--ignore-clipping"]
    for port, v in ports.items():
        cmd += ["-p", f"{port}:{v!r}"]
    run(cmd + [uri])
    y, sr = sf.read(str(dst), dtype="float64", always_2d=True)
    src.unlink()
    dst.unlink()
    if sr != SR or y.shape[1] != 1 or len(y) != len(x):
        die(f"{tag}: lv2file returned {y.shape} at {sr} Hz")
    if not np.all(np.isfinite(y)):
        die(f"{tag}: non-finite output")
    return y[LEAD_IN + latency: LEAD_IN + latency + len(dry), 0]


def build_wet(out: Path, dry_meta: dict, tmp: Path, jobs: int) -> dict:
    dry = {(s, n): sf.read(str(out / m["file"]), dtype="float64")[0]
           for s, files in dry_meta.items() for n, m in files.items()}
    meta = {}
    for dev_name, dev in DEVICES.items():
        tasks = [(knob_code(dev, st), st, s, n) for st in dev["settings"] for (s, n) in dry]
        codes = [knob_code(dev, st) for st in dev["settings"]]
        if len(set(codes)) != len(codes):
            die(f"{dev_name}: duplicate knob codes")

        def work(t, dev=dev, dev_name=dev_name):
            code, st, s, n = t
            return lv2_render(dev["uri"], port_values(dev, st), dry[(s, n)], dev["latency"], tmp,
                              f"{dev_name}.{code}.{s}.{n}")

        with ThreadPoolExecutor(max_workers=jobs) as ex:
            wets = list(ex.map(work, tasks))
        peak = max(np.max(np.abs(w)) for w in wets)
        gain_db = 0.0
        if peak > CLIP_LIMIT:  # one fixed gain per device, in 0.5 dB steps
            gain_db = -float(np.ceil(2 * 20 * np.log10(peak / CLIP_LIMIT)) / 2)
        g = 10 ** (gain_db / 20)
        renders, polarity = [], []
        for (code, _st, s, n), w in zip(tasks, wets):
            w = w * g
            d = dry[(s, n)]
            where = f"{dev_name}/{s}/{code}/{n}"
            # alignment 1: the response to the first sync impulse starts at the impulse
            far, near, start, sign = impulse_check(w)
            # alignment 2: GCC-PHAT lag over the music (0 = aligned; a few samples = filter delay)
            c0, c1 = dry_meta[s][n]["content"]
            lag, _ = gcc_phat(d[c0:c1], w[c0:c1])
            corr = corr_at(d[c0:c1], w[c0:c1], 0)
            rms = float(np.sqrt(np.mean(w[c0:c1] ** 2)))
            wpeak = float(np.max(np.abs(w)))
            if not (far <= 1e-3 and near <= 0.25 and start >= 0.05):
                die(f"{where}: sync-impulse response misplaced (before/near/at = {far:.2g}/{near:.2g}/{start:.2g})")
            if not 0 <= lag <= MAX_FILTER_LAG:
                die(f"{where}: dry->wet GCC-PHAT lag {lag}, expected 0..{MAX_FILTER_LAG}")
            if rms < SILENCE_RMS:
                die(f"{where}: render is silent (rms {rms:.2e})")
            if wpeak > CLIP_LIMIT:
                die(f"{where}: peak {wpeak:.3f} after the device gain")
            rel = f"{dev_name}/{s}/{code}/{code}.{n}.target.flac"
            write_flac(out / rel, w)
            polarity.append(sign)
            renders.append({"file": rel, "split": s, "dry": n, "code": code, "lag": lag, "polarity": int(sign),
                            "corr_lag0": round(corr, 4), "impulse_pre": round(near, 4),
                            "impulse_at": round(start, 4), "peak": round(wpeak, 4), "rms": round(rms, 5)})
        inverts = bool(np.mean(polarity) < 0)
        if abs(np.mean(polarity)) != 1:
            die(f"{dev_name}: the sync-impulse response changes sign between renders")
        if (sum(r["corr_lag0"] for r in renders) < 0) != inverts:
            die(f"{dev_name}: the music correlation disagrees with the impulse polarity")
        meta[dev_name] = {
            "plugin_uri": dev["uri"], "category": dev["category"], "model_of": dev["model_of"],
            "knob_order": list(dev["knobs"]), "main_knob": next(iter(dev["knobs"])),
            "knobs": {k: {"name": name, "port": port, "port_min": lo, "port_max": hi, "mapping": "linear"}
                      for k, (name, port, lo, hi) in dev["knobs"].items()},
            "fixed_ports": dev["fixed"],
            "settings": [{"code": knob_code(dev, st),
                          "values": {k: st[k] / 100.0 for k in dev["knobs"]},
                          "ports": port_values(dev, st)} for st in dev["settings"]],
            "latency_compensation_samples": dev["latency"],
            "output_gain_db": gain_db, "peak_before_gain": round(float(peak), 4),
            "inverts_polarity": inverts, "renders": renders,
        }
        print(f"{dev_name}: {len(tasks)} renders, raw peak {peak:.3f}, output gain {gain_db} dB, "
              f"inverts polarity: {inverts}")
    return meta


def check_plugin_ranges(lv2_dir: Path = Path("/usr/lib/lv2")) -> None:
    """Check the knob ranges above against the control-port ranges in the installed TTL files."""
    ranges: dict[tuple[str, str], tuple[float, float]] = {}  # (bundle, symbol) -> (min, max)
    for ttl in lv2_dir.glob("gx*.lv2/*.ttl"):
        bundle = ttl.parent.name.removesuffix(".lv2")
        for m in re.finditer(r'lv2:symbol\s+"([^"]+)"(.*?)\]', ttl.read_text(errors="replace"), re.DOTALL):
            lo = re.search(r"lv2:minimum\s+([-+0-9.eE]+)", m.group(2))
            hi = re.search(r"lv2:maximum\s+([-+0-9.eE]+)", m.group(2))
            if lo and hi:
                ranges[(bundle, m.group(1))] = (float(lo.group(1)), float(hi.group(1)))
    for dev_name, dev in DEVICES.items():
        bundle = dev["uri"].removeprefix(GX).split("#")[0].rstrip("_")
        for _, port, lo, hi in dev["knobs"].values():
            found = ranges.get((bundle, port))
            if found is None:
                die(f"{dev_name}: port {port} not found in {lv2_dir}/{bundle}.lv2/*.ttl")
            if found != (lo, hi):
                die(f"{dev_name}: port {port} spans {found} in the plugin's TTL, this script assumes {(lo, hi)}")


DATA_README = """\
# {name}

A small dataset in the public ToneTwist AFx layout, generated by
`scripts/dataset/make_dataset.py` (see `scripts/dataset/README.md`). All audio is 48 kHz mono
16-bit FLAC. `metadata.json` lists every file, the sync-impulse positions, the dry sources,
and per device the plugin, knob codes, knob-to-port mapping and fixed ports.

- `DRY-with-markers/{{trainval,test}}/<file>.input.flac`: dry input, two impulses (amplitude
  {amp}) at samples {head} from the start and two at {tail} samples before the end;
  music between sample {margin} and len-{margin}. The split is by file (no shared audio).
- `<Device>/{{trainval,test}}/<KNOBS>/<KNOBS>.<file>.target.flac`: the dry file processed by a
  Guitarix LV2 plugin (hosted by `lv2file`). Knob code = letter + knob position 000..100 on the
  0-10 scale x10 (value/100 in [0, 1]); the output-level port is fixed and not encoded.
  Dry and wet are sample-aligned: each device's response to the first sync impulse starts at
  the impulse (checked for every render); the GCC-PHAT dry->wet lag, recorded per render in
  `metadata.json`, is 0-3 samples (the dominant tap of the device's filters). The DS-1 plugin
  runs at 96 kHz internally; its 32-sample resampler delay is removed (a hardware pedal has
  none), which leaves the resampler's small pre-ringing just before each attack.
  `Guitarix-FuzzFace` inverts polarity, as the modelled circuit does.

## Provenance and licences
- Synthetic DI guitar/bass: MIDI parts written for this project
  (`scripts/dataset/midi/*.mid`), rendered by FluidSynth with FluidR3_GM.sf2
  (Debian `fluid-soundfont-gm`, MIT licence, (c) Frank Wen).
- Acoustic-guitar single notes: `guitarsounds` 1.2.0 sdist (PyPI), `example_sounds/`,
  MIT licence, (c) 2021 Olivier Chabot, Ecole de Lutherie Bruant.
- Effect renders: Guitarix LV2 plugins (Debian `guitarix-lv2`, GPL), hosted by `lv2file` (GPL).
- Level variation: per-item peak normalisation, then a random gain per {seg:g} s segment in
  [{glo:g}, {ghi:g}] dB (seed {seed}).
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("data"))
    ap.add_argument("--guitarsounds", type=Path,
                    help="guitarsounds-1.2.0.tar.gz (pip download --no-deps --no-binary :all: "
                         "guitarsounds==1.2.0) or a folder containing its example_sounds wavs")
    ap.add_argument("--soundfont", default=DEFAULT_SF2)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--write-midi", action="store_true", help="(re)write the MIDI files and exit")
    args = ap.parse_args()

    if args.write_midi:
        write_midi(MIDI_DIR)
        return
    if args.guitarsounds is None:
        ap.error("--guitarsounds is required")
    for tool in ("fluidsynth", "lv2file"):
        if shutil.which(tool) is None:
            die(f"`{tool}` not found (apt-get install fluidsynth lv2file guitarix-lv2 fluid-soundfont-gm)")
    if not Path(args.soundfont).is_file():
        die(f"soundfont {args.soundfont} not found")
    check_plugin_ranges()

    out: Path = args.out
    managed = ["DRY-with-markers", *DEVICES, "metadata.json", "README.md"]
    for name in managed:  # start clean, but only touch what this script writes
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="nablafx-dataset-") as t:
        tmp = Path(t)
        dry_meta = build_dry(out, args.guitarsounds, args.soundfont, tmp)
        wet_meta = build_wet(out, dry_meta, tmp, args.jobs)

    meta = {
        "dataset": DATASET_NAME,
        "layout": "ToneTwist AFx",
        "generator": "scripts/dataset/make_dataset.py",
        "sample_rate": SR, "channels": 1, "format": "FLAC", "subtype": "PCM_16",
        "seed": SEED,
        "sync_impulses": {
            "amplitude": IMPULSE_AMP,
            "start": list(HEAD_IMPULSES),
            "end_from_file_end": list(TAIL_IMPULSES),
            "note": "start: sample indices from the file start; end_from_file_end: index = num_samples - value; "
                    "musical content lies in [content[0], content[1]) of each dry file",
        },
        "level_variation": {"segment_s": SEGMENT_S, "gain_range_db": list(GAIN_RANGE_DB), "ramp_s": RAMP_S,
                            "peak_normalisation": PEAK},
        "render": {"host": "lv2file", "block_size": BLOCK, "lead_in_samples_trimmed": LEAD_IN,
                   "knob_code": "letter + position 000..100 (0-10 scale x10); value = position/100; "
                                "port = port_min + value * (port_max - port_min); output level fixed",
                   "render_fields": {
                       "lag": "dry->wet lag in samples from GCC-PHAT over the music (> 0: wet later)",
                       "corr_lag0": "normalised dry/wet correlation at lag 0 (< 0: inverted)",
                       "impulse_pre": "largest |wet| in the 32 samples before the first sync impulse, "
                                      "relative to the response peak",
                       "impulse_at": "largest |wet| at the impulse (samples 0-1), relative to the peak",
                       "polarity": "sign of the immediate response to the sync impulse",
                       "peak": "max |wet| over the file", "rms": "wet RMS over the music"}},
        "dry": dry_meta,
        "devices": wet_meta,
    }
    (out / "metadata.json").write_text(json.dumps(meta, indent=1) + "\n")
    (out / "README.md").write_text(DATA_README.format(
        name=DATASET_NAME, amp=IMPULSE_AMP, head=list(HEAD_IMPULSES), tail=list(TAIL_IMPULSES),
        margin=MARGIN, seg=SEGMENT_S, glo=GAIN_RANGE_DB[0], ghi=GAIN_RANGE_DB[1], seed=SEED))
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"done: {out} holds {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
