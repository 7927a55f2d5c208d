"""Tone stack: the closed-form analog coefficients against a numerical nodal solution of the circuit,
the digital filter against scipy's bilinear transform, knob semantics, gradients."""

import numpy as np
import pytest
import scipy.signal as ss
import torch

from nablafx.dsp.tonestack import CIRCUITS, analog_coeffs, tonestack_coeffs

FS = 48000


def nodal_response(freqs, bass, mid, treble, c):
    """Solve the circuit's node equations (complex, float64) at each frequency; input = 1 V."""
    out = []
    for f in freqs:
        s = 2j * np.pi * f
        g_c1, g_c2, g_c3 = s * c["C1"], s * c["C2"], s * c["C3"]
        g_t_hi, g_t_lo = 1 / ((1 - treble) * c["R1"]), 1 / (treble * c["R1"])
        g_l, g_m_hi, g_m_lo, g_4 = 1 / (bass * c["R2"]), 1 / ((1 - mid) * c["R3"]), 1 / (mid * c["R3"]), 1 / c["R4"]
        # unknowns: T (treble top), O (wiper, output), B (bass top), M (bass bottom), W (mid wiper), S (slope node)
        A = np.zeros((6, 6), complex)
        rhs = np.zeros(6, complex)
        T, O, B, M, W, S = range(6)
        A[T, T], A[T, O], rhs[T] = g_c1 + g_t_hi, -g_t_hi, g_c1
        A[O, T], A[O, O], A[O, B] = -g_t_hi, g_t_hi + g_t_lo, -g_t_lo
        A[B, O], A[B, B], A[B, M], A[B, S] = -g_t_lo, g_t_lo + g_c2 + g_l, -g_l, -g_c2
        A[M, B], A[M, M], A[M, W] = -g_l, g_l + g_m_hi, -g_m_hi
        A[W, M], A[W, W], A[W, S] = -g_m_hi, g_m_hi + g_m_lo + g_c3, -g_c3
        A[S, B], A[S, W], A[S, S], rhs[S] = -g_c2, -g_c3, g_4 + g_c2 + g_c3, g_4
        out.append(np.linalg.solve(A, rhs)[O])
    return np.array(out)


KNOBS = [(0.5, 0.5, 0.5), (0.1, 0.9, 0.3), (0.95, 0.05, 0.8)]


@pytest.mark.parametrize("circuit", list(CIRCUITS))
@pytest.mark.parametrize("bass,mid,treble", KNOBS)
def test_analog_coefficients_match_nodal_analysis(circuit, bass, mid, treble):
    c = CIRCUITS[circuit]
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    b_s, a_s = analog_coeffs(t(bass), t(mid), t(treble), c)
    freqs = np.array([20.0, 100.0, 500.0, 1000.0, 3000.0, 10000.0])
    s = 2j * np.pi * freqs
    h = np.polyval(b_s.numpy()[::-1], s) / np.polyval(a_s.numpy()[::-1], s)
    np.testing.assert_allclose(h, nodal_response(freqs, bass, mid, treble, c), rtol=1e-9)


@pytest.mark.parametrize("bass,mid,treble", KNOBS)
def test_digital_filter_is_bilinear_of_analog(bass, mid, treble):
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    b_s, a_s = analog_coeffs(t(bass), t(mid), t(treble), CIRCUITS["fender"])
    sb, sa = ss.bilinear(b_s.numpy()[::-1], a_s.numpy()[::-1], FS)
    b, a = tonestack_coeffs(t(bass), t(mid), t(treble), FS, "fender")
    np.testing.assert_allclose(b.numpy(), sb / sa[0], rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(a.numpy(), sa / sa[0], rtol=1e-8, atol=1e-14)
    # the digital response at f is the circuit's at the warped frequency (f_s/π)·tan(π f/f_s)
    freqs = np.array([50.0, 200.0, 1000.0, 8000.0])
    _, hd = ss.freqz(b.numpy(), a.numpy(), worN=freqs, fs=FS)
    ha = nodal_response(FS / np.pi * np.tan(np.pi * freqs / FS), bass, mid, treble, CIRCUITS["fender"])
    np.testing.assert_allclose(hd, ha, rtol=1e-8)


def _db(bass, mid, treble, f):
    b, a = tonestack_coeffs(torch.tensor(bass), torch.tensor(mid), torch.tensor(treble), FS)
    return 20 * np.log10(np.abs(ss.freqz(b.numpy(), a.numpy(), worN=[f], fs=FS)[1][0]))


def test_knobs_do_what_they_say():
    assert _db(0.9, 0.5, 0.5, 60.0) > _db(0.1, 0.5, 0.5, 60.0) + 3       # bass lifts lows
    assert _db(0.5, 0.5, 0.9, 6000.0) > _db(0.5, 0.5, 0.1, 6000.0) + 6   # treble lifts highs
    assert _db(0.5, 0.9, 0.5, 700.0) > _db(0.5, 0.1, 0.5, 700.0) + 3     # mid lifts mids
    assert _db(0.5, 0.5, 0.5, 1000.0) < _db(0.5, 0.5, 0.5, 100.0)          # the Fender mid scoop


def test_gradcheck_knobs():
    knobs = [torch.tensor([v], dtype=torch.float64, requires_grad=True) for v in (0.3, 0.6, 0.7)]
    assert torch.autograd.gradcheck(lambda b, m, t: tonestack_coeffs(b, m, t, FS), knobs)


def test_unknown_circuit():
    with pytest.raises(ValueError, match="known: fender, marshall"):
        tonestack_coeffs(0.5, 0.5, 0.5, FS, "vox")


@pytest.mark.parametrize("circuit", list(CIRCUITS))
def test_bass_zero_mid_one_is_stable_and_still_the_circuit(circuit):
    """At bass 0, mid 1 the analog denominator drops to second order (a3 = 0) and the bilinear transform
    put a pole on the unit circle at z = −1 (radius 1 − 5e−15, cancelled only by a zero).  The mid knob
    is now limited to MID_MAX: every pole ≥ 1e−4 inside, and the digital response still matches the
    circuit at m = 1 (warped frequencies, 20 Hz … 20 kHz) to 0.001 dB."""
    from nablafx.dsp.tonestack import MID_MAX

    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    for treble in (0.0, 0.5, 1.0):
        b_s, a_s = analog_coeffs(t(0.0), t(1.0), t(treble), CIRCUITS[circuit])
        assert abs(float(a_s[3] / a_s[2])) < 1e-15  # a3 ≈ 0 (round-off): the degenerate case guarded against
        b, a = tonestack_coeffs(t(0.0), t(1.0), t(treble), FS, circuit)
        assert np.abs(np.roots(a.numpy())).max() < 1 - 1e-4
        torch.testing.assert_close(tonestack_coeffs(t(0.0), t(MID_MAX), t(treble), FS, circuit), (b, a))
        freqs = np.geomspace(20, 20000, 200)
        _, hd = ss.freqz(b.numpy(), a.numpy(), worN=freqs, fs=FS)
        s = 2j * FS * np.tan(np.pi * freqs / FS)
        ha = np.polyval(b_s.numpy()[::-1], s) / np.polyval(a_s.numpy()[::-1], s)
        np.testing.assert_allclose(20 * np.log10(np.abs(hd)), 20 * np.log10(np.abs(ha)), atol=1e-3)
