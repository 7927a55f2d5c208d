"""Random device trees with random defects (hypothesis, derandomised: the same examples every run).

The property: :func:`prepare_device` either returns a consistent index (``fuzzkit.check_index``)
or raises :class:`DatasetError` with a one-line message that starts with an existing path under
the root — never another exception type (a ``LibsndfileError``, ``IndexError``, ``ValueError``
from numpy …), which would escape the stages' one-line error handling with a traceback.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nablafx.data.audio import DatasetError
from nablafx.data.prepare import prepare_device

from . import fuzzkit as fk

NAMES = ["guitar", "bass take", "ñandú", "x.1", "Übung 2"]


def _audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()
                  and p.suffix in (".wav", ".flac"))


def _targets(root: Path) -> list[Path]:
    return [p for p in _audio_files(root) if p.name.endswith((".target.wav", ".target.flac"))]


def _pick(files: list[Path], k: int) -> Path | None:
    return files[k % len(files)] if files else None


def _rewrite(p: Path | None, fn, **kw):
    """Replace ``p``'s audio by ``fn(audio)``; a file an earlier defect made unreadable stays as it is."""
    if p is None:
        return
    try:
        info = sf.info(str(p))
        data = fn(fk.read(p))
    except (sf.LibsndfileError, RuntimeError):
        return
    fk.write(p, data, kw.get("sr", fk.SR), kw.get("subtype", info.subtype))


def d_truncate(root, k):
    p = _pick(_audio_files(root), k)
    fk.cut_bytes(p, 0.2 + (k % 70) / 100)


def d_corrupt(root, k):
    p = _pick(_audio_files(root), k)
    fk.xor_bytes(p, (k % 97) / 100, 16 + k % 300)


def d_header_lie(root, k):
    p = _pick([f for f in _audio_files(root) if f.suffix == ".wav"], k)
    if p is not None:
        fk.set_wav_data_size(p, (0.5, 0.9, 1.1, 2.0)[k % 4])


def d_rate(root, k):
    _rewrite(_pick(_audio_files(root), k), lambda x: x, sr=(8000, 44100, 48000)[k % 3])


def d_stereo(root, k):
    _rewrite(_pick(_audio_files(root), k), lambda x: np.stack([x, x[::-1]], 1))


def d_depth(root, k):
    p = _pick(_audio_files(root), k)
    subs = ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE") if p.suffix == ".wav" else ("PCM_S8", "PCM_16", "PCM_24")
    _rewrite(p, lambda x: np.clip(x, -1, 1), subtype=subs[k % len(subs)])


def d_nonfinite(root, k):
    def f(x):
        x[k % len(x)] = (np.nan, np.inf, -np.inf)[k % 3]
        return x
    _rewrite(_pick([p for p in _audio_files(root) if p.suffix == ".wav"], k), f, subtype="FLOAT")  # FLAC holds no NaN


def d_silence(root, k):
    _rewrite(_pick(_audio_files(root), k), lambda x: x * (0.0, 1e-7)[k % 2])


def d_clip(root, k):
    _rewrite(_pick(_audio_files(root), k), lambda x: np.clip(x * (2, 20, 200)[k % 3], -1, 1), subtype="PCM_16")


def d_length(root, k):
    _rewrite(_pick(_audio_files(root), k), lambda x: x[: -(1 + k % 500)] if k % 2 else np.concatenate([x, x[:1 + k % 500]]))


def d_shift(root, k):
    s = 1 + k % 60
    _rewrite(_pick(_targets(root), k), lambda x: np.concatenate([np.zeros(s), x[:-s]]))


def d_gain_noise(root, k):
    rng = np.random.default_rng(k)
    _rewrite(_pick(_targets(root), k), lambda x: (0.1 + k % 3) * x + 1e-3 * (k % 5) * rng.standard_normal(len(x)))


def d_mute(root, k):
    def f(x):
        a = k % len(x)
        x[a: a + len(x) // (1 + k % 4)] = 0
        return x
    _rewrite(_pick(_targets(root), k), f)


def d_swap(root, k):
    t = _pick(_targets(root), k)
    split = t.relative_to(root).parts[1]
    name = t.name.split(".", 1)[1].rsplit(".target", 1)[0] if t.parent.name != split else t.name.rsplit(".target", 1)[0]
    d = next((p for p in (root / fk.DRY / split).glob(f"{name}.input.*")), None)
    if d is not None:
        tmp = d.with_name("swap-tmp")
        d.rename(tmp)
        t.rename(d.with_suffix(t.suffix) if d.suffix == t.suffix else d)
        tmp.rename(t)


def d_rename_code(root, k):
    t = _pick(_targets(root), k)
    code = ("D150_T000", "d050_T050", "T050_D050", "D050", "D050_T050_V010", "X", "")[k % 7]
    rest = t.name.split(".", 1)[1]
    new_dir = t.parent if k % 2 else t.parent.with_name(code or "nocode")
    new_dir.mkdir(exist_ok=True)
    t.rename(new_dir / (f"{code}.{rest}" if code else rest))


def d_delete(root, k):
    _pick(_audio_files(root), k).unlink()


def d_empty_folder(root, k):
    t = _pick(_targets(root), k)
    for f in t.parent.iterdir():
        f.unlink()


def d_junk(root, k):
    folders = sorted({p.parent for p in _audio_files(root)})
    f = _pick(folders, k)
    name, data = [("README.txt", b"hi\n"), (".DS_Store", b"\0\1"), ("take.wav", None), ("x.target.mp3", b"ID3"),
                  ("._x.target.wav", b"\0\5\26\7"), ("sub", "dir"), ("y.input.ogg", b"OggS")][k % 7]
    if data == "dir":
        (f / name).mkdir(exist_ok=True)
    elif data is None:
        fk.write(f / name, np.zeros(64))
    else:
        (f / name).write_bytes(data)


def d_symlink(root, k):
    p = _pick(_audio_files(root), k)
    p.unlink()
    os.symlink(p.name if k % 2 else "missing/x.wav", p)


def d_duplicate(root, k):
    files = _audio_files(root)
    a, b = _pick(files, k), _pick(files, k // 7 + 1)
    if a != b and a.suffix == b.suffix:
        shutil.copy(a, b)


def d_rename_passage(root, k):
    new = NAMES[k % len(NAMES)] + " ü"
    old = _pick(_audio_files(root), k).name
    old_name = old.split(".")[1] if ".target." in old else old.split(".input")[0]
    for p in sorted(root.rglob("*")):
        if p.is_file() and old_name in p.name and not p.is_symlink():
            p.rename(p.with_name(p.name.replace(old_name, new)))


DEFECTS = {f.__name__: f for f in (d_truncate, d_corrupt, d_header_lie, d_rate, d_stereo, d_depth, d_nonfinite,
                                   d_silence, d_clip, d_length, d_shift, d_gain_noise, d_mute, d_swap, d_rename_code,
                                   d_delete, d_empty_folder, d_junk, d_symlink, d_duplicate, d_rename_passage)}


@st.composite
def trees(draw, first: str | None = None, min_defects: int = 0, max_defects: int = 3):
    """``(codes, passages, ext, defects)``: 1–3 knob settings, 1–2 passages (spaces, non-ASCII, dots),
    WAV or FLAC, and defects ``(name, k)`` applied in order (``first`` forced in front)."""
    n_settings = draw(st.integers(1, 3))
    codes = draw(st.lists(st.tuples(st.integers(0, 10), st.integers(0, 10)), min_size=n_settings,
                          max_size=n_settings, unique=True))
    passages = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=2, unique=True))
    ext = draw(st.sampled_from([".wav", ".flac"]))
    seeds = st.integers(0, 10**6)
    defects = draw(st.lists(st.tuples(st.sampled_from(sorted(DEFECTS)), seeds), min_size=min_defects, max_size=max_defects))
    if first is not None:
        defects = [(first, draw(seeds))] + defects
    return [f"D{d * 10:03d}_T{t * 10:03d}" for d, t in codes], passages, ext, defects


def _named_path(msg: str, root: Path) -> Path | None:
    """The longest prefix of ``msg`` before a ": " that is an existing path under ``root``."""
    best = None
    for i in range(len(msg)):
        if msg.startswith(": ", i):
            p = Path(msg[:i])
            if os.path.lexists(p) and p.is_relative_to(root):
                best = p
    return best


def check_property(spec) -> str:
    """Build the tree, inflict the defects, prepare; return "ok" or the error (the property holds)."""
    codes, passages, ext, defects = spec
    with tempfile.TemporaryDirectory() as tmp:
        root = fk.make_tree(Path(tmp) / "data", settings=codes, passages=passages, ext=ext)
        for name, k in defects:
            if _audio_files(root):
                DEFECTS[name](root, k)
        try:
            index = prepare_device(root, **fk.ARGS)
        except DatasetError as err:  # anything else fails the test with its traceback
            msg = str(err)
            assert "\n" not in msg and msg.strip() == msg
            named = _named_path(msg, root)
            assert named is not None, f"{defects}: {msg}"
            return msg[len(str(named)) + 2:]
        fk.check_index(index, root)
        if not defects:
            assert index["warnings"] == []
        return "ok"


def _holds(spec) -> None:
    check_property(spec)


SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_each_defect_class_on_random_trees(defect):
    """Every class at least 3 times, on random trees, with up to 2 random defects after it."""
    settings(max_examples=3, **SETTINGS)(given(trees(first=defect, max_defects=2))(_holds))()


@settings(max_examples=30, **SETTINGS)
@given(trees(min_defects=1, max_defects=4))
def test_random_defect_mixtures(spec):
    check_property(spec)


def test_good_random_trees_prepare_cleanly():
    settings(max_examples=5, **SETTINGS)(given(trees(max_defects=0))(_holds))()
