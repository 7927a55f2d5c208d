"""One row per DVC experiment: variant, key params, test metrics, FAD and cost.

``dvc exp show`` lists every params.yaml key (all variants included), which buries the
columns people compare; ``nablafx table`` reads ``dvc exp show --json`` and keeps those.
"""

from __future__ import annotations

import json
import subprocess

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


def _get(tree: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


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


def to_markdown(rows: list[dict]) -> str:
    cols = ["experiment"] + [c for c, _, _ in COLUMNS]

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    out = subprocess.run(["dvc", "exp", "show", "--json", *(argv or [])], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(f"error: dvc exp show failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
        return 2
    print(to_markdown(rows_from_exp_show(json.loads(out.stdout))))
    return 0
