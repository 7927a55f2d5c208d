"""Signals: spectrograms of dry / target / prediction / error per knob setting, the waveform around
the transient where the model errs most, and aliasing (a high sine in, the inharmonic energy out)
with its aliasing-to-signal ratio per knob setting."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nablafx.data.audio import read_audio
from nablafx.dsp.analysis import aliasing_to_signal_db, harmonic_split
from nablafx.plotting.common import Figure, db, plt, run_model, save

#: ToneTwist dry files carry sync impulses in their first and last 0.3 s: excerpts keep clear of them
MARGIN_SECONDS = 0.5


@dataclass
class Passage:
    """One test passage at one knob setting: dry input, device target, model prediction (float32)."""

    code: str
    name: str
    knobs: list[float]
    label: str
    dry: np.ndarray
    target: np.ndarray
    pred: np.ndarray
    esr: float


def pred_path(pred_dir: str | Path, code: str, name: str) -> Path:
    """Where the test stage wrote a prediction (:func:`nablafx.evaluation.evaluate.evaluate`)."""
    return Path(pred_dir) / (f"{code}.{name}.pred.flac" if code else f"{name}.pred.flac")


def load_passages(index: dict, rows: list[dict], pred_dir: str | Path, label) -> list[Passage]:
    """Every test passage of ``rows`` (per_knob.csv) with its audio; ``label(code, knobs)`` names a setting."""
    sr = index["sample_rate"]
    items = {(i["knob_code"], i["name"]): i for i in index["items"] if i["split"] == "test"}
    dry_cache: dict[str, np.ndarray] = {}
    out = []
    for r in rows:
        it = items.get((r["knob_code"], r["name"]))
        if it is None:
            continue
        if it["dry"] not in dry_cache:
            dry_cache[it["dry"]] = read_audio(it["dry"], sr)
        out.append(Passage(it["knob_code"], it["name"], list(it["knobs"]), label(it["knob_code"], it["knobs"]),
                           dry_cache[it["dry"]], read_audio(it["wet"], sr),
                           read_audio(pred_path(pred_dir, it["knob_code"], it["name"]), sr), float(r["esr"])))
    return out


def excerpt_window(dry: np.ndarray, sample_rate: int, seconds: float) -> tuple[int, int]:
    """``[start, end)`` of the ``seconds``-long window with the most dry energy, kept
    :data:`MARGIN_SECONDS` from both ends when the passage is long enough."""
    n = len(dry)
    w = min(n, int(round(seconds * sample_rate)))
    margin = int(MARGIN_SECONDS * sample_rate)
    lo, hi = (margin, n - margin) if n - 2 * margin >= w else (0, n)
    energy = np.concatenate([[0.0], np.cumsum(dry[lo:hi].astype(np.float64) ** 2)])
    sums = energy[w:] - energy[:-w] if hi - lo > w else energy[-1:] - energy[:1]
    start = lo + int(np.argmax(sums))
    return start, start + w


def _stft_db(x: np.ndarray, n_fft: int = 2048, hop: int = 256) -> np.ndarray:
    win = np.hanning(n_fft)
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), n_fft)[::hop] * win
    spec = np.abs(np.fft.rfft(frames, axis=-1)) / (win.sum() / 2)
    return db(spec.T, 1e-7)


def spectrogram_figure(passages: list[Passage], window: tuple[int, int], sample_rate: int, out_dir) -> Figure:
    """Rows: knob settings of one passage; columns: dry, target, prediction, error (target − prediction)."""
    s, e = window
    pyplot = plt()
    fig, axes = pyplot.subplots(len(passages), 4, figsize=(16, 2.3 * len(passages) + 0.6), squeeze=False,
                                sharex=True, sharey=True)
    data = {}
    extent = (s / sample_rate, e / sample_rate, 0, sample_rate / 2000)
    im = None
    for r, p in enumerate(passages):
        sigs = {"dry": p.dry[s:e], "target": p.target[s:e], "prediction": p.pred[s:e],
                "error": p.target[s:e] - p.pred[s:e]}
        for c, (name, sig) in enumerate(sigs.items()):
            spec = _stft_db(sig)
            data[(p.code, name)] = float(np.mean(sig.astype(np.float64) ** 2))
            im = axes[r, c].imshow(spec, origin="lower", aspect="auto", extent=extent, cmap="magma", vmin=-100, vmax=0)
            axes[r, c].set_ylim(0, min(20, sample_rate / 2000))
            if r == 0:
                axes[r, c].set_title(name)
            if c == 0:
                axes[r, c].set_ylabel(f"{p.label}\nkHz", fontsize=8)
            if r == len(passages) - 1:
                axes[r, c].set_xlabel("time (s)")
        axes[r, 3].text(0.98, 0.92, f"ESR {p.esr:.3f}", transform=axes[r, 3].transAxes, ha="right", va="top",
                        color="white", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.6, label="dBFS")
    rel = save(fig, out_dir, "sig_spectrograms.png")
    name = passages[0].name
    return Figure(rel, f"Spectrograms per knob setting ({name})",
                  f"Short-time spectra (2048-point Hann, dB full scale) of the test passage '{name}' from "
                  f"{s / sample_rate:.2f} s to {e / sample_rate:.2f} s, one row per knob setting: the dry input, "
                  "the device's target, the model's prediction and the error (target − prediction; ESR of the whole "
                  "passage in the corner). Harmonics the device adds show as new horizontal lines above the "
                  "dry ones; a good model's error column is dark everywhere, and bright patches show at which "
                  "frequencies and moments it misses.", data)


def worst_transient(passages: list[Passage], sample_rate: int, window_ms: float) -> tuple[int, int]:
    """``(passage index, centre sample)`` of the window with the largest error energy."""
    w = max(1, int(window_ms * sample_rate / 1000))
    best = (-1.0, 0, 0)
    for i, p in enumerate(passages):
        e2 = (p.target.astype(np.float64) - p.pred) ** 2
        if len(e2) < w:
            continue
        sums = np.convolve(e2, np.ones(w), mode="valid")
        j = int(np.argmax(sums))
        if sums[j] > best[0]:
            best = (float(sums[j]), i, j + w // 2)
    return best[1], best[2]


def transient_figure(passages: list[Passage], sample_rate: int, window_ms: float, out_dir) -> Figure:
    """The waveform around the worst-error window; the same moment at the other knob settings below."""
    wi, centre = worst_transient(passages, sample_rate, window_ms)
    worst = passages[wi]
    same = [p for p in passages if p.name == worst.name]
    same.sort(key=lambda p: p is not worst)
    half = int(window_ms * sample_rate / 1000)  # show twice the window
    s, e = max(0, centre - half), min(len(worst.dry), centre + half)
    t = (np.arange(s, e) - centre) / sample_rate * 1000
    pyplot = plt()
    fig, axes = pyplot.subplots(len(same), 1, figsize=(12, 2.4 * len(same) + 0.4), squeeze=False, sharex=True)
    for r, p in enumerate(same):
        ax = axes[r, 0]
        ax.plot(t, p.dry[s:e], color="0.7", lw=1, label="dry input")
        ax.plot(t, p.target[s:e], color="C0", lw=1.4, label="target (device)")
        ax.plot(t, p.pred[s:e], color="C3", lw=1, ls="--", label="prediction (model)")
        ax.plot(t, p.target[s:e] - p.pred[s:e], color="C2", lw=0.8, alpha=0.8, label="error")
        ax.axvspan(-window_ms / 2, window_ms / 2, color="C1", alpha=0.08, lw=0)
        ax.set_ylabel(p.label, fontsize=8)
        if p is worst:
            ax.set_title(f"worst: {p.name} at {centre / sample_rate:.3f} s ({p.label})", fontsize=9)
        ax.grid(True, alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="upper right", ncol=4)
    axes[-1, 0].set_xlabel("time (ms) from the worst moment")
    fig.tight_layout()
    rel = save(fig, out_dir, "sig_worst_transient.png")
    return Figure(rel, "Where the model errs most",
                  f"The {window_ms:g} ms window with the largest error energy over every test passage and knob "
                  f"setting ('{worst.name}', {worst.label}, {centre / sample_rate:.3f} s), shown ±{window_ms:g} ms "
                  "(top; the window shaded), and the same moment at the other knob settings (below). Dry input grey, device blue, "
                  "model red dashed, error green: a late or soft attack, a missed polarity or a wrong "
                  "clipping level is visible here.",
                  {"passage": worst.name, "code": worst.code, "centre": centre})


def aliasing_probe(model, knob_rows: np.ndarray, f0_hz: int, level_db: float, sample_rate: int,
                   seconds: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Outputs ``(S, n_tail)`` (last 0.1 s) for a sine of ``f0_hz`` at ``level_db`` and the ASR per row (dB)."""
    n = int(seconds * sample_rate)
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    x = (10 ** (level_db / 20) * torch.sin(2 * np.pi * f0_hz * t)).float().reshape(1, 1, -1)
    S = max(1, knob_rows.shape[0])
    knobs = torch.as_tensor(knob_rows, dtype=torch.float32) if knob_rows.size else None
    y = run_model(model, x.repeat(S, 1, 1), knobs)[:, 0, -int(0.1 * sample_rate):].double()
    asr = np.array([aliasing_to_signal_db(y[s], f0_hz, sample_rate) for s in range(S)])
    return y.numpy(), asr


def aliasing_figure(outputs: np.ndarray, asr: np.ndarray, labels: list[str], f0_hz: int, level_db: float,
                    sample_rate: int, out_dir) -> Figure:
    """Output spectrum of the aliasing probe per knob setting: harmonic bins blue, the rest red."""
    S = outputs.shape[0]
    pyplot = plt()
    fig, axes = pyplot.subplots(S, 1, figsize=(12, 1.9 * S + 0.8), squeeze=False, sharex=True)
    for s in range(S):
        power, freqs, harmonic = harmonic_split(torch.from_numpy(outputs[s]), f0_hz, sample_rate)
        n = outputs.shape[-1] // (sample_rate // np.gcd(f0_hz, sample_rate)) * (sample_rate // np.gcd(f0_hz, sample_rate))
        level = 10 * np.log10(np.maximum(power.numpy() * 4 / n**2, 1e-20))
        f = freqs.numpy() / 1000
        h = harmonic.numpy()
        ax = axes[s, 0]
        ax.vlines(f[~h], -160, level[~h], color="C3", lw=0.6, label="aliasing (inharmonic)")
        ax.vlines(f[h], -160, level[h], color="C0", lw=1.2, label=f"harmonics of {f0_hz} Hz")
        ax.set(ylim=(-140, 5), ylabel="dBFS")
        ax.text(0.99, 0.85, f"{labels[s]}: ASR {asr[s]:.1f} dB", transform=ax.transAxes, ha="right", fontsize=8)
        ax.grid(True, alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("frequency (kHz)")
    fig.tight_layout()
    rel = save(fig, out_dir, "sig_aliasing.png")
    return Figure(rel, "Aliasing",
                  f"A {f0_hz} Hz sine at {level_db:g} dBFS through the model, the output's spectrum on exact FFT "
                  "bins (no window, so nothing leaks): blue lines are the harmonics the nonlinearity should make, "
                  "red lines everything else — harmonics above Nyquist folded back (aliasing) plus noise. The "
                  "aliasing-to-signal ratio (ASR: red energy over blue energy) is given per knob setting and in the metrics "
                  "table: lower is better, and the benchmark of oversampled nonlinearities "
                  "(benchmarks/results/aliasing.md) shows what oversampling buys.", {"asr_db": asr})
