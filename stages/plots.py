"""DVC stage `plots`: loss curves, target-vs-prediction figure, HTML report; prints a summary."""

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from nablafx.data.index import load_index
from nablafx.plotting.report import example_figure, loss_figure, write_report
from nablafx.utils import run_stage, write_text_atomic


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--index", default="artifacts/prepared/index.json")
    ap.add_argument("--live-dir", default="dvclive/train")
    ap.add_argument("--metrics", default="reports/metrics.json")
    ap.add_argument("--per-knob", default="reports/per_knob.csv")
    ap.add_argument("--pred-dir", default="artifacts/test")
    ap.add_argument("--fad", default="reports/fad.json")
    ap.add_argument("--cost", default="reports/cost.json")
    ap.add_argument("--out", default="reports")
    args = ap.parse_args(argv)
    plots = Path(args.out) / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    metrics_path = Path(args.metrics)
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{metrics_path}: not found (run `dvc repro test`)")
    metrics = json.loads(metrics_path.read_text())
    rows = pd.read_csv(args.per_knob, keep_default_na=False).to_dict("records")
    index = load_index(args.index)
    images = []
    if loss_figure(args.live_dir, plots / "loss.png"):
        images.append("loss.png")
    example = example_figure(index, rows, args.pred_dir, plots / "test_example.png")
    if example is not None:
        images.append("test_example.png")
    fad, cost = (json.loads(Path(f).read_text()) if Path(f).is_file() else None for f in (args.fad, args.cost))
    summary = write_report(args.out, metrics, rows, images, example, fad, cost)
    summary += f"\n  report: {Path(args.out) / 'index.html'}, figures in {plots}\n"
    write_text_atomic(Path(args.out) / "summary.txt", summary)
    print(summary)


if __name__ == "__main__":
    sys.exit(run_stage(main))
