"""Gray-box views: each figure writes an image, and the curves it draws equal closed forms
(RBJ biquad via scipy.signal.freqz, tanh, the compressor's static curve)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import signal

from nablafx.plotting import graybox as G

from .conftest import SR, assert_png, chain, set_static

NO_KNOBS = G.KnobSweeps.make([], np.zeros(0), 3)


def test_trace_ends_with_the_forward_output():
    model = chain([{"type": "gain"}, {"type": "peq"}, {"type": "tanh"}])
    x = 0.3 * torch.randn(1, 1, 2000)
    trace = model.trace(x)
    assert torch.equal(trace[-1]["output"], model(x)[0])
    assert torch.equal(trace[1]["input"], trace[0]["output"]) and trace[0]["params"].shape == (1, 1, 1)


def test_peaking_response_matches_the_cookbook_biquad(tmp_path):
    model = chain([{"type": "peaking"}])
    set_static(model, 0, peak_gain_db=9.0, peak_cutoff_hz=1200.0, peak_q=2.0)
    fig = G.filter_figure(0, model.processors[0], model.controllers[0], NO_KNOBS, tmp_path, SR)
    assert_png(tmp_path / fig.file)
    h = fig.data["sweeps"][""]["response"][0]
    # RBJ cookbook peaking EQ, written out here
    A, w0 = 10 ** (9.0 / 40), 2 * math.pi * 1200.0 / SR
    alpha = math.sin(w0) / (2 * 2.0)
    b = [1 + alpha * A, -2 * math.cos(w0), 1 - alpha * A]
    a = [1 + alpha / A, -2 * math.cos(w0), 1 - alpha / A]
    _, ref = signal.freqz(b, a, worN=fig.data["freqs_hz"], fs=SR)
    np.testing.assert_allclose(h, ref, rtol=1e-4, atol=1e-4)  # the controller's sigmoid is float32
    k = np.argmin(abs(fig.data["freqs_hz"] - 1200.0))
    assert 20 * np.log10(abs(h[k])) == pytest.approx(9.0, abs=0.01)


def test_filter_sweeps_draw_one_curve_per_knob_value(tmp_path):
    model = chain([{"type": "tonestack", "controller": "static-cond"}], n_knobs=2)
    sweeps = G.KnobSweeps.make(["B", "T"], np.array([0.5, 0.5]), 4)
    fig = G.filter_figure(0, model.processors[0], model.controllers[0], sweeps, tmp_path, SR)
    assert_png(tmp_path / fig.file)
    assert set(fig.data["sweeps"]) == {"B", "T"}
    assert fig.data["sweeps"]["B"]["response"].shape == (4, G.N_FFT // 2 + 1)


def test_fir_response_is_the_dft_of_its_taps(tmp_path):
    model = chain([{"type": "fir", "n_taps": 16, "controller": "none"}])
    with torch.no_grad():
        model.processors[0].taps.copy_(torch.linspace(1, 0, 16))
    fig = G.filter_figure(0, model.processors[0], model.controllers[0], NO_KNOBS, tmp_path, SR)
    ref = np.fft.rfft(np.linspace(1, 0, 16), G.N_FFT)
    np.testing.assert_allclose(fig.data["sweeps"][""]["response"][0], ref, rtol=1e-5, atol=1e-5)
    assert_png(tmp_path / fig.file)


def test_tanh_curve_is_the_driven_tanh(tmp_path):
    model = chain([{"type": "tanh"}])
    set_static(model, 0, drive_db=12.0, bias=0.25)
    x_in = torch.linspace(-0.5, 0.5, 1000).reshape(1, 1, -1)
    fig = G.nonlinearity_figure(0, model.processors[0], model.controllers[0], NO_KNOBS, tmp_path, x_in)
    assert_png(tmp_path / fig.file)
    x = fig.data["x"]
    assert x.max() == pytest.approx(1.0)  # the range covers max(1, 1.1·peak input)
    g = 10 ** (12 / 20)
    np.testing.assert_allclose(fig.data["sweeps"][""]["curves"][0], np.tanh(g * x + 0.25) - np.tanh(0.25), atol=2e-5)


@pytest.mark.parametrize("knee_db", [0.0, 8.0])
def test_compressor_static_curve_matches_its_formula(tmp_path, knee_db):
    model = chain([{"type": "compressor"}])
    T, R, makeup = -24.0, 4.0, 3.0
    set_static(model, 0, threshold_db=T, ratio=R, attack_ms=2.0, release_ms=50.0, knee_db=knee_db, makeup_db=makeup)
    proc, ctrl = model.processors[0], model.controllers[0]
    with torch.no_grad():
        real = {k: float(v) for k, v in proc.denormalise(ctrl(torch.zeros(1, 1, 1))[0]).items()}
    T, R, W, makeup = real["threshold_db"], real["ratio"], real["knee_db"], real["makeup_db"]
    assert T == pytest.approx(-24.0, abs=1e-3) and R == pytest.approx(4.0, rel=1e-4)
    excerpt = torch.sin(2 * torch.pi * 200 * torch.arange(4800) / SR).reshape(1, 1, -1) * torch.linspace(0, 1, 4800)
    fig = G.compressor_figure(0, proc, ctrl, NO_KNOBS, tmp_path, excerpt, SR)
    assert_png(tmp_path / fig.file)
    L = fig.data["levels_db"]
    # Giannoulis et al. (2012), written out: below the knee unchanged, above it T + (L − T)/R, quadratic between
    over = L - T
    ref = np.where(2 * over < -W, L, np.where(2 * over > W, T + over / R,
                                               L + (1 / R - 1) * (over + W / 2) ** 2 / (2 * max(W, 1e-9)))) + makeup
    np.testing.assert_allclose(fig.data["sweeps"][""]["measured_db"][0], ref, atol=1e-6)
    np.testing.assert_allclose(fig.data["sweeps"][""]["formula_db"][0], ref, atol=1e-9)
    red = fig.data["reduction_db"]
    assert red.shape == (4800,) and red[:100].max() < 1e-9 and red[-100:].min() > 1.0  # quiet start, loud end


def test_controller_map_and_trajectories(tmp_path):
    model = chain([{"type": "gain", "controller": "static-cond"},
                   {"type": "gain", "controller": {"type": "dynamic-cond", "hop": 64}},
                   {"type": "peq", "controller": "static-cond"}], n_knobs=2, seed=3)
    sweeps = G.KnobSweeps.make(["A", "B"], np.array([0.5, 0.5]), 3)
    excerpt = 0.5 * torch.sin(2 * torch.pi * 300 * torch.arange(2400) / SR) * torch.linspace(0, 1, 2400)
    figs = G.graybox_figures(model, sweeps, excerpt, tmp_path)
    titles = [f.title for f in figs]
    assert titles == ["Block 2: peq frequency response", "Controllers: knob → parameter",
                      "Controllers: trajectories over time"]
    for f in figs:
        assert_png(tmp_path / f.file)
        assert f.caption and len(f.caption) > 80
    cmap, traj = figs[1].data, figs[2].data
    knobs = torch.tensor([[0.0, 0.5], [0.5, 0.5], [1.0, 0.5]])
    with torch.no_grad():
        expected = model.processors[0].denormalise(model.controllers[0](torch.zeros(3, 1, 1), knobs)[0])["gain_db"]
    np.testing.assert_allclose(cmap[(0, "A")]["gain_db"], expected[:, 0, 0].numpy(), rtol=1e-6)
    assert traj[1]["gain_db"].shape == (2400,)
    header, rows = G.control_table(model, [("x", np.array([0.2, 0.8]))])
    assert header == ["block", "parameter", "x"] and len(rows) == 1 + 15  # gain + peq (the dynamic gain left out)
