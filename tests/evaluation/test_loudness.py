"""BS.1770-4 integrated loudness (nablafx.evaluation.loudness), tested for what its gates claim.

Three references, all independent of the code under test:

* **closed form** — for sines with piecewise-constant amplitude, each 400 ms block's K-weighted mean
  square is ``Σ_i (overlap_i / 400 ms) · A_i²/2 · |H_K(f)|²`` with ``H_K`` from the 48 kHz coefficients
  *printed in the standard*, then the gates are applied as BS.1770-4 §2 writes them (numpy, below).
  Filter transients at amplitude steps are ignored: tolerance 0.01 LU;
* **EBU Tech 3341** test cases 1–5 (1 kHz sines; expected values and the ±0.1 LU tolerance are
  Tech 3341's).  They are stereo with equal channels; BS.1770 sums channel powers, so the mono
  equivalent is one channel 3.01 dB hotter (``√2 · A``);
* **pyloudnorm** 0.2.0 — another implementation (scipy filtering, its own block loop and gating):
  with ``filter_class="DeMan"`` it designs the same BS.1770 K-weighting for any sample rate and must
  agree to 1e-6 LU (measured ≤ 5e-11); its default ``"K-weighting"`` approximates the filter with RBJ
  cookbook shelves and reads 0.04–0.047 LU lower from 100 Hz up: agreement to 0.05 LU.

Signal lengths are whole multiples of 100 ms, where pyloudnorm's block count (it rounds, and may
score a last partial block) equals the standard's.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pyloudnorm
import pytest
import scipy.signal as ss
import torch

from nablafx.evaluation.loudness import integrated_loudness

FS = 48000
STEREO = 20 * math.log10(math.sqrt(2))  # +3.01 dB: two equal channels → one mono channel
# BS.1770-4 Table 1 and 2 (48 kHz): pre-filter (high shelf) and RLB high pass
PRE = ([1.53512485958697, -2.69169618940638, 1.19839281085285], [1.0, -1.69065929318241, 0.73248077421585])
RLB = ([1.0, -2.0, 1.0], [1.0, -1.99004745483398, 0.99007225036621])


def k_power_gain(freq_hz: float) -> float:
    """|H_K(f)|² of the standard's printed 48 kHz K-weighting."""
    h = ss.freqz(*PRE, worN=[freq_hz], fs=FS)[1] * ss.freqz(*RLB, worN=[freq_hz], fs=FS)[1]
    return float(np.abs(h[0]) ** 2)


def piecewise_sine(segments, freq_hz=1000.0):
    """One continuous-phase sine whose amplitude is ``10^(dBFS/20)`` over each ``(dBFS, seconds)``."""
    amps = np.concatenate([np.full(round(sec * FS), 10 ** (db / 20)) for db, sec in segments])
    return amps * np.sin(2 * np.pi * freq_hz * np.arange(amps.size) / FS)


def closed_form(segments, freq_hz=1000.0, absolute_gate=-70.0, relative_gate=-10.0):
    """BS.1770-4 §2 on analytic block energies (see the module docstring); None if all gated."""
    bounds = np.cumsum([0] + [round(sec * FS) for _, sec in segments])
    powers = np.array([10 ** (db / 10) / 2 * k_power_gain(freq_hz) for db, _ in segments])
    block, step = 19200, 4800
    starts = np.arange(0, bounds[-1] - block + 1, step)
    z = np.array([sum(max(0, min(s + block, hi) - max(s, lo)) * p for lo, hi, p in zip(bounds[:-1], bounds[1:], powers))
                  for s in starts]) / block
    lj = -0.691 + 10 * np.log10(np.maximum(z, 1e-300))
    keep = lj > absolute_gate if absolute_gate is not None else np.ones_like(lj, bool)
    if not keep.any():
        return None
    if relative_gate is not None:
        keep &= lj > -0.691 + 10 * np.log10(z[keep].mean()) + relative_gate
    return -0.691 + 10 * np.log10(z[keep].mean())


def ours(x, **gates):
    return integrated_loudness(torch.from_numpy(x), FS, **gates)


def pyln(x, filter_class="DeMan", sample_rate=FS):
    return pyloudnorm.Meter(sample_rate, filter_class=filter_class).integrated_loudness(x)


# --- EBU Tech 3341 (mono equivalents) ---------------------------------------------------------------

EBU = {  # case: (segments in stereo dBFS per channel, seconds), expected LUFS
    "3341-1 sine −23": ([(-23.0, 20.0)], -23.0),
    "3341-2 sine −33": ([(-33.0, 20.0)], -33.0),
    "3341-3 relative gate": ([(-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0)], -23.0),
    "3341-4 both gates": ([(-72.0, 10.0), (-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0), (-72.0, 10.0)], -23.0),
    "3341-5 −26/−20/−26": ([(-26.0, 20.0), (-20.0, 20.1), (-26.0, 20.0)], -23.0),
}


@functools.cache
def ebu_signal(case):
    """(mono-equivalent segments, signal) of a Tech 3341 case."""
    segments = [(db + STEREO, sec) for db, sec in EBU[case][0]]
    x = piecewise_sine(segments)
    return segments, x


@pytest.mark.parametrize("case", list(EBU))
def test_ebu_tech_3341_cases(case):
    expected = EBU[case][1]
    segments, x = ebu_signal(case)
    got = ours(x)
    assert abs(got - expected) <= 0.1  # Tech 3341's tolerance
    assert abs(got - closed_form(segments)) <= 0.01
    assert abs(got - pyln(x)) <= 1e-6


def test_relative_gate_changes_the_result_where_it_should():
    """3341-3: ungated, the two −36 dBFS passages pull the reading down to −24.16 LUFS (closed form);
    the relative gate (Γr ≈ −33.8 LUFS) removes them and the reading is the −23 dBFS tone's."""
    segments, x = ebu_signal("3341-3 relative gate")
    gated, ungated = ours(x), ours(x, relative_gate_lu=None)
    assert abs(ungated - closed_form(segments, relative_gate=None)) <= 0.01
    assert ungated == pytest.approx(-24.16, abs=0.01)
    assert gated - ungated > 1.1
    # the absolute gate alone changes nothing here: every block is above −70 LUFS
    assert ours(x, absolute_gate_lufs=None) == pytest.approx(gated, abs=1e-12)


@pytest.mark.parametrize("quiet_db,kept", [(-31.0, True), (-34.0, False)])
def test_quiet_passage_either_side_of_the_relative_gate(quiet_db, kept):
    """10 s at −20 dBFS (−23.0 LUFS) then 10 s at ``quiet_db``.  Γr is the mean of all blocks minus
    10 LU: −35.7 LUFS with a −31 dBFS passage (−34.0 LUFS: kept, reading −25.7) and −35.8 LUFS with a
    −34 dBFS one (−37.0 LUFS: gated, reading −23.1) — a 3 dB quieter passage reads 2.6 LU *louder*."""
    segments = [(-20.0, 10.0), (quiet_db, 10.0)]
    x = piecewise_sine(segments)
    got = ours(x)
    assert abs(got - closed_form(segments)) <= 0.01
    assert abs(got - pyln(x)) <= 1e-6
    loud_alone = closed_form([(-20.0, 10.0)])
    if kept:
        assert loud_alone - got > 2.5
    else:
        assert abs(got - loud_alone) < 0.1  # only the three blocks straddling the step pull it down


def test_absolute_gate_at_minus_70_lufs():
    """9 s of a −75 LUFS tone, then 1 s at −62 LUFS.  With the absolute gate the quiet blocks go and
    the reading is the loud tone's (closed form ≈ −62 LUFS); without it, the relative gate (≈ −80 LUFS)
    keeps them and the reading falls to ≈ −71 LUFS.  (The blocks straddling the step hold part of the
    loud tone and pass both gates: the gated reading is −62.67, as the closed form says.)"""
    g = k_power_gain(1000.0)

    def dbfs(lufs):  # sine amplitude in dBFS for a steady block loudness of ``lufs``
        return lufs + 0.691 - 10 * math.log10(g / 2)

    segments = [(dbfs(-75.0), 9.0), (dbfs(-62.0), 1.0)]
    x = piecewise_sine(segments)
    gated, no_abs = ours(x), ours(x, absolute_gate_lufs=None)
    assert abs(gated - closed_form(segments)) <= 0.01 and abs(gated - pyln(x)) <= 1e-6
    assert abs(no_abs - closed_form(segments, absolute_gate=None)) <= 0.01
    assert -63.0 < gated < -62.0 and no_abs < -70.0
    # a steady tone just above the gate reads as itself; just below, every block is gated
    assert ours(piecewise_sine([(dbfs(-69.9), 3.0)])) == pytest.approx(-69.9, abs=0.01)
    below = piecewise_sine([(dbfs(-70.1), 3.0)])
    assert ours(below) is None
    assert pyln(below) == -math.inf  # pyloudnorm's way of saying the same
    assert ours(below, absolute_gate_lufs=None) == pytest.approx(-70.1, abs=0.01)


# --- against pyloudnorm on assorted signals ---------------------------------------------------------

def _pinkish(seconds, rms_dbfs, seed=0):
    rng = np.random.default_rng(seed)
    n = round(seconds * FS)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / FS)
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0.0
    x = np.fft.irfft(spec, n)
    return x * 10 ** (rms_dbfs / 20) / np.sqrt(np.mean(x ** 2))


def _bursts(seconds, burst_dbfs, gap_dbfs, on=0.3, period=1.0, freq_hz=440.0):
    t = np.arange(round(seconds * FS)) / FS
    amp = np.where(t % period < on, 10 ** (burst_dbfs / 20), 0.0 if gap_dbfs is None else 10 ** (gap_dbfs / 20))
    return amp * np.sin(2 * np.pi * freq_hz * t)


SIGNALS = {
    **{f"sine {f:g} Hz {db:g} dBFS": (lambda f=f, db=db: piecewise_sine([(db, 3.0)], f))
       for f in (100.0, 997.0, 5000.0, 10000.0) for db in (0.0, -23.0, -40.0)},
    "pink-ish noise −20 dBFS rms": lambda: _pinkish(5.0, -20.0),
    "pink-ish noise −45 dBFS rms": lambda: _pinkish(5.0, -45.0, seed=1),
    "bursts, digital-silence gaps": lambda: _bursts(6.0, -12.0, None),
    "bursts, −50 dBFS gaps": lambda: _bursts(6.0, -12.0, -50.0),
    "bursts, −28 dBFS gaps": lambda: _bursts(6.0, -12.0, -28.0),
}


@pytest.mark.parametrize("name", list(SIGNALS))
def test_against_pyloudnorm(name):
    x = SIGNALS[name]()
    got = ours(x)
    assert abs(got - pyln(x, "DeMan")) <= 1e-6
    assert abs(got - pyln(x, "K-weighting")) <= 0.05


def test_sines_match_the_closed_form_and_the_standards_anchor():
    """Steady sines against ``−0.691 + 10 log10(A²/2 · |H_K(f)|²)``: the 997 Hz, 0 dBFS sine reads
    −3.01 LUFS (BS.1770-4's stated calibration), others to 2e-3 LU (the high pass's start-up
    transient, 1e-3 LU at 100 Hz over 3 s)."""
    assert ours(piecewise_sine([(0.0, 3.0)], 997.0)) == pytest.approx(-3.01, abs=0.005)
    for f in (100.0, 997.0, 5000.0, 10000.0):
        for db in (0.0, -23.0, -40.0):
            expected = -0.691 + 10 * math.log10(10 ** (db / 10) / 2 * k_power_gain(f))
            assert ours(piecewise_sine([(db, 3.0)], f)) == pytest.approx(expected, abs=2e-3)


def test_other_sample_rate_against_pyloudnorm():
    """At 44.1 kHz both sides design the K-weighting from the analog prototype (no printed coefficients)."""
    sr = 44100
    t = np.arange(sr * 4) / sr
    x = 0.3 * np.sin(2 * np.pi * 2500 * t) * (t % 1.0 < 0.6)
    got = integrated_loudness(torch.from_numpy(x), sr)
    assert abs(got - pyloudnorm.Meter(sr, filter_class="DeMan").integrated_loudness(x)) <= 1e-6
