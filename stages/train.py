"""DVC stage `train`: train the variant named by params.yaml `model:`."""

import argparse
import sys
from pathlib import Path

from nablafx.config import load_params
from nablafx.provenance import record
from nablafx.training.train import run_training
from nablafx.utils import run_stage, write_json


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--index", default="artifacts/prepared/index.json")
    ap.add_argument("--model-dir", default="artifacts/model")
    ap.add_argument("--ckpt-dir", default="artifacts/checkpoints")
    ap.add_argument("--live-dir", default="dvclive/train")
    ap.add_argument("--pretrained", default=None, help="folder written by the pretrain stage")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    info = run_training(params, args.index, args.model_dir, args.ckpt_dir, args.live_dir, args.pretrained)
    write_json(Path(args.model_dir) / "provenance.json", record(params))
    print(f"train: {info['variant']} ({info['params']} params) on {info['device']}: {info['steps']} steps "
          f"in {info['train_seconds']} s on {info['accelerator']}, best val ESR {info['best_val_esr']:.4f}")


if __name__ == "__main__":
    sys.exit(run_stage(main))
