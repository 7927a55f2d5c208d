"""DVC stage `plots`: the report — reports/index.html with its figures, audio excerpts and metrics."""

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import yaml

from nablafx.config import data_config, load_params
from nablafx.data.index import load_index
from nablafx.export import load_model
from nablafx.plotting.report import Inputs, build_report, report_config
from nablafx.utils import run_stage


def _json(path):
    p = Path(path)
    return json.loads(p.read_text()) if p.is_file() else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--index", default="artifacts/prepared/index.json")
    ap.add_argument("--model-dir", default="artifacts/model")
    ap.add_argument("--live-dir", default="dvclive/train")
    ap.add_argument("--metrics", default="reports/metrics.json")
    ap.add_argument("--per-knob", default="reports/per_knob.csv")
    ap.add_argument("--pred-dir", default="artifacts/test")
    ap.add_argument("--fad", default="reports/fad.json")
    ap.add_argument("--cost", default="reports/cost.json")
    ap.add_argument("--provenance", default="reports/provenance.json")
    ap.add_argument("--records", default="reports/experiments", help="committed experiment records (nablafx record)")
    ap.add_argument("--out", default="reports")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    cfg = report_config(params)
    metrics = _json(args.metrics)
    if metrics is None:
        raise FileNotFoundError(f"{args.metrics}: not found (run `dvc repro test`)")
    model, _ = load_model(args.model_dir)
    model_config = yaml.safe_load((Path(args.model_dir) / "config.yaml").read_text())
    inputs = Inputs(
        index=load_index(args.index, data_config(params).device),
        rows=pd.read_csv(args.per_knob, keep_default_na=False).to_dict("records"),
        metrics=metrics, model=model, model_config=model_config, pred_dir=args.pred_dir, live_dir=args.live_dir,
        fad=_json(args.fad), cost=_json(args.cost), provenance=_json(args.provenance), records_dir=args.records)
    print(build_report(inputs, cfg, args.out))


if __name__ == "__main__":
    sys.exit(run_stage(main))
