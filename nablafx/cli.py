"""``nablafx`` command line.

    nablafx process MODEL_DIR in.wav out.wav --knob D=0.7 --knob T=0.5 --block 128
    nablafx process MODEL_DIR in.wav out.wav 0.7,0.5          # knob values in the model's order
    nablafx info MODEL_DIR                                    # a trained model
    nablafx info tcn-45-film | --all                          # variants of params.yaml
    nablafx export MODEL_DIR --format onnx|torchscript --block 512
    nablafx table | record NAME                               # experiment records

Every mistake a user can make ends in one line ``error: ...`` and exit status 2, before any work is
done and without leaving an output file behind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

COMMANDS = {
    "process": "run a trained model over an audio file (any rate, any channel count), block by block",
    "info": "a trained model (MODEL_DIR) or variants of params.yaml: parameters, receptive field, knobs",
    "export": "a trained model as TorchScript or ONNX with explicit state, for a host without Python",
    "table": "results table from experiment records (reports/experiments/*.json)",
    "record": "snapshot the last run (params, metrics, provenance) as an experiment record",
}


class UsageError(ValueError):
    """A command-line argument argparse refused (printed as one line, exit status 2)."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): ``error: nablafx process: ...``."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _process(argv) -> int:
    from nablafx.fileproc import process_file

    ap = Parser(prog="nablafx process", description="Process an audio file with a trained model, block by block "
                "with state, as a plugin would. Any sample rate (resampled to the model's and back with libsoxr); "
                "every channel is processed on its own with the same knobs (stereo: dual mono).")
    ap.add_argument("args", nargs="+", metavar="[MODEL_DIR] INPUT OUTPUT [KNOBS]",
                    help="model folder (default: --model-dir), input and output audio (.wav/.flac), "
                         "optionally the knob values as a comma list in the model's knob order")
    ap.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                    help="a knob value in [0, 1] by letter (D) or name (Drive); repeat for each knob")
    ap.add_argument("--knobs", default=None, help="comma-separated knob values in the model's knob order")
    ap.add_argument("--model-dir", default="artifacts/model", help="model folder when MODEL_DIR is not given")
    ap.add_argument("--block", type=int, default=512, help="block size in samples (default 512)")
    ap.add_argument("--raw", action="store_true",
                    help="the model's raw output (default: referenced to its response to silence, see docs)")
    ap.add_argument("--quiet", action="store_true", help="no progress report")
    args = ap.parse_args(argv)
    pos = list(args.args)
    model_dir = args.model_dir
    if len(pos) == 4 or (len(pos) == 3 and (Path(pos[0]).is_dir() or Path(pos[2]).suffix.lower() in (".wav", ".flac"))):
        model_dir = pos.pop(0)
    if len(pos) not in (2, 3):
        raise UsageError("nablafx process: expected [MODEL_DIR] INPUT OUTPUT [KNOBS] (see nablafx process --help)")
    inp, out = pos[0], pos[1]
    comma = pos[2] if len(pos) == 3 else None
    if comma is not None and args.knobs is not None:
        raise UsageError("nablafx process: knob values given twice (positional and --knobs)")
    comma = comma if comma is not None else args.knobs
    summary = process_file(model_dir, inp, out, args.knob, comma, args.block, progress=not args.quiet,
                           silence_reference=not args.raw)
    knobs = ", ".join(f"{v:g}" for v in summary["knobs"]) or "none"
    rate = (f"{summary['sample_rate']} Hz (model {summary['model_rate']} Hz, resampled)"
            if summary["sample_rate"] != summary["model_rate"] else f"{summary['sample_rate']} Hz")
    print(f"{out}: {summary['seconds']:.2f} s, {summary['channels']} channel(s), {rate}, processed by "
          f"{summary['variant']} in blocks of {summary['block']} (knobs {knobs})")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: nablafx {" + ",".join(COMMANDS) + "} ...\n" + "\n".join(f"  {k:8s} {v}" for k, v in COMMANDS.items()))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"error: unknown command {argv[0]!r}; known: {', '.join(COMMANDS)}", file=sys.stderr)
            return 2
        return 0
    from nablafx.utils import USER_ERRORS

    try:
        if argv[0] == "info":
            from nablafx import info

            return info.main(argv[1:]) or 0
        if argv[0] == "export":
            from nablafx import portable

            return portable.main(argv[1:]) or 0
        if argv[0] == "table":
            from nablafx.evaluation import table

            return table.main(argv[1:])
        if argv[0] == "record":
            from nablafx.evaluation import table

            return table.record_main(argv[1:])
        return _process(argv[1:])
    except (*USER_ERRORS, UsageError) as err:
        print(f"error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # `python -m nablafx.cli` runs this file as __main__: call the imported module's main, so that the
    # UsageError that subcommands raise (from nablafx.cli) is the class caught here
    from nablafx.cli import main as _main

    sys.exit(_main())
