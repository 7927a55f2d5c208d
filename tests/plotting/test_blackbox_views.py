"""Black-box views: probe tones through a model, THD against quadrature for a pure tanh, the
small-signal response of a plain gain, and the figures (transfer, harmonics, knob sweeps)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import integrate

from nablafx.plotting import blackbox as B
from nablafx.plotting.graybox import KnobSweeps

from .conftest import SR, assert_png, chain, set_static

CFG = SimpleNamespace(levels_db=[-24.0, -12.0, -6.0, 0.0], sine_hz=[100, 1000, 4000], tone_seconds=0.15, harmonics=4)


def _real(model, name: str) -> float:
    """Block 0's parameter ``name`` as its controller sets it (float32 rounding included)."""
    with torch.no_grad():
        return float(model.processors[0].denormalise(model.controllers[0](torch.zeros(1, 1, 1))[0])[name])


def _tanh_thd(a: float, n: int = 23) -> float:
    b = [2 / math.pi * integrate.quad(lambda th, k=k: math.tanh(a * math.sin(th)) * math.sin(k * th), 0, math.pi,
                                      limit=400, epsabs=1e-13)[0] for k in range(1, n + 1)]
    return math.sqrt(sum(x * x for x in b[1:])) / abs(b[0])


def test_thd_of_a_driven_tanh_matches_quadrature():
    model = chain([{"type": "tanh"}])
    set_static(model, 0, drive_db=6.0, bias=0.0)
    g = 10 ** (_real(model, "drive_db") / 20)
    pairs = [(lv, 1000) for lv in CFG.levels_db]
    res = B.tone_analysis(model, np.zeros((1, 0)), pairs, CFG.tone_seconds, SR)
    for j, lv in enumerate(CFG.levels_db):
        ref = _tanh_thd(g * 10 ** (lv / 20))
        # the model runs in float32: THD below ~1e-4 is at its rounding floor, hence the absolute term
        assert res.thd[0, j] == pytest.approx(ref, rel=2e-3, abs=2e-6), lv
    assert np.all(np.diff(res.thd[0]) > 0)  # more level, more distortion


def test_small_signal_response_of_a_gain_is_flat():
    model = chain([{"type": "gain"}])
    set_static(model, 0, gain_db=-6.0)
    f, h = B.small_signal_response(model, np.zeros((1, 0)), SR, -30.0, 0.2)
    gain = _real(model, "gain_db")
    np.testing.assert_allclose(np.abs(h[0, 1:]), 10 ** (gain / 20), rtol=1e-5)
    np.testing.assert_allclose(np.angle(h[0, 1:]), 0.0, atol=1e-5)


def test_probe_pairs_cover_what_the_figures_read():
    pairs = B.probe_pairs(CFG.levels_db, CFG.sine_hz)
    assert len(pairs) == len(set(pairs)) < len(CFG.levels_db) * len(CFG.sine_hz) + len(CFG.levels_db)
    for lv in CFG.levels_db:
        assert (lv, 100) in pairs and (lv, 1000) in pairs
    for f in CFG.sine_hz:
        assert (-24.0, f) in pairs and (0.0, f) in pairs


def test_figures_for_a_conditioned_model(tmp_path):
    model = chain([{"type": "gain", "controller": "static-cond"}, {"type": "tanh", "controller": "static-cond"},
                   {"type": "lowpass", "controller": "static-cond"}], n_knobs=2, seed=1)
    settings = np.array([[0.0, 0.5], [1.0, 0.5]])
    sweeps = KnobSweeps.make(["D", "T"], np.array([0.5, 0.5]), 3)
    figs, res = B.blackbox_figures(model, settings, ["low", "high"], sweeps, CFG, SR, tmp_path)
    assert [f.title for f in figs] == ["Input/output transfer at several levels", "Stepped-sine harmonic analysis",
                                       "Knob sweep: D", "Knob sweep: T"]
    for f in figs:
        assert_png(tmp_path / f.file)
    assert res.thd.shape == (2, len(B.probe_pairs(CFG.levels_db, CFG.sine_hz)))
    assert figs[2].data["response"].shape[0] == 3 and np.isfinite(figs[2].data["thd"]).all()


def test_unconditioned_model_gets_one_curve_and_no_sweeps(tmp_path):
    model = chain([{"type": "tanh"}])
    figs, res = B.blackbox_figures(model, np.array([[0.0], [1.0]]), ["a", "b"], KnobSweeps.make(["X"], [0.5], 3),
                                   CFG, SR, tmp_path)
    assert len(figs) == 2 and res.thd.shape[0] == 1


def test_bad_probe_frequency_is_refused():
    with pytest.raises(ValueError, match="integer"):
        B.tone_analysis(chain([{"type": "tanh"}]), np.zeros((1, 0)), [(0.0, 30000)], 0.2, SR)
