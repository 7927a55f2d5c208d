"""Someone else's data: a table of crafted defects over the ToneTwist layout.

Each case mutates a good tree (``fuzzkit.make_tree``) and ends in exactly one of:

* ``error``: :func:`prepare_device` raises a one-line :class:`DatasetError` that starts with the
  offending file or folder (an existing path under the root) and matches the case's pattern,
  which says what is wrong and how to fix it;
* ``ok``: prepare succeeds with a consistent index, and the case's own assertions check the
  documented handling (a 24-bit file read as is, a README ignored and listed, a warning written).

The classes are listed in docs/dataset-checks.md with the rule each one follows.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from nablafx.data.audio import DatasetError
from nablafx.data.prepare import prepare_device

from . import fuzzkit as fk
from .fuzzkit import SR, dry_path, target

CASES: dict[str, tuple] = {}


def error(match: str):
    def deco(fn):
        CASES[fn.__name__] = (fn, "error", match)
        return fn
    return deco


def ok(check=None):
    def deco(fn):
        CASES[fn.__name__] = (fn, "ok", check)
        return fn
    return deco


def warned(pattern: str):
    """An ``ok`` check: some warning matches ``pattern`` (and names a path under the root)."""
    def check(index, root, named):
        hits = [w for w in index["warnings"] if re.search(pattern, w)]
        assert hits, index["warnings"]
        assert any(w.startswith(str(named)) for w in hits), (named, hits)
    return check


def no_warnings(index, root, named):
    assert index["warnings"] == []


# --- reading: truncated, corrupt, lying headers ------------------------------------------------

@error(r"truncated or corrupt audio \(flac decoder lost sync\); re-export or re-download it")
def truncated_flac(root):
    return fk.cut_bytes(fk.to_flac(target(root)), 0.6)


@error(r"truncated or corrupt audio .*re-export")
def corrupt_flac_frames(root):
    return fk.xor_bytes(fk.to_flac(target(root)), 0.5, 200)


@error(r"unreadable audio \(Format not recognised\)")
def corrupt_flac_header(root):
    return fk.xor_bytes(fk.to_flac(target(root)), 0.0, 8)


@error(r"truncated: the header declares \d+ samples, the file holds \d+")
def truncated_wav(root):
    return fk.cut_bytes(target(root), 0.7)


@error(r"truncated or corrupt|truncated: the header declares")
def truncated_dry_flac(root):
    # the dry feeds every setting: the message names the dry, not a target
    for p in list((root / fk.DRY).rglob("*.wav")):
        fk.to_flac(p)
    return fk.cut_bytes(dry_path(root, ext=".flac"), 0.5)


@error(r"truncated: the header declares \d+ samples, the file holds \d+")
def wav_header_claims_more(root):
    return fk.set_wav_data_size(target(root), 1.5)


@error(r"the header declares \d+ samples but \d+ more bytes of audio follow .*lies about the length")
def wav_header_claims_less(root):
    return fk.set_wav_data_size(target(root), 0.5)


@ok(no_warnings)
def wav_header_unknown_length(root):
    """A streaming recorder's 0xFFFFFFFF data size: read to the end of the file, as libsndfile does."""
    p = target(root)
    raw = bytearray(p.read_bytes())
    i = raw.find(b"data")
    raw[i + 4: i + 8] = (0xFFFFFFFF).to_bytes(4, "little")
    p.write_bytes(bytes(raw))
    return p


@error(r"unreadable audio")
def corrupt_wav_fmt_chunk(root):
    return fk.xor_bytes(target(root), 0.0005, 24)


@error(r"sample 12000 \(0.750 s\) is 1e\+20, beyond ±16 \(\+24 dBFS\): corrupt float data")
def corrupt_float_wav_data(root):
    """Garbage bytes in a float WAV's data decode as valid floats; absurd ones are caught."""
    p = target(root)
    raw = bytearray(p.read_bytes())
    i = raw.find(b"data") + 8 + 4 * 12000
    raw[i: i + 4] = np.float32(1e20).tobytes()
    p.write_bytes(bytes(raw))
    return p


@error(r"beyond ±16 .*or audio stored unscaled")
def unscaled_float_dry(root):
    return fk.rewrite(dry_path(root), lambda x: x * 32768)


@error(r"unreadable audio .*not a WAV/FLAC file")
def zero_byte_file(root):
    p = target(root)
    p.write_bytes(b"")
    return p


@error(r"unreadable audio")
def text_named_wav(root):
    p = target(root)
    p.write_text("this is not audio\n")
    return p


@error(r"no samples \(empty audio file\)")
def header_only_wav(root):
    return fk.rewrite(target(root), lambda x: x[:0])


# --- format ----------------------------------------------------------------------------------

@error(r"44100 Hz, expected 16000 \(params data.sample_rate\): resample it")
def wrong_sample_rate(root):
    return fk.rewrite(target(root), lambda x: x, sr=44100)


@error(r"2 channels, expected 1 \(mono\).*export a mono file")
def stereo(root):
    return fk.rewrite(target(root), lambda x: np.stack([x, x], 1))


@error(r"2 channels, expected 1")
def stereo_dry(root):
    return fk.rewrite(dry_path(root), lambda x: np.stack([x, 0.5 * x], 1))


def _depth(subtype, ext):
    def mutate(root):
        for p in sorted(root.rglob("*.wav")):
            data = fk.read(p)
            out = p.with_suffix(ext)
            p.unlink()
            fk.write(out, data, subtype=subtype)
        return None
    return mutate


def _read_fine(subtype):
    def check(index, root, named):
        assert index["warnings"] == []
        assert index["splits"]["train"]["items"] == 3
        assert all(c["clipped_fraction"] == 0 for c in index["checks"])
    return check


for _sub, _ext in [("PCM_U8", ".wav"), ("PCM_16", ".wav"), ("PCM_24", ".wav"), ("PCM_32", ".wav"),
                   ("FLOAT", ".wav"), ("DOUBLE", ".wav"), ("PCM_S8", ".flac"), ("PCM_16", ".flac"), ("PCM_24", ".flac")]:
    CASES[f"depth_{_sub}_{_ext[1:]}"] = (_depth(_sub, _ext), "ok", _read_fine(_sub))


@ok(no_warnings)
def mixed_formats(root):
    """Dry as 16-bit FLAC, one target as 24-bit WAV, the others float: all read as float32."""
    for p in (root / fk.DRY).rglob("*.wav"):
        fk.to_flac(p)
    fk.rewrite(target(root), lambda x: x, subtype="PCM_24")
    return None


@ok(no_warnings)
def float_overs_are_not_clipping(root):
    """Float targets beyond ±1 (a hot float export) are not clipped: only flat runs at the extreme count."""
    for t in (root / fk.DEVICE).rglob("*.target.wav"):
        fk.rewrite(t, lambda x: x * 3.0)
    return None


@error(r"contains NaN or infinite samples \(first at sample 800")
def nan_sample(root):
    def f(x):
        x[800] = np.nan
        return x
    return fk.rewrite(target(root), f)


@error(r"contains NaN or infinite samples")
def inf_in_dry(root):
    def f(x):
        x[900] = np.inf
        return x
    return fk.rewrite(dry_path(root), f)


# --- levels: silence, clipping, mutes ----------------------------------------------------------

@error(r"silent \(RMS below 1e-05\): a failed render")
def silent_target(root):
    return fk.rewrite(target(root), lambda x: x * 0)


@error(r"silent \(RMS below 1e-05\)")
def silent_dry(root):
    return fk.rewrite(dry_path(root), lambda x: x * 0)


@error(r"only a DC offset \(\+0\.2; RMS without it below 1e-05\): no signal: a failed render or recording; re-record")
def dc_only_target(root):
    return fk.rewrite(target(root), lambda x: 0 * x + 0.2)


@error(r"only a DC offset \(-0\.05; RMS without it below 1e-05\): no signal: replace it with the dry recording")
def dc_only_dry(root):
    return fk.rewrite(dry_path(root), lambda x: 0 * x - 0.05 + 1e-7 * np.sign(np.sin(np.arange(len(x)))))


@error(r"silent \(below its loudest frame -60 dB\) for \d+(\.\d+)? % of its length: trim the silence")
def dry_silent_for_most_of_its_length(root):
    def f(x):
        x[int(0.5 * SR): -int(0.2 * SR)] = 0
        return x
    return fk.rewrite(dry_path(root), f)


@error(r"\d+(\.\d+)? % of samples at full scale \(clipped\): the recording overloaded; re-record")
def fully_clipped_target_int16(root):
    return fk.rewrite(fk.to_flac(target(root)), lambda x: np.sign(x) * (x != 0))


@error(r"% of samples at full scale \(clipped\): the recording overloaded")
def clipped_target_float(root):
    return fk.rewrite(target(root), lambda x: np.clip(40 * x, -1, 1))


@ok(warned(r"% of samples at full scale \(clipping in the target\)"))
def slightly_clipped_target(root):
    """The loudest peaks flattened at 16-bit full scale: reported, not refused."""
    return fk.rewrite(target(root), lambda x: np.clip(x / np.abs(x).max() * 1.01, -1, 1), subtype="PCM_16")


@error(r"% of samples at full scale \(clipped\): re-record the dry .*or, if this file is a device's output, "
       r"dry and target are swapped")
def clipped_dry(root):
    return fk.rewrite(dry_path(root), lambda x: np.clip(30 * x, -1, 1), subtype="PCM_16")


@error(r"muted \(60 dB below its usual level\) in \d+(\.\d+)? % of the time its dry plays: a failed render")
def target_drops_out(root):
    def f(x):
        x[int(0.6 * SR):] *= 1e-5
        return x
    return fk.rewrite(target(root), f)


@ok(warned(r"muted in \d+(\.\d+)? % of the time its dry plays \(a gate, or dropouts\)"))
def target_short_dropout(root):
    def f(x):
        x[int(0.6 * SR): int(0.9 * SR)] = 0
        return x
    return fk.rewrite(target(root), f)


@ok(warned(r"starts 0.\d+ s after its dry"))
def target_starts_late(root):
    """The recorder started late: leading silence is reported, and the markers it missed too."""
    def f(x):
        x[: int(0.2 * SR)] = 0
        return x
    return fk.rewrite(target(root), f)


# --- pairing: lengths, latency, drift, swap, consistency ---------------------------------------

@error(r"\d+ samples, dry guitar.input.wav has \d+: dry and wet must be sample-aligned")
def length_mismatch(root):
    return fk.rewrite(target(root), lambda x: x[:-10])


@error(r"dry→wet latency 31 samples exceeds data.max_latency_samples=4 \(re-align")
def latency(root):
    return fk.rewrite(target(root), lambda x: np.concatenate([np.zeros(30), x[:-30]]))


@error(r"the dry→wet lag drifts: 1 samples at 0.050 s, 9 at 1.850 s .*one clock")
def lag_drifts(root):
    """8 samples slipped late in the recording: the start answers 1 sample late (the low-pass), the end 9."""
    def f(x):
        i = int(1.6 * SR)
        return np.concatenate([x[:i], np.zeros(8), x[i:-8]])
    return fk.rewrite(target(root), f)


@error(r"dry and target look swapped: the target holds 4 isolated sync impulses .*swap the two files")
def dry_and_target_swapped(root):
    d, t = dry_path(root), target(root, code="D000_T050")
    tmp = d.with_name("tmp.wav")
    d.rename(tmp)
    t.rename(d)
    tmp.rename(t)
    return t


@ok(warned(r"not self-consistent: its answers to the identical dry segments at 0.050 s and 0.150 s differ"))
def target_not_self_consistent(root):
    """Noise in the recording: the two start markers get different answers (NAM's replicate check)."""
    rng = np.random.default_rng(3)
    return fk.rewrite(target(root), lambda x: x + 0.02 * rng.standard_normal(len(x)))


@ok(warned(r"no answer to the repeated dry segment at 1.850 s, 1.950 s"))
def target_misses_end_markers(root):
    def f(x):
        x[-int(0.2 * SR):] = 0
        return x
    return fk.rewrite(target(root), f)


@ok(warned(r"answers the leading sync segment unlike .*D100_T100.guitar.target.wav of the same setting .*wrong "
            r"setting's folder"))
def target_in_wrong_setting_folder(root):
    """The test file of D100_T100 is really a D000_T050 render: the device at rest answers the first
    sync impulse differently from the trainval file of the same setting."""
    t = target(root, split="test", code="D100_T100")
    fk.write(t, fk.device(fk.read(dry_path(root, "test")), 0.0))
    return t


@error(r"every target is identical to its dry input: the targets are copies of the dry")
def targets_copied_from_dry(root):
    for t in (root / fk.DEVICE).rglob("*.target.wav"):
        name = t.name.split(".")[1]
        shutil.copy(dry_path(root, t.parts[-3], name), t)
    return root / fk.DEVICE


@ok(warned(r"same audio as .*D000_T050.guitar.target.wav: a copied file"))
def target_copied_to_another_setting(root):
    shutil.copy(target(root, code="D000_T050"), target(root, code="D050_T000"))
    return target(root, code="D050_T000")


# --- knob codes ------------------------------------------------------------------------------

@error(r"name lacks its knob code: expected D050_T000.<passage>.target.wav")
def knob_code_missing_from_name(root):
    t = target(root)
    return t.rename(t.with_name("guitar.target.wav"))


@error(r"knob 'D150' above 100")
def knob_out_of_range(root):
    t = target(root, code="D100_T100")
    new = root / fk.DEVICE / "trainval" / "D150_T100" / "D150_T100.guitar.target.wav"
    new.parent.mkdir()
    t.rename(new)
    t.parent.rmdir()
    return new


@error(r"bad knob code 'D0٥0_T050'")
def knob_code_non_ascii_digits(root):
    t = target(root, code="D000_T050")
    new = root / fk.DEVICE / "trainval" / "D0٥0_T050" / "D0٥0_T050.guitar.target.wav"
    new.parent.mkdir()
    t.rename(new)
    t.parent.rmdir()
    return new


@error(r"knobs GT differ from the device's DT: every file of a device codes the same knobs")
def knob_letters_inconsistent(root):
    t = target(root, split="test", code="D100_T100")
    new = root / fk.DEVICE / "test" / "G100_T100" / "G100_T100.guitar.target.wav"
    new.parent.mkdir()
    t.rename(new)
    t.parent.rmdir()
    return new


@error(r"knob code 'D050_T001' differs from its folder 'D050_T000'")
def knob_code_differs_from_folder(root):
    t = target(root)
    return t.rename(t.with_name("D050_T001.guitar.target.wav"))


@error(r"knobs DT differ from the device's none")
def knobs_missing_on_some_files(root):
    """Trainval targets without knob code (directly in the split folder), test targets with."""
    shutil.rmtree(root / fk.DEVICE / "trainval")
    fk.write(root / fk.DEVICE / "trainval" / "guitar.target.wav", fk.device(fk.dry_signal("trainval", "guitar"), 0.0))
    return target(root, split="test", code="D000_T050")


# --- passages and folders --------------------------------------------------------------------

@error(r"same audio as .*trainval/guitar.input.wav: a passage in both splits leaks the test set")
def duplicate_passage_across_splits(root):
    d = dry_path(root, "test", "guitar")
    shutil.copy(dry_path(root), d)
    for t in (root / fk.DEVICE / "test").rglob("*.target.wav"):
        shutil.copy(root / fk.DEVICE / "trainval" / t.parent.name / t.name, t)
    return d


@ok(warned(r"same audio as .*guitar.input.wav \(the passage counts twice\)"))
def duplicate_passage_within_split(root):
    shutil.copy(dry_path(root), dry_path(root, name="guitar2"))
    for t in list((root / fk.DEVICE / "trainval").rglob("*.guitar.target.wav")):
        shutil.copy(t, t.with_name(t.name.replace(".guitar.", ".guitar2.")))
    return dry_path(root, name="guitar2")


@error(r"second target for passage 'guitar' at setting D050_T000 .*keep one of the two")
def duplicate_target_wav_and_flac(root):
    t = target(root)
    fk.write(t.with_suffix(".flac"), fk.read(t))
    return t


@error(r"duplicate dry passage 'guitar'")
def duplicate_dry_wav_and_flac(root):
    d = dry_path(root)
    fk.write(d.with_name("guitar.input.flac"), fk.read(d))
    return d


@error(r"knob-setting folder holds no \*.target.wav / \*.target.flac files: add its targets or remove the folder")
def knob_setting_with_empty_trainval_folder(root):
    """The user's case: the setting has test targets, its trainval folder is there but empty."""
    folder = root / fk.DEVICE / "trainval" / "D050_T000"
    for f in folder.iterdir():
        f.unlink()
    return folder


@error(r"knob-setting folder holds no \*.target")
def knob_folder_with_only_junk(root):
    folder = root / fk.DEVICE / "test" / "D100_T100"
    for f in folder.iterdir():
        f.unlink()
    (folder / "notes.txt").write_text("render later\n")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return folder


@error(r"no \*.target.wav / \*.target.flac files")
def empty_split_folder(root):
    shutil.rmtree(root / fk.DEVICE / "test")
    (root / fk.DEVICE / "test").mkdir()
    return root / fk.DEVICE / "test"


@error(r"no \*.input.wav / \*.input.flac files")
def empty_dry_folder(root):
    for f in (root / fk.DRY / "test").iterdir():
        f.unlink()
    return root / fk.DRY / "test"


@error(r"split folder test/ not found")
def missing_split_folder(root):
    shutil.rmtree(root / fk.DEVICE / "test")
    return root / fk.DEVICE


@error(r"dry folder DRY-with-markers/test/ not found .*dvc pull")
def missing_dry_split_folder(root):
    shutil.rmtree(root / fk.DRY / "test")
    return root / fk.DRY


@error(r"no dry file bass.input.\* in")
def target_without_dry(root):
    t = target(root)
    return t.rename(t.with_name("D050_T000.bass.target.wav"))


@error(r"s is too short for data.val_seconds=0.25")
def passage_too_short(root):
    d = dry_path(root)
    fk.write(d, fk.dry_signal("trainval", "guitar", seconds=1.1))
    for t in (root / fk.DEVICE / "trainval").rglob("*.target.wav"):
        fk.write(t, fk.device(fk.read(d), int(t.parent.name[1:4]) / 100))
    return next(iter(sorted((root / fk.DEVICE / "trainval").rglob("*.target.wav"))))


@ok(warned(r"setting\(s\) D070_T070 have test targets but no trainval targets"))
def setting_only_in_test(root):
    dry = fk.read(dry_path(root, "test"))
    fk.write(root / fk.DEVICE / "test" / "D070_T070" / "D070_T070.guitar.target.wav", fk.device(dry, 0.7))
    return root / fk.DEVICE


@ok(warned(r"lacks passage\(s\) bass that other settings have"))
def setting_missing_a_passage(root):
    dry = fk.dry_signal("trainval", "bass")
    fk.write(dry_path(root, name="bass"), dry)
    for code in ("D000_T050", "D100_T100"):
        fk.write(target(root, code=code, name="bass"), fk.device(dry, int(code[1:4]) / 100))
    return root / fk.DEVICE / "trainval" / "D050_T000"


@ok(warned(r"no target for dry passage\(s\) spare \(unused\)"))
def unused_dry_passage(root):
    fk.write(dry_path(root, name="spare"), fk.dry_signal("trainval", "spare"))
    return root / fk.DEVICE / "trainval"


# --- non-audio files, links, names -----------------------------------------------------------

def _ignored(*names):
    def check(index, root, named):
        listed = {Path(i["path"]).name: i["reason"] for i in index["ignored"]}
        for n in names:
            assert n in listed, (n, listed)
        assert any("ignored" in w and "listed under `ignored`" in w for w in index["warnings"])
        assert index["splits"]["train"]["items"] == 3
    return check


@ok(_ignored("README.txt", ".DS_Store", "._D050_T000.guitar.target.wav", "take2.wav", "notes.md", "__MACOSX"))
def non_audio_files_are_ignored(root):
    (root / fk.DRY / "trainval" / "README.txt").write_text("dry files\n")
    (root / fk.DRY / "trainval" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / fk.DEVICE / "trainval" / "D050_T000" / "._D050_T000.guitar.target.wav").write_bytes(b"\0\5\26\7" * 20)
    fk.write(root / fk.DEVICE / "trainval" / "D050_T000" / "take2.wav", np.zeros(100))
    (root / fk.DEVICE / "trainval" / "notes.md").write_text("# notes\n")
    (root / fk.DEVICE / "trainval" / "__MACOSX").mkdir()
    return None


@error(r"\.mp3 files are not read: convert it to WAV or FLAC")
def unsupported_audio_format(root):
    t = target(root)
    return t.rename(t.with_suffix(".mp3"))


@error(r"broken symbolic link \(dangling, or a loop\)")
def symlink_loop_file(root):
    t = target(root)
    t.unlink()
    return fk.symlink(t, t.name)


@error(r"broken symbolic link \(dangling, or a loop\)")
def symlink_dangling_dry(root):
    d = dry_path(root, "test")
    d.unlink()
    return fk.symlink(d, "nowhere/guitar.input.wav")


@error(r"broken symbolic link .*point it at the device folder")
def symlink_loop_device_folder(root):
    shutil.rmtree(root / fk.DEVICE)
    return fk.symlink(root / fk.DEVICE, fk.DEVICE)


@ok(_ignored("loop"))
def symlink_loop_folder_inside_knob_folder(root):
    """A folder link back up the tree is not followed (the scan goes one level below a split)."""
    fk.symlink(root / fk.DEVICE / "trainval" / "D050_T000" / "loop", "..")
    return None


@ok(no_warnings)
def symlinked_target_is_read(root):
    t = target(root)
    keep = root.parent / "elsewhere.wav"
    t.rename(keep)
    fk.symlink(t, keep)
    return None


@ok()
def names_with_spaces_and_non_ascii(root):
    for p in sorted(root.rglob("*guitar*")):
        p.rename(p.with_name(p.name.replace("guitar", "my täke ñ 1")))
    return None


@error(r"truncated or corrupt audio \(flac decoder lost sync\)")
def truncated_flac_with_non_ascii_name(root):
    for p in sorted(root.rglob("*guitar*")):
        p.rename(p.with_name(p.name.replace("guitar", "Gitarre Übung")))
    return fk.cut_bytes(fk.to_flac(target(root, name="Gitarre Übung")), 0.5)


@pytest.mark.parametrize("case", sorted(CASES))
def test_fuzz_case(tmp_path, case):
    mutate, kind, expect = CASES[case]
    root = fk.make_tree(tmp_path / "data")
    named = mutate(root)
    if kind == "error":
        with pytest.raises(DatasetError) as err:
            prepare_device(root, **fk.ARGS)
        msg = str(err.value)
        assert "\n" not in msg
        assert msg.startswith(f"{named}: "), msg
        assert os.path.lexists(named) and Path(named).is_relative_to(root)
        assert re.search(expect, msg), msg
    else:
        index = prepare_device(root, **fk.ARGS)
        fk.check_index(index, root)
        if expect is not None:
            expect(index, root, named)


def test_the_table_covers_every_class():
    """At least one case per class of the issue (and the count the report quotes)."""
    classes = ["truncated_flac", "corrupt_flac_frames", "truncated_wav", "wav_header_claims_more",
               "wav_header_claims_less", "wrong_sample_rate", "stereo", "depth_PCM_U8_wav", "depth_PCM_24_wav",
               "depth_PCM_32_wav", "depth_FLOAT_wav", "nan_sample", "inf_in_dry", "silent_target",
               "dc_only_target", "dc_only_dry",
               "fully_clipped_target_int16", "length_mismatch", "dry_and_target_swapped", "knob_code_missing_from_name",
               "knob_out_of_range", "knob_letters_inconsistent", "duplicate_passage_across_splits",
               "knob_setting_with_empty_trainval_folder", "empty_split_folder", "non_audio_files_are_ignored",
               "symlink_loop_file", "names_with_spaces_and_non_ascii"]
    assert set(classes) <= set(CASES)
    assert len(CASES) >= 70
