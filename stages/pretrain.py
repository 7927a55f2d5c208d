"""DVC stage `pretrain`: pretrain the gray-box processors of params.yaml's `model` that ask for it
(MLP/rational curves, FIR responses) and write their weights + summary.json to --out.
A model with nothing to pretrain writes an empty summary."""

import argparse
import sys

from nablafx.config import load_params
from nablafx.pretraining import run_pretraining
from nablafx.utils import run_stage


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="artifacts/pretrained")
    ap.add_argument("--model", default=None, help="variant to pretrain (default: params.yaml `model`)")
    args = ap.parse_args(argv)
    summary = run_pretraining(load_params(args.params), args.out, args.model)
    done = summary["processors"]
    if not done:
        print(f"pretrain: {summary['variant']}: nothing to pretrain; wrote an empty summary to {args.out}")
    for stem, entry in done.items():
        err = entry.get("max_abs_error", entry.get("max_abs_error_db"))
        print(f"pretrain: {summary['variant']}: {stem} → {entry['target']} in {entry['steps']} steps, "
              f"max abs error {err:.4g}")


if __name__ == "__main__":
    sys.exit(run_stage(main))
