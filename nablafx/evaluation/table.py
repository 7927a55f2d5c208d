"""Experiment records and the results table made from them.

``nablafx record NAME`` snapshots the workspace's last run — the whole params.yaml, the test
metrics, FAD, cost, and the provenance of the training and test stages (commit, params hash,
machine, command) — into ``reports/experiments/NAME.json``, a file to commit. ``nablafx table``
turns every record into one row of ``reports/experiments.{md,json}`` and, with ``--readme``, rewrites
the README's results table between its markers, so every number there traces to a committed record.

``nablafx table --exp-show`` instead reads ``dvc exp show --json`` (experiments not yet recorded).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

from nablafx.errors import ConfigError

COLUMNS = [
    ("variant", "reports/metrics.json", "model.variant"),
    ("params", "reports/metrics.json", "model.params"),
    ("steps", "params.yaml", "train.max_steps"),
    ("device", "params.yaml", "data.device"),
    ("test ESR", "reports/metrics.json", "test.esr"),
    ("MAE", "reports/metrics.json", "test.mae"),
    ("MR-STFT", "reports/metrics.json", "test.mrstft"),
    ("ΔLU", "reports/metrics.json", "test.loudness_diff_lu"),
    ("FAD crepe", "reports/fad.json", "fad.crepe_tiny"),
    ("GMAC/s", "reports/cost.json", "gmacs_per_second"),
    ("RTF@64", "reports/cost.json", "rtf.64"),
    ("RTF@512", "reports/cost.json", "rtf.512"),
]
RECORD_FILES = ("reports/metrics.json", "reports/fad.json", "reports/cost.json")
BEGIN, END = "<!-- experiments:begin (nablafx table --readme) -->", "<!-- experiments:end -->"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _get(tree: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found (run `dvc repro` first)") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None


def record_experiment(name: str, root: str | Path = ".", out_dir: str | Path = "reports/experiments") -> Path:
    """Write ``<out_dir>/<name>.json`` from the workspace's params.yaml, reports and provenance."""
    from nablafx.config import load_params
    from nablafx.provenance import record
    from nablafx.utils import write_json

    if not NAME.match(name):
        raise ConfigError(f"record name {name!r}: use letters, digits, '.', '_' or '-'")
    root = Path(root)
    params = load_params(root / "params.yaml")
    files = {f: _read_json(root / f) for f in RECORD_FILES}
    provenance = _read_json(root / "reports/provenance.json")
    variant = _get(files["reports/metrics.json"], "model.variant")
    if variant is None:
        raise ConfigError(f"{root / 'reports/metrics.json'}: no model.variant (run `dvc repro test`)")
    out = Path(out_dir) / f"{name}.json"
    write_json(out, {"name": name, "variant": variant, "params": params, "files": files,
                     "provenance": {**provenance, "record": record(params, command=f"nablafx record {name}")}})
    return out


def rows_from_records(paths) -> list[dict]:
    rows = []
    for path in sorted(paths):
        rec = _read_json(Path(path))
        files = {**rec["files"], "params.yaml": rec["params"]}
        row = {"experiment": rec["name"]}
        for col, file, key in COLUMNS:
            row[col] = _get(files.get(file) or {}, key)
        train = (rec.get("provenance") or {}).get("train") or {}
        row["commit"] = (train.get("commit") or "")[:10]
        row["machine"] = f"{_get(train, 'machine.cpu') or '?'}, {_get(train, 'machine.torch_threads') or '?'} threads"
        rows.append(row)
    return rows


def rows_from_exp_show(entries: list) -> list[dict]:
    rows = []

    def add(entry, name):
        data = entry.get("data") or {}
        files = {**(data.get("metrics") or {}), **(data.get("params") or {})}
        row = {"experiment": name}
        for col, file, key in COLUMNS:
            row[col] = _get((files.get(file) or {}).get("data") or {}, key)
        if row["variant"] is not None:
            rows.append(row)

    def name(e):
        rev = e.get("rev") or ""
        return e.get("name") or (rev[:7] if len(rev) == 40 else rev)

    for e in entries:
        add(e, name(e))
        for exp in e.get("experiments") or []:
            for rev in exp.get("revs") or []:
                add(rev, name(rev))
    return rows


def to_markdown(rows: list[dict], extra=()) -> str:
    cols = ["experiment"] + [c for c, _, _ in COLUMNS] + list(extra)

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10000:
            return f"{v:,}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def readme_block(rows: list[dict]) -> str:
    if not rows:
        return f"{BEGIN}\n{END}"
    return f"{BEGIN}\n{to_markdown(rows, extra=('commit', 'machine'))}\n{END}"


def update_readme(readme: str | Path, rows: list[dict]) -> bool:
    """Replace the README's block between the markers; True when the file changed."""
    from nablafx.utils import write_text_atomic

    path = Path(readme)
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise ConfigError(f"{path}: no '{BEGIN}' … '{END}' block")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    new = text[:start] + readme_block(rows) + text[end:]
    if new != text:
        write_text_atomic(path, new)
    return new != text


def dvc_executable() -> str:
    """``dvc`` from PATH, else the one installed beside this Python (a venv not on PATH); one-line error."""
    import shutil

    found = shutil.which("dvc")
    if found:
        return found
    beside = Path(sys.executable).parent / "dvc"
    if beside.is_file():
        return str(beside)
    raise FileNotFoundError("dvc: not found on PATH nor beside this Python "
                            f"({Path(sys.executable).parent}); run `make install` and use .venv/bin/nablafx")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="nablafx table", description=__doc__.splitlines()[0])
    ap.add_argument("--records", default="reports/experiments", help="folder of `nablafx record` files")
    ap.add_argument("--out", default="reports/experiments", help="writes <out>.md and <out>.json ('' to print only)")
    ap.add_argument("--readme", default=None, help="also rewrite this README's results block")
    ap.add_argument("--exp-show", nargs=argparse.REMAINDER, default=None,
                    help="read `dvc exp show --json [ARGS]` instead of the records (prints only)")
    args = ap.parse_args(argv)
    if args.exp_show is not None:
        out = subprocess.run([dvc_executable(), "exp", "show", "--json", *args.exp_show], capture_output=True,
                             text=True, check=False)
        if out.returncode != 0:
            last = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode
            print(f"error: dvc exp show failed: {last}", file=sys.stderr)
            return 2
        print(to_markdown(rows_from_exp_show(json.loads(out.stdout))))
        return 0
    paths = sorted(Path(args.records).glob("*.json"))
    if not paths:
        raise FileNotFoundError(f"{args.records}: no experiment records (make one with `nablafx record NAME`)")
    rows = rows_from_records(paths)
    print(to_markdown(rows, extra=("commit", "machine")))
    if args.out:
        from nablafx.utils import write_json, write_text_atomic

        write_text_atomic(Path(args.out).with_suffix(".md"), to_markdown(rows, extra=("commit", "machine")) + "\n")
        write_json(Path(args.out).with_suffix(".json"), {"records": [str(p) for p in paths], "rows": rows})
    if args.readme:
        changed = update_readme(args.readme, rows)
        print(f"{args.readme}: {'updated' if changed else 'already up to date'}")
    return 0


def record_main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="nablafx record", description="Snapshot the last run as an experiment record")
    ap.add_argument("name")
    ap.add_argument("--out-dir", default="reports/experiments")
    args = ap.parse_args(argv)
    path = record_experiment(args.name, ".", args.out_dir)
    print(f"wrote {path}")
    return 0
