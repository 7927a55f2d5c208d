"""DVC stage `test`: score the trained model on the test passages."""

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from nablafx.config import data_config, load_params, test_config
from nablafx.data.index import load_index
from nablafx.errors import ConfigError
from nablafx.evaluation.evaluate import evaluate
from nablafx.export import load_model
from nablafx.provenance import record
from nablafx.utils import run_stage, write_json, write_text_atomic


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--index", default="artifacts/prepared/index.json")
    ap.add_argument("--model-dir", default="artifacts/model")
    ap.add_argument("--metrics", default="reports/metrics.json")
    ap.add_argument("--per-knob", default="reports/per_knob.csv")
    ap.add_argument("--pred-dir", default="artifacts/test")
    ap.add_argument("--provenance", default="reports/provenance.json",
                    help="written: where the model was trained and these metrics computed")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    tcfg = test_config(params)
    index = load_index(args.index, data_config(params).device)
    model, config = load_model(args.model_dir)
    if config.get("device") != index["device"] or config.get("data_n_knobs") != index["n_knobs"]:
        raise ConfigError(f"{args.model_dir}/config.yaml: model trained on {config.get('device')} "
                          f"({config.get('data_n_knobs')} knobs), data.device is {index['device']} "
                          f"({index['n_knobs']} knobs): run `dvc repro train`")
    result = evaluate(model, index, args.pred_dir, tcfg.block_seconds)
    metrics = {"test": {k: round(v, 6) if isinstance(v, float) else v for k, v in result["summary"].items()
                        if v is not None},
               "model": {"variant": config["variant"], "family": config["spec"]["family"],
                         "params": config["params"], "device": config["device"]}}
    write_text_atomic(args.per_knob, pd.DataFrame(result["rows"]).to_csv(index=False, float_format="%.6g"))
    train_prov = Path(args.model_dir) / "provenance.json"
    write_json(args.provenance, {"train": json.loads(train_prov.read_text()) if train_prov.is_file() else None,
                                 "test": record(params)})
    write_json(args.metrics, metrics)
    t = metrics["test"]
    print(f"test: {config['variant']} on {config['device']}: ESR {t['esr']:.4f}, MAE {t['mae']:.5f}, "
          f"MR-STFT {t['mrstft']:.4f} over {t['passages']} passages ({t['seconds']} s)")


if __name__ == "__main__":
    sys.exit(run_stage(main))
