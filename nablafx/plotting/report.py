"""The `plots` stage's logic: loss curves, a target-vs-prediction figure, and an HTML summary."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from nablafx.data.audio import read_audio
from nablafx.fileio import savefig_atomic, write_text_atomic


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _read_tsv(path: Path):
    if not path.is_file():
        return None
    lines = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    header, rows = lines[0], lines[1:]
    step = header.index("step")  # dvclive writes "step<TAB>value" (plus "timestamp" in some versions)
    return np.array([float(r[step]) for r in rows]), np.array([float(r[-1]) for r in rows])


def loss_figure(live_dir: str | Path, out_png: str | Path) -> bool:
    base = Path(live_dir) / "plots" / "metrics"
    curves = {name: _read_tsv(base / f"{name}.tsv") for name in ("train/loss", "val/loss", "val/esr")}
    if all(v is None for v in curves.values()):
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for name in ("train/loss", "val/loss"):
        if curves[name] is not None:
            axes[0].plot(*curves[name], label=name, marker="o" if name.startswith("val") else None, ms=3)
    axes[0].set(xlabel="step", ylabel="loss", yscale="log", title="training loss")
    axes[0].legend()
    if curves["val/esr"] is not None:
        axes[1].plot(*curves["val/esr"], marker="o", ms=3, color="C2")
    axes[1].set(xlabel="step", ylabel="ESR", yscale="log", title="validation ESR")
    fig.tight_layout()
    savefig_atomic(fig, out_png, dpi=110)
    plt.close(fig)
    return True


def example_figure(index: dict, rows: list[dict], pred_dir: str | Path, out_png: str | Path) -> dict | None:
    """Target vs prediction for the test passage with the median ESR: waveform zoom and spectrograms."""
    if not rows:
        return None
    sr = index["sample_rate"]
    order = sorted(range(len(rows)), key=lambda i: rows[i]["esr"])
    row = rows[order[len(order) // 2]]
    item = next(i for i in index["items"] if i["split"] == "test" and i["name"] == row["name"]
                and i["knob_code"] == row["knob_code"])
    pred_name = f"{row['knob_code']}.{row['name']}.pred.flac" if row["knob_code"] else f"{row['name']}.pred.flac"
    x, y, p = read_audio(item["dry"], sr), read_audio(item["wet"], sr), read_audio(Path(pred_dir) / pred_name, sr)
    # zoom on 40 ms around the loudest part of the target
    frame = int(0.04 * sr)
    energy = np.convolve(y**2, np.ones(frame), mode="valid")
    s = int(np.argmax(energy))
    t = np.arange(frame) / sr * 1000
    plt = _plt()
    fig = plt.figure(figsize=(11, 7))
    ax = fig.add_subplot(2, 1, 1)
    ax.plot(t, x[s : s + frame], color="0.7", lw=1, label="dry input")
    ax.plot(t, y[s : s + frame], color="C0", lw=1.5, label="target (device)")
    ax.plot(t, p[s : s + frame], color="C3", lw=1, ls="--", label="prediction (model)")
    ax.set(xlabel=f"time (ms) from {s / sr:.2f} s", ylabel="amplitude",
           title=f"{index['device']} {row['knob_code']} · {row['name']} · ESR {row['esr']:.4f}")
    ax.legend(loc="upper right", fontsize=8)
    for k, (sig, title) in enumerate(((y, "target spectrogram"), (p, "prediction spectrogram"))):
        ax = fig.add_subplot(2, 2, 3 + k)
        ax.specgram(sig[: 6 * sr] + 1e-9, NFFT=2048, Fs=sr, noverlap=1536, cmap="magma", vmin=-140, vmax=-20)
        ax.set(title=title, xlabel="time (s)", ylabel="frequency (Hz)", ylim=(0, 16000))
    fig.tight_layout()
    savefig_atomic(fig, out_png, dpi=100)
    plt.close(fig)
    return row


def write_report(out_dir: str | Path, metrics: dict, rows: list[dict], images: list[str], example: dict | None,
                 fad: dict | None = None, cost: dict | None = None) -> str:
    """Write ``index.html`` and return a plain-text summary."""
    out_dir = Path(out_dir)
    m, t = metrics["model"], metrics["test"]
    lines = [f"nablafx report: {m['variant']} ({m['family']}, {m['params']} params) on {m['device']}",
             f"  test ESR {t['esr']:.4f} (mean per passage {t['esr_mean']:.4f}), MAE {t['mae']:.5f}, "
             f"MR-STFT {t['mrstft']:.4f}, {t['passages']} passages / {t['seconds']} s"]
    if fad and fad.get("fad"):
        base = fad.get("fad_dry_input", {})
        lines.append("  FAD " + ", ".join(f"{k} {v:.3f}" + (f" (dry input: {base[k]:.3f})" if k in base else "")
                                          for k, v in fad["fad"].items())
                     + (f"; skipped: {', '.join(fad.get('skipped', {}))}" if fad.get("skipped") else ""))
    if cost:
        rtf = cost.get("rtf", {})
        lines.append(f"  cost: {cost.get('params')} params, {cost.get('gmacs_per_second', 0):.3f} GMAC/s, "
                     f"CPU real-time factor offline {rtf.get('offline')}, at 64 samples {rtf.get('64')}, "
                     f"at 512 samples {rtf.get('512')}")
    by_knob: dict[str, list[float]] = {}
    for r in rows:
        by_knob.setdefault(r["knob_code"], []).append(r["esr"])
    for code, vals in sorted(by_knob.items()):
        lines.append(f"  {code or '(no knobs)'}: ESR {np.mean(vals):.4f}")
    table = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in t.items())
    imgs = "".join(f'<figure><img src="plots/{html.escape(Path(i).name)}" style="max-width:100%"></figure>' for i in images)
    page = (f"<!doctype html><meta charset='utf-8'><title>nablafx report</title>"
            f"<h1>{html.escape(m['variant'])} on {html.escape(m['device'])}</h1>"
            f"<p>{html.escape(m['family'])}, {m['params']} parameters</p><h2>Test metrics</h2><table>{table}</table>"
            f"<pre>{html.escape(chr(10).join(lines))}</pre>{imgs}"
            f"<details><summary>metrics.json</summary><pre>{html.escape(json.dumps(metrics, indent=2))}</pre></details>")
    write_text_atomic(out_dir / "index.html", page)
    return "\n".join(lines)
