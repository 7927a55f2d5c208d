"""The `plots` stage's logic: every figure, the listening excerpts, and ``index.html``.

:func:`build_report` writes, under the report folder ``out``:

* ``index.html``: header (variant, parameters, training settings), metrics per knob setting, then
  gray-box views, black-box views, signals, listening, comparison — every figure captioned;
* ``plots/*.png`` and ``audio/*.flac`` (built in sibling folders and swapped in whole, so no figure
  of an earlier run is left behind);
* ``aliasing.json`` (the aliasing-to-signal ratio, a test metric beside ESR) and
  ``per_knob_summary.csv`` (metrics per knob setting: a DVC plot that ``dvc plots diff`` compares);
* ``summary.txt`` (a few lines, also printed).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from nablafx.config import read_section, section, setting
from nablafx.fileio import new_sibling_dir, remove_stale, replace_dir, write_json, write_text_atomic
from nablafx.plotting import blackbox, compare, graybox, listening, page, signals
from nablafx.plotting.common import Figure, knob_label, plt, save


@section("report")
@dataclass
class ReportConfig:
    """params.yaml ``report:``."""

    levels_db: list[float] = setting(nonempty=True)  # probe sine levels (dBFS)
    sine_hz: list[int] = setting(gt=0, nonempty=True)  # stepped-sine frequencies (integer Hz)
    tone_seconds: float = setting(gt=0.1)  # each probe tone; its last 0.1 s is analysed
    harmonics: int = setting(ge=2)  # harmonics drawn (H1…)
    aliasing_hz: int = setting(gt=0)  # aliasing probe frequency (integer Hz)
    aliasing_level_db: float = setting()  # aliasing probe level (dBFS)
    sweep_points: int = setting(ge=2)  # knob values per sweep
    excerpt_seconds: float = setting(gt=0)  # listening excerpts and spectrograms
    transient_ms: float = setting(gt=0)  # worst-error window
    exp_show: bool = setting()  # also list `dvc exp show --json` in the comparison table


def report_config(params: dict) -> ReportConfig:
    cfg = read_section(params, ReportConfig)
    from nablafx.errors import PARAMS_FILE, ConfigError

    if any(lv > 0 for lv in cfg.levels_db):
        raise ConfigError(f"levels must be ≤ 0 dBFS, got {cfg.levels_db}", "report.levels_db", PARAMS_FILE)
    return cfg


# ------------------------------------------------------------------------------------------ training
def _read_tsv(path: Path):
    if not path.is_file():
        return None
    lines = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    header, rows = lines[0], lines[1:]
    step = header.index("step")  # dvclive writes "step<TAB>value" (plus "timestamp" in some versions)
    return np.array([float(r[step]) for r in rows]), np.array([float(r[-1]) for r in rows])


def loss_figure(live_dir: str | Path, out_dir: str | Path) -> Figure | None:
    base = Path(live_dir) / "plots" / "metrics"
    curves = {name: _read_tsv(base / f"{name}.tsv") for name in ("train/loss", "val/loss", "val/esr")}
    if all(v is None for v in curves.values()):
        return None
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 2, figsize=(11, 3.5))
    for name in ("train/loss", "val/loss"):
        if curves[name] is not None:
            axes[0].plot(*curves[name], label=name, marker="o" if name.startswith("val") else None, ms=3)
    axes[0].set(xlabel="step", ylabel="loss", yscale="log", title="training loss")
    axes[0].legend()
    if curves["val/esr"] is not None:
        axes[1].plot(*curves["val/esr"], marker="o", ms=3, color="C2")
    axes[1].set(xlabel="step", ylabel="ESR", yscale="log", title="validation ESR")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    rel = save(fig, out_dir, "loss.png")
    return Figure(rel, "Training curves",
                  "Left: the training loss (every logged step) and the validation loss (dots, every validation "
                  "run), log scale. Right: validation ESR (error-to-signal ratio: error energy over target "
                  "energy; 0 is perfect, 1 is as bad as outputting silence). A validation curve that turns up "
                  "while training still falls is over-fitting; one still falling at the end wants more steps.",
                  {k: v for k, v in curves.items() if v is not None})


# ------------------------------------------------------------------------------------------ metrics
PER_KNOB_COLUMNS = [("esr", "ESR"), ("l1", "MAE"), ("mrstft", "MR-STFT"), ("loudness_diff_lu", "ΔLU")]


def per_knob_summary(rows: list[dict], asr: dict[str, float]) -> pd.DataFrame:
    """Mean metrics per knob setting (per_knob.csv has one row per passage) plus the model's ASR."""
    df = pd.DataFrame(rows)
    cols = [c for c, _ in PER_KNOB_COLUMNS if c in df]
    out = df.groupby("knob_code", sort=True)[cols].mean(numeric_only=True).reset_index()
    out["asr_db"] = [asr.get(c) for c in out["knob_code"]]
    return out


def _settings(index: dict, rows: list[dict]) -> list[tuple[str, np.ndarray, str]]:
    """Test knob settings present in ``rows``: ``[(code, knobs, label)]`` in code order."""
    letters = index.get("knob_letters") or []
    seen = {}
    for it in index["items"]:
        if it["split"] == "test" and it["knob_code"] not in seen:
            seen[it["knob_code"]] = np.asarray(it["knobs"], dtype=np.float64)
    codes = sorted({r["knob_code"] for r in rows} & set(seen))
    return [(c, seen[c], knob_label(c, letters, seen[c])) for c in codes]


def _sweep_centre(settings) -> np.ndarray:
    """The knob vector the sweeps pivot on: per knob the median of the test settings' values."""
    if not settings or settings[0][1].size == 0:
        return np.zeros(0)
    return np.median(np.stack([k for _, k, _ in settings]), axis=0)


# ------------------------------------------------------------------------------------------ the report
@dataclass
class Inputs:
    """Everything the report reads (the stage gathers it from the files named in dvc.yaml)."""

    index: dict
    rows: list[dict]  # per_knob.csv
    metrics: dict  # reports/metrics.json
    model: torch.nn.Module
    model_config: dict  # artifacts/model/config.yaml
    pred_dir: str | Path
    live_dir: str | Path
    fad: dict | None = None
    cost: dict | None = None
    provenance: dict | None = None
    records_dir: str | Path | None = None


def build_report(inp: Inputs, cfg: ReportConfig, out: str | Path) -> str:
    """Write the report into ``out`` (see the module docstring); returns the summary text."""
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("plots", "audio"):
        remove_stale(out / name)
    stage = new_sibling_dir(out / "report", "new")
    try:
        with torch.no_grad():
            summary = _build(inp, cfg, out, stage)
        for name in ("plots", "audio"):
            (stage / name).mkdir(exist_ok=True)
            replace_dir(stage / name, out / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    write_text_atomic(out / "index.html", summary.pop("page"))
    text = summary["text"] + f"\n  report: {out / 'index.html'} ({time.perf_counter() - t0:.1f} s)\n"
    write_text_atomic(out / "summary.txt", text)
    return text


def _build(inp: Inputs, cfg: ReportConfig, out: Path, stage: Path) -> dict:
    index, model = inp.index, inp.model
    timings: dict[str, float] = {}
    clock = [time.perf_counter()]

    def tick(name: str) -> None:
        now = time.perf_counter()
        timings[name] = round(now - clock[0], 2)
        clock[0] = now

    sr = int(index["sample_rate"])
    settings = _settings(index, inp.rows)
    labels = [lab for _, _, lab in settings]
    knob_rows = np.stack([k for _, k, _ in settings]) if settings else np.zeros((1, 0))
    sweeps = graybox.KnobSweeps.make(index.get("knob_letters") or [], _sweep_centre(settings), cfg.sweep_points)
    passages = signals.load_passages(index, inp.rows, inp.pred_dir, lambda c, k: knob_label(c, index["knob_letters"], k))
    if not passages:
        raise FileNotFoundError(f"{inp.pred_dir}: no test predictions for the rows of per_knob.csv (run `dvc repro test`)")
    model_rows = knob_rows if model.n_knobs else np.zeros((1, 0))
    model_labels = labels if model.n_knobs else ["model (no knob input)"]

    # signals first: the aliasing ratio is a metric of the table
    al_out, asr = signals.aliasing_probe(model, model_rows, cfg.aliasing_hz, cfg.aliasing_level_db, sr)
    asr_by_code = ({c: float(a) for (c, _, _), a in zip(settings, asr)} if model.n_knobs
                   else {c: float(asr[0]) for c, _, _ in settings})
    aliasing = {
        "probe": {"f0_hz": cfg.aliasing_hz, "level_db": cfg.aliasing_level_db},
        "model": {"asr_db": round(float(np.max(asr)), 3), "asr_db_mean": round(float(np.mean(asr)), 3),
                  "per_knob": {c: round(v, 3) for c, v in asr_by_code.items()}},
        "target": {"asr_db": None, "reason": "the test set holds no sine passage: the device's aliasing cannot be "
                                             "measured from these recordings"},
    }
    write_json(out / "aliasing.json", aliasing)
    tick("load+aliasing")
    summary_df = per_knob_summary(inp.rows, asr_by_code)
    write_text_atomic(out / "per_knob_summary.csv", summary_df.to_csv(index=False, float_format="%.6g"))

    sections = []
    # 0. metrics and training
    m, t = inp.metrics["model"], inp.metrics["test"]
    overall = [["test (all settings)", t.get("esr"), t.get("mae"), t.get("mrstft"), t.get("loudness_diff_lu"),
                aliasing["model"]["asr_db"]]]
    per = [[lab, *(float(r[c]) if pd.notna(r.get(c)) else None for c, _ in PER_KNOB_COLUMNS),
            r["asr_db"]] for lab, (_, r) in zip(labels, summary_df.iterrows())]
    head = ["knob setting"] + [h for _, h in PER_KNOB_COLUMNS] + ["ASR (dB)"]
    blocks = [page.table(head, overall + per, sortable=True,
                         caption="ESR: error energy / target energy (lower is better); MAE: mean |error|; MR-STFT: "
                                 "multi-resolution spectral distance; ΔLU: prediction − target loudness; ASR: "
                                 f"aliasing-to-signal ratio of a {cfg.aliasing_hz} Hz sine at "
                                 f"{cfg.aliasing_level_db:g} dBFS (model only: the device was not recorded on "
                                 "sines). Overall ASR is the worst setting. Click a column to sort.")]
    extra = [("ESR (mean of passages)", fmt(t.get("esr_mean"))), ("mel-STFT", fmt(t.get("melstft"))),
             ("DC error", fmt(t.get("dc"))), ("test audio", f"{t.get('passages')} passages, {t.get('seconds')} s")]
    if inp.fad and inp.fad.get("fad"):
        base = inp.fad.get("fad_dry_input") or {}
        extra += [(f"FAD {k}", f"{v:.4g}" + (f" (dry input: {base[k]:.4g})" if k in base else ""))
                  for k, v in inp.fad["fad"].items()]
    if inp.cost:
        rtf = inp.cost.get("rtf") or {}
        extra += [("cost", f"{inp.cost.get('gmacs_per_second', 0):.3g} GMAC/s; CPU real-time factor offline "
                           f"{rtf.get('offline')}, at 64 samples {rtf.get('64')}, at 512 samples {rtf.get('512')}")]
    blocks.append(page.kv(extra))
    figs = []
    lf = loss_figure(inp.live_dir, stage)
    if lf is not None:
        figs.append(lf)
    tick("metrics")
    sections.append(page.Section("metrics", "How close is it", "Test metrics per knob setting (means over the "
                                 "test passages of each setting) and the training run.", blocks, figs))

    # 1. gray-box
    is_gray = hasattr(model, "trace") and hasattr(model, "processors")
    mid = min(range(len(passages)), key=lambda i: abs(passages[i].esr - np.median([p.esr for p in passages])))
    name = passages[mid].name
    window = signals.excerpt_window(passages[mid].dry, sr, cfg.excerpt_seconds)
    if is_gray:
        excerpt = torch.from_numpy(passages[mid].dry[window[0]:window[1]].copy())
        gfigs = graybox.graybox_figures(model, sweeps, excerpt, stage)
        header, trows = graybox.control_table(model, [(lab, k) for _, k, lab in settings] if model.n_knobs
                                              else [("learned", np.zeros(0))])
        sections.append(page.Section("graybox", "Gray-box views",
                                     "What each block of the chain learned: responses per block and across each "
                                     "knob's range. The table lists every controlled parameter per knob setting.",
                                     [f"<details><summary>Parameter values per knob setting ({len(trows)} "
                                      f"parameters)</summary>{page.table(header, trows)}</details>"], gfigs))
    else:
        sections.append(page.Section("graybox", "Gray-box views", blocks=[
            f"<p class='note'>{page.esc(m['variant'])} is a black-box model ({page.esc(m['family'])}): it has no "
            "blocks with named parameters to show. The black-box views below apply to every model.</p>"]))

    tick("graybox")
    # 2. black-box
    bfigs, _ = blackbox.blackbox_figures(model, knob_rows, labels, sweeps, cfg, sr, stage)
    sections.append(page.Section("blackbox", "Black-box views",
                                 "The trained model measured like a device on the bench: sines at several levels "
                                 "and frequencies, and each knob moved on its own.", figures=bfigs))

    tick("blackbox")
    # 3. signals
    same = [p for p in passages if p.name == name]
    sfigs = [signals.spectrogram_figure(same, window, sr, stage),
             signals.transient_figure(passages, sr, cfg.transient_ms, stage),
             signals.aliasing_figure(al_out, asr, model_labels, cfg.aliasing_hz, cfg.aliasing_level_db, sr, stage)]
    sections.append(page.Section("signals", "Signals", "Test audio as the device and the model render it.",
                                 figures=sfigs))

    tick("signals")
    # 4. listening
    windows = {}
    for p in passages:
        if p.name not in windows:
            windows[p.name] = signals.excerpt_window(p.dry, sr, cfg.excerpt_seconds)
    clips = listening.write_excerpts(passages, windows, sr, stage)
    sections.append(page.Section("listening", "Listening",
                                 f"Excerpts of {cfg.excerpt_seconds:g} s of every test passage (the loudest part of "
                                 "the dry input), as 16-bit FLAC at the original level: the dry input, then the "
                                 "device's target and the model's prediction for every knob setting. Use "
                                 "headphones; switch between target and prediction.",
                                 [page.players_html(clips)]))

    tick("listening")
    # 5. comparison
    records = compare.record_rows(inp.records_dir) if inp.records_dir else []
    exps, why = compare.exp_show_rows() if cfg.exp_show else ([], "off (params.yaml report.exp_show)")
    header, crows = compare.comparison_rows(records, exps)
    cblocks = [page.table(header, crows, sortable=True) if crows else
               "<p class='note'>No experiments recorded yet (make one with <code>nablafx record NAME</code>).</p>"]
    notes = [f"{len(records)} committed record(s) from {inp.records_dir}"] if inp.records_dir else []
    notes.append(f"{len(exps)} row(s) from dvc exp show" if why is None else f"dvc exp show: {why}")
    cblocks.append(f"<p class='note'>{page.esc('; '.join(notes))}. Training curves and per-knob metrics of "
                   "several experiments: <code>dvc plots diff &lt;exp&gt; &lt;exp&gt;</code> (draws offline).</p>")
    sections.append(page.Section("comparison", "Comparison", "Every experiment the workspace knows: committed "
                                 "records and DVC experiments. Click a column to sort.", cblocks))

    tick("comparison")
    # header
    spec = dict(inp.model_config.get("spec") or {})
    prov = ((inp.provenance or {}).get("train") or {}) if inp.provenance else {}
    hdr = [("model", f"{m['variant']} ({m['family']}), {m['params']:,} parameters"),
           ("device", f"{m['device']}, knobs {', '.join(index.get('knob_letters') or []) or 'none'}; "
                      f"{len(settings)} test settings"),
           ("spec", json.dumps(spec, separators=(", ", ": ")))]
    for key in ("steps", "best_step", "max_steps"):
        if key in inp.model_config:
            hdr.append((key.replace("_", " "), str(inp.model_config[key])))
    if prov.get("commit"):
        hdr.append(("trained at", f"commit {str(prov.get('commit'))[:10]}"
                                  + (f", params hash {prov.get('params_hash')}" if prov.get("params_hash") else "")))
    title = f"{m['variant']} on {m['device']}"
    html_page = page.render_page(f"nablafx report: {title}",
                                 f"test ESR {t['esr']:.4f} · MAE {t['mae']:.5f} · aliasing {aliasing['model']['asr_db']:.1f} dB",
                                 [page.kv(hdr)], sections)
    lines = [f"nablafx report: {m['variant']} ({m['family']}, {m['params']} params) on {m['device']}",
             f"  test ESR {t['esr']:.4f} (mean per passage {t['esr_mean']:.4f}), MAE {t['mae']:.5f}, "
             f"MR-STFT {t['mrstft']:.4f}, ASR {aliasing['model']['asr_db']:.1f} dB, "
             f"{t['passages']} passages / {t['seconds']} s"]
    for lab, (_, r) in zip(labels, summary_df.iterrows()):
        lines.append(f"  {lab}: ESR {r['esr']:.4f}, ASR {r['asr_db']:.1f} dB")
    n_fig = sum(len(s.figures) for s in sections)
    lines.append(f"  {n_fig} figures, {len(clips)} audio excerpts; seconds per part: "
                 + ", ".join(f"{k} {v:g}" for k, v in timings.items()))
    return {"page": html_page, "text": "\n".join(lines)}


def fmt(v) -> str:
    return page.fmt(v)
