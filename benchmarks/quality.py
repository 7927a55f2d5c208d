"""Quality at a fixed training budget, per family and shipped device, side by side with the reference.

    python benchmarks/quality.py --reference /work/.mirror/mcomunita+nablafx/repo
    python benchmarks/quality.py --reference PATH --quick          # smoke test: 2 families, 1 device, tiny budget
    python benchmarks/quality.py --reference PATH --device cuda --steps 15000 --batch 16 --seconds 3   # paper budget

``--reference`` is a checkout of mcomunita/nablafx or its bare git directory (then its HEAD is exported
to a temporary folder); a child process imports it from there — nothing of it is copied here.

For every family (one conditioned paper configuration each, :data:`FAMILIES`) and every device, the
parent draws one set of training crops from the device's training regions (this project's
:class:`~nablafx.data.datasets.RandomChunkDataset`: ``steps`` batches of ``batch`` × ``seconds`` plus the
warm-up context this project's training prepends) and hands the same file of crops to four runs:

* **A — reference loss, both sides.** The reference (its config's model class with ``num_controls`` set
  to the device's knob count, its loss ``TimeAndFrequencyDomainLoss`` = 0.5·L1 + 0.5·auraloss MR-STFT)
  and nablafx (the ``paper-<model>`` variant, ``WeightedLoss({l1: 0.5, mrstft: 0.5})``) train the same
  way: input with the warm-up context, loss on the chunk after it, full back-propagation, gradient
  clipping by value at 10, AdamW at the config's learning rate, no schedule.  This isolates the
  implementations.
* **B — each side's own default recipe**, what a user of either gets on these crops.  Reference: its
  trainer as its configs set it up — the chunk without warm-up, the loss on every sample, clipping by
  value at 10, AdamW, and for ``BlackBoxSystemWithTBPTT`` configs (the LSTM) an optimiser step per
  ``step_num_samples`` segment; its ReduceLROnPlateau never fires within these budgets (patience 20
  epochs), so the LR stays constant.  nablafx: ``params.yaml``'s ``train:`` (the ``smoke`` recipe) with the
  variant's own ``lr`` / ``tbptt_samples``: its loss terms and weights, the loss floor at ``loss_floor_db``
  below the training targets' power, gradient clipping (its algorithm and value), the cosine schedule
  with warm-up, TBPTT segments (:func:`nablafx.training.system.segment_bounds`).

Both sides are seeded alike (``torch.manual_seed(seed)`` before the model is built); model
initialisation differs between the implementations, as it does for their users.  After the last step
each run processes every test passage of the device whole, offline, from a zero state (the reference's
``reset_states`` first), and the parent scores every prediction with the same code
(:mod:`nablafx.metrics`): ESR, MAE, MR-STFT, loudness difference (EBU R128) per knob setting, and the
sign of the prediction's correlation with the target.  A run whose summed correlation over the test
passages is negative converged to inverted polarity: it is flagged as a failure and never averaged in
(its row shows ``inverted``).  Per run also: training wall time (runs of one pair start together and
share the machine), peak resident memory of its process (training and test), first / last loss.

Writes ``benchmarks/results/quality_<device>.{json,md}`` (``--quick``: ``quality_quick_<device>``)
through :func:`nablafx.provenance.write_results`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from benchmarks._reference import import_reference, instantiate, reference_tree  # noqa: E402

SAMPLE_RATE = 48000
CLIP_VALUE = 10.0  # the reference's trainer: gradient_clip_val 10, gradient_clip_algorithm value
DEVICES = ["Guitarix-TS9", "Guitarix-DS1", "Guitarix-FuzzFace", "Guitarix-Compressor"]

# family → (reference config under cfg/model/, reference init_args laid over it, nablafx spec laid over
# the variant).  The reference has no conditioned GCN config; FiLM is switched on on both sides (its GCN
# class takes cond_type film), so that every family can follow the knobs.
FAMILIES = {
    "lstm": ("lstm-param/model_bb-tbptt-param_lstm-32.yaml", {}, {}),
    "tcn": ("tcn-param/model_bb-param_tcn-f-45-s-16.yaml", {}, {}),
    "gcn": ("gcn/model_bb_gcn-45-s-16.yaml", {"cond_type": "film"},
            {"cond": "film", "cond_style": "paper", "film_norm": "batch"}),
    "s4": ("s4-param/model_bb-param_s4-f-b4-s4-c16.yaml", {}, {}),
}
SETTINGS = {"A": "reference loss on both sides", "B": "each side's own default recipe"}
QUICK = {"families": ["tcn", "lstm"], "devices": ["Guitarix-TS9"], "steps": 4, "batch": 2, "seconds": 0.25}


# ----------------------------------------------------------------------------- children
def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _finish(a, params: int, losses: list, train_s: float, predict, extra: dict | None = None) -> None:
    """Run the test passages, save the predictions, print the run's summary line."""
    import torch

    test = torch.load(a.test, weights_only=True)
    preds = {}
    with torch.no_grad():
        for code, (x, knobs) in test.items():
            y_hat = predict(x, knobs)
            preds[code] = y_hat.reshape(-1).float().cpu()
    torch.save(preds, a.pred)
    finite = all(math.isfinite(v) for v in losses)
    print(json.dumps({"params": params, "train_s": round(train_s, 2), "peak_rss_mb": _peak_rss_mb(),
                      "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
                      "finite": finite, **(extra or {})}), file=sys.__stdout__, flush=True)


def child_reference(a) -> None:
    import yaml

    import_reference(a.reference)
    import torch

    torch.set_num_threads(a.threads)
    config, ref_over, _ = FAMILIES[a.family]
    doc = yaml.safe_load((a.reference / "cfg" / "model" / config).read_text())["model"]
    cfg = doc["init_args"]
    proc = cfg["model"]["init_args"]["processor"]
    proc["init_args"].update(ref_over, num_controls=a.n_knobs)
    torch.manual_seed(a.seed)
    model = instantiate(proc)
    loss_fn = instantiate(cfg["loss"])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], betas=(0.9, 0.999), eps=1e-8)
    tbptt = int(cfg.get("step_num_samples", 0)) if doc["class_path"].endswith("WithTBPTT") and a.setting == "B" else 0
    crops = torch.load(a.crops, weights_only=True)
    cond = a.n_knobs > 0

    def run(x, knobs):
        return model(x, knobs) if cond else model(x)

    def reset():
        if hasattr(model, "reset_states"):
            model.reset_states()

    def detach():
        if hasattr(model, "detach_states"):
            model.detach_states()

    losses = []
    t0 = time.perf_counter()
    for x, y, knobs in zip(crops["x"], crops["y"], crops["knobs"]):
        reset()
        if a.setting == "A":  # warm-up context in, loss on the chunk after it
            opt.zero_grad(set_to_none=True)
            loss = sum(loss_fn(run(x, knobs)[..., a.context:], y[..., a.context:]))
            loss.backward()
            torch.nn.utils.clip_grad_value_(model.parameters(), CLIP_VALUE)
            opt.step()
            losses.append(loss.item())
            continue
        x, y = x[..., a.context:], y[..., a.context:]  # its own recipe: no warm-up, loss on every sample
        if not tbptt:
            opt.zero_grad(set_to_none=True)
            loss = sum(loss_fn(run(x, knobs), y))
            loss.backward()
            torch.nn.utils.clip_grad_value_(model.parameters(), CLIP_VALUE)
            opt.step()
            losses.append(loss.item())
            continue
        detach()  # BlackBoxSystemWithTBPTT.common_step: an optimiser step per segment
        opt.zero_grad(set_to_none=True)
        total, n = 0.0, x.shape[-1]
        for s0 in range(0, n, tbptt):
            s1 = min(n, s0 + tbptt)
            loss = sum(loss_fn(run(x[..., s0:s1], knobs), y[..., s0:s1]))
            loss.backward()
            torch.nn.utils.clip_grad_value_(model.parameters(), CLIP_VALUE)
            opt.step()
            detach()
            opt.zero_grad(set_to_none=True)
            total += loss.item() * (s1 - s0) / n
        losses.append(total)
    train_s = time.perf_counter() - t0
    model.eval()

    def predict(x, knobs):
        reset()
        return run(x, knobs)

    _finish(a, sum(p.numel() for p in model.parameters()), losses, train_s, predict)


TRAIN_SETS = ("align_polarity",)  # --nablafx-set keys that set this project's trainer, not the variant


def build_nablafx(family: str, n_knobs: int, params_file: Path = ROOT / "params.yaml", overlay: dict | None = None):
    """This project's model for ``family``'s reference config: ``(model, variant, training keys)``;
    ``overlay``: variant settings laid over last (``--nablafx-set``, for ablations)."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.reference_params import variant_name
    from nablafx.config import load_params
    from nablafx.registry import TRAINING_KEYS, build_model, resolve_variant

    config, _, over = FAMILIES[family]
    variant = variant_name(Path(config).stem)
    _, spec = resolve_variant(load_params(params_file), variant)
    spec = {**spec, **over, **{k: v for k, v in (overlay or {}).items() if k not in TRAIN_SETS}}
    keys = {k: spec.pop(k) for k in TRAINING_KEYS if k in spec}
    return build_model(spec, n_knobs=n_knobs, sample_rate=SAMPLE_RATE, key=f"variants.{variant}"), variant, keys


def child_nablafx(a) -> None:
    import torch

    from nablafx.config import load_params, train_config
    from nablafx.training.losses import WeightedLoss
    from nablafx.training.polarity import PolarityGuard, align_output_polarity
    from nablafx.training.system import clip_gradients, cosine_factor, tbptt_backward

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model, _, keys = build_nablafx(a.family, a.n_knobs, overlay=a.overlay)
    crops = torch.load(a.crops, weights_only=True)
    lr = float(keys.get("lr", 1e-3))
    tcfg = train_config(load_params(ROOT / "params.yaml"))
    align = a.overlay.get("align_polarity", tcfg.align_polarity)  # this project's trainer does it in A and B
    if a.setting == "A":
        loss_fn = WeightedLoss({"l1": 0.5, "mrstft": 0.5}, sample_rate=SAMPLE_RATE)
        clip, clip_algo, tbptt, sched = CLIP_VALUE, "value", 0, None
        opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
    else:  # params.yaml train: (the smoke recipe), the variant's lr / tbptt_samples laid over it
        floor = crops["target_power"] * 10 ** (tcfg.loss_floor_db / 10)
        loss_fn = WeightedLoss(dict(tcfg.loss), sample_rate=SAMPLE_RATE, pre_emphasis=tcfg.pre_emphasis, floor=floor)
        clip, clip_algo = tcfg.grad_clip, tcfg.grad_clip_algorithm
        tbptt = int(keys.get("tbptt_samples", tcfg.tbptt_samples))
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=tcfg.weight_decay)
        steps = len(crops["x"])
        warmup = min(50, steps // 10)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_factor(s, warmup, steps))
    start = None
    if align != "off":
        start = align_output_polarity(model, crops["x"][0], crops["y"][0], crops["knobs"][0], a.context)
    guard = PolarityGuard() if align == "guard" else None
    losses = []
    t0 = time.perf_counter()
    for step, (x, y, knobs) in enumerate(zip(crops["x"], crops["y"], crops["knobs"])):
        opt.zero_grad(set_to_none=True)
        # EffectSystem.training_step's passes; a non-finite loss ends the run as an error
        total, _, corr_sums = tbptt_backward(model, loss_fn, x, y, knobs, a.context, tbptt, step=step,
                                             correlate=guard is not None)
        clip_gradients(model.parameters(), clip, clip_algo)
        opt.step()
        if guard is not None:
            guard.observe(model, opt, corr_sums.tolist())
        if sched is not None:
            sched.step()
        losses.append(total)
    train_s = time.perf_counter() - t0
    model.eval()
    knobs_of = (lambda k: k) if model.n_knobs else (lambda k: None)
    extra = {} if start is None else {"start_corr": round(start["corr"], 4), "start_flipped": start["flipped"]}
    if guard is not None:
        extra["guard_flips"] = guard.flips
    _finish(a, sum(p.numel() for p in model.parameters()), losses, train_s,
            lambda x, knobs: model(x, knobs_of(knobs))[0], extra)


# ----------------------------------------------------------------------------- parent
def device_data(device: str, tmp: Path, root: Path = ROOT / "data") -> dict:
    """The device's prepared index (validated by ``prepare``), its training items and a test pack
    ``{knob code/passage: (x (1, 1, T), knobs (1, K))}`` saved to ``tmp``; targets kept here."""
    import numpy as np
    import torch

    from nablafx.data.audio import read_audio
    from nablafx.data.datasets import AudioBank, target_power
    from nablafx.data.prepare import prepare_device

    index = prepare_device(root, device, "DRY-with-markers", SAMPLE_RATE, 2.5, 0.25, 4)
    train = [it for it in index["items"] if it["split"] == "train"]
    bank = AudioBank(train, SAMPLE_RATE)
    test, targets = {}, {}
    for it in index["items"]:
        if it["split"] != "test":
            continue
        key = f"{it['knob_code']}/{it['name']}"
        x = torch.from_numpy(read_audio(it["dry"], SAMPLE_RATE))[None, None]
        test[key] = (x, torch.tensor([it["knobs"]], dtype=torch.float32))
        targets[key] = (np.asarray(read_audio(it["wet"], SAMPLE_RATE), dtype=np.float64), it["knob_code"])
    pack = tmp / f"test_{device}.pt"
    torch.save(test, pack)
    return {"index": index, "train": train, "bank": bank, "test_pack": pack, "targets": targets,
            "target_power": target_power(train, bank), "n_knobs": len(index["knob_letters"])}


def draw_crops(data: dict, context: int, a, path: Path) -> None:
    """``steps`` batches of training crops (input with ``context`` warm-up samples, target, knobs)."""
    import torch

    from nablafx.data.datasets import RandomChunkDataset

    chunk = int(round(a.seconds * SAMPLE_RATE))
    ds = RandomChunkDataset(data["train"], data["bank"], chunk, context, a.steps * a.batch, seed=a.seed)
    xs, ys, ks = [], [], []
    for s in range(a.steps):
        ex = [ds[s * a.batch + b] for b in range(a.batch)]
        xs.append(torch.stack([e[0] for e in ex]))
        ys.append(torch.stack([e[1] for e in ex]))
        ks.append(torch.stack([e[2] for e in ex]))
    torch.save({"x": xs, "y": ys, "knobs": ks, "target_power": data["target_power"]}, path)


def score(pred_path: Path, targets: dict) -> dict:
    """Per knob setting and overall: ESR, MAE, MR-STFT, loudness difference, correlation sign."""
    import numpy as np
    import torch

    from nablafx import metrics
    from nablafx.evaluation.loudness import integrated_loudness

    preds = torch.load(pred_path, weights_only=True)
    stft = metrics.mrstft_loss()
    rows, sq_err, sq_tgt, abs_err, n, corr, secs = [], 0.0, 0.0, 0.0, 0, 0.0, []
    for key, (y, code) in targets.items():
        p = preds[key].double().numpy()
        if p.shape != y.shape or not np.all(np.isfinite(p)):
            return {"error": f"{key}: prediction {'not finite' if p.shape == y.shape else f'of shape {p.shape}'}"}
        e = p - y
        pt, yt = torch.from_numpy(p)[None, None].float(), torch.from_numpy(y)[None, None].float()
        lt, lp = integrated_loudness(yt, SAMPLE_RATE), integrated_loudness(pt, SAMPLE_RATE)
        c = float(np.dot(p, y))
        rows.append({"setting": code, "passage": key.split("/", 1)[1], "esr": float(np.dot(e, e) / np.dot(y, y)),
                     "mae": float(np.mean(np.abs(e))), "mrstft": float(stft(pt, yt)),
                     "loudness_diff_lu": None if lt is None or lp is None else lp - lt,
                     "corr": c / (np.linalg.norm(p) * np.linalg.norm(y) + 1e-30)})
        sq_err += float(np.dot(e, e))
        sq_tgt += float(np.dot(y, y))
        abs_err += float(np.sum(np.abs(e)))
        n += len(y)
        corr += c
        secs.append(len(y) / SAMPLE_RATE)
    lu = [abs(r["loudness_diff_lu"]) for r in rows if r["loudness_diff_lu"] is not None]
    per_setting = {}
    for r in rows:
        per_setting.setdefault(r["setting"], []).append(r)
    settings = {code: {"esr": sum(x["esr"] for x in rs) / len(rs), "mrstft": sum(x["mrstft"] for x in rs) / len(rs),
                       "mae": sum(x["mae"] for x in rs) / len(rs), "inverted": any(x["corr"] < 0 for x in rs)}
                for code, rs in per_setting.items()}
    return {"esr": sq_err / sq_tgt, "mae": abs_err / n,
            "mrstft": float(np.average([r["mrstft"] for r in rows], weights=secs)),
            "loudness_diff_lu": float(np.mean(lu)) if lu else None, "inverted": corr < 0,
            "settings_inverted": sum(s["inverted"] for s in settings.values()),
            "per_setting": settings, "rows": rows}


def run_pair(cmds: dict, timeout: float) -> dict:
    """Start both sides together, wait for both; per side the child's summary or ``error``."""
    procs = {}
    for side, cmd in cmds.items():
        err = tempfile.TemporaryFile("w+")
        env = {**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": cmd[cmd.index("--threads") + 1]}
        procs[side] = (subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT, env=env), err)
    out, t0 = {}, time.monotonic()
    for side, (p, err) in procs.items():
        try:
            stdout, _ = p.communicate(timeout=max(1.0, timeout - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            out[side] = {"error": f"stopped: no result within {timeout:.0f} s"}
            err.close()
            continue
        lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
        if p.returncode == 0 and lines:
            out[side] = json.loads(lines[-1])
        else:
            err.seek(0)
            msg = [ln for ln in err.read().splitlines() if ln.strip()]
            out[side] = {"error": (msg[-1][:300] if msg else f"exit status {p.returncode}")}
        err.close()
    return out


def _num(v, fmt="{:.4f}") -> str:
    return "—" if v is None else fmt.format(v)


def _cell(run: dict, key: str) -> str:
    if "error" in run:
        return "error"
    if run["inverted"]:
        return "inverted"
    return _num(run[key])


def _better(ref: dict, our: dict, key: str) -> str:
    if "error" in ref or "error" in our or ref["inverted"] or our["inverted"]:
        return "—"
    return "yes" if our[key] <= ref[key] else "no"


def markdown(meta: dict, rows: list[dict]) -> str:
    lines = [
        f"# Quality at a fixed training budget, side by side with the reference ({meta['device']})",
        "",
        *([f"**Partial: {len(rows)} of {meta['planned']} runs so far; the run was stopped or is still going.**", ""]
          if not meta.get("complete", True) else []),
        *([f"**Ablation: this project's variants with {json.dumps(meta['nablafx_set'])} laid over them.**", ""]
          if meta.get("nablafx_set") else []),
        f"Both implementations trained in this run on the same crops: {meta['steps']} steps of batch {meta['batch']} × "
        f"{meta['seconds']} s from each device's training regions (seed {meta['seed']}), {meta['threads']} thread(s) per "
        f"run, the two runs of a pair at once. Reference: mcomunita/nablafx `{meta['reference_commit'][:12]}`. "
        "**A** = the reference's loss (0.5·L1 + 0.5·MR-STFT) and optimiser on both sides (isolates the "
        "implementations); **B** = each side's own default recipe (reference: its trainer's; nablafx: params.yaml "
        "`train:`, the smoke recipe). Test: every test passage of the device, whole, offline; scored by the same "
        "code for both sides. ESR energy-weighted over the test set, MR-STFT (auraloss defaults) mean over "
        "passages, ΔLU (absolute) the mean absolute loudness difference. `inverted`: the prediction's summed correlation "
        "with the target is negative — a failure, never averaged in. nablafx ≤ ref: nablafx's value is at most "
        "the reference's."
        + (" nablafx's trainer starts polarity-aligned in both settings (params.yaml `train.align_polarity`): "
           "before the first step, if the untrained output anti-correlates with the first batch's target, its "
           "read-out layer is negated (exact; the reference has no such step)."
           if meta.get("align_polarity") not in (None, False, "off") else "")
        + (" During training it negates the read-out again (with its optimiser first moments) whenever the "
           "training batches' output/target correlation, smoothed over steps, turns negative (`guard`)."
           if meta.get("align_polarity") == "guard" else ""),
        "",
        "| device | family | setting | params ref / nablafx | ESR ref | ESR nablafx | MR-STFT ref | MR-STFT nablafx | "
        "ΔLU (absolute) ref / nablafx | nablafx ≤ ref (ESR, MR-STFT) | inverted settings ref / nablafx | train s ref / nablafx | "
        "peak RSS GB ref / nablafx |",
        "|---|---|---|---|---:|---:|---:|---:|---|---|---|---|---|",
    ]
    for r in rows:
        ref, our = r["reference"], r["nablafx"]
        params = f"{ref.get('params', '—')} / {our.get('params', '—')}"
        lu = " / ".join("—" if "error" in s else _num(s.get("loudness_diff_lu"), "{:.2f}") for s in (ref, our))
        ok = f"{_better(ref, our, 'esr')}, {_better(ref, our, 'mrstft')}"
        inv = " / ".join("—" if "error" in s else str(s["settings_inverted"]) for s in (ref, our))
        ts = " / ".join(_num(s.get("train_s"), "{:.0f}") for s in (ref, our))
        mem = " / ".join(_num(None if s.get("peak_rss_mb") is None else s["peak_rss_mb"] / 1024, "{:.2f}")
                         for s in (ref, our))
        lines.append(f"| {r['device']} | {r['family']} (`{r['variant']}`) | {r['setting']} | {params} | "
                     f"{_cell(ref, 'esr')} | {_cell(our, 'esr')} | {_cell(ref, 'mrstft')} | {_cell(our, 'mrstft')} | "
                     f"{lu} | {ok} | {inv} | {ts} | {mem} |")
    errors = [(r, side) for r in rows for side in ("reference", "nablafx") if "error" in r[side]]
    if errors:
        lines += ["", "Runs that failed:", ""]
        lines += [f"- {r['device']} {r['family']} {r['setting']} {side}: {r[side]['error']}" for r, side in errors]
    lines += ["", *summary_lines(rows)] if rows else []
    return "\n".join(lines)


def parse_sets(ap, items: list[str]) -> dict:
    """``KEY=VALUE`` strings (values read as YAML) → a mapping; a malformed one is a usage error."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            ap.error(f"--nablafx-set {item!r}: expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value)
    return out


BEGIN, END = "<!-- quality:begin -->", "<!-- quality:end -->"


def summary_lines(rows: list[dict]) -> list[str]:
    """One sentence per setting: how often nablafx is at most the reference, and inverted runs."""
    lines = []
    for setting in SETTINGS:
        sel = [r for r in rows if r["setting"] == setting]
        if not sel:
            continue
        comparable = [r for r in sel if _better(r["reference"], r["nablafx"], "esr") != "—"]
        wins = {k: sum(_better(r["reference"], r["nablafx"], k) == "yes" for r in comparable) for k in ("esr", "mrstft")}
        inv = {s: sum(1 for r in sel if "error" not in r[s] and r[s]["inverted"]) for s in ("reference", "nablafx")}
        flipped = [r["nablafx"]["start_flipped"] for r in sel if "start_flipped" in r["nablafx"]]
        guarded = [r["nablafx"]["guard_flips"] for r in sel if "guard_flips" in r["nablafx"]]
        lines.append(f"Setting {setting} ({SETTINGS[setting]}): nablafx ≤ reference on ESR in {wins['esr']} and on "
                     f"MR-STFT in {wins['mrstft']} of {len(comparable)} comparable (device, family) pairs; runs "
                     f"inverted: reference {inv['reference']}, nablafx {inv['nablafx']} of {len(sel)} each"
                     + (f"; nablafx read-out negated at the start in {sum(flipped)} of {len(flipped)}" if flipped else "")
                     + (f", by the guard during training in {sum(1 for g in guarded if g)} of {len(guarded)}"
                        if guarded else "") + ".")
    return lines


def readme_table(data: dict) -> str:
    """The README's compact view of a results file: ESR and MR-STFT per device, family and setting."""
    rows = data["rows"]
    out = ["| device | family | A: ESR ref / nablafx | A: MR-STFT ref / nablafx | B: ESR ref / nablafx | "
           "B: MR-STFT ref / nablafx |", "|---|---|---|---|---|---|"]
    keys = list(dict.fromkeys((r["device"], r["family"]) for r in rows))
    for device, family in keys:
        cells = []
        for setting in SETTINGS:
            r = next((r for r in rows if (r["device"], r["family"], r["setting"]) == (device, family, setting)), None)
            for k in ("esr", "mrstft"):
                cells.append("—" if r is None else f"{_cell(r['reference'], k)} / {_cell(r['nablafx'], k)}")
        out.append(f"| {device.removeprefix('Guitarix-')} | {family} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def update_readme(readme: Path, results: Path, command: str) -> None:
    from nablafx.info import update_section

    data = json.loads(results.read_text())
    if not data["meta"].get("complete", True):
        raise SystemExit(f"{results}: partial results ({len(data['rows'])} of {data['meta']['planned']} runs); "
                         "rerun the benchmark to the end before putting it in the README")
    m, prov = data["meta"], data["provenance"]
    shown = results.resolve().relative_to(ROOT) if results.resolve().is_relative_to(ROOT) else results
    body = (f"{m['steps']} steps of batch {m['batch']} × {m['seconds']} s per run, {m['threads']} thread per run, "
            f"seed {m['seed']}, reference commit {m['reference_commit'][:12]}, this project's commit "
            f"{prov['commit'][:12]}; `inverted`: converged to inverted polarity (a failure). Details, per knob "
            f"setting, wall time and memory in `{shown.with_suffix('.md')}`.\n\n"
            f"{readme_table(data)}\n\n" + "\n".join(f"- {line}" for line in summary_lines(data["rows"])))
    update_section(readme, body, command, BEGIN, END, source=shown)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, help="checkout of mcomunita/nablafx, or its bare git dir (required)")
    ap.add_argument("--families", nargs="*", default=None, choices=list(FAMILIES))
    ap.add_argument("--devices", nargs="*", default=None, help=f"shipped devices (default: {' '.join(DEVICES)})")
    ap.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--device", default="cpu", choices=["cpu"], help="cpu (the GPU path is not written yet)")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=1, help="per run; the two runs of a pair go at once")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per pair")
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 families, 1 device, 4 steps of 2 × 0.25 s")
    ap.add_argument("--out", default=None)
    ap.add_argument("--nablafx-set", action="append", default=[], metavar="KEY=VALUE",
                    help="lay a setting over this project's variants (YAML value), e.g. film_norm=none: an ablation")
    ap.add_argument("--render", type=Path, default=None, metavar="RESULTS",
                    help="redraw RESULTS.md from RESULTS.json with this version's table code and stop")
    ap.add_argument("--readme", default=None, help="rewrite this README's quality section from the results file and stop")
    for hidden in ("child", "family", "setting", "crops", "test", "pred"):
        ap.add_argument(f"--{hidden}", help=argparse.SUPPRESS)
    ap.add_argument("--context", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--overlay-json", default="{}", help=argparse.SUPPRESS)
    ap.add_argument("--n-knobs", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.overlay = parse_sets(ap, a.nablafx_set) if a.nablafx_set else json.loads(a.overlay_json)
    if a.child:
        for k in ("crops", "test", "pred"):
            setattr(a, k, Path(getattr(a, k)))
        sys.stdout, protocol = sys.stderr, sys.stdout  # prints of either package stay out of the reply
        try:
            child_reference(a) if a.child == "reference" else child_nablafx(a)
        finally:
            sys.stdout = protocol
        return 0
    if a.render:  # the markdown of an existing results file, drawn again by this version's table code
        from nablafx.fileio import write_text_atomic
        from nablafx.provenance import git_state, markdown_footer

        data = json.loads(a.render.with_suffix(".json").read_text())
        redrawn = (f"Tables drawn again from the JSON by `python benchmarks/quality.py --render` with the code of "
                   f"commit {(git_state(ROOT)['commit'] or 'unknown')[:12]}; the measurements are the run's below.")
        write_text_atomic(a.render.with_suffix(".md"), markdown(data["meta"], data["rows"]).rstrip("\n") + "\n\n"
                          + redrawn + "\n\n" + markdown_footer(data["provenance"]))
        print(f"{a.render.with_suffix('.md')}: drawn again from {a.render.with_suffix('.json')}")
        return 0
    if a.readme:
        results = Path(a.out or ROOT / "benchmarks" / "results" / f"quality_{a.device}").with_suffix(".json")
        update_readme(Path(a.readme), results, f"python benchmarks/quality.py --readme {a.readme}")
        print(f"{a.readme}: quality section updated from {results}")
        return 0
    if a.reference is None:
        ap.error("--reference PATH is required (a checkout of mcomunita/nablafx, or its bare git directory)")
    if a.quick:
        a.families = a.families or QUICK["families"]
        a.devices = a.devices or QUICK["devices"]
        a.steps, a.batch, a.seconds = QUICK["steps"], QUICK["batch"], QUICK["seconds"]
    families, devices = a.families or list(FAMILIES), a.devices or DEVICES
    unknown = [d for d in devices if not (ROOT / "data" / d).is_dir()]
    if unknown:
        raise SystemExit(f"error: --devices: no shipped device {', '.join(unknown)} under data/ ({', '.join(DEVICES)})")
    from nablafx.provenance import record, write_results

    sys.path.insert(0, str(ROOT))
    from benchmarks.bench_training import context_of

    used = {k: v for k, v in vars(a).items() if k not in ("out", "child", "family", "setting", "crops", "test", "pred",
                                                          "context", "n_knobs", "overlay", "overlay_json", "nablafx_set")}
    used.update(reference=str(a.reference), families=families, devices=devices, nablafx_set=a.overlay)
    prov = record(used)  # before measuring: the commit the code came from
    out = Path(a.out or ROOT / "benchmarks" / "results" / (("quality_quick_" if a.quick else "quality_") + a.device))
    rows = []
    with tempfile.TemporaryDirectory(prefix="nablafx-quality-") as tmp:
        tmp = Path(tmp)
        (tmp / "ref").mkdir()
        tree, commit, date = reference_tree(a.reference.resolve(), tmp / "ref")
        from nablafx.config import load_params, train_config

        meta = {"device": a.device, "steps": a.steps, "batch": a.batch, "seconds": a.seconds,
                "threads": a.threads, "seed": a.seed, "families": {f: FAMILIES[f][0] for f in families},
                "devices": devices, "reference_repository": "mcomunita/nablafx", "reference_commit": commit,
                "reference_commit_date": date, "settings": SETTINGS, "nablafx_set": a.overlay,
                "align_polarity": a.overlay.get("align_polarity",
                                                train_config(load_params(ROOT / "params.yaml")).align_polarity),
                "planned": len(devices) * len(families) * len(a.settings)}
        for device in devices:
            data = device_data(device, tmp)
            for family in families:
                model, variant, _ = build_nablafx(family, data["n_knobs"], overlay=a.overlay)
                context = context_of(model)
                del model
                crops = tmp / f"crops_{device}_{family}.pt"
                draw_crops(data, context, a, crops)
                for setting in a.settings:
                    cmds = {}
                    for side in ("reference", "nablafx"):
                        cmds[side] = [sys.executable, str(Path(__file__).resolve()), "--reference", str(tree),
                                      "--child", side, "--family", family, "--setting", setting,
                                      "--crops", str(crops), "--test", str(data["test_pack"]),
                                      "--pred", str(tmp / f"pred_{side}.pt"), "--context", str(context),
                                      "--n-knobs", str(data["n_knobs"]), "--threads", str(a.threads),
                                      "--seed", str(a.seed), "--overlay-json", json.dumps(a.overlay)]
                    res = run_pair(cmds, a.timeout)
                    for side in cmds:
                        if "error" not in res[side]:
                            scored = score(tmp / f"pred_{side}.pt", data["targets"])
                            res[side].update(scored) if "error" not in scored else res[side].update(error=scored["error"])
                    rows.append({"device": device, "family": family, "variant": variant, "config": FAMILIES[family][0],
                                 "setting": setting, "context": context, "n_knobs": data["n_knobs"], **res})
                    brief = {s: {k: res[s].get(k) for k in ("esr", "mrstft", "inverted", "train_s", "error") if k in res[s]}
                             for s in res}
                    print(json.dumps({"device": device, "family": family, "setting": setting, **brief}), file=sys.stderr,
                          flush=True)
                    # written after every pair, marked partial until the last: a stopped run keeps its rows
                    meta["complete"] = len(rows) == meta["planned"]
                    write_results(out, markdown(meta, rows), {"meta": meta, "rows": rows}, provenance=prov)
    print(f"wrote {out}.md")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
