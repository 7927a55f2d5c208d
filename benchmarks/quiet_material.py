"""Training on material with quiet gaps: what made S4 diverge, and every family's first 100 steps.

    OMP_NUM_THREADS=1 python benchmarks/quiet_material.py              # all parts (minutes on 2 cores)
    OMP_NUM_THREADS=1 python benchmarks/quiet_material.py --parts init

Writes ``benchmarks/results/quiet_material.{md,json}``.  The material is the fixture of
``tests/conftest.py`` (:func:`make_quiet_dataset`: guitar-like sections at −30 … 0 dBFS between
gaps of digital silence and −60 … −90 dBFS noise, two synthetic pedals, ``Quiet-Fuzz`` inverting
polarity), written to a temporary folder.  Three parts:

* ``init`` — each default variant (and ``s4-tvf-b8-s32-c16``), three seeds, untrained: the output
  level against the target's on a playing excerpt, the ESR there, and the output on digital
  silence; S4 as this checkout initialises it and with the 1×1-conv biases and modulation shifts
  drawn as at commit 377ce79 (``nn.Conv1d``/``nn.Linear`` default initialisation).
* ``train`` — ``s4-film-b4-s32-c16`` trained with the default recipe (its learning-rate schedule
  over ``train.max_steps``, stopped after ``--steps``; smaller crops and batches to fit a CPU) in
  four arms: {per-example ESR as at 377ce79, ESR over the batch with the energy floor} ×
  {S4 offsets as at 377ce79, offset-free initialisation}.  Per step: the loss, each crop's level
  and per-example ESR; at the end the validation ESR (energy-weighted, and the mean over chunks
  as 377ce79 scored it) and the test ESR over whole passages.
* ``families`` — every family's default variant (``lstm``, ``tcn``, ``gcn``, ``s4``, ``gb``), 100
  steps on the tiny fixture of ``tests/training/test_quiet_material.py`` (the inverting pedal):
  the first and the 100th step's loss, the largest, and the test ESR and output polarity.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nablafx.provenance import record, write_results  # noqa: E402
from tests.conftest import SR, make_quiet_dataset, params_with, quiet_device, quiet_passage  # noqa: E402

FAMILIES = ("lstm", "tcn", "gcn", "s4", "gb")
QUIET_DB = -50.0  # a crop whose target is below this (dBFS RMS) counts as quiet


def _db(x) -> float:
    return float(10 * torch.log10(torch.mean(torch.as_tensor(x, dtype=torch.float64) ** 2) + 1e-30))


def old_offsets(model) -> None:
    """Draw the S4 offsets (1×1-conv biases, modulation shifts) as at 377ce79: ``nn.Conv1d`` /
    ``nn.Linear`` default initialisation, uniform in ±1/√fan_in."""
    from torch import nn

    channels = model.out.in_channels
    with torch.no_grad():
        for conv in (model.inp, model.out, *(b.mix for b in model.blocks)):
            conv.bias.uniform_(-1 / conv.in_channels**0.5, 1 / conv.in_channels**0.5)
        for block in model.blocks:
            for lin in block.mod.modules():
                if isinstance(lin, nn.Linear) and lin.out_features == 2 * channels:
                    bound = 1 / lin.in_features**0.5
                    lin.weight[channels:].uniform_(-bound, bound)
                    lin.bias[channels:].uniform_(-bound, bound)


# --------------------------------------------------------------------------- init
def part_init(seeds: int) -> dict:
    from nablafx.training.train import build_from_params

    rng = np.random.default_rng(0)
    dry = quiet_passage(6.0, rng)
    wet = quiet_device(dry, (0.6, 0.2), False, rng)
    s0, ctx, n = int(1.5 / 18 * 6 * SR), 2048, int(0.25 * SR)  # the first section of playing
    x = torch.tensor(dry[s0 : s0 + ctx + n], dtype=torch.float32)[None, None]
    y = torch.tensor(wet[s0 + ctx : s0 + ctx + n], dtype=torch.float32)[None, None]
    knobs = torch.tensor([[0.6, 0.2]])
    rows = []
    params = params_with()
    arms = [(a, "this checkout") for a in (*FAMILIES, "s4-tvf-b8-s32-c16")]
    arms += [("s4", "offsets as at 377ce79"), ("s4-tvf-b8-s32-c16", "offsets as at 377ce79")]
    for name, init in arms:
        for seed in range(seeds):
            torch.manual_seed(seed)
            variant, model, _ = build_from_params(params_with(model=name), 2, SR)
            if init != "this checkout":
                old_offsets(model)
            k = knobs if model.n_knobs else None
            with torch.no_grad():
                y_hat = model(x, k)[0][..., ctx:]
                silent = model(torch.zeros_like(x), k)[0][..., ctx:]
            rows.append({"variant": variant, "alias": name if name in params["aliases"] else None, "init": init,
                         "seed": seed, "gain_db": round(_db(y_hat) - _db(y), 2),
                         "esr": float(torch.sum((y_hat - y) ** 2) / torch.sum(y**2)),
                         "silence_out_dbfs": round(_db(silent), 1)})
            print("init", rows[-1], flush=True)
    return {"excerpt": {"seconds": n / SR, "target_dbfs": round(_db(y), 1)}, "rows": rows}


# --------------------------------------------------------------------------- training runs
class _Run:
    """One ``run_training`` call on a fixture with recorders attached (they only read)."""

    def __init__(self, params, index_path, work, stop, loss="floored", s4_offsets="this checkout"):
        self.params, self.index_path, self.work, self.stop = params, index_path, Path(work), stop
        self.loss, self.s4_offsets = loss, s4_offsets
        self.steps: list[dict] = []
        self.val: list[dict] = []

    def __call__(self) -> dict:
        import lightning as L
        from lightning.pytorch.callbacks import Callback

        from nablafx import metrics
        from nablafx.training import system as S
        from nablafx.training import train as T
        from nablafx.training.losses import WeightedLoss

        saved = (dict(metrics.TIME_TERMS), WeightedLoss.forward, S.EffectSystem.validation_step,
                 L.Trainer.__init__, T.build_from_params)
        cur: dict = {}
        chunks: list[tuple[float, float]] = []
        run = self
        if self.loss == "per-example":  # the recipe of 377ce79: ESR and DC per example, 1e-10 guard
            metrics.TIME_TERMS["esr"] = lambda p, t, floor=0.0: metrics.esr(p, t)
            metrics.TIME_TERMS["dc"] = lambda p, t, floor=0.0: metrics.dc_error(p, t)
        forward = WeightedLoss.forward

        def recording_forward(self, pred, target):
            total, terms = forward(self, pred, target)
            if torch.is_grad_enabled():
                p, t = pred.detach().double(), target.detach().double()
                energy = torch.sum(t**2, -1).flatten()
                cur.update(total=float(total.detach()),
                           crop_db=[round(float(10 * torch.log10(e / t.shape[-1] + 1e-30)), 1) for e in energy],
                           crop_esr=[float(v) for v in torch.sum((p - t) ** 2, -1).flatten() / (energy + 1e-10)])
            return total, terms

        validation_step = S.EffectSystem.validation_step

        def recording_validation_step(self, batch, batch_idx):
            x, y, knobs = batch
            with torch.no_grad():
                y_hat = self(x, knobs)[..., self.context :]
                t = y[..., self.context :].double()
                err = torch.sum((y_hat.double() - t) ** 2, -1).flatten()
                chunks.extend(zip(err.tolist(), torch.sum(t**2, -1).flatten().tolist()))
            return validation_step(self, batch, batch_idx)

        class Recorder(Callback):
            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                run.steps.append({**cur, "step": trainer.global_step})
                if trainer.global_step >= run.stop:
                    trainer.should_stop = True

            def on_validation_end(self, trainer, pl_module):
                run.val.append({"step": trainer.global_step,
                                "esr_energy": sum(a for a, _ in chunks) / sum(b for _, b in chunks),
                                "esr_chunk_mean": float(np.mean([a / (b + 1e-10) for a, b in chunks]))})
                chunks.clear()

        trainer_init = L.Trainer.__init__

        def init(self, *a, **kw):
            trainer_init(self, *a, **{**kw, "callbacks": [*kw.get("callbacks", []), Recorder()]})

        build = T.build_from_params

        def building(*a, **kw):
            variant, model, lr = build(*a, **kw)
            if run.s4_offsets != "this checkout":
                old_offsets(model)
            return variant, model, lr

        WeightedLoss.forward = recording_forward
        S.EffectSystem.validation_step = recording_validation_step
        L.Trainer.__init__ = init
        T.build_from_params = building
        try:
            t0 = time.perf_counter()
            info = T.run_training(self.params, self.index_path, self.work / "model", self.work / "ckpt", live_dir=None)
            seconds = time.perf_counter() - t0
        finally:
            metrics.TIME_TERMS.clear()
            metrics.TIME_TERMS.update(saved[0])
            WeightedLoss.forward, S.EffectSystem.validation_step, L.Trainer.__init__, T.build_from_params = saved[1:]
        return {"info": info, "seconds": round(seconds, 1), **self._test()}

    def _test(self) -> dict:
        """ESR over the whole test passages (energy-weighted, as the test stage) and the sign of
        the output's correlation with the target (−1: inverted polarity)."""
        import json

        from nablafx.data.audio import read_audio
        from nablafx.export import load_model

        model, _ = load_model(self.work / "model")
        index = json.loads(Path(self.index_path).read_text())
        err = energy = corr = 0.0
        for it in (i for i in index["items"] if i["split"] == "test"):
            x = torch.from_numpy(read_audio(it["dry"], SR))[None, None]
            y = torch.from_numpy(read_audio(it["wet"], SR)).double()
            with torch.no_grad():
                y_hat = model(x, torch.tensor([it["knobs"]]) if model.n_knobs else None)[0][0, 0].double()
            err += float(torch.sum((y_hat - y) ** 2))
            energy += float(torch.sum(y**2))
            corr += float(torch.sum(y_hat * y))
        return {"test_esr": err / energy, "polarity": int(np.sign(corr))}


def _losses(steps: list[dict]) -> dict:
    losses = [s["total"] for s in steps]
    quiet = [(e, s["step"]) for s in steps for e, db in zip(s["crop_esr"], s["crop_db"]) if db < QUIET_DB]
    loud = [e for s in steps for e, db in zip(s["crop_esr"], s["crop_db"]) if db >= QUIET_DB]
    crops = sum(len(s["crop_db"]) for s in steps)
    return {"loss_first": losses[0], "loss_last": losses[-1], "loss_last10_mean": float(np.mean(losses[-10:])),
            "loss_max": max(losses), "loss_max_step": int(np.argmax(losses)) + 1,
            "finite": all(math.isfinite(v) for v in losses), "quiet_crop_fraction": len(quiet) / crops,
            "crop_esr_max_quiet": max((e for e, _ in quiet), default=None),
            "crop_esr_max_loud": max(loud, default=None),
            "crop_esr_median_loud": float(np.median(loud)) if loud else None}


def part_train(base: Path, steps: int, batch: int, chunk: float) -> dict:
    from nablafx.data.prepare import prepare_device
    from nablafx.utils import write_json

    root = make_quiet_dataset(base / "data-train", seconds=(18.0, 6.0), devices=(("Quiet-Drive", False),))
    data = {"root": str(root), "device": "Quiet-Drive", "val_seconds": 1.0, "guard_seconds": 0.1}
    index = prepare_device(root, "Quiet-Drive", "DRY-with-markers", SR, 1.0, 0.1, 4)
    write_json(base / "index-train.json", index)
    params = params_with(model="s4", data=data, train={"batch_size": batch, "chunk_seconds": chunk,
                                                       "val_every_n_steps": steps, "accelerator": "cpu"})
    arms = [(loss, offsets) for loss in ("per-example", "floored") for offsets in ("offsets as at 377ce79", "this checkout")]
    rows = []
    for i, (loss, offsets) in enumerate(arms):
        if loss == "per-example":  # and no floor in the spectral convergence (10^-30 of the data's power)
            params = {**params, "train": {**params["train"], "loss_floor_db": -300.0}}
        else:
            params = {**params, "train": {**params["train"], "loss_floor_db": params_with()["train"]["loss_floor_db"]}}
        run = _Run(params, base / "index-train.json", base / f"train-{i}", steps, loss, offsets)
        out = run()
        rows.append({"loss": loss, "s4_offsets": offsets, **_losses(run.steps), "val": run.val,
                     "test_esr": out["test_esr"], "polarity": out["polarity"], "seconds": out["seconds"],
                     "losses": [s["total"] for s in run.steps]})
        print("train", {k: v for k, v in rows[-1].items() if k != "losses"}, flush=True)
    return {"variant": "s4-film-b4-s32-c16", "steps": steps, "batch_size": batch, "chunk_seconds": chunk,
            "fixture": "make_quiet_dataset(seconds=(18, 6)), Quiet-Drive, 3 knob settings", "rows": rows,
            "params": params}


def part_families(base: Path, steps: int) -> dict:
    from nablafx.data.prepare import prepare_device
    from nablafx.utils import write_json

    root = make_quiet_dataset(base / "data-fam", seconds=(6.0, 2.0), settings=("D030_T050", "D090_T020"),
                              devices=(("Quiet-Fuzz", True),))
    write_json(base / "index-fam.json", prepare_device(root, "Quiet-Fuzz", "DRY-with-markers", SR, 0.5, 0.1, 4))
    rows = []
    for fam in FAMILIES:
        params = params_with(
            model=fam, data={"root": str(root), "device": "Quiet-Fuzz", "val_seconds": 0.5, "guard_seconds": 0.1},
            train={"max_steps": steps, "batch_size": 2, "chunk_seconds": 0.05, "val_every_n_steps": steps,
                   "accelerator": "cpu"})
        run = _Run(params, base / "index-fam.json", base / f"fam-{fam}", steps)
        out = run()
        rows.append({"family": fam, "variant": out["info"]["variant"], **_losses(run.steps),
                     "test_esr": out["test_esr"], "polarity": out["polarity"], "seconds": out["seconds"],
                     "losses": [s["total"] for s in run.steps]})
        print("families", {k: v for k, v in rows[-1].items() if k != "losses"}, flush=True)
    return {"steps": steps, "fixture": "make_quiet_dataset(seconds=(6, 2)), Quiet-Fuzz (inverts polarity), "
            "2 knob settings; batch 2 × 0.05 s", "rows": rows}


# --------------------------------------------------------------------------- report
def _g(v) -> str:
    return "–" if v is None else f"{v:.3g}"


def markdown(res: dict) -> str:
    lines = ["# Quiet material", ""]
    if "init" in res:
        lines += ["## Untrained output (`init`)", "",
                  f"A {res['init']['excerpt']['seconds']} s excerpt of playing (target "
                  f"{res['init']['excerpt']['target_dbfs']} dBFS RMS) and digital silence, knobs (0.6, 0.2).", "",
                  "| variant | init | seed | output − target (dB) | ESR | output on digital silence (dBFS) |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['variant']} | {r['init']} | {r['seed']} | {r['gain_db']:.1f} | {r['esr']:.3g} "
                  f"| {r['silence_out_dbfs']:.1f} |" for r in res["init"]["rows"]]
        lines.append("")
    if "train" in res:
        t = res["train"]
        lines += [f"## `{t['variant']}`, {t['steps']} steps of the default recipe (`train`)", "",
                  f"Fixture: {t['fixture']}; batch {t['batch_size']} × {t['chunk_seconds']} s crops. "
                  f"Quiet crop: target below {QUIET_DB:g} dBFS RMS. Crop ESR: Σ(y − ŷ)² / (Σy² + 1e-10) of one crop.", "",
                  "| ESR term | S4 offsets | loss step 1 | max loss (step) | loss, mean of last 10 | quiet crops "
                  "| max crop ESR, quiet | max crop ESR, loud | median crop ESR, loud | val ESR (energy) "
                  "| val ESR (chunk mean) | test ESR | polarity | s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in t["rows"]:
            v = r["val"][-1] if r["val"] else {}
            lines.append(f"| {r['loss']} | {r['s4_offsets']} | {_g(r['loss_first'])} | {_g(r['loss_max'])} "
                         f"({r['loss_max_step']}) | {_g(r['loss_last10_mean'])} | {100 * r['quiet_crop_fraction']:.0f} % "
                         f"| {_g(r['crop_esr_max_quiet'])} | {_g(r['crop_esr_max_loud'])} | {_g(r['crop_esr_median_loud'])} "
                         f"| {_g(v.get('esr_energy'))} | {_g(v.get('esr_chunk_mean'))} | {_g(r['test_esr'])} "
                         f"| {r['polarity']:+d} | {r['seconds']} |")
        lines.append("")
    if "families" in res:
        f = res["families"]
        lines += [f"## Every family's first {f['steps']} steps (`families`)", "", f"Fixture: {f['fixture']}.", "",
                  "| family | variant | loss step 1 | loss step 100 | mean of last 10 | max loss (step) | finite "
                  "| test ESR | polarity | s |", "|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['family']} | {r['variant']} | {_g(r['loss_first'])} | {_g(r['loss_last'])} "
                  f"| {_g(r['loss_last10_mean'])} | {_g(r['loss_max'])} ({r['loss_max_step']}) | {r['finite']} "
                  f"| {_g(r['test_esr'])} | {r['polarity']:+d} | {r['seconds']} |" for r in f["rows"]]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="init,train,families", help="comma-separated: init, train, families")
    ap.add_argument("--seeds", type=int, default=3, help="init: seeds per variant")
    ap.add_argument("--steps", type=int, default=60, help="train: steps per arm")
    ap.add_argument("--batch", type=int, default=4, help="train: batch size")
    ap.add_argument("--chunk", type=float, default=0.1, help="train: crop length (s)")
    ap.add_argument("--family-steps", type=int, default=100, help="families: steps per family")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/quiet_material"))
    args = ap.parse_args(argv)
    parts = args.parts.split(",")
    torch.set_num_threads(1)
    prov = record(params_with())  # the commit the code came from, before measuring
    res: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        if "init" in parts:
            res["init"] = part_init(args.seeds)
        if "train" in parts:
            res["train"] = part_train(Path(tmp), args.steps, args.batch, args.chunk)
        if "families" in parts:
            res["families"] = part_families(Path(tmp), args.family_steps)
    md = markdown(res)
    print(md)
    write_results(args.out, md, res, provenance=prov)
    return 0


if __name__ == "__main__":
    sys.exit(main())
