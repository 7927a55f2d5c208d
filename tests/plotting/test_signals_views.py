"""Signals: excerpt choice, the worst-error window, spectrogram/transient figures, aliasing probe
(ASR of a linear chain at the floor, of a tanh equal to a direct float64 computation), and the
listening excerpts (FLAC, shared gain, fades, group-readable)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from nablafx.dsp.analysis import aliasing_to_signal_db
from nablafx.plotting import listening, signals

from .conftest import SR, assert_png, chain, set_static


def _passages(n=SR, codes=("A000", "A100"), burst_at=30000, burst_in="A100"):
    rng = np.random.default_rng(0)
    t = np.arange(n) / SR
    dry = (0.3 * np.sin(2 * np.pi * 220 * t) * (t > 0.2)).astype(np.float32)
    out = []
    for c in codes:
        target = np.tanh(2 * dry).astype(np.float32)
        pred = (target + 0.001 * rng.standard_normal(n)).astype(np.float32)
        if c == burst_in:
            pred[burst_at: burst_at + 200] += 0.5
        out.append(signals.Passage(c, "tone", [int(c[1:]) / 100], f"A {int(c[1:]) / 100:.2f}", dry, target, pred, 0.1))
    return out


def test_excerpt_window_takes_the_loudest_part_away_from_the_ends():
    x = np.zeros(3 * SR, dtype=np.float32)
    x[int(1.6 * SR): int(1.8 * SR)] = 0.5
    x[10] = 1.0  # a sync impulse near the start must not attract the window
    s, e = signals.excerpt_window(x, SR, 0.5)
    assert e - s == SR // 2 and s <= int(1.6 * SR) and e >= int(1.8 * SR) and s >= int(signals.MARGIN_SECONDS * SR)
    s, e = signals.excerpt_window(x[: SR // 4], SR, 0.5)  # shorter than the excerpt: all of it
    assert (s, e) == (0, SR // 4)


def test_worst_transient_finds_the_error_burst(tmp_path):
    ps = _passages()
    i, centre = signals.worst_transient(ps, SR, 20.0)
    assert ps[i].code == "A100" and abs(centre - 30100) < 0.01 * SR
    fig = signals.transient_figure(ps, SR, 20.0, tmp_path)
    assert_png(tmp_path / fig.file)
    assert fig.data == {"passage": "tone", "code": "A100", "centre": centre}


def test_spectrogram_figure(tmp_path):
    ps = _passages()
    fig = signals.spectrogram_figure(ps, (0, SR), SR, tmp_path)
    assert_png(tmp_path / fig.file)
    # mean power per panel: the burst shows in the error of the setting that has it, and only there
    assert fig.data[("A100", "error")] > 100 * fig.data[("A000", "error")]
    assert fig.data[("A100", "dry")] == fig.data[("A000", "dry")] > 0


def test_aliasing_probe_linear_chain_is_at_the_floor():
    model = chain([{"type": "gain"}, {"type": "peq"}])
    _, asr = signals.aliasing_probe(model, np.zeros((1, 0)), 5000, 0.0, SR)
    assert asr.shape == (1,) and asr[0] < -100  # float32 rounding only


def test_aliasing_probe_of_a_tanh_equals_a_direct_computation(tmp_path):
    model = chain([{"type": "tanh"}])
    set_static(model, 0, drive_db=12.0, bias=0.0)
    out, asr = signals.aliasing_probe(model, np.zeros((1, 0)), 5000, 0.0, SR)
    with torch.no_grad():
        drive = float(model.processors[0].denormalise(model.controllers[0](torch.zeros(1, 1, 1))[0])["drive_db"])
    n = int(0.5 * SR)
    t = np.arange(n) / SR
    y = np.tanh(10 ** (drive / 20) * np.sin(2 * np.pi * 5000 * t))[-SR // 10:]  # float64, no model
    ref = aliasing_to_signal_db(torch.from_numpy(y), 5000, SR)
    assert asr[0] == pytest.approx(ref, abs=0.05)
    assert -40 < asr[0] < -10  # a 12 dB-driven tanh without oversampling aliases audibly (cf. benchmarks)
    oversampled = chain([{"type": "tanh", "oversample": 4}])
    set_static(oversampled, 0, drive_db=12.0, bias=0.0)
    _, asr4 = signals.aliasing_probe(oversampled, np.zeros((1, 0)), 5000, 0.0, SR)
    assert asr4[0] < asr[0] - 30  # oversampling ×4 removes most of it
    fig = signals.aliasing_figure(out, asr, ["tanh"], 5000, 0.0, SR, tmp_path)
    assert_png(tmp_path / fig.file)


def test_listening_excerpts(tmp_path):
    ps = _passages()
    ps[1].pred[1000] = 1.6  # would clip: every file of the passage is scaled by the same gain
    clips = listening.write_excerpts(ps, {"tone": (0, SR // 2)}, SR, tmp_path)
    assert [(c.role, c.code) for c in clips] == [("dry", ""), ("target", "A000"), ("prediction", "A000"),
                                                 ("target", "A100"), ("prediction", "A100")]
    gain = 0.999 / 1.6
    for c in clips:
        path = tmp_path / c.file
        info = sf.info(str(path))
        assert (info.format, info.subtype, info.samplerate, info.frames) == ("FLAC", "PCM_16", SR, SR // 2)
        assert path.stat().st_mode & 0o777 == 0o644 or path.stat().st_mode & 0o044 == 0o044
    y, _ = sf.read(str(tmp_path / "audio/A000.tone.target.flac"))
    np.testing.assert_allclose(y[SR // 4], ps[0].target[SR // 4] * gain, atol=1 / 32768)
    assert abs(y[0]) < 1e-4 and abs(y[-1]) < 1e-4  # faded in and out
