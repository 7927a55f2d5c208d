"""DVC stage `cost`: parameters, MACs per second of audio and CPU real-time factors of the trained
model (params `cost:`), written as DVC metrics."""

import argparse
import sys
import time

from nablafx.config import load_params
from nablafx.evaluation.cost import cost_config, measure_cost
from nablafx.export import load_model
from nablafx.utils import run_stage, write_json


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--model-dir", default="artifacts/model")
    ap.add_argument("--out", default="reports/cost.json")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    cfg = cost_config(load_params(args.params))
    model, config = load_model(args.model_dir)
    cost = measure_cost(model, int(config["sample_rate"]), cfg)
    report = {"model": {"variant": config.get("variant"), "family": config["spec"]["family"],
                        "device": config.get("device")}, **cost}
    write_json(args.out, report)
    rtf = report["rtf"]
    small, large = str(cfg.frame_sizes[0]), str(cfg.frame_sizes[-1])
    print(f"cost: {report['model']['variant']}: {report['params']} params, {report['gmacs_per_second']:.4g} GMAC/s, "
          f"RTF offline {rtf['offline']:.3g}, frames of {small} {rtf[small]:.3g}, of {large} {rtf[large]:.3g} "
          f"({cfg.threads} thread{'s' if cfg.threads > 1 else ''}; {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    sys.exit(run_stage(main))
