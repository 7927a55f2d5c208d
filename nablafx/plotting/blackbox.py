"""Black-box views: what any model does to probe signals, per knob setting and across each knob.

* input/output transfer at several input levels (a low sine, one period, normalised per level);
* stepped-sine harmonic analysis: THD and the first harmonics against input level and frequency
  (exact FFT bins, :mod:`nablafx.dsp.analysis`);
* knob sweeps: one knob moved, the others fixed — small-signal response, THD, transfer.

The probes run through the trained model offline in batches (:func:`common.run_model`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nablafx.dsp.analysis import harmonic_amplitudes, thd
from nablafx.plotting.common import Figure, db, plt, run_model, save, settings_colors

ANALYSIS_SECONDS = 0.1  # the steady-state tail of every probe tone that is analysed


def sine_batch(pairs, seconds: float, sample_rate: int) -> torch.Tensor:
    """Sines ``(len(pairs), 1, n)`` for ``pairs = [(level_db, freq_hz), …]``; zero phase at t = 0."""
    n = int(round(seconds * sample_rate))
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    rows = [10 ** (lv / 20) * torch.sin(2 * np.pi * f * t) for lv, f in pairs]
    return torch.stack(rows).unsqueeze(1).float()


@dataclass
class ToneResults:
    """Harmonic analysis of probe tones ``pairs = [(level_db, freq_hz)]`` at ``S`` knob rows:
    ``amplitudes (S, P, H)`` (NaN above Nyquist), ``thd (S, P)``, the analysed output tails
    ``(S, P, n_tail)`` and the matching inputs ``(P, n_tail)``."""

    pairs: list[tuple[float, int]]
    amplitudes: np.ndarray
    thd: np.ndarray
    tails: np.ndarray
    inputs: np.ndarray

    def at(self, level_db: float, freq_hz: int) -> int:
        return self.pairs.index((level_db, freq_hz))


def probe_pairs(levels_db, freqs_hz) -> list[tuple[float, int]]:
    """The probes the figures need, not the whole grid: every level at the lowest frequency
    (transfer) and at ~1 kHz (THD vs level), every frequency at the lowest and highest level."""
    f_ref = freqs_hz[_ref_index(freqs_hz)]
    want = [(lv, freqs_hz[0]) for lv in levels_db] + [(lv, f_ref) for lv in levels_db]
    want += [(levels_db[0], f) for f in freqs_hz] + [(levels_db[-1], f) for f in freqs_hz]
    return list(dict.fromkeys((float(lv), int(f)) for lv, f in want))


def tone_analysis(model, knob_rows: np.ndarray, pairs, seconds: float, sample_rate: int) -> ToneResults:
    """Run every ``(level, frequency)`` sine through ``model`` at each knob row ``(S, K)`` and analyse
    the last :data:`ANALYSIS_SECONDS` of each output on exact bins."""
    for _, f in pairs:
        if int(f) != f or not 0 < f < sample_rate / 2:
            raise ValueError(f"probe frequency {f!r} Hz: need an integer below Nyquist ({sample_rate / 2:g} Hz)")
    if seconds <= ANALYSIS_SECONDS:
        raise ValueError(f"probe tones must last more than {ANALYSIS_SECONDS} s, got {seconds}")
    x = sine_batch(pairs, seconds, sample_rate)
    P = x.shape[0]
    S = max(1, knob_rows.shape[0])
    knobs = torch.as_tensor(np.repeat(knob_rows, P, axis=0), dtype=torch.float32) if knob_rows.size else None
    y = run_model(model, x.repeat(S, 1, 1), knobs).double()
    n_tail = int(round(ANALYSIS_SECONDS * sample_rate))
    tails = y[..., -n_tail:].reshape(S, P, n_tail)
    h_max = int((sample_rate / 2 - 1) // min(f for _, f in pairs))
    amps = np.full((S, P, h_max), np.nan)
    for j, (_, f) in enumerate(pairs):
        h = int((sample_rate / 2 - 1) // f)
        amps[:, j, :h] = harmonic_amplitudes(tails[:, j], f, sample_rate, h).numpy()
    return ToneResults([(float(a), int(b)) for a, b in pairs], amps, thd(torch.from_numpy(amps)).numpy(),
                       tails.numpy(), x[..., -n_tail:].double().reshape(P, n_tail).numpy())


def _ref_index(freqs_hz, target: float = 1000.0) -> int:
    return int(np.argmin([abs(np.log(f / target)) for f in freqs_hz]))


def transfer_figure(res: ToneResults, labels: list[str], levels_db, f0: int, out_dir,
                    name: str = "bb_transfer.png") -> Figure:
    """The ``f0`` sine at every level, output against input, normalised by the input peak."""
    S = res.tails.shape[0]
    cols = min(S, 5)
    rows = int(np.ceil(S / cols))
    pyplot = plt()
    fig, axes = pyplot.subplots(rows, cols, figsize=(3.3 * cols + 1, 3.2 * rows), squeeze=False)
    colors = settings_colors(len(levels_db))
    for s in range(rows * cols):
        ax = axes[s // cols, s % cols]
        if s >= S:
            ax.axis("off")
            continue
        for li, lv in enumerate(levels_db):
            a = 10 ** (lv / 20)
            j = res.at(float(lv), f0)
            ax.plot(res.inputs[j] / a, res.tails[s, j] / a, color=colors[li], lw=1, label=f"{lv:g} dBFS")
        ax.plot([-1, 1], [-1, 1], color="0.6", ls=":", lw=0.8)
        ax.set(title=labels[s], xlabel="input / input peak", ylabel="output / input peak")
        ax.grid(True, alpha=0.3)
        if s == 0:
            ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    rel = save(fig, out_dir, name)
    return Figure(rel, "Input/output transfer at several levels",
                  f"A {f0} Hz sine at each input level (colour) through the model, after it settled: output "
                  "against input over the analysed periods, both divided by the input peak, one panel per knob "
                  "setting. Equal curves at every level: a linear model (slope = gain). Curves that flatten at "
                  "high levels: clipping or compression; a loop (the curve opens up) is memory — filtering or "
                  "phase shift around the nonlinearity.",
                  {"levels_db": list(levels_db), "f0_hz": f0})


def harmonics_figure(res: ToneResults, labels: list[str], levels_db, freqs_hz, out_dir, n_harmonics: int,
                     name: str = "bb_harmonics.png") -> Figure:
    """THD vs level, harmonics vs level, THD vs frequency, small-signal gain vs frequency."""
    f_ref = freqs_hz[_ref_index(freqs_hz)]
    lo, hi = levels_db[0], levels_db[-1]
    by_level = [res.at(float(lv), f_ref) for lv in levels_db]
    top = [res.at(float(hi), f) for f in freqs_hz]
    low = [res.at(float(lo), f) for f in freqs_hz]
    colors = settings_colors(len(labels))
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 4, figsize=(18, 4.0))
    lv = np.array(levels_db)
    for s, (lab, c) in enumerate(zip(labels, colors)):
        axes[0].plot(lv, 100 * res.thd[s, by_level], marker="o", ms=3, color=c, label=lab)
        axes[2].semilogx(freqs_hz, 100 * res.thd[s, top], marker="o", ms=3, color=c)
        axes[3].semilogx(freqs_hz, db(res.amplitudes[s, low, 0]) - lo, marker="o", ms=3, color=c)
    mid = len(labels) // 2
    hcol = settings_colors(n_harmonics)
    for k in range(1, n_harmonics):
        rel = db(res.amplitudes[mid, by_level, k]) - db(res.amplitudes[mid, by_level, 0])
        axes[1].plot(lv, rel, marker="o", ms=3, color=hcol[k], label=f"H{k + 1}")
    axes[0].set(xlabel="input level (dBFS)", ylabel="THD (%)", yscale="log", title=f"THD vs level at {f_ref} Hz")
    axes[1].set(xlabel="input level (dBFS)", ylabel="dB relative to H1",
                title=f"harmonics at {f_ref} Hz ({labels[mid]})")
    axes[2].set(xlabel="frequency (Hz)", ylabel="THD (%)", yscale="log", title=f"THD vs frequency at {hi:g} dBFS")
    axes[3].set(xlabel="frequency (Hz)", ylabel="H1 gain (dB)", title=f"small-signal gain at {lo:g} dBFS")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    rel = save(fig, out_dir, name)
    return Figure(rel, "Stepped-sine harmonic analysis",
                  "Sines at each level and frequency through the model; the steady-state output's harmonics are "
                  "read on exact FFT bins. (1) THD — the energy of all harmonics above the fundamental relative "
                  "to it — against input level, one line per knob setting: it rises where the model starts to "
                  "distort. (2) H2…Hn in dB below the fundamental at the middle setting: odd harmonics dominate "
                  "symmetric clipping, even ones asymmetric. (3) THD against frequency at the highest level. "
                  "(4) Fundamental gain at the lowest level: the model's small-signal frequency response. "
                  "The shipped data hold no sine passages, so the device's own curves cannot be drawn beside "
                  "these; a dataset with stepped-sine recordings would allow it.",
                  {"thd_vs_level": res.thd[:, by_level], "thd_vs_freq": res.thd[:, top],
                   "gain_db": db(res.amplitudes[:, low, 0]) - lo, "levels_db": list(levels_db),
                   "freqs_hz": list(freqs_hz), "f_ref": f_ref})


def small_signal_response(model, knob_rows: np.ndarray, sample_rate: int, level_db: float, seconds: float,
                          seed: int = 0, nperseg: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Transfer function estimate ``H = S_xy / S_xx`` (Welch) of white noise at ``level_db`` RMS through
    the model at each knob row; returns ``(freqs, H (S, bins))``."""
    from scipy import signal

    n = int(seconds * sample_rate)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 1, n, generator=g) * 10 ** (level_db / 20)
    S = max(1, knob_rows.shape[0])
    knobs = torch.as_tensor(knob_rows, dtype=torch.float32) if knob_rows.size else None
    y = run_model(model, x.repeat(S, 1, 1), knobs)[:, 0].double().numpy()
    xs = x[0, 0].double().numpy()
    f, sxx = signal.welch(xs, sample_rate, nperseg=nperseg)
    hs = []
    for s in range(S):
        _, sxy = signal.csd(xs, y[s], sample_rate, nperseg=nperseg)
        hs.append(sxy / sxx)
    return f, np.array(hs)


def knob_sweep_figure(model, letter: str, values: np.ndarray, knob_rows: np.ndarray, others: str,
                      freqs_hz, levels_db, seconds: float, sample_rate: int, out_dir) -> Figure:
    """One knob moved over ``values`` (rows ``knob_rows``), the others fixed: small-signal magnitude
    response, THD against level at ~1 kHz, and the transfer at the highest level."""
    f_ref = freqs_hz[_ref_index(freqs_hz)]
    pairs = [(float(lv), int(f_ref)) for lv in levels_db]
    res = tone_analysis(model, knob_rows, pairs, seconds, sample_rate)
    f, h = small_signal_response(model, knob_rows, sample_rate, min(levels_db), seconds)
    colors = settings_colors(len(values))
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 3, figsize=(15, 3.8))
    a = 10 ** (levels_db[-1] / 20)
    for v, c in enumerate(colors):
        lab = f"{letter} = {values[v]:.2f}"
        axes[0].semilogx(f[1:], db(h[v, 1:]), color=c, label=lab)
        axes[1].plot(levels_db, 100 * res.thd[v], marker="o", ms=3, color=c, label=lab)
        axes[2].plot(res.inputs[-1] / a, res.tails[v, -1] / a, color=c, lw=1, label=lab)
    axes[0].set(xlabel="frequency (Hz)", ylabel="magnitude (dB)", xlim=(20, sample_rate / 2),
                title=f"small-signal response ({min(levels_db):g} dBFS noise)")
    axes[1].set(xlabel="input level (dBFS)", ylabel="THD (%)", yscale="log", title=f"THD at {f_ref} Hz")
    axes[2].set(xlabel="input / input peak", ylabel="output / input peak",
                title=f"transfer at {levels_db[-1]:g} dBFS, {f_ref} Hz")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle(f"knob {letter} swept ({others})")
    fig.tight_layout()
    rel = save(fig, out_dir, f"bb_sweep_{letter}.png")
    return Figure(rel, f"Knob sweep: {letter}",
                  f"Knob {letter} moved from 0 to 1 (colour dark → light) with {others}. Left: the model's "
                  "small-signal magnitude response (low-level noise, cross-spectrum estimate) — what the knob "
                  f"does to the tone. Middle: THD against input level at {f_ref} Hz — what it does to the drive. "
                  "Right: the loudest sine, output against input (normalised) — the shape of the clipping. "
                  "Values between the trained settings show how the model interpolates.",
                  {"values": values, "thd": res.thd, "freqs_hz": f, "response": h})


def blackbox_figures(model, settings_knobs: np.ndarray, labels: list[str], sweeps, cfg, sample_rate: int,
                     out_dir: str | Path) -> tuple[list[Figure], ToneResults]:
    """Transfer, harmonics and (for conditioned models) one knob-sweep figure per knob."""
    rows = settings_knobs if model.n_knobs else np.zeros((1, 0))
    labs = labels if model.n_knobs else ["model (no knob input)"]
    levels, freqs = list(cfg.levels_db), list(cfg.sine_hz)
    res = tone_analysis(model, rows, probe_pairs(levels, freqs), cfg.tone_seconds, sample_rate)
    figures = [transfer_figure(res, labs, levels, freqs[0], out_dir),
               harmonics_figure(res, labs, levels, freqs, out_dir, cfg.harmonics)]
    if model.n_knobs:
        for letter, values, knobs in sweeps.sweeps(True):
            others = ", ".join(f"{k} at {v:.2f}" for k, v in zip(sweeps.letters, sweeps.centre) if k != letter)
            figures.append(knob_sweep_figure(model, letter, values, knobs, others or "no other knob", freqs,
                                             levels, cfg.tone_seconds, sample_rate, out_dir))
    return figures, res
