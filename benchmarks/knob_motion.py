"""Knob motion over digital silence: does a conditioned model make sound when only its knobs move?

    python benchmarks/knob_motion.py [--seconds 1.0] [--block 128] [variants ...]

Every knob-conditioned variant of params.yaml (3 knobs, seeded initial weights) gets zero input while
the knobs sweep (smoothed, ``StreamEngine``'s raised-cosine ramps of 20 ms) through several settings,
pausing between moves.  Reported per variant, as peaks in dBFS:

* ``raw``: the model's own output — at zero input a network gives the DC its biases leave, and it
  changes as the knobs move;
* ``raw_hp``: what of it the knob motion makes audible — the thumps and crackle: the output from
  50 ms on, less its settled value before the first move (the mean over 50…100 ms), through a 20 Hz
  high-pass (4th-order Butterworth, float64), peak from the first move on;
* ``engine``: the output of :class:`nablafx.streaming.StreamEngine` (the default path of ``nablafx
  process``), which references the output to the model's response to silence.  The target is
  ≤ −100 dBFS (``tests/test_streaming_engine.py`` asserts it).

Writes ``benchmarks/results/knob_motion.{md,json}``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import scipy.signal
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nablafx.config import load_params  # noqa: E402
from nablafx.provenance import record, write_results  # noqa: E402
from nablafx.registry import build_model  # noqa: E402
from nablafx.streaming import StreamEngine  # noqa: E402

SR = 48000
N_KNOBS = 3
# (time in s, knob values): moves with pauses in between, so the silence stream settles and restarts
SWEEP = [(0.10, (1.0, 0.0, 1.0)), (0.25, (0.0, 1.0, 0.2)), (0.40, (0.7, 0.3, 0.9)), (0.55, (0.05, 0.95, 0.5)),
         (0.70, (0.5, 0.5, 0.5)), (0.80, (1.0, 1.0, 0.0))]
START = (0.5, 0.5, 0.5)


def dbfs(x: np.ndarray) -> float:
    peak = float(np.abs(x).max()) if x.size else 0.0
    return -math.inf if peak == 0.0 else 20.0 * math.log10(peak)


def conditioned_variants(params: dict) -> list[str]:
    names = []
    for name, spec in params["variants"].items():
        torch.manual_seed(0)
        if build_model(spec, n_knobs=N_KNOBS, sample_rate=SR).n_knobs:
            names.append(name)
    return names


def measure(spec: dict, seconds: float, block: int) -> dict:
    torch.manual_seed(0)
    model = build_model(spec, n_knobs=N_KNOBS, sample_rate=SR).eval()
    x = torch.zeros(1, 1, int(seconds * SR))
    events = [(0, START)] + [(int(t * SR), v) for t, v in SWEEP if t < seconds]
    out = {}
    for name, ref in (("raw", False), ("engine", True)):
        engine = StreamEngine(model, block, knobs=START, silence_reference=ref)
        out[name] = engine.run(x, events)[0, 0].double().numpy()
    sos = scipy.signal.butter(4, 20.0, "highpass", fs=SR, output="sos")
    a, first = int(0.05 * SR), int(SWEEP[0][0] * SR)
    moved = out["raw"][a:] - out["raw"][a:first].mean()
    audible = scipy.signal.sosfilt(sos, moved)[first - a :]
    return {"raw_dbfs": dbfs(out["raw"]), "raw_hp_dbfs": dbfs(audible), "engine_dbfs": dbfs(out["engine"])}


def fmt(v: float) -> str:
    return "−∞" if v == -math.inf else f"{v:.1f}".replace("-", "−")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="*")
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/knob_motion"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    params = load_params(ROOT / "params.yaml")
    prov = record(params)
    names = args.variants or conditioned_variants(params)
    rows = []
    for name in names:
        row = {"variant": name, "family": params["variants"][name]["family"],
               **measure(params["variants"][name], args.seconds, args.block)}
        rows.append(row)
        print(f"{name:24s} raw {fmt(row['raw_dbfs']):>7s}  raw>20Hz {fmt(row['raw_hp_dbfs']):>7s}  "
              f"engine {fmt(row['engine_dbfs']):>7s} dBFS", flush=True)
    md = ["# Knob motion over digital silence", "",
          f"Zero input, {args.seconds:g} s, blocks of {args.block}, knobs moved {len(SWEEP)} times (20 ms raised-cosine "
          "ramps); seeded untrained weights, 3 knobs. Peak output in dBFS; target ≤ −100 dBFS.", "",
          "| variant | family | raw | raw > 20 Hz | engine (silence-referenced) |", "|---|---|---:|---:|---:|"]
    md += [f"| {r['variant']} | {r['family']} | {fmt(r['raw_dbfs'])} | {fmt(r['raw_hp_dbfs'])} | "
           f"{fmt(r['engine_dbfs'])} |" for r in rows]
    data = {"seconds": args.seconds, "block": args.block, "sweep": SWEEP, "start": START,
            "rows": [{k: (None if isinstance(v, float) and v == -math.inf else v) for k, v in r.items()} for r in rows]}
    write_results(args.out, "\n".join(md), data, provenance=prov)
    print(f"wrote {args.out}.md/.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
