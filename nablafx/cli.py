"""``nablafx`` command line: ``info`` (variants: params, receptive field) and ``process``
(run a trained model over a wav/flac file, block by block with state, as a plugin would)."""

from __future__ import annotations

import argparse
import sys


def _process(argv) -> int:
    import numpy as np
    import torch

    from nablafx.data.audio import read_audio, write_audio
    from nablafx.export import load_model

    ap = argparse.ArgumentParser(prog="nablafx process", description="Process audio with a trained model")
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--model-dir", default="artifacts/model")
    ap.add_argument("--knobs", default="", help="comma-separated knob values in [0, 1], in the model's knob order")
    ap.add_argument("--block", type=int, default=512, help="block size in samples (streaming)")
    args = ap.parse_args(argv)
    model, cfg = load_model(args.model_dir)
    x = read_audio(args.input, cfg["sample_rate"])
    knobs = None
    if model.n_knobs:
        try:
            values = [float(v) for v in args.knobs.split(",")] if args.knobs else []
        except ValueError:
            values = []
        if len(values) != model.n_knobs or not all(0.0 <= v <= 1.0 for v in values):
            letters = ",".join(cfg.get("knob_letters") or [])
            print(f"error: --knobs: need {model.n_knobs} values in [0, 1] for knobs {letters}", file=sys.stderr)
            return 2
        knobs = torch.tensor([values])
    from nablafx.streaming import process_in_blocks

    y = process_in_blocks(model, torch.from_numpy(x)[None, None], knobs, args.block)[0, 0].numpy()
    write_audio(args.output, y.astype(np.float32), cfg["sample_rate"])
    print(f"{args.output}: {len(y) / cfg['sample_rate']:.2f} s processed by {cfg['variant']} in blocks of {args.block}")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"info": "variants: parameters and receptive field", "process": "run a trained model over a file",
                "table": "results table from experiment records (reports/experiments/*.json)",
                "record": "snapshot the last run (params, metrics, provenance) as an experiment record"}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print("usage: nablafx {" + ",".join(commands) + "} ...\n" + "\n".join(f"  {k:8s} {v}" for k, v in commands.items()))
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    from nablafx.utils import USER_ERRORS

    try:
        if argv[0] == "info":
            from nablafx import info

            return info.main(argv[1:]) or 0
        if argv[0] == "table":
            from nablafx.evaluation import table

            return table.main(argv[1:])
        if argv[0] == "record":
            from nablafx.evaluation import table

            return table.record_main(argv[1:])
        return _process(argv[1:])
    except USER_ERRORS as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
