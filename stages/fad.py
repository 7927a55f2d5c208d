"""DVC stage `fad`: Fréchet Audio Distance between the test predictions and the test targets,
per embedding network (params `fad:`); embeddings without a local checkpoint are listed as skipped."""

import argparse
import sys
import time

from nablafx.config import data_config, load_params
from nablafx.data.index import load_index
from nablafx.evaluation.fad import PACKAGE_EMBEDDINGS, fad_config, fad_report, skipped_details
from nablafx.utils import run_stage, write_json


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--index", default="artifacts/prepared/index.json")
    ap.add_argument("--pred-dir", default="artifacts/test")
    ap.add_argument("--out", default="reports/fad.json")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    params = load_params(args.params)
    cfg = fad_config(params)
    index = load_index(args.index, data_config(params).device)
    report = fad_report(index, args.pred_dir, cfg)
    write_json(args.out, report)
    scores = ", ".join(f"{k} {v:.4g} (dry input {report.get('fad_dry_input', {}).get(k, float('nan')):.4g})"
                       for k, v in report["fad"].items()) or "none"
    skipped = f"; skipped: {', '.join(report['skipped'])}" if report["skipped"] else ""
    print(f"fad: {scores}{skipped} ({time.perf_counter() - t0:.1f} s)")
    for name, reason in report["skipped"].items():
        detail = skipped_details(name, cfg.ckpt_dir) if name in PACKAGE_EMBEDDINGS else ""
        print(f"fad: skipped {detail or f'{name}: {reason}'}")


if __name__ == "__main__":
    sys.exit(run_stage(main))
