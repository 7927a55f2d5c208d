"""DVC stage `prepare`: validate the dataset and write the split index."""

import argparse
import sys

from nablafx.config import data_config, load_params
from nablafx.data.prepare import prepare_device
from nablafx.utils import run_stage, write_json


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="artifacts/prepared/index.json")
    ap.add_argument("--report", default="reports/prepare.json")
    args = ap.parse_args(argv)
    cfg = data_config(load_params(args.params))
    index = prepare_device(cfg.root, cfg.device, cfg.dry_dir, cfg.sample_rate, cfg.val_seconds,
                           cfg.guard_seconds, cfg.max_latency_samples)
    report = {k: v for k, v in index.items() if k not in ("items", "files")}  # per-file hashes: index only
    write_json(args.out, index)
    write_json(args.report, report)
    for line in index["warnings"]:
        print(f"warning: {line}", file=sys.stderr)
    s = index["splits"]
    print(f"prepare: {cfg.device}: {len(index['settings'])} knob settings {index['knob_letters']}, "
          f"train {s['train']['seconds']} s, val {s['val']['seconds']} s, test {s['test']['seconds']} s, "
          f"max |latency| {index['max_abs_latency_samples']} samples, "
          f"{index['data_hash']['files']} files sha256 {index['data_hash']['sha256'][:12]}, "
          f"{len(index['warnings'])} warning(s)")


if __name__ == "__main__":
    sys.exit(run_stage(main))
