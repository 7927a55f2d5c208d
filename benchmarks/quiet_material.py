"""Train one variant on guitar-like material with quiet gaps and record every step's loss terms.

    # one run (the default recipe of --params, on the fixture of tests/conftest.py:make_quiet_dataset)
    OMP_NUM_THREADS=1 python benchmarks/quiet_material.py run --variant s4-film-b4-s32-c16 \\
        --device Quiet-Drive --stop 200 --val-every 100 --out /tmp/quiet/after_film.json
    # the same on older library code (e.g. before the fix): its nablafx/ and params.yaml
    git archive 377ce79 nablafx params.yaml | tar -x -C /tmp/before
    OMP_NUM_THREADS=1 python benchmarks/quiet_material.py run --code /tmp/before \\
        --params /tmp/before/params.yaml --variant s4-film-b4-s32-c16 --device Quiet-Drive \\
        --stop 200 --val-every 100 --out /tmp/quiet/before_film.json
    # tables of several runs → benchmarks/results/quiet_material.{md,json}
    python benchmarks/quiet_material.py summarise /tmp/quiet/before_film.json /tmp/quiet/after_film.json
    # each loss term on a silent, a −80 dBFS and a hot crop, before and after
    python benchmarks/quiet_material.py crops
    # the quietest crop's share of the gradient, for the model a run saved (--work DIR)
    python benchmarks/quiet_material.py share --model DIR/model --device Quiet-Drive

The fixture (45 s per knob setting, three settings, two synthetic pedals of which ``Quiet-Fuzz``
inverts polarity) is written to ``--root`` once.  A run uses params.yaml's training settings
except ``accelerator: cpu`` and ``val_every_n_steps``; ``--stop`` ends it early without touching
the learning-rate schedule (which runs over ``train.max_steps``).  Recorded per step: the loss and
its terms, the gradient norm before clipping, each crop's target level (dBFS RMS) and per-example
ESR; per validation: the logged ``val/*`` values plus the energy-weighted and the per-chunk-mean
ESR and every chunk's ESR and level (computed here, so older code is measured the same way); at
the end, the test stage's summary on the whole test passages.  The recorders only read.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(args) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.conftest import make_quiet_dataset  # the fixture, always this checkout's

    if args.code != str(ROOT):
        sys.path.insert(0, str(Path(args.code).resolve()))
        for name in [m for m in sys.modules if m == "nablafx" or m.startswith("nablafx.")]:
            del sys.modules[name]
    import lightning as L
    import numpy as np
    import torch
    from lightning.pytorch.callbacks import Callback

    from nablafx.config import load_params
    from nablafx.data.prepare import prepare_device
    from nablafx.training import system as S
    from nablafx.training import train as T
    from nablafx.training.losses import WeightedLoss

    code = Path(S.__file__).resolve().parents[2]
    print(f"library code: {code}", flush=True)
    root = Path(args.root)
    if not (root / "DRY-with-markers").is_dir():
        make_quiet_dataset(root)
    params = load_params(args.params)
    params["model"] = args.variant
    params["data"].update(root=str(root), device=args.device)
    params["train"].update(accelerator="cpu", val_every_n_steps=args.val_every)
    work = Path(args.work or f"/tmp/quiet-material/{os.getpid()}")
    work.mkdir(parents=True, exist_ok=True)
    d = params["data"]
    index = prepare_device(d["root"], d["device"], d["dry_dir"], d["sample_rate"], d["val_seconds"],
                           d["guard_seconds"], d["max_latency_samples"])
    (work / "index.json").write_text(json.dumps(index))
    rec = {"args": vars(args), "code": str(code), "steps": [], "val": []}
    cur: dict = {}

    forward = WeightedLoss.forward

    def recording_forward(self, pred, target):
        total, terms = forward(self, pred, target)
        if torch.is_grad_enabled():  # training steps only
            p, t = pred.detach(), target.detach()
            err = torch.sum((p - t) ** 2, -1).flatten()
            energy = torch.sum(t**2, -1).flatten()
            n = t.shape[-1]
            cur.update(total=float(total.detach()), terms={k: float(v.detach()) for k, v in terms.items()},
                       tgt_rms_db=[round(float(10 * torch.log10(e / n + 1e-30)), 1) for e in energy],
                       pred_rms_db=[round(float(10 * torch.log10(torch.sum(q**2) / n + 1e-30)), 1) for q in p],
                       esr_ex=[float(v) for v in err / (energy + 1e-10)])
        return total, terms

    WeightedLoss.forward = recording_forward
    clip = S.EffectSystem.clip_gradients

    def recording_clip(self, opt, gradient_clip_val=None, gradient_clip_algorithm=None):
        grads = [q.grad.detach() for q in self.model.parameters() if q.grad is not None]
        cur["grad_norm"] = float(torch.sqrt(sum(torch.sum(g**2) for g in grads)))
        return clip(self, opt, gradient_clip_val=gradient_clip_val, gradient_clip_algorithm=gradient_clip_algorithm)

    S.EffectSystem.clip_gradients = recording_clip
    chunks: list[tuple[float, float]] = []
    validation_step = S.EffectSystem.validation_step

    def recording_validation_step(self, batch, batch_idx):
        x, y, knobs = batch
        with torch.no_grad():
            y_hat = self(x, knobs)[..., self.context :]
            t = y[..., self.context :]
            err = torch.sum((y_hat - t).double() ** 2, -1).flatten()
            energy = torch.sum(t.double() ** 2, -1).flatten()
        chunks.extend((float(a), float(b)) for a, b in zip(err, energy))
        return validation_step(self, batch, batch_idx)

    S.EffectSystem.validation_step = recording_validation_step
    chunk_n = int(round(params["train"]["chunk_seconds"] * d["sample_rate"]))

    class Recorder(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            step = {**cur, "step": trainer.global_step, "lr": trainer.optimizers[0].param_groups[0]["lr"]}
            rec["steps"].append(step)
            print(f"step {step['step']:4d} loss {step['total']:.4g} "
                  + " ".join(f"{k}={v:.4g}" for k, v in step["terms"].items())
                  + f" grad={step['grad_norm']:.3g} crops_db={step['tgt_rms_db']}", flush=True)
            if trainer.global_step >= args.stop:
                trainer.should_stop = True

        def on_validation_end(self, trainer, pl_module):
            m = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val")}
            m["step"] = trainer.global_step
            m["esr_energy"] = sum(a for a, _ in chunks) / sum(b for _, b in chunks)
            m["esr_chunk_mean"] = float(np.mean([a / (b + 1e-10) for a, b in chunks]))
            m["chunk_esr"] = [round(a / (b + 1e-10), 4) for a, b in chunks]
            m["chunk_db"] = [round(10 * math.log10(b / chunk_n + 1e-30), 1) for _, b in chunks]
            chunks.clear()
            rec["val"].append(m)
            print("val", json.dumps(m), flush=True)

    trainer_init = L.Trainer.__init__

    def init(self, *a, **kw):
        kw["callbacks"] = [*kw.get("callbacks", []), Recorder()]
        trainer_init(self, *a, **kw)

    L.Trainer.__init__ = init
    t0 = time.time()
    rec["info"] = T.run_training(params, work / "index.json", work / "model", work / "ckpt", live_dir=None)
    rec["seconds"] = round(time.time() - t0, 1)
    from nablafx.evaluation.evaluate import evaluate
    from nablafx.export import load_model

    model, _ = load_model(work / "model")
    result = evaluate(model, index)
    rec["test"] = result["summary"]
    rec["test_rows"] = [{k: r[k] for k in ("knob_code", "name", "esr", "l1", "loudness_diff_lu")} for r in result["rows"]]
    print("test", json.dumps(rec["test"]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rec, indent=1))


def summarise(args) -> None:
    sys.path.insert(0, str(ROOT))
    from nablafx.provenance import write_results

    runs = [json.loads(Path(f).read_text()) for f in args.runs]
    lines = ["# Quiet material: S4 with the default recipe", "",
             "Runs of `benchmarks/quiet_material.py run` (fixture: tests/conftest.py `make_quiet_dataset`, "
             "45 s per knob setting). Loss: the training loss of the step; ESR: validation (`val`) and "
             "test (whole passages, energy-weighted).", "",
             "| run | variant | device | steps | loss step 1 | max loss steps 1–50 | loss last 10 (mean) "
             "| grad norm median | val ESR energy-weighted | val ESR chunk mean | test ESR | test ΔLU |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    data = []
    for f, r in zip(args.runs, runs):
        losses = [s["total"] for s in r["steps"]]
        grads = sorted(s["grad_norm"] for s in r["steps"])
        val = " / ".join(f"{v['esr_energy']:.3g}" for v in r["val"])
        val_mean = " / ".join(f"{v['esr_chunk_mean']:.3g}" for v in r["val"])
        row = {"file": f, "code": r.get("code"), "variant": r["args"]["variant"], "device": r["args"]["device"],
               "steps": len(losses), "loss_first": losses[0], "loss_max_50": max(losses[:50]),
               "loss_last10": sum(losses[-10:]) / 10, "grad_median": grads[len(grads) // 2],
               "val_steps": [v["step"] for v in r["val"]], "val_esr_energy": [v["esr_energy"] for v in r["val"]],
               "val_esr_chunk_mean": [v["esr_chunk_mean"] for v in r["val"]], "test": r["test"]}
        data.append(row)
        lines.append(f"| {Path(f).stem} | {row['variant']} | {row['device']} | {row['steps']} | {losses[0]:.3g} "
                     f"| {row['loss_max_50']:.3g} | {row['loss_last10']:.3g} | {row['grad_median']:.3g} | {val} "
                     f"| {val_mean} | {r['test']['esr']:.3f} | {r['test']['loudness_diff_lu']:.1f} |")
    command = "python benchmarks/quiet_material.py summarise " + " ".join(args.runs)
    write_results(ROOT / "benchmarks/results/quiet_material", "\n".join(lines), {"runs": data}, command=command)
    print("\n".join(lines))


def crops(args) -> None:
    """Each loss term on a silent, a −80 dBFS and a hot crop, per-example (before) and floored (after)."""
    sys.path.insert(0, str(ROOT))
    import torch

    from nablafx import metrics

    n, g = 8192, torch.Generator().manual_seed(0)
    t = torch.arange(n) / 48000
    hot = 0.99 * torch.tanh(4 * torch.sin(2 * torch.pi * 110 * t) * torch.exp(-3 * t) + 0.5 * torch.sin(2 * torch.pi * 330 * t))
    targets = {"silent": torch.zeros(1, 1, n), "−80 dBFS": 1e-4 * torch.randn(1, 1, n, generator=g), "hot": hot[None, None]}
    floor = args.data_rms**2 * 10 ** (args.floor_db / 10)
    terms = {"ESR per example": lambda p, y: metrics.esr(p, y),
             "ESR floored": lambda p, y: metrics.esr_loss(p, y, floor),
             "MR-STFT": metrics.mrstft_loss(), "MR-STFT floored": metrics.mrstft_loss(floor)}
    lines = [f"floor: data RMS {args.data_rms} ({20 * math.log10(args.data_rms):.0f} dBFS), {args.floor_db:g} dB under it", "",
             "| target | prediction | " + " | ".join(terms) + " |", "|---|---|" + "---|" * len(terms)]
    for name, y in targets.items():
        preds = {"target + −80 dBFS hiss": y + 1e-4 * torch.randn(1, 1, n, generator=g),
                 "target + −40 dBFS hiss": y + 1e-2 * torch.randn(1, 1, n, generator=g),
                 "silence": torch.zeros_like(y), "inverted target": -y}
        for pname, p in preds.items():
            lines.append(f"| {name} | {pname} | " + " | ".join(f"{float(fn(p, y)):.3g}" for fn in terms.values()) + " |")
    print("\n".join(lines))


def share(args) -> None:
    """How much of a batch's gradient comes from its quietest crop, per-example ESR vs the floored
    loss, for a saved model on the fixture's training crops (the batches of training steps
    ``--steps``, 1-based, as the default recipe draws them)."""
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch

    from nablafx import metrics
    from nablafx.config import load_params
    from nablafx.data.datasets import AudioBank, RandomChunkDataset, target_power
    from nablafx.data.prepare import prepare_device
    from nablafx.export import load_model
    from nablafx.training.losses import WeightedLoss

    params = load_params(args.params)
    t, d = params["train"], params["data"]
    index = prepare_device(args.root, args.device, d["dry_dir"], d["sample_rate"], d["val_seconds"],
                           d["guard_seconds"], d["max_latency_samples"])
    items = [i for i in index["items"] if i["split"] == "train"]
    bank = AudioBank(items, d["sample_rate"])
    model = load_model(args.model)[0].train()
    ctx, chunk, bsz = 2048, int(t["chunk_seconds"] * d["sample_rate"]), t["batch_size"]
    ds = RandomChunkDataset(items, bank, chunk, ctx, bsz * max(args.steps), t["seed"])
    w = t["loss"]
    floored = WeightedLoss(w, floor=target_power(items, bank) * 10 ** (t["loss_floor_db"] / 10))
    rest = WeightedLoss({k: v for k, v in w.items() if k != "esr"})

    def per_example(pred, y):  # the recipe before the fix: per-example ESR
        return rest(pred, y)[0] + w["esr"] * metrics.esr(pred, y)

    def grad(loss):
        model.zero_grad()
        loss.backward()
        return torch.cat([q.grad.flatten() for q in model.parameters() if q.grad is not None])

    print("| step | quietest crop (dBFS) | loss | grad norm | quietest crop's share of it | cosine |")
    print("|---|---|---|---|---|---|")
    for step in args.steps:
        batch = [ds[(step - 1) * bsz + j] for j in range(bsz)]
        x, y, k = (torch.stack([b[i] for b in batch]) for i in range(3))
        y = y[..., ctx:]
        db = (10 * torch.log10(y.pow(2).mean(-1).flatten() + 1e-30)).tolist()
        q = int(np.argmin(db))
        keep = torch.ones(bsz, 1, 1)
        keep[q] = 0
        for name, fn in (("per-example ESR", per_example), ("floored", lambda a, b: floored(a, b)[0])):
            pred = model(x, k if model.n_knobs else None)[0][..., ctx:]
            g_all = grad(fn(pred, y))
            pred = model(x, k if model.n_knobs else None)[0][..., ctx:]
            g_q = g_all - grad(fn(pred * keep + y * (1 - keep), y))  # the quietest crop's error removed
            cos = float(torch.nn.functional.cosine_similarity(g_all, g_q, 0))
            print(f"| {step} | {db[q]:.1f} | {name} | {float(g_all.norm()):.3g} | {float(g_q.norm() / g_all.norm()):.3f} | {cos:.3f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--variant", required=True)
    r.add_argument("--device", default="Quiet-Drive", help="Quiet-Drive or Quiet-Fuzz (inverts polarity)")
    r.add_argument("--stop", type=int, default=200, help="stop after this many steps")
    r.add_argument("--val-every", type=int, default=100)
    r.add_argument("--root", default="/tmp/quiet-material/data", help="fixture folder (written if missing)")
    r.add_argument("--params", default=str(ROOT / "params.yaml"))
    r.add_argument("--code", default=str(ROOT), help="folder holding the nablafx package to train with")
    r.add_argument("--work", default=None)
    r.add_argument("--out", required=True)
    s = sub.add_parser("summarise")
    s.add_argument("runs", nargs="+")
    c = sub.add_parser("crops", help="loss terms on silent, −80 dBFS and hot crops")
    c.add_argument("--data-rms", type=float, default=0.1)
    c.add_argument("--floor-db", type=float, default=-30.0)
    h = sub.add_parser("share", help="the quietest crop's share of a batch's gradient, for a saved model")
    h.add_argument("--model", required=True, help="a saved model folder (run --work …/model)")
    h.add_argument("--device", default="Quiet-Drive")
    h.add_argument("--root", default="/tmp/quiet-material/data")
    h.add_argument("--params", default=str(ROOT / "params.yaml"))
    h.add_argument("--steps", type=int, nargs="+", default=[201, 202, 204, 206, 208])
    args = ap.parse_args(argv)
    {"run": run, "summarise": summarise, "crops": crops, "share": share}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
