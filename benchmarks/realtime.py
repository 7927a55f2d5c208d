"""Real-time use on one CPU thread: every variant of params.yaml, eager PyTorch, TorchScript, ONNX Runtime.

    python benchmarks/realtime.py                 # the full run (every variant)
    python benchmarks/realtime.py --quick         # one variant per family, fewer block sizes (CI-sized)
    python benchmarks/realtime.py --readme README.md   # only rewrite the README table from the results file

Per variant (3 knobs, seeded weights; the cost does not depend on training), streaming blocks with
the state carried and constant knobs:

* **real-time factor** RTF = block duration / median block latency (robust to a loaded machine; the
  mean-based audio seconds / processing seconds is in the JSON as ``rtf_mean``) and **per-block latency** p50 / p99 (ms,
  and as a share of the block's duration, its deadline), at block sizes 32 … 4096 in eager PyTorch
  and at ``--export-blocks`` through the exported graphs (``nablafx export``: TorchScript run by
  torch.jit, ONNX run by ONNX Runtime with one intra-op thread);
* **MAC rate**: the model's multiply-accumulates per audio second (counted by
  :func:`nablafx.evaluation.cost.count_macs` on an offline call) × RTF, in GMAC/s;
* **peak memory**: the growth of the resident set (``VmHWM``, reset per variant) of a child process
  that builds the variant and streams it in eager blocks of 512;
* **deadline share under load**: 1, 4 and 16 instances of the variant (its best path at block 128)
  in separate processes at once, each paced like a host's audio callback (one block per block
  period); p50 / p99 of (finish − block start) / block period and the count of missed deadlines
  (share > 1).

Each measurement streams ``--seconds`` of audio (at least ``MIN_BLOCKS`` blocks, at most
``--max-seconds`` of wall time) after two warm-up blocks; times are wall-clock (``perf_counter``), so
machine load shows: the provenance records the load average, and it is printed in the tables.
Writes ``benchmarks/results/realtime{,_quick}.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nablafx.config import load_params  # noqa: E402
from nablafx.errors import ConfigError  # noqa: E402
from nablafx.evaluation.cost import count_macs  # noqa: E402
from nablafx.portable import FORMATS, ExportedRunner, export_blockers, export_bytes  # noqa: E402
from nablafx.provenance import record, write_results  # noqa: E402
from nablafx.registry import build_model  # noqa: E402

SR = 48000
N_KNOBS = 3
BLOCKS = (32, 64, 128, 256, 512, 1024, 2048, 4096)
EXPORT_BLOCKS = (64, 128, 512)
QUICK = ("lstm-32", "tcn-45-film", "gcn-45-film", "s4-film-b4-s32-c16", "gb-dist-cond", "gb-amp-cond")
MIN_BLOCKS = 20
PATHS = ("eager", "torchscript", "onnx")
BEGIN, END = "<!-- realtime:begin -->", "<!-- realtime:end -->"


def make(spec: dict):
    torch.manual_seed(0)
    return build_model(spec, n_knobs=N_KNOBS, sample_rate=SR).eval()


class Eager:
    def __init__(self, model, block: int):
        self.model = model
        self.state = model.init_state(1)
        g = torch.Generator().manual_seed(0)
        self.knobs = torch.rand(1, model.n_knobs, generator=g) if model.n_knobs else None

    def process(self, x):
        with torch.inference_mode():
            y, self.state = self.model(x, self.knobs, self.state)
        return y


class Exported:
    def __init__(self, path: Path, desc: dict):
        self.runner = ExportedRunner(path, desc)
        g = torch.Generator().manual_seed(0)
        self.knobs = torch.rand(1, desc["n_knobs"], generator=g) if desc["n_knobs"] else None
        self.onnx = desc["format"] == "onnx"
        if self.onnx and self.knobs is not None:
            self.knobs = self.knobs.numpy()

    def process(self, x):
        return self.runner.process(x.numpy() if self.onnx else x, self.knobs)


def make_runner(path: str, model, block: int, files: dict):
    if path == "eager":
        return Eager(model, block)
    file, desc = files[(path, block)]
    return Exported(file, desc)


def stream(runner, block: int, seconds: float, max_seconds: float) -> dict:
    """Latencies (s) of consecutive blocks of noise (after two warm-up blocks)."""
    n_blocks = max(MIN_BLOCKS, math.ceil(seconds * SR / block))
    g = torch.Generator().manual_seed(1)
    blocks = [0.3 * torch.randn(1, 1, block, generator=g) for _ in range(min(n_blocks, 64))]
    for b in blocks[:2]:
        runner.process(b)
    lat = []
    t_start = time.perf_counter()
    for i in range(n_blocks):
        t0 = time.perf_counter()
        runner.process(blocks[i % len(blocks)])
        lat.append(time.perf_counter() - t0)
        if time.perf_counter() - t_start > max_seconds and len(lat) >= MIN_BLOCKS:
            break
    lat = np.array(lat)
    period = block / SR
    return {"blocks": len(lat), "rtf_mean": float(len(lat) * period / lat.sum()),
            "rtf": float(period / np.percentile(lat, 50)),
            "p50_ms": float(np.percentile(lat, 50) * 1e3), "p99_ms": float(np.percentile(lat, 99) * 1e3),
            "p50_share": float(np.percentile(lat, 50) / period), "p99_share": float(np.percentile(lat, 99) / period)}


def export_files(model, blocks, tmp: Path, name: str) -> tuple[dict, dict]:
    """Exported files per (format, block); and why the others are missing."""
    files, missing = {}, {}
    for fmt in ("torchscript", "onnx"):
        for block in blocks:
            reasons = export_blockers(model, block, fmt)
            if reasons:
                missing[(fmt, block)] = reasons[0]
                continue
            data, desc = export_bytes(model, block, fmt)
            path = tmp / f"{name}-{fmt}-{block}{FORMATS[fmt]}"
            path.write_bytes(data)
            files[(fmt, block)] = (path, desc)
    return files, missing


# --------------------------------------------------------------------------- child processes
def _vm(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1]) / 1024.0  # MiB
    return float("nan")


def _memory_child(spec, conn):
    torch.set_num_threads(1)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set to the current one
    except OSError:
        pass
    base = _vm("VmRSS")
    model = make(spec)
    stream(Eager(model, 512), 512, 0.25, 2.0)
    conn.send(_vm("VmHWM") - base)
    conn.close()


def peak_memory_mib(spec) -> float:
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_memory_child, args=(spec, child))
    p.start()
    child.close()  # the child's end lives in the child only: a child that dies gives EOF, not a hang
    value = _receive(parent, p, "memory probe")
    p.join()
    return float(value)


def _receive(conn, proc, what: str):
    try:
        return conn.recv()
    except EOFError:
        proc.join()
        raise RuntimeError(f"{what}: the child process ended (exit code {proc.exitcode}) without a result") from None


def _paced_child(spec, path, block, files, seconds, start_at, conn):
    torch.set_num_threads(1)
    model = make(spec)
    runner = make_runner(path, model, block, files)
    x = 0.3 * torch.randn(1, 1, block, generator=torch.Generator().manual_seed(os.getpid()))
    for _ in range(2):
        runner.process(x)
    period = block / SR
    n = int(seconds / period)
    while time.perf_counter() < start_at:
        time.sleep(0.001)
    shares = []
    t_start = time.perf_counter()
    for k in range(n):
        due = t_start + k * period  # this block's audio is ready; its output is due one period later
        now = time.perf_counter()
        if now < due:
            time.sleep(due - now)
        runner.process(x)
        shares.append((time.perf_counter() - due) / period)
    conn.send(shares)
    conn.close()


def concurrent(spec, path: str, block: int, files: dict, instances: int, seconds: float) -> dict:
    ctx = mp.get_context("fork")
    pipes, procs = [], []
    start_at = time.perf_counter() + 1.0 + 0.2 * instances  # every instance built and warm first
    for _ in range(instances):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_paced_child, args=(spec, path, block, files, seconds, start_at, child))
        p.start()
        child.close()
        pipes.append(parent)
        procs.append(p)
    shares = np.concatenate([np.array(_receive(pp, p, f"instance {i + 1} of {instances}"))
                             for i, (pp, p) in enumerate(zip(pipes, procs))])
    for p in procs:
        p.join()
    return {"instances": instances, "blocks": int(len(shares)), "p50_share": float(np.percentile(shares, 50)),
            "p99_share": float(np.percentile(shares, 99)), "missed": int((shares > 1.0).sum())}


# --------------------------------------------------------------------------- tables
def machine_speed(seconds: float = 0.5) -> float:
    """GFLOP/s of a fixed float32 64 × 64 matrix product on this thread (median of repeated timed
    batches): a probe of how fast the shared machine runs at the time, recorded at the start and end
    of a run so that two runs' RTFs can be put side by side (the models' own blocks are small
    products like this one)."""
    a, b = torch.randn(64, 64), torch.randn(64, 64)
    flops = 2 * 64**3 * 100
    rates = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(rates) < 5:
        t0 = time.perf_counter()
        for _ in range(100):
            torch.mm(a, b)
        rates.append(flops / (time.perf_counter() - t0) / 1e9)
    return round(float(np.median(rates)), 2)


def _speed_note(data: dict) -> str:
    sp = data.get("machine_gflops")
    if not sp:
        return ""
    return (f" Machine speed probe (64 × 64 float32 matmul, one thread): {sp[0]:.1f} GFLOP/s at the start"
            + (f", {sp[1]:.1f} at the end" if len(sp) > 1 else "") + " of the run.")


def _f(v, digits=1):
    return "—" if v is None else f"{v:.{digits}f}"


def best(rows: list[dict], variant: str, block: int):
    cands = [r for r in rows if r["variant"] == variant and r["block"] == block]
    return max(cands, key=lambda r: r["rtf"]) if cands else None


def summary_table(data: dict) -> str:
    rows, variants = data["rows"], data["variants"]
    lines = ["| variant | family | MACs/sample | RTF @64 (best path) | GMAC/s @64 | RTF @512 (best path) | "
             "GMAC/s @512 | p99 @128 (share of block) | peak memory MiB |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for v in variants:
        b64, b512, b128 = best(rows, v["variant"], 64), best(rows, v["variant"], 512), best(rows, v["variant"], 128)
        def cell(r):
            return "—" if r is None else f"{r['rtf']:.1f}× ({r['path']})"

        def rate(r):
            return "—" if r is None else f"{r['gmac_s']:.2f}"

        p99 = "—" if b128 is None else f"{b128['p99_share']:.2f} ({b128['path']})"
        lines.append(f"| {v['variant']} | {v['family']} | {v['macs_per_sample']:,.0f} | {cell(b64)} | {rate(b64)} | "
                     f"{cell(b512)} | {rate(b512)} | {p99} | {_f(v.get('peak_memory_mib'))} |")
    return "\n".join(lines)


def detail_table(data: dict) -> str:
    blocks = sorted({r["block"] for r in data["rows"]})
    lines = ["| variant | path | " + " | ".join(f"RTF @{b}" for b in blocks) + " |",
             "|---|---|" + "---:|" * len(blocks)]
    for v in data["variants"]:
        for path in PATHS:
            cells = {r["block"]: r for r in data["rows"] if r["variant"] == v["variant"] and r["path"] == path}
            if cells:
                lines.append(f"| {v['variant']} | {path} | " + " | ".join(
                    f"{cells[b]['rtf']:.1f} ({cells[b]['p50_ms']:.2f}/{cells[b]['p99_ms']:.2f} ms)" if b in cells
                    else "" for b in blocks) + " |")
    return "\n".join(lines)


def load_table(data: dict) -> str:
    lines = ["| variant | path @128 | instances | p50 share | p99 share | missed / blocks |", "|---|---|---:|---:|---:|---:|"]
    for c in data["concurrency"]:
        lines.append(f"| {c['variant']} | {c['path']} | {c['instances']} | {c['p50_share']:.2f} | {c['p99_share']:.2f} | "
                     f"{c['missed']} / {c['blocks']} |")
    return "\n".join(lines)


def markdown(data: dict) -> str:
    m = data["provenance_machine"]
    load = " / ".join(str(v) for v in m.get("load_avg", [])) or "unknown"
    out = ["# Real-time use on one CPU thread", "",
           f"Streaming blocks with state, constant knobs, 3 knobs, one thread per instance; wall-clock times on "
           f"{m['cpu']} ({m['usable_cpus']} CPUs usable), load average {load} when the run started. "
           "RTF = block duration / median block latency (the mean-based RTF, which load drags down, is in the "
           "JSON); latencies per block; share = latency / block duration "
           "(the deadline). GMAC/s = counted MACs per audio second × RTF. Best path: the fastest of eager, "
           "TorchScript, ONNX Runtime at that block size." + _speed_note(data), "",
           *([f"**Partial: {len(data['variants'])} of {data['planned']} variants measured; the run was stopped or is "
               "still going.**", ""] if not data.get("complete", True) else []),
           "## Summary", "", summary_table(data), "",
           "## Several instances at once (paced like a host's audio callback, block 128, best path)", "",
           load_table(data), "",
           "## RTF (p50 / p99 block latency) per path and block size", "", detail_table(data)]
    if data.get("not_exported"):
        out += ["", "## Not exported", ""] + [f"- {k}: {v}" for k, v in sorted(data["not_exported"].items())]
    return "\n".join(out)


def group_of(variant: str) -> str:
    """``paper-tcn-f-45-s-16`` → ``paper-tcn-f``; ``paper-s4-tvf-b8-s32-c16`` → ``paper-s4-tvf``: the
    name up to its first size field (a number, or b/s/c + number) after the family's name."""
    parts = variant.split("-")
    head = 2 if parts[0] == "paper" else 1  # ("paper",) family: s4 looks like a size field
    keep = parts[:head]
    for part in parts[head:]:
        if re.fullmatch(r"[bsc]?\d+", part):
            break
        keep.append(part)
    return "-".join(keep)


def group_table(data: dict) -> str:
    """One row per variant group (:func:`group_of`): how many, the range of the best path's RTF at 64
    and 512 and of the p99 share at 128, and how many meet 2× at 64, 10× at 512 and p99 < 0.5."""
    rows = data["rows"]
    groups: dict[str, list[str]] = {}
    for v in data["variants"]:
        groups.setdefault(group_of(v["variant"]), []).append(v["variant"])
    lines = ["| variants | count | RTF @64 (best path) | RTF @512 (best path) | p99 @128 (share) | "
             "> 2× @64 | > 10× @512 | p99 < 0.5 @128 |", "|---|---:|---:|---:|---:|---:|---:|---:|"]

    def span(vals, fmt):
        return "—" if not vals else (fmt.format(min(vals)) if min(vals) == max(vals)
                                     else fmt.format(min(vals)) + " – " + fmt.format(max(vals)))

    for group, names in groups.items():
        r64 = [b["rtf"] for b in (best(rows, n, 64) for n in names) if b]
        r512 = [b["rtf"] for b in (best(rows, n, 512) for n in names) if b]
        p99 = [b["p99_share"] for b in (best(rows, n, 128) for n in names) if b]
        lines.append(f"| `{group}-…` | {len(names)} | {span(r64, '{:.1f}×')} | {span(r512, '{:.1f}×')} | "
                     f"{span(p99, '{:.2f}')} | {sum(v > 2 for v in r64)} | {sum(v > 10 for v in r512)} | "
                     f"{sum(v < 0.5 for v in p99)} |")
    return "\n".join(lines)


def _complete(results: Path) -> tuple[dict, Path, str]:
    """A results file's data (refused when partial), its path as the README shows it and its load."""
    data = json.loads(results.read_text())
    if not data.get("complete", True):
        raise SystemExit(f"{results}: partial results ({len(data['variants'])} of {data['planned']} variants); "
                         "rerun the benchmark to the end before putting it in the README")
    shown = results.resolve().relative_to(ROOT) if results.resolve().is_relative_to(ROOT) else results
    load = " / ".join(str(v) for v in data["provenance"]["machine"].get("load_avg", [])) or "unknown"
    return data, shown, load


def update_readme(readme: Path, results: Path, command: str, groups: Path | None = None) -> None:
    """The README's table from ``results``; with ``groups`` (a second results file, e.g. the paper
    variants) a per-group summary of it after the tables."""
    from nablafx.info import update_section

    data, shown, load = _complete(results)
    prov = data["provenance"]
    table = (f"One CPU thread, {prov['machine']['cpu']}, load average {load}, commit {prov['commit'][:12]}."
             f"{_speed_note(data)} Details and the paced multi-instance runs in `{shown.with_suffix('.md')}`.\n\n"
             f"{summary_table(data)}\n\n{load_table(data)}")
    if groups is not None:
        gdata, gshown, gload = _complete(groups)
        table += (f"\n\nThe {len(gdata['variants'])} variants of `{gshown}` (commit "
                  f"{gdata['provenance']['commit'][:12]}, load average {gload}; every row in "
                  f"`{gshown.with_suffix('.md')}`), by group.{_speed_note(gdata)}\n\n{group_table(gdata)}")
    update_section(readme, table, command, BEGIN, END, source=shown)


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="*")
    ap.add_argument("--quick", action="store_true", help="one variant per family, blocks 64/128/512, short runs")
    ap.add_argument("--seconds", type=float, default=None, help="audio per measurement (default 0.5; quick 0.25)")
    ap.add_argument("--max-seconds", type=float, default=1.0, help="wall-time cap per measurement")
    ap.add_argument("--concurrency", type=int, nargs="*", default=[1, 4, 16])
    ap.add_argument("--concurrency-seconds", type=float, default=None, help="default 2 (quick 1)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--readme", default=None, help="rewrite this README's table from the results file and stop")
    ap.add_argument("--groups", default=None,
                    help="with --readme: also summarise this results file (.json) by variant group")
    args = ap.parse_args(argv)
    out = Path(args.out or ROOT / f"benchmarks/results/realtime{'_quick' if args.quick else ''}")
    if args.readme:
        groups = Path(args.groups) if args.groups else None
        try:
            update_readme(Path(args.readme), out.with_suffix(".json"),
                          "python benchmarks/realtime.py --readme " + args.readme
                          + (f" --groups {args.groups}" if args.groups else ""), groups)
        except ConfigError as err:  # no section markers in the README
            raise SystemExit(str(err)) from None
        print(f"{args.readme}: table updated from {out.with_suffix('.json')}")
        return 0
    torch.set_num_threads(1)
    params = load_params(ROOT / "params.yaml")
    prov = record(params)  # before measuring: the commit the code came from, the load at the start
    names = args.variants or (list(QUICK) if args.quick else list(params["variants"]))
    blocks = (64, 128, 512) if args.quick else BLOCKS
    export_blocks = (64, 128, 512) if args.quick else EXPORT_BLOCKS
    seconds = args.seconds or (0.25 if args.quick else 0.5)
    conc_seconds = args.concurrency_seconds or (1.0 if args.quick else 2.0)
    data = {"blocks": list(blocks), "export_blocks": list(export_blocks), "seconds": seconds,
            "variants": [], "rows": [], "concurrency": [], "not_exported": {},
            "provenance_machine": prov["machine"], "planned": len(names), "complete": False,
            "machine_gflops": [machine_speed()]}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            spec = params["variants"][name]
            model = make(spec)
            macs = count_macs(model, SR, 0.25)["macs_per_second"]
            info = {"variant": name, "family": spec["family"], "params": sum(p.numel() for p in model.parameters()),
                    "macs_per_sample": macs / SR}
            files, missing = export_files(model, export_blocks, Path(tmp), name)
            data["not_exported"].update({f"{name} {fmt} @{b}": why for (fmt, b), why in missing.items()})
            for path in PATHS:
                for block in (blocks if path == "eager" else export_blocks):
                    if path != "eager" and (path, block) not in files:
                        continue
                    res = stream(make_runner(path, model, block, files), block, seconds, args.max_seconds)
                    row = {"variant": name, "path": path, "block": block, **res, "gmac_s": res["rtf"] * macs / 1e9}
                    data["rows"].append(row)
            info["peak_memory_mib"] = peak_memory_mib(spec)
            data["variants"].append(info)
            b128 = best(data["rows"], name, 128)
            if b128 is not None and (args.quick or name in QUICK or spec["family"] == "graybox" or name in
                                     params.get("aliases", {}).values()):
                for k in args.concurrency:
                    c = concurrent(spec, b128["path"], 128, files, k, conc_seconds)
                    data["concurrency"].append({"variant": name, "path": b128["path"], **c})
            b64, b512 = best(data["rows"], name, 64), best(data["rows"], name, 512)
            print(f"{name:22s} {info['macs_per_sample']:8.0f} MAC/sample  @64 {b64['rtf']:6.1f}× ({b64['path']})"
                  f"  @512 {b512['rtf']:6.1f}× ({b512['path']})  {b512['gmac_s']:.2f} GMAC/s  "
                  f"mem {info['peak_memory_mib']:.0f} MiB  [{time.perf_counter() - t_all:.0f} s]", flush=True)
            # written after every variant, marked partial: a stopped run keeps what it measured
            data["wall_seconds"] = round(time.perf_counter() - t_all, 1)
            data["complete"] = len(data["variants"]) == len(names)
            if data["complete"]:
                data["machine_gflops"].append(machine_speed())
            write_results(out, markdown(data), data, provenance=prov)
    print(f"wrote {out}.md/.json in {data['wall_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
