from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from nablafx.data import DatasetError, parse_knob_code, scan_device
from nablafx.data.prepare import measure_latency, prepare_device

from ..conftest import SR, make_tiny_dataset


def test_parse_knob_code():
    assert parse_knob_code("V050_T050_D100") == (("V", "T", "D"), (0.5, 0.5, 1.0))
    assert parse_knob_code("") == ((), ())
    for bad in ("V50", "v050", "V050-T050", "V050_V060", "V101"):
        with pytest.raises(DatasetError, match="x.wav"):
            parse_knob_code(bad, "x.wav")


def test_scan_pairs(tiny_dataset):
    pairs = scan_device(tiny_dataset, "Fake-Drive")
    assert len(pairs) == 6
    assert {p.split for p in pairs} == {"trainval", "test"}
    p = next(p for p in pairs if p.knob_code == "D050_T000")
    assert p.knobs == (0.5, 0.0) and p.knob_letters == ("D", "T")
    assert p.dry.name == f"{p.name}.input.wav"


def test_flac_and_wav_both_read(tmp_path):
    root = make_tiny_dataset(tmp_path / "d")
    for f in list(root.rglob("*.wav")):
        data, sr = sf.read(str(f))
        sf.write(str(f.with_suffix(".flac")), data, sr, subtype="PCM_24")
        f.unlink()
    assert len(scan_device(root, "Fake-Drive")) == 6


def test_unknown_device_lists_known(tiny_dataset):
    with pytest.raises(DatasetError, match="Fake-Drive"):
        scan_device(tiny_dataset, "Nope")


def test_missing_dataset(tmp_path):
    with pytest.raises(DatasetError, match="dvc pull"):
        scan_device(tmp_path / "absent", "X")


def test_inconsistent_knob_letters(tiny_dataset):
    src = next((tiny_dataset / "Fake-Drive" / "test" / "D000_T050").glob("*.wav"))
    dst = tiny_dataset / "Fake-Drive" / "test" / "G000" / src.name.replace("D000_T050", "G000")
    dst.parent.mkdir()
    src.rename(dst)
    src.parent.rmdir()  # an emptied knob folder is an error of its own (tests/data/test_fuzz.py)
    with pytest.raises(DatasetError, match="G000"):
        scan_device(tiny_dataset, "Fake-Drive")


def test_prepare_splits_by_time(tiny_dataset):
    idx = prepare_device(tiny_dataset, "Fake-Drive", "DRY-with-markers", SR, val_seconds=1.0,
                         guard_seconds=0.25, max_latency_samples=2)
    assert idx["n_knobs"] == 2 and idx["knob_letters"] == ["D", "T"]
    for wet in {i["wet"] for i in idx["items"] if i["split"] != "test"}:
        tr = next(i for i in idx["items"] if i["wet"] == wet and i["split"] == "train")
        va = next(i for i in idx["items"] if i["wet"] == wet and i["split"] == "val")
        assert tr["end"] + int(0.25 * SR) == va["start"]  # guard gap, no overlap
        assert va["end"] == 4 * SR
    assert idx["splits"]["test"]["seconds"] == 6.0
    assert idx["max_abs_latency_samples"] == 0


@pytest.mark.parametrize("lag", [-7, 0, 13])
def test_measure_latency(lag):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(20000)
    y = -np.roll(x, lag)
    got, corr = measure_latency(x, y, 100)
    assert got == lag and corr < -0.9


def test_measure_latency_ignores_filter_phase():
    """Bass-heavy input, distortion and a 700 Hz high-pass, delayed 5 samples: the plain
    cross-correlation peaks at 17 (checked here), GCC-PHAT finds 5."""
    from scipy.signal import butter, lfilter

    rng = np.random.default_rng(2)
    x = lfilter([1], [1, -0.95], rng.standard_normal(48000))
    y = np.roll(lfilter(*butter(2, 700, "high", fs=SR), np.tanh(4 * x / x.std())), 5)
    n = 1 << 17
    plain = np.fft.irfft(np.fft.rfft(y, n) * np.conj(np.fft.rfft(x, n)), n)
    assert int(np.argmax(np.abs(plain[:101]))) != 5
    assert measure_latency(x, y, 100)[0] == 5


def test_prepare_refuses_latency(tmp_path):
    root = make_tiny_dataset(tmp_path / "d", lag=30)
    with pytest.raises(DatasetError, match="latency 30 samples exceeds data.max_latency_samples=4"):
        prepare_device(root, "Fake-Drive", "DRY-with-markers", SR, 1.0, 0.25, 4)


def _corrupt(root, kind):
    f = next((root / "Fake-Drive" / "trainval" / "D050_T000").glob("*.wav"))
    data, sr = sf.read(str(f))
    if kind == "rate":
        sf.write(str(f), data, 44100, subtype="FLOAT")
    elif kind == "channels":
        sf.write(str(f), np.stack([data, data], 1), sr, subtype="FLOAT")
    elif kind == "length":
        sf.write(str(f), data[:-10], sr, subtype="FLOAT")
    elif kind == "nan":
        data[100] = np.nan
        sf.write(str(f), data, sr, subtype="FLOAT")
    elif kind == "silent":
        sf.write(str(f), data * 0, sr, subtype="FLOAT")
    return f


@pytest.mark.parametrize("kind,msg", [("rate", "44100 Hz, expected 48000"), ("channels", "2 channels"),
                                      ("length", "samples, dry"), ("nan", "NaN"), ("silent", "silent")])
def test_prepare_bad_audio_names_file(tiny_dataset, kind, msg):
    f = _corrupt(tiny_dataset, kind)
    with pytest.raises(DatasetError) as err:
        prepare_device(tiny_dataset, "Fake-Drive", "DRY-with-markers", SR, 1.0, 0.25, 4)
    assert str(err.value).startswith(str(f)) and msg in str(err.value)
    assert "\n" not in str(err.value)


def _flip_low_byte(path):
    """Change the lowest byte of the file's last float32 sample: a change far below any check."""
    raw = bytearray(path.read_bytes())
    raw[-4] ^= 0x01
    path.write_bytes(bytes(raw))


def test_prepare_records_content_hash_of_indexed_files(tiny_dataset):
    args = ("Fake-Drive", "DRY-with-markers", SR, 1.0, 0.25, 4)
    before = prepare_device(tiny_dataset, *args)
    rels = {Path(i[k]).relative_to(tiny_dataset).as_posix() for i in before["items"] for k in ("dry", "wet")}
    assert set(before["files"]) == rels  # every indexed file, relative to the root
    assert before["data_hash"]["files"] == len(rels) == 8
    assert before["data_hash"]["bytes"] == sum((tiny_dataset / r).stat().st_size for r in rels)
    wet = tiny_dataset / "Fake-Drive" / "trainval" / "D050_T000" / "D050_T000.trainval-a.target.wav"
    audio = sf.read(str(wet))[0]
    _flip_low_byte(wet)
    changed = sf.read(str(wet))[0]
    assert 0 < np.abs(changed - audio).max() < 1e-6  # one byte, one sample, inaudibly
    after = prepare_device(tiny_dataset, *args)
    assert after["data_hash"]["sha256"] != before["data_hash"]["sha256"]
    rel = wet.relative_to(tiny_dataset).as_posix()
    assert after["files"][rel]["sha256"] != before["files"][rel]["sha256"]
    assert {k: v for k, v in after["files"].items() if k != rel} == {k: v for k, v in before["files"].items() if k != rel}
    # nothing else in the index moved: the hash is what tells the two datasets apart
    strip = ("data_hash", "files", "checks")
    assert {k: v for k, v in after.items() if k not in strip} == {k: v for k, v in before.items() if k not in strip}


def test_content_hash_ignores_where_the_root_lies(tiny_dataset, tmp_path):
    import shutil

    args = ("Fake-Drive", "DRY-with-markers", SR, 1.0, 0.25, 4)
    here = prepare_device(tiny_dataset, *args)["data_hash"]
    moved = shutil.copytree(tiny_dataset, tmp_path / "elsewhere" / "root")
    there = prepare_device(moved, *args)["data_hash"]
    assert here == there
    # a renamed passage (same bytes) is a different dataset
    for split_dir in (moved / "Fake-Drive" / "test").iterdir():
        for f in split_dir.iterdir():
            f.rename(f.with_name(f.name.replace("test-a", "test-b")))
    dry = moved / "DRY-with-markers" / "test" / "test-a.input.wav"
    dry.rename(dry.with_name("test-b.input.wav"))
    assert prepare_device(moved, *args)["data_hash"]["sha256"] != here["sha256"]
