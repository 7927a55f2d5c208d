"""``nablafx info``: what a model variant is — family, conditioning, parameter count, receptive field.

    nablafx info artifacts/model                  # a trained model: also latency, knobs, metrics
    python -m nablafx.info tcn-45-film            # one variant (or an alias)
    python -m nablafx.info --all                  # every variant, as a table
    python -m nablafx.info --all --markdown --update docs/models.md   # refresh the docs table
    python -m nablafx.info --paper benchmarks/results/reference_params.json --update docs/models.md
    python -m nablafx.info --paper benchmarks/results/reference_params.json --summary --update README.md

Parameter counts depend on the number of knobs the model is conditioned on (``--n-knobs``,
default 3); unconditioned variants ignore it.  ``--paper`` compares the ``paper-*`` variants with
the reference's configurations as measured by ``benchmarks/reference_params.py`` (each built with
the reference config's knob count).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from nablafx.config import data_config, load_params
from nablafx.errors import ConfigError
from nablafx.fileio import write_text_atomic
from nablafx.registry import build_model, resolve_variant

BEGIN, END = "<!-- variants:begin -->", "<!-- variants:end -->"
PAPER_BEGIN, PAPER_END = "<!-- paper:begin -->", "<!-- paper:end -->"


def describe(params: dict, name: str, n_knobs: int = 3, sample_rate: int | None = None) -> dict:
    """Build the variant and report its facts as a dict."""
    variant, spec = resolve_variant(params, name)
    sr = int(sample_rate or data_config(params).sample_rate)
    model = build_model(spec, n_knobs=n_knobs, sample_rate=sr, key=f"variants.{variant}")
    rf = model.receptive_field
    core = getattr(model, "core_receptive_field", None)
    if "cond" in spec or spec["family"] in ("lstm", "tcn", "gcn", "s4"):
        cond = model.cond.kind if hasattr(model, "cond") else spec.get("cond", "concat")
        cond = cond if model.n_knobs or cond not in ("film", "concat") else "none"
    else:  # e.g. gray-box models: knobs reach them through their controllers
        cond = "controllers" if model.n_knobs else "none"
    return {
        "variant": variant,
        "alias": name if name != variant else None,
        "family": spec["family"],
        "cond": cond,
        "n_knobs": model.n_knobs,
        "params": sum(p.numel() for p in model.parameters()),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "receptive_field": rf,
        "receptive_field_ms": None if rf is None else 1000.0 * rf / sr,
        "core_receptive_field": core,
        "core_receptive_field_ms": None if core is None else 1000.0 * core / sr,
        "sample_rate": sr,
        "options": {k: v for k, v in spec.items() if k != "family"},
    }


def _rf_text(d: dict) -> str:
    if d["receptive_field"] is not None:
        return f"{d['receptive_field_ms']:.1f} ms ({d['receptive_field']} samples)"
    if d["core_receptive_field"] is not None:
        return (f"unbounded (conditioning LSTM); convolutions {d['core_receptive_field_ms']:.1f} ms "
                f"({d['core_receptive_field']} samples)")
    return "unbounded (recurrent)"


def _rf_cells(d: dict) -> tuple[str, str]:
    if d["receptive_field"] is not None:
        return f"{d['receptive_field_ms']:.1f}", str(d["receptive_field"])
    if d["core_receptive_field"] is not None:
        return f"∞ (conv {d['core_receptive_field_ms']:.1f})", f"∞ (conv {d['core_receptive_field']})"
    return "∞", "∞"


def format_one(d: dict) -> str:
    lines = [f"{d['variant']}" + (f"  (alias: {d['alias']})" if d["alias"] else "")]
    lines.append(f"  family            {d['family']}")
    lines.append(f"  conditioning      {d['cond']}" + (f" on {d['n_knobs']} knobs" if d["n_knobs"] else ""))
    lines.append(f"  parameters        {d['params']:,}" + (f" ({d['trainable']:,} trainable)"
                                                            if d["trainable"] != d["params"] else ""))
    lines.append(f"  receptive field   {_rf_text(d)}")
    if d["options"]:
        opts = ", ".join(f"{k}={v}" for k, v in d["options"].items() if k not in ("cond",))
        lines.append(f"  options           {opts}")
    return "\n".join(lines)


COLUMNS = ("variant", "family", "cond", "params", "rf ms", "rf samples")


def table_rows(rows: list[dict]) -> list[tuple[str, ...]]:
    out = []
    for d in rows:
        if "error" in d:
            out.append((d["variant"], d.get("family", "?"), "?", "error: " + d["error"], "", ""))
            continue
        ms, samples = _rf_cells(d)
        out.append((d["variant"], d["family"], d["cond"], f"{d['params']:,}", ms, samples))
    return out


def format_table(rows: list[dict], markdown: bool = False) -> str:
    cells = table_rows(rows)
    if markdown:
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * 3) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in cells]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(COLUMNS, *cells)]

    def fmt(r):
        return "  ".join(str(x).ljust(w) if i < 3 else str(x).rjust(w) for i, (x, w) in enumerate(zip(r, widths)))

    return "\n".join([fmt(COLUMNS), fmt(["-" * w for w in widths])] + [fmt(r) for r in cells])


def all_rows(params: dict, n_knobs: int = 3, families: set[str] | None = None,
             exclude: tuple[str, ...] = ()) -> list[dict]:
    """Every variant (of ``families``; none whose name starts with a prefix in ``exclude``)."""
    rows = []
    for name, spec in (params.get("variants") or {}).items():
        family = spec.get("family") if isinstance(spec, dict) else None
        if (families and family not in families) or name.startswith(tuple(exclude)):
            continue
        try:
            rows.append(describe(params, name, n_knobs))
        except Exception as err:  # a broken variant shows as a row, the others still print
            rows.append({"variant": name, "family": family, "error": str(err).splitlines()[0]})
    return rows


def paper_rows(params: dict, results: dict) -> list[dict]:
    """One row per reference configuration in ``results`` (``benchmarks/reference_params.py``'s
    data): its ``paper-*`` variant built with the config's knob count, next to the reference.

    A config the reference cannot build as written is compared through its ``retry`` measurement
    (e.g. a FiLM config written with no knobs, measured again with one)."""
    rows = []
    sr = int(results.get("sample_rate", 48000))
    for cfg in results["configs"]:
        ref = cfg if cfg.get("error") is None else (cfg.get("retry") or {})
        knobs = int(ref.get("num_controls", cfg["num_controls"]))
        row = {"config": cfg["config"], "variant": cfg["variant"], "n_knobs": knobs, "error": cfg.get("error"),
               "ref_params": ref.get("params"), "ref_rf": ref.get("receptive_field"),
               "ref_lookahead": ref.get("lookahead"), "sample_rate": sr}
        try:
            d = describe(params, cfg["variant"], knobs, sr)
        except ConfigError as err:
            row["ours_error"] = str(err).splitlines()[0]
            rows.append(row)
            continue
        row.update(params=d["params"], cond=d["cond"], family=d["family"],
                   rf=d["receptive_field"] if d["receptive_field"] is not None else d["core_receptive_field"],
                   unbounded=d["receptive_field"] is None)
        rows.append(row)
    return rows


PAPER_COLUMNS = ("reference config", "variant", "knobs", "params", "reference params", "rf", "reference rf",
                 "reference lookahead")


def format_paper_table(rows: list[dict]) -> str:
    """Markdown: the reference's configs, their variants and both sides' counts (≠ marks a mismatch)."""

    def num(v):
        return "—" if v is None else f"{v:,}"

    lines = ["| " + " | ".join(PAPER_COLUMNS) + " |", "|" + "|".join(["---", "---"] + ["---:"] * 6) + "|"]
    for r in rows:
        config = r["config"].removeprefix("cfg/model/")
        if "ours_error" in r:
            lines.append(f"| `{config}` | `{r['variant']}` | {r['n_knobs']} | error: {r['ours_error']} | "
                         f"{num(r['ref_params'])} | | {num(r['ref_rf'])} | |")
            continue
        rf = num(r["rf"])
        if r["rf"] is not None and r["unbounded"]:
            rf = f"∞ (conv {rf})"
        mark_p = "" if r["params"] == r["ref_params"] else " ≠"
        mark_rf = "" if r["rf"] == r["ref_rf"] else " ≠"
        knobs = f"{r['n_knobs']}" + (" *" if r["error"] else "")
        lines.append(f"| `{config}` | `{r['variant']}` | {knobs} | {num(r['params'])}{mark_p} | "
                     f"{num(r['ref_params'])} | {rf}{mark_rf} | {num(r['ref_rf'])} | {num(r['ref_lookahead'])} |")
    return "\n".join(lines)


def paper_group(variant: str) -> str:
    """``paper-tcn-tf-45-s-16`` → ``tcn-tf``: the family and conditioning part of a paper variant's name."""
    tokens = variant.removeprefix("paper-").split("-")
    keep = [tokens[0]]
    for t in tokens[1:]:
        if not t.isalpha():
            break
        keep.append(t)
    return "-".join(keep)


def format_paper_summary(rows: list[dict], results: str) -> str:
    """Markdown: one row per family and conditioning of the ``paper-*`` variants — how many reference
    configs they stand for, how many of those match in parameters and receptive field, and the ranges."""

    def span(values):
        values = [v for v in values if v is not None]
        if not values:
            return "—"
        lo, hi = min(values), max(values)
        return f"{lo:,}" if lo == hi else f"{lo:,} – {hi:,}"

    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(paper_group(r["variant"]), []).append(r)
    lines = ["| variants | reference configs | equal params and rf | params | rf samples (convolutions) |",
             "|---|---:|---:|---:|---:|"]
    for group, rs in groups.items():
        variants = sorted({r["variant"] for r in rs})
        equal = sum("ours_error" not in r and r["params"] == r["ref_params"] and r["rf"] == r["ref_rf"] for r in rs)
        name = f"`paper-{group}-…` ({len(variants)})"
        lines.append(f"| {name} | {len(rs)} | {equal} | {span(r.get('params') for r in rs)} | "
                     f"{span(r.get('ref_rf') for r in rs)} |")
    total = sum("ours_error" not in r and r["params"] == r["ref_params"] and r["rf"] == r["ref_rf"] for r in rows)
    lines.append(f"| all ({len({r['variant'] for r in rows})}) | {len(rows)} | {total} | | |")
    return "\n".join(lines) + f"\n\nPer config: `{results}`, `docs/models.md`."


def read_section(path: str | Path, begin: str = BEGIN, end: str = END) -> str:
    """The text between the ``begin`` … ``end`` markers of ``path`` (without the generated-by comment)."""
    path = Path(path)
    text = path.read_text()
    if begin not in text or end not in text:
        raise ConfigError(f"{path}: no '{begin}' … '{end}' section")
    inner = text.split(begin, 1)[1].split(end, 1)[0]
    return "\n".join(line for line in inner.strip().splitlines() if not line.startswith("<!--")).strip()


def update_section(path: str | Path, table: str, command: str, begin: str = BEGIN, end: str = END,
                   source: str | Path | None = None) -> None:
    """Replace the text between the ``begin`` … ``end`` markers of ``path`` by ``table``, after a
    comment naming the ``command`` that generated it (and the results file it read, ``source``)."""
    path = Path(path)
    read_section(path, begin, end)  # checks the markers
    origin = f"`{command}`" + (f" from {source}" if source is not None else "")
    body = f"{begin}\n<!-- generated by {origin} -->\n\n{table}\n\n{end}"
    text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda m: body, path.read_text(), flags=re.S)
    write_text_atomic(path, text)


def describe_trained(model_dir: str | Path) -> dict:
    """Facts about a trained model folder: variant, parameters, receptive field, latency, knobs, metrics."""
    from nablafx.export import load_model
    from nablafx.modeldir import knob_names, test_metrics

    model, cfg = load_model(model_dir)
    sr = int(cfg["sample_rate"])
    rf = model.receptive_field
    core = getattr(model, "core_receptive_field", None)
    metrics, metrics_path = test_metrics(model_dir)
    return {
        "model_dir": str(model_dir),
        "variant": cfg.get("variant"),
        "family": cfg["spec"]["family"],
        "spec": cfg["spec"],
        "params": sum(p.numel() for p in model.parameters()),
        "receptive_field": rf,
        "receptive_field_ms": None if rf is None else 1000.0 * rf / sr,
        "core_receptive_field": core,
        "core_receptive_field_ms": None if core is None else 1000.0 * core / sr,
        "latency_samples": int(getattr(model, "latency_samples", 0)),
        "sample_rate": sr,
        "knobs": [{"letter": letter, "name": name} for letter, name in knob_names(cfg, model_dir)],
        "device": cfg.get("device"),
        "training": {k: cfg.get(k) for k in ("steps", "train_seconds", "best_val_esr", "lr", "accelerator",
                                             "precision", "resumed_from") if k in cfg},
        "test": (metrics or {}).get("test"),
        "test_metrics_file": str(metrics_path) if metrics_path else None,
        "written_by": {"nablafx_version": cfg.get("nablafx_version"), "format_version": cfg.get("format_version")},
    }


def format_trained(d: dict) -> str:
    knobs = ", ".join(f"{k['letter']} ({k['name']})" if k["name"] else k["letter"] for k in d["knobs"]) or "none"
    tr = d["training"]
    lines = [f"{d['model_dir']}: {d['variant']} ({d['family']})"]
    if tr:
        how = ", ".join(str(tr[k]) for k in ("accelerator", "precision") if tr.get(k))
        lines.append(f"  trained on        {d['device']}: {tr.get('steps')} steps in {tr.get('train_seconds')} s"
                     + (f" ({how})" if how else "") + (f", lr {tr['lr']:g}" if tr.get("lr") else ""))
    lines.append(f"  parameters        {d['params']:,}")
    lines.append(f"  receptive field   {_rf_text(d)}")
    lines.append(f"  latency           {d['latency_samples']} samples")
    lines.append(f"  sample rate       {d['sample_rate']} Hz")
    lines.append(f"  knobs             {knobs}")
    if tr.get("best_val_esr") is not None:
        lines.append(f"  training metrics  best validation ESR {tr['best_val_esr']:.4f}")
    if d["test"]:
        t = d["test"]
        shown = ", ".join(f"{k} {t[k]:.4g}" for k in ("esr", "mae", "mrstft", "loudness_diff_lu") if k in t)
        lines.append(f"  test metrics      {shown} over {t.get('passages')} passages ({d['test_metrics_file']})")
    else:
        lines.append("  test metrics      none for this model (run `dvc repro test`)")
    wb = d["written_by"]
    lines.append(f"  written by        nablafx {wb['nablafx_version']} (model folder format {wb['format_version']})")
    return "\n".join(lines)


def _is_model_dir(arg: str) -> bool:
    p = Path(arg)
    return p.is_dir() or (p / "config.yaml").exists() or "/" in arg or arg.startswith(".")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="nablafx info", description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="*", help="variant names or aliases from params.yaml, or a trained model folder")
    ap.add_argument("--json", action="store_true", help="with a model folder: the facts as JSON")
    ap.add_argument("--all", action="store_true", help="every variant, as a table")
    ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    ap.add_argument("--n-knobs", type=int, default=3, help="knobs the model is conditioned on (default 3)")
    ap.add_argument("--family", action="append", help="with --all: only these families (repeatable)")
    ap.add_argument("--exclude", action="append", default=[], metavar="PREFIX",
                    help="with --all: leave out variants whose name starts with PREFIX (repeatable)")
    ap.add_argument("--markdown", action="store_true", help="with --all: a markdown table")
    ap.add_argument("--update", metavar="FILE", help="with --all --markdown or --paper: write the table into FILE")
    ap.add_argument("--paper", metavar="RESULTS_JSON",
                    help="the paper-* variants next to the reference's configs measured in RESULTS_JSON "
                         "(benchmarks/reference_params.py)")
    ap.add_argument("--summary", action="store_true",
                    help="with --paper: one row per family and conditioning instead of one per config")
    args = ap.parse_args(argv)
    if args.variants and all(_is_model_dir(v) for v in args.variants):
        for i, model_dir in enumerate(args.variants):
            d = describe_trained(model_dir)
            if args.json:
                import json

                print(json.dumps(d, indent=2, default=str))
            else:
                print(("\n" if i else "") + format_trained(d))
        return 0
    params = load_params(args.params)
    command = "python -m nablafx.info " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.paper:
        import json

        rows = paper_rows(params, json.loads(Path(args.paper).read_text()))
        table = format_paper_summary(rows, args.paper) if args.summary else format_paper_table(rows)
        if args.update:
            update_section(args.update, table, command, PAPER_BEGIN, PAPER_END)
            print(f"{args.update}: paper table of {len(rows)} reference configs updated")
        else:
            print(table)
        bad = [r for r in rows if "ours_error" in r or r["params"] != r["ref_params"] or r["rf"] != r["ref_rf"]]
        return 1 if bad else 0
    if args.all:
        rows = all_rows(params, args.n_knobs, set(args.family) if args.family else None, tuple(args.exclude))
        table = format_table(rows, markdown=args.markdown or bool(args.update))
        if args.update:
            update_section(args.update, table, command)
            print(f"{args.update}: table of {len(rows)} variants updated")
        else:
            print(table)
        return 1 if any("error" in r for r in rows) else 0
    if not args.variants:
        args.variants = [params.get("model")]
    for i, name in enumerate(args.variants):
        if i:
            print()
        print(format_one(describe(params, name, args.n_knobs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
