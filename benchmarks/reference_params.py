"""Parameter counts and receptive fields of the reference NablAFx's black-box configurations,
measured by running the reference's own code.

    python benchmarks/reference_params.py --reference /work/.mirror/mcomunita+nablafx/repo

``--reference`` is a checkout of the reference repository (mcomunita/nablafx) or a bare git
directory of it (then its HEAD is exported to a temporary folder).  Nothing of it is copied into
this repository: a child process puts the checkout first on ``sys.path``, imports the model class
named by each config (``nablafx.tcn.TCN``, ``nablafx.gcn.GCN``, ``nablafx.s4.S4``,
``nablafx.lstm.LSTM``) and instantiates it with the config's ``init_args`` exactly as written.
For every config under ``cfg/model/{tcn,tcn-param,gcn,s4,s4-param,lstm,lstm-param}`` it records:

* ``params`` / ``trainable_params``: ``sum(p.numel())`` over the model's parameters;
* ``receptive_field``: the model's own ``rf`` attribute (TCN/GCN: its convolutions; ``None`` for
  LSTM and S4, whose response is unbounded) and ``receptive_field_measured``: the length of the
  impulse response (output for an impulse minus output for silence, float64, eval mode) for models
  without time-varying conditioning;
* ``lookahead``: how many samples *after* t the output at t depends on — the input after t is
  perturbed and the earliest changed output sample is found, for every t of one period of
  the 128-sample conditioning grid with time-varying conditioning, 8 of them otherwise (float64,
  eval mode, states reset before every call);
* the training settings written in the config (system class, learning rate, TBPTT step, loss
  weights), read as they are;
* ``error``: for a config the reference cannot build (e.g. an assertion), the exception and the
  line that raised it.  A FiLM config written with ``num_controls: 0`` fails the reference's own
  assertion ``num_controls > 0``; ``retry`` then holds the same measurements with
  ``num_controls: 1`` — what the config describes once it is given a knob.

Variant names: ``paper-<model>``, where a config file is ``model_<system>_<model>.yaml`` and
``<system>`` is ``bb`` (plain), ``bb-param`` (one knob), ``bb-tbptt`` (trained with truncated
back-propagation through time) or ``bb-tbptt-param``; see docs/models.md, "The papers' variants".

Writes ``benchmarks/results/reference_params.{json,md}`` through
:func:`nablafx.provenance.write_results`, with the reference's commit hash in the data.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

TREES = ("tcn", "tcn-param", "gcn", "s4", "s4-param", "lstm", "lstm-param")
SYSTEMS = ("bb", "bb-param", "bb-tbptt", "bb-tbptt-param")
SAMPLE_RATE = 48000  # the papers' data (ToneTwist AFx) is 48 kHz
GRID = 128  # the conditioning block of every config (cond_block_size)
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from benchmarks._reference import import_class, import_reference, reference_tree  # noqa: E402


def split_name(stem: str) -> tuple[str, str]:
    """``model_<system>_<model>`` → ``(system, model)``."""
    parts = stem.split("_")
    if len(parts) != 3 or parts[0] != "model" or parts[1] not in SYSTEMS:
        raise ValueError(f"{stem}: expected model_<system>_<model> with system one of {', '.join(SYSTEMS)}")
    return parts[1], parts[2]


def variant_name(stem: str) -> str:
    """The params.yaml variant standing for reference config ``stem``: ``paper-<model>``."""
    return "paper-" + split_name(stem)[1]


# ----------------------------------------------------------------------------- child process
def _reset(model) -> None:
    if hasattr(model, "reset_states"):
        model.reset_states()


def _run(model, x, p):
    """One call of the reference model from reset states (it keeps LSTM states between calls)."""
    import torch

    _reset(model)
    with torch.no_grad():
        return model(x, p) if p is not None else model(x)


def _impulse_length(model, rf: int, num_controls: int) -> int:
    import torch

    n = rf + 300
    x = torch.zeros(1, 1, n, dtype=torch.float64)
    p = torch.full((1, num_controls), 0.5, dtype=torch.float64) if num_controls else None
    imp = x.clone()
    imp[..., 0] = 0.5
    diff = (_run(model, imp, p) - _run(model, x, p)).abs().flatten()
    return int(torch.nonzero(diff > 1e-13 * diff.max()).flatten()[-1]) + 1


def _lookahead(model, num_controls: int, time_varying: bool, batch: int = 8) -> int:
    """Largest k such that the output at some t changes when only the input after t changes, with
    k = t + 1 − (earliest changed output sample); 0 for a causal model.

    With time-varying conditioning every t of one 128-sample period of the conditioning grid is
    tried (every layer's grid repeats with that period); otherwise 8 of them.
    """
    import torch

    g = torch.Generator().manual_seed(0)
    t0 = 4 * GRID  # inside the signal (the reference pads its own start)
    n = t0 + 2 * GRID + 512
    x = 0.3 * torch.randn(1, 1, n, generator=g, dtype=torch.float64)
    noise = torch.randn(1, 1, n, generator=g, dtype=torch.float64)
    p = torch.rand(1, num_controls, generator=g, dtype=torch.float64) if num_controls else None
    y = _run(model, x, p)
    scale = float(y.abs().max())
    ts = list(range(t0, t0 + GRID, 1 if time_varying else GRID // 8))
    worst = 0
    for i in range(0, len(ts), batch):
        chunk = ts[i : i + batch]
        x2 = x.repeat(len(chunk), 1, 1)
        for row, t in enumerate(chunk):
            x2[row, :, t + 1 :] += noise[0, :, t + 1 :]
        diff = (_run(model, x2, None if p is None else p.repeat(len(chunk), 1)) - y).abs()
        for row, t in enumerate(chunk):
            changed = torch.nonzero(diff[row].flatten() > 1e-9 * scale).flatten()
            if len(changed):
                worst = max(worst, t + 1 - int(changed[0]))
    return worst


def measure(cls, args: dict) -> dict:
    import torch

    torch.manual_seed(0)
    model = cls(**args).double().eval()
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    rf = getattr(model, "rf", None)
    num_controls = int(args.get("num_controls", 0))
    time_varying = args.get("cond_type") in ("tfilm", "ttfilm", "tvfilm", "tvcond")
    measured = _impulse_length(model, rf, num_controls) if rf is not None and not time_varying else None
    return {"params": params, "trainable_params": trainable, "receptive_field": rf,
            "receptive_field_measured": measured, "lookahead": _lookahead(model, num_controls, time_varying)}


def _error(err: BaseException) -> str:
    frame = traceback.extract_tb(err.__traceback__)[-1]
    where = f"{Path(frame.filename).parent.name}/{Path(frame.filename).name}:{frame.lineno}"
    text = f" ({frame.line.strip()})" if frame.line else ""
    return f"{type(err).__name__} at {where}{text}" + (f": {err}" if str(err) else "")


def _training(cfg: dict) -> dict:
    init = cfg["init_args"]
    loss = init.get("loss", {}).get("init_args", {})
    return {
        "system": cfg["class_path"].rsplit(".", 1)[-1],
        "lr": init.get("lr"),
        "tbptt_samples": init.get("step_num_samples"),
        "loss": {
            "time_domain": loss.get("time_domain_loss", {}).get("class_path"),
            "time_domain_weight": loss.get("time_domain_weight"),
            "frequency_domain": loss.get("frequency_domain_loss", {}).get("class_path"),
            "frequency_domain_weight": loss.get("frequency_domain_weight"),
        },
    }


def child(reference: Path, pattern: str) -> None:
    """Runs with the reference first on sys.path; prints one JSON list on stdout."""
    import yaml

    import_reference(reference)
    import torch

    torch.set_num_threads(1)
    rows = []
    for tree in TREES:
        for path in sorted((reference / "cfg" / "model" / tree).glob(pattern)):
            system, model_name = split_name(path.stem)
            cfg = yaml.safe_load(path.read_text())["model"]
            proc = cfg["init_args"]["model"]["init_args"]["processor"]
            args = dict(proc["init_args"])
            row = {"config": f"cfg/model/{tree}/{path.name}", "tree": tree, "system": system, "model": model_name,
                   "variant": variant_name(path.stem), "class": proc["class_path"],
                   "num_controls": int(args.get("num_controls", 0)), "init_args": args,
                   "training": _training(cfg), "error": None, "retry": None}
            try:
                cls = import_class(proc["class_path"])
            except Exception as err:  # a missing dependency: record it, go on with the others
                row["error"] = _error(err)
                rows.append(row)
                continue
            try:
                row.update(measure(cls, args))
            except Exception as err:
                row["error"] = _error(err)
                if args.get("cond_type") == "film" and not args.get("num_controls"):
                    row["retry"] = {"num_controls": 1, **measure(cls, {**args, "num_controls": 1})}
            rows.append(row)
            print(f"{row['config']}: {row.get('params', row['error'])}", file=sys.stderr, flush=True)
    json.dump(rows, sys.stdout)


# ----------------------------------------------------------------------------- parent process
def _cell(v) -> str:
    return "—" if v is None else (f"{v:,}" if isinstance(v, int) else str(v))


def markdown(data: dict) -> str:
    ref = data["reference"]
    lines = [
        "# The reference's black-box configurations: parameters and receptive fields",
        "",
        f"Measured by running the reference's own model classes (mcomunita/nablafx at commit "
        f"`{ref['commit']}`, {ref['commit_date']}) on every config under `cfg/model/"
        f"{{{','.join(TREES)}}}`, built exactly as written.  rf: the model's `rf` attribute "
        "(convolutions only; — for LSTM and S4, unbounded); measured: the impulse-response length of "
        "models without time-varying conditioning; lookahead: future samples the output depends on "
        "(0 = causal).  Variant: this project's params.yaml variant for the config "
        "(`paper-<model>` for `model_<system>_<model>.yaml`; docs/models.md).",
        "",
        "| config | variant | knobs | params | rf | rf ms | measured | lookahead | lr | loss L1/STFT | TBPTT |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in data["configs"]:
        m = r if r["error"] is None else (r["retry"] or {})
        rf = m.get("receptive_field")
        t = r["training"]
        loss = f"{t['loss']['time_domain_weight']}/{t['loss']['frequency_domain_weight']}"
        knobs = str(r["num_controls"]) + (f" (retry {m['num_controls']})" if r["retry"] else "")
        params = _cell(m.get("params")) if m else "error"
        lines.append(f"| `{r['config'].split('/', 2)[2]}` | `{r['variant']}` | {knobs} | {params} | {_cell(rf)} | "
                     f"{'—' if rf is None else f'{1000 * rf / SAMPLE_RATE:.1f}'} | "
                     f"{_cell(m.get('receptive_field_measured'))} | {_cell(m.get('lookahead'))} | {t['lr']} | "
                     f"{loss} | {_cell(t['tbptt_samples'])} |")
    errors = [r for r in data["configs"] if r["error"]]
    if errors:
        lines += ["", "Configs the reference cannot build as written:", ""]
        for r in errors:
            retry = " Measured again with `num_controls: 1` (the row above)." if r["retry"] else ""
            lines.append(f"- `{r['config']}`: {r['error']}.{retry}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", required=True, type=Path,
                    help="checkout of mcomunita/nablafx, or its bare git directory")
    ap.add_argument("--out", default="benchmarks/results/reference_params")
    ap.add_argument("--configs", default="*.yaml", help="file-name pattern of the configs (default: all)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.reference, args.configs)
        return 0
    from nablafx.provenance import record, write_results

    with tempfile.TemporaryDirectory(prefix="nablafx-ref-") as tmp:
        tree, commit, date = reference_tree(args.reference.resolve(), Path(tmp))
        used = {"reference_commit": commit, "configs": args.configs}
        prov = record(used)  # the commit this script came from, taken before measuring
        env = {**os.environ, "PYTHONPATH": "", "CUDA_VISIBLE_DEVICES": ""}
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", "--reference", str(tree),
                              "--configs", args.configs],
                             capture_output=True, text=True, env=env, cwd=tmp)
        if out.returncode != 0:
            sys.stderr.write(out.stderr)
            return out.returncode
        rows = json.loads(out.stdout)
    data = {"reference": {"repository": "mcomunita/nablafx", "commit": commit, "commit_date": date},
            "sample_rate": SAMPLE_RATE, "configs": rows}
    write_results(args.out, markdown(data), data, provenance=prov)
    bad = sum(r["error"] is not None for r in rows)
    print(f"{args.out}.{{json,md}}: {len(rows)} configs, {bad} the reference cannot build as written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
