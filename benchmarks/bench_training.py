"""Training speed and memory, side by side with the reference implementation, in one run.

    python benchmarks/bench_training.py --reference /work/.mirror/mcomunita+nablafx/repo
    python benchmarks/bench_training.py --reference PATH --quick          # smoke test: tiny batch
    python benchmarks/bench_training.py --reference PATH --device cuda

``--reference`` is a checkout of mcomunita/nablafx or its bare git directory (then its HEAD is
exported to a temporary folder).  Nothing of it is copied here: a child process puts the checkout
first on ``sys.path`` and builds, from the reference's own config file
(``cfg/model/<tree>/model_<system>_<model>.yaml``), its model class with the config's
``init_args`` and its loss (``TimeAndFrequencyDomainLoss``: 0.5·L1 + 0.5·auraloss MR-STFT).
Another child builds this project's params.yaml variant for the same config, ``paper-<model>``
(:func:`benchmarks.reference_params.variant_name`, with the few settings that differ between two
reference configs of one model name laid over it, :data:`CONFIGS`), and this project's loss with
the same terms and weights.

One training step, identical on both sides: the same input (batch × (seconds + warm-up context)
samples of noise, the warm-up being what this project's training prepends: receptive field − 1,
2048 for recurrent models), the same target, the same knob values when the config has knobs,
the loss on the last ``seconds`` of the output, backward over the whole sequence, gradient
clipping by value at 10 (the papers' trainer), AdamW at the config's learning rate.  Both sides
use ``--threads`` threads.  Each child runs ``--warmup`` steps, then ``--steps`` timed steps; the
children of one config run one after the other, their order alternating from config to config
(and round to round with ``--rounds``), and the load average is recorded before and after each.

Per side: median seconds per step, peak resident memory of its process (``ru_maxrss``; on a GPU
also ``torch.cuda.max_memory_allocated``), parameter count.  A child whose resident memory passes
``--mem-limit-gb`` is stopped and reported as such.  Writes ``benchmarks/results/training_<device>``
``.{json,md}`` through :func:`nablafx.provenance.write_results` (``--quick``: ``training_quick_<device>``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Reference config (under cfg/model/) → settings laid over the params.yaml variant ``paper-<model>``.
# model_bb_lstm-32 (full back-propagation) has the residual path its TBPTT sibling (the variant's
# source, model_bb-tbptt_lstm-32) leaves out; the parameter count is the same.
CONFIGS = {
    "lstm/model_bb_lstm-32.yaml": {"residual": True},
    "lstm/model_bb-tbptt_lstm-96.yaml": {},
    "tcn/model_bb_tcn-45-s-16.yaml": {},
    "tcn/model_bb_tcn-250-s-16.yaml": {},
    "tcn/model_bb_tcn-tvf-250-s-16.yaml": {},
    "tcn-param/model_bb-param_tcn-f-45-s-16.yaml": {},
    "gcn/model_bb_gcn-250-s-16.yaml": {},
    "s4/model_bb_s4-b8-s32-c16.yaml": {},
    "s4-param/model_bb-param_s4-tvf-b8-s32-c16.yaml": {},
}
QUICK_CONFIGS = ["lstm/model_bb_lstm-32.yaml", "tcn/model_bb_tcn-45-s-16.yaml"]
CLIP_VALUE = 10.0  # the papers' trainer: gradient_clip_val 10, gradient_clip_algorithm value
SAMPLE_RATE = 48000
RECURRENT_CONTEXT = 2048  # nablafx.training.train.RECURRENT_CONTEXT (not imported: the parent stays light)


# ----------------------------------------------------------------------------- shared by both children
def _inputs(batch: int, n: int, context: int, num_controls: int, device: str):
    import torch

    g = torch.Generator().manual_seed(0)
    x = 0.3 * torch.randn(batch, 1, n + context, generator=g)
    y = torch.tanh(3 * x[..., context:])
    knobs = torch.rand(batch, num_controls, generator=g) if num_controls else None
    return x.to(device), y.to(device), None if knobs is None else knobs.to(device)


def _time_steps(step, warmup: int, steps: int, device: str) -> tuple[list[float], float]:
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    loss = float("nan")
    for _ in range(warmup):
        loss = step()
    sync()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - t0)
    return times, loss


def _child_result(model, times, loss, device) -> dict:
    import torch

    out = {"params": sum(p.numel() for p in model.parameters()), "times": [round(t, 4) for t in times],
           "loss": loss, "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device == "cuda":
        out["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def _instantiate(obj):
    """A jsonargparse ``{class_path, init_args}`` mapping as the reference's CLI builds it."""
    import importlib

    if isinstance(obj, dict) and "class_path" in obj:
        module, name = obj["class_path"].rsplit(".", 1)
        cls = getattr(importlib.import_module(module), name)
        return cls(**{k: _instantiate(v) for k, v in (obj.get("init_args") or {}).items()})
    return obj


def child_reference(reference: Path, config: str, a) -> dict:
    import yaml

    sys.path.insert(0, str(reference))
    import nablafx  # the reference's package, not this repository's

    where = Path(nablafx.__file__).resolve()
    if reference.resolve() not in where.parents:
        raise SystemExit(f"imported nablafx from {where}, not from the reference at {reference}")
    import torch

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = yaml.safe_load((reference / "cfg" / "model" / config).read_text())["model"]["init_args"]
    proc = cfg["model"]["init_args"]["processor"]
    model = _instantiate(proc).to(a.device)
    loss_fn = _instantiate(cfg["loss"]).to(a.device)
    num_controls = int(proc["init_args"].get("num_controls", 0))
    # the reference's BaseSystem.configure_optimizers
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], betas=(0.9, 0.999), eps=1e-8)
    x, y, knobs = _inputs(a.batch, a.n, a.context, num_controls, a.device)

    def step():
        if hasattr(model, "reset_states"):
            model.reset_states()  # BlackBoxSystem.common_step
        opt.zero_grad(set_to_none=True)
        pred = model(x, knobs) if num_controls else model(x)
        loss = sum(loss_fn(pred[..., a.context:], y))
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), CLIP_VALUE)
        opt.step()
        return float(loss)

    times, loss = _time_steps(step, a.warmup, a.steps, a.device)
    return _child_result(model, times, loss, a.device)


def build_nablafx(config: str, num_controls: int, params_file: Path = ROOT / "params.yaml"):
    """This project's model for reference config ``config``: ``(model, spec, variant)``."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.reference_params import variant_name
    from nablafx.config import load_params
    from nablafx.registry import build_model, resolve_variant

    variant = variant_name(Path(config).stem)
    _, spec = resolve_variant(load_params(params_file), variant)
    spec = {**spec, **CONFIGS.get(config, {})}
    return build_model(spec, n_knobs=num_controls, key=f"variants.{variant}"), spec, variant


def child_nablafx(config: str, a) -> dict:
    import torch

    from nablafx.training.losses import WeightedLoss

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model, spec, _ = build_nablafx(config, a.num_controls)
    model = model.to(a.device)
    loss_fn = WeightedLoss({"l1": 0.5, "mrstft": 0.5}).to(a.device)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.get("lr", 1e-3), betas=(0.9, 0.999), eps=1e-8)
    x, y, knobs = _inputs(a.batch, a.n, a.context, a.num_controls, a.device)

    def step():
        opt.zero_grad(set_to_none=True)
        y_hat, _ = model(x, knobs)
        loss, _ = loss_fn(y_hat[..., a.context:], y)
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), CLIP_VALUE)
        opt.step()
        return float(loss)

    times, loss = _time_steps(step, a.warmup, a.steps, a.device)
    return _child_result(model, times, loss, a.device)


# ----------------------------------------------------------------------------- parent process
def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_child(cmd: list[str], mem_limit_mb: float, timeout: float) -> dict:
    """Run one child, stopping it above ``mem_limit_mb`` resident or after ``timeout`` seconds."""
    env = {**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": cmd[cmd.index("--threads") + 1]}
    load0 = os.getloadavg()[0]
    t0 = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, cwd=ROOT, env=env)
        seen, why = 0.0, None
        while proc.poll() is None:
            seen = max(seen, _rss_mb(proc.pid))
            if seen > mem_limit_mb:
                why = f"stopped: resident memory above {mem_limit_mb / 1024:.0f} GB"
            elif time.monotonic() - t0 > timeout:
                why = f"stopped: longer than {timeout:.0f} s"
            if why:
                proc.kill()
                proc.wait()
                break
            time.sleep(0.05)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    row = {"load_avg_before": round(load0, 2), "load_avg_after": round(os.getloadavg()[0], 2),
           "wall_s": round(time.monotonic() - t0, 1)}
    if why:
        return {**row, "error": why, "peak_rss_mb": round(seen, 1)}
    if proc.returncode != 0:
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip()] or [f"exit status {proc.returncode}"]
        return {**row, "error": lines[-1][:300]}
    return {**row, **json.loads(stdout.strip().splitlines()[-1])}


def reference_info(reference: Path, config: str) -> dict:
    import yaml

    cfg = yaml.safe_load((reference / "cfg" / "model" / config).read_text())["model"]
    proc = cfg["init_args"]["model"]["init_args"]["processor"]
    return {"class": proc["class_path"], "num_controls": int(proc["init_args"].get("num_controls", 0)),
            "system": cfg["class_path"].rsplit(".", 1)[-1], "lr": cfg["init_args"]["lr"]}


def context_of(model) -> int:
    rf = model.receptive_field
    return RECURRENT_CONTEXT if rf is None else max(0, rf - 1)


def _merge(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[0]["error"], "peak_rss_mb": runs[0].get("peak_rss_mb")}
    times = [t for r in ok for t in r["times"]]
    out = {"params": ok[0]["params"], "times": times, "s_per_step": round(statistics.median(times), 4),
           "peak_rss_mb": max(r["peak_rss_mb"] for r in ok), "loss": ok[-1]["loss"]}
    if "cuda_peak_mb" in ok[0]:
        out["cuda_peak_mb"] = max(r["cuda_peak_mb"] for r in ok)
    return out


def _gb(mb) -> str:
    return "—" if mb is None else f"{mb / 1024:.2f}"


def markdown(meta: dict, rows: list[dict]) -> str:
    cuda = meta["device"] == "cuda"
    lines = [
        f"# Training step, side by side with the reference ({meta['device']}, batch {meta['batch']} × "
        f"{meta['seconds']} s, {meta['threads']} threads)",
        "",
        f"Both measured in this run, each in its own process: the reference (mcomunita/nablafx "
        f"`{meta['reference_commit'][:12]}`, its config file, model class and loss) and this project's "
        "`paper-<model>` variant; same input, target, knobs and warm-up context, loss 0.5·L1 + 0.5·MR-STFT "
        "on the last "
        f"{meta['seconds']} s, gradient clipping by value at {CLIP_VALUE:g}, AdamW; median of "
        f"{meta['steps'] * meta['rounds']} steps after {meta['warmup']} warm-up. Speed-up: reference "
        "s/step ÷ nablafx s/step. Peak RSS: the process's maximum resident memory"
        + (" (GPU: peak allocated)" if cuda else "") + ". Load: 1-minute load average before each side.",
        "",
        "| reference config | variant | params ref / nablafx | context | ref s/step | nablafx s/step | speed-up | "
        "ref peak RSS GB | nablafx peak RSS GB |" + (" ref GPU GB | nablafx GPU GB |" if cuda else "")
        + " load ref / nablafx |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if cuda else "") + "---|",
    ]
    for r in rows:
        ref, our = r["reference"], r["nablafx"]
        params = f"{ref.get('params', '—')} / {our.get('params', '—')}"
        if "params" in ref and "params" in our and ref["params"] != our["params"]:
            params += " (differ)"
        ts = [f"error: {s['error']}" if "error" in s else f"{s['s_per_step']:.3f}" for s in (ref, our)]
        ratio = f"{r['speedup']:.2f}×" if r.get("speedup") else "—"
        gpu = f" {_gb(ref.get('cuda_peak_mb'))} | {_gb(our.get('cuda_peak_mb'))} |" if cuda else ""
        load = " / ".join(f"{s:.1f}" for s in r["load_avg"])
        lines.append(f"| `{r['config']}` | `{r['variant']}` | {params} | {r['context']} | {ts[0]} | {ts[1]} | {ratio} | "
                     f"{_gb(ref.get('peak_rss_mb'))} | {_gb(our.get('peak_rss_mb'))} |{gpu} {load} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, required=True, help="checkout of mcomunita/nablafx, or its bare git dir")
    ap.add_argument("--configs", nargs="*", default=None, help=f"reference configs under cfg/model/ (default: {len(CONFIGS)})")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mem-limit-gb", type=float, default=14.0)
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per child")
    ap.add_argument("--quick", action="store_true", help="smoke test: batch 2 × 0.25 s, 2 configs")
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", choices=["reference", "nablafx"], help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--context", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--num-controls", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.quick:
        a.batch, a.seconds = min(a.batch, 2), min(a.seconds, 0.25)
        a.configs = a.configs or QUICK_CONFIGS
    a.n = int(round(a.seconds * SAMPLE_RATE))
    if a.child:
        res = (child_reference(a.reference, a.config, a) if a.child == "reference" else child_nablafx(a.config, a))
        print(json.dumps(res))
        return 0
    configs = a.configs or list(CONFIGS)
    from nablafx.provenance import record, write_results

    sys.path.insert(0, str(ROOT))
    from benchmarks.reference_params import reference_tree

    used = {k: v for k, v in vars(a).items() if k not in ("out", "child", "config", "context", "num_controls", "n")}
    used["reference"] = str(a.reference)
    prov = record(used)  # before measuring: the commit the code came from
    tag = ("training_quick_" if a.quick else "training_") + a.device
    out = Path(a.out or ROOT / "benchmarks" / "results" / tag)
    rows = []
    with tempfile.TemporaryDirectory(prefix="nablafx-ref-") as tmp:
        tree, commit, date = reference_tree(a.reference.resolve(), Path(tmp))
        for i, config in enumerate(configs):
            info = reference_info(tree, config)
            model, _, variant = build_nablafx(config, info["num_controls"])
            context = context_of(model)
            del model
            common = [sys.executable, str(Path(__file__).resolve()), "--reference", str(tree), "--config", config,
                      "--context", str(context), "--num-controls", str(info["num_controls"]), "--device", a.device,
                      "--batch", str(a.batch), "--seconds", str(a.seconds), "--steps", str(a.steps),
                      "--warmup", str(a.warmup), "--threads", str(a.threads)]
            runs = {"reference": [], "nablafx": []}
            loads = {"reference": [], "nablafx": []}
            for r in range(a.rounds):
                order = ["reference", "nablafx"] if (i + r) % 2 == 0 else ["nablafx", "reference"]
                for side in order:
                    res = run_child([*common, "--child", side], a.mem_limit_gb * 1024, a.timeout)
                    runs[side].append(res)
                    loads[side].append(res["load_avg_before"])
                    print(f"{config} {side}: {json.dumps(res)}", file=sys.stderr, flush=True)
            ref, our = _merge(runs["reference"]), _merge(runs["nablafx"])
            speedup = (round(ref["s_per_step"] / our["s_per_step"], 2)
                       if "s_per_step" in ref and "s_per_step" in our else None)
            rows.append({"config": config, "variant": variant, **info, "overrides": CONFIGS.get(config, {}),
                         "context": context, "reference": ref, "nablafx": our, "speedup": speedup,
                         "load_avg": [statistics.mean(loads["reference"]), statistics.mean(loads["nablafx"])],
                         "runs": runs})
            print(json.dumps({k: rows[-1][k] for k in ("config", "speedup")}), flush=True)
    meta = {"device": a.device, "batch": a.batch, "seconds": a.seconds, "steps": a.steps, "warmup": a.warmup,
            "rounds": a.rounds, "threads": a.threads, "loss": "0.5 L1 + 0.5 MR-STFT (auraloss defaults)",
            "optimizer": "AdamW", "clip_grad_value": CLIP_VALUE, "reference_repository": "mcomunita/nablafx",
            "reference_commit": commit, "reference_commit_date": date}
    write_results(out, markdown(meta, rows), {"meta": meta, "rows": rows}, provenance=prov)
    print(f"wrote {out}.md")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
