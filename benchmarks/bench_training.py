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
use ``--threads`` threads.  Both children of a config live at once and
take single steps in turn (ABBA…), so that both see the same load on a shared machine: ``--warmup``
steps each (3 by default: nablafx's training heap grows to its working size over the first steps,
e.g. paper-tcn-f-45-s-16 at 2.42, 2.68, 2.22, 2.08, 1.83, 1.86 s in six steps; a run trains for
thousands), then ``--steps`` timed ones; the 1-minute load average is recorded before each.

Per side: median seconds per step, peak resident memory of its process (``ru_maxrss``; on a GPU
also ``torch.cuda.max_memory_allocated``), parameter count.  A child whose resident memory passes
``--mem-limit-gb`` is stopped and reported as such.  Writes ``benchmarks/results/training_<device>``
``.{json,md}`` through :func:`nablafx.provenance.write_results` (``--quick``: ``training_quick_<device>``;
``--reference-heap``: ``…_same_heap``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from benchmarks._reference import import_reference, instantiate, reference_tree  # noqa: E402

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


PROTOCOL = sys.stdout  # the child's replies; anything else either side prints goes to stderr


def training_heap(apply: bool) -> dict:
    """With ``apply``, the heap settings nablafx's training uses (``nablafx.allocator.use_training_heap``,
    loaded from its file: in the reference's child the name ``nablafx`` is the reference's package);
    returns what is in effect.  Called before any large tensor exists (huge pages are decided then)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_nablafx_allocator", ROOT / "nablafx" / "allocator.py")
    allocator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(allocator)
    on = allocator.use_training_heap() if apply else False
    return {"training_heap": on, "huge_pages": allocator.huge_pages_in_use()}


def serve(step, model, device: str, heap: dict | None = None) -> None:
    """The child's side of the lock-step protocol: ``ready`` (parameter count, heap settings) on
    stdout, then one line per ``step`` command (seconds, loss), and at ``done`` the peak memory."""
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    print(json.dumps({"params": sum(p.numel() for p in model.parameters()), "heap": heap}), file=PROTOCOL, flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        t0 = time.perf_counter()
        loss = step()
        sync()
        print(json.dumps({"t": time.perf_counter() - t0, "loss": loss}), file=PROTOCOL, flush=True)
    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device == "cuda":
        out["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    print(json.dumps(out), file=PROTOCOL, flush=True)


def child_reference(reference: Path, config: str, a) -> dict:
    import yaml

    heap = training_heap(a.reference_heap)
    import_reference(reference)
    import torch

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = yaml.safe_load((reference / "cfg" / "model" / config).read_text())["model"]["init_args"]
    proc = cfg["model"]["init_args"]["processor"]
    model = instantiate(proc).to(a.device)
    loss_fn = instantiate(cfg["loss"]).to(a.device)
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
        return loss.item()

    serve(step, model, a.device, heap)


def parse_sets(items: list[str]) -> dict:
    """``--nablafx-set KEY=VALUE`` items → {key: value} (values read as YAML: true, 3, raw, …)."""
    import yaml

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--nablafx-set: expected KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def build_nablafx(config: str, num_controls: int, params_file: Path = ROOT / "params.yaml", sets: dict | None = None):
    """This project's model for reference config ``config``: ``(model, spec, variant)``; ``sets``
    (from ``--nablafx-set``) laid over the variant after the config's own overrides."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.reference_params import variant_name
    from nablafx.config import load_params
    from nablafx.registry import build_model, resolve_variant

    variant = variant_name(Path(config).stem)
    _, spec = resolve_variant(load_params(params_file), variant)
    spec = {**spec, **CONFIGS.get(config, {}), **(sets or {})}
    return build_model(spec, n_knobs=num_controls, key=f"variants.{variant}"), spec, variant


def child_nablafx(config: str, a) -> dict:
    import torch

    from nablafx.training.losses import WeightedLoss

    heap = training_heap(True)  # as run_training does
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model, spec, _ = build_nablafx(config, a.num_controls, sets=parse_sets(a.nablafx_set))
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
        return loss.item()

    serve(step, model, a.device, heap)


# ----------------------------------------------------------------------------- parent process
def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Child:
    """One side's process, driven in lock step: stopped above ``mem_limit_mb`` resident memory or
    when one reply takes longer than ``timeout`` seconds; ``error`` then says why."""

    def __init__(self, cmd: list[str], mem_limit_mb: float, timeout: float, threads: int):
        env = {**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": str(threads)}
        self.err = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True,
                                     cwd=ROOT, env=env, bufsize=1)
        self.mem_limit_mb, self.timeout = mem_limit_mb, timeout
        self.seen_mb = 0.0
        self.error: str | None = None
        self.ready = self._reply()

    def _fail(self, why: str) -> None:
        self.error = why
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def _reply(self) -> dict | None:
        t0 = time.monotonic()
        fd = self.proc.stdout.fileno()
        while True:
            ready, _, _ = select.select([fd], [], [], 0.05)
            self.seen_mb = max(self.seen_mb, _rss_mb(self.proc.pid))
            if ready:
                line = self.proc.stdout.readline()
                if line:
                    return json.loads(line)
                self.proc.wait()
                self.err.seek(0)
                lines = [ln for ln in self.err.read().splitlines() if ln.strip()]
                self._fail(lines[-1][:300] if lines else f"exit status {self.proc.returncode}")
                return None
            if self.seen_mb > self.mem_limit_mb:
                self._fail(f"stopped: resident memory above {self.mem_limit_mb / 1024:.3g} GB")
                return None
            if time.monotonic() - t0 > self.timeout:
                self._fail(f"stopped: no reply within {self.timeout:.0f} s")
                return None

    def ask(self, command: str) -> dict | None:
        if self.error:
            return None
        try:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        return self._reply()

    def close(self) -> dict:
        out = self.ask("done") or {}
        if self.proc.poll() is None:
            self.proc.wait()
        self.err.close()
        return out


def run_pair(cmds: dict, warmup: int, steps: int, first: int, mem_limit_mb: float, timeout: float,
             threads: int) -> dict:
    """Start both sides, then alternate single steps between them (order ABBA…, starting with side
    ``first``), so that both see the same machine load.  Returns per side its parameter count,
    step times, load average before each timed step, final loss and peak memory (or ``error``)."""
    sides = list(cmds)
    kids = {}
    for side in sides:  # one at a time: the second starts while the first is idle
        kids[side] = Child(cmds[side], mem_limit_mb, timeout, threads)
    res = {side: {"times": [], "load_avg": []} for side in sides}
    for k in range(warmup + steps):
        order = sides if (k + first) % 2 == 0 else sides[::-1]
        for side in order:
            load = os.getloadavg()[0]
            reply = kids[side].ask("step")
            if reply and k >= warmup:
                res[side]["times"].append(round(reply["t"], 4))
                res[side]["load_avg"].append(round(load, 2))
                res[side]["loss"] = reply["loss"]
    for side in sides:
        kid = kids[side]
        done = kid.close()
        out = res[side]
        if kid.error:
            out["error"] = kid.error
            out["peak_rss_mb"] = round(kid.seen_mb, 1)
            continue
        out.update(params=kid.ready["params"], heap=kid.ready.get("heap"), s_per_step=round(statistics.median(out["times"]), 4), **done)
    return res


def reference_info(reference: Path, config: str) -> dict:
    import yaml

    cfg = yaml.safe_load((reference / "cfg" / "model" / config).read_text())["model"]
    proc = cfg["init_args"]["model"]["init_args"]["processor"]
    return {"class": proc["class_path"], "num_controls": int(proc["init_args"].get("num_controls", 0)),
            "system": cfg["class_path"].rsplit(".", 1)[-1], "lr": cfg["init_args"]["lr"]}


def context_of(model) -> int:
    rf = model.receptive_field
    return RECURRENT_CONTEXT if rf is None else max(0, rf - 1)


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
        f"{meta['steps']} steps after {meta['warmup']} warm-up, the two sides' steps alternating. Speed-up: reference "
        "s/step ÷ nablafx s/step. Peak RSS: the process's maximum resident memory"
        + (" (GPU: peak allocated)" if cuda else "") + ". Load: mean 1-minute load average before the timed steps of each side."
        + "".join(f" Every nablafx variant with `{k}: {v}` (`--nablafx-set`)." for k, v in meta.get("nablafx_set", {}).items())
        + " Heap: nablafx's side keeps large tensors in the heap, on huge pages (`nablafx.allocator.use_training_heap`, "
        "as its training does); the reference's side "
        + ("with the same settings (`--reference-heap`)." if meta.get("reference_heap")
           else "with the C library's defaults, as it runs (`--reference-heap` gives it the same settings)."),
        "",
        *([f"**Partial: {len(rows)} of {meta['planned']} configs measured; the run was stopped or is still going.**", ""]
          if not meta.get("complete", True) else []),
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
        load = " / ".join(f"{statistics.mean(s['load_avg']):.1f}" if s.get("load_avg") else "—" for s in (ref, our))
        lines.append(f"| `{r['config']}` | `{r['variant']}` | {params} | {r['context']} | {ts[0]} | {ts[1]} | {ratio} | "
                     f"{_gb(ref.get('peak_rss_mb'))} | {_gb(our.get('peak_rss_mb'))} |{gpu} {load} |")
    return "\n".join(lines)


BEGIN, END = "<!-- training:begin -->", "<!-- training:end -->"


def _short(config: str, overrides: dict) -> str:
    """``lstm/model_bb-tbptt_lstm-96.yaml`` → ``LSTM-96 (TBPTT)``."""
    stem = Path(config).stem.split("_", 2)[-1]
    name = stem.upper().replace("-PARAM", "")
    if "tbptt" in Path(config).stem:
        name += " (TBPTT)"
    if overrides.get("residual"):
        name += ", residual"
    return name


def readme_table(data: dict) -> str:
    rows = ["| config | reference s/step | nablafx s/step | speed-up | peak RSS reference / nablafx |",
            "|---|---:|---:|---:|---:|"]
    for r in data["rows"]:
        ref, our = r["reference"], r["nablafx"]
        ts = ["—" if "s_per_step" not in s else f"{s['s_per_step']:.2f}" for s in (ref, our)]
        ratio = f"{r['speedup']:.2f}×" if r.get("speedup") else "—"
        rows.append(f"| {_short(r['config'], r.get('overrides', {}))} | {ts[0]} | {ts[1]} | {ratio} | "
                    f"{_gb(ref.get('peak_rss_mb'))} / {_gb(our.get('peak_rss_mb'))} GB |")
    return "\n".join(rows)


def update_readme(readme: Path, results: Path, command: str) -> None:
    from nablafx.info import update_section

    data = json.loads(results.read_text())
    if not data["meta"].get("complete", True):
        raise SystemExit(f"{results}: partial results; rerun the benchmark to the end before putting it in the README")
    prov = data["provenance"]
    shown = results.resolve().relative_to(ROOT) if results.resolve().is_relative_to(ROOT) else results
    load = " / ".join(str(v) for v in prov["machine"].get("load_avg", [])) or "unknown"
    table = (f"{prov['machine']['cpu']}, {data['meta']['threads']} threads, batch {data['meta']['batch']} × "
             f"{data['meta']['seconds']} s, load average {load}, commit {prov['commit'][:12]}, reference "
             f"{data['meta']['reference_commit'][:12]}; per step and load in `{shown.with_suffix('.md')}`.\n\n"
             f"{readme_table(data)}")
    update_section(readme, table, command, BEGIN, END, source=shown)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, help="checkout of mcomunita/nablafx, or its bare git dir (required to measure)")
    ap.add_argument("--readme", default=None, help="rewrite this README's table from the results file and stop")
    ap.add_argument("--configs", nargs="*", default=None, help=f"reference configs under cfg/model/ (default: {len(CONFIGS)})")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mem-limit-gb", type=float, default=12.0, help="stop a side above this resident memory")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per child")
    ap.add_argument("--quick", action="store_true", help="smoke test: batch 2 × 0.25 s, 2 configs")
    ap.add_argument("--out", default=None)
    ap.add_argument("--nablafx-set", action="append", default=[], metavar="KEY=VALUE",
                    help="laid over every nablafx variant (e.g. recompute=true); recorded in the results")
    ap.add_argument("--reference-heap", action="store_true",
                    help="run the reference with nablafx's training heap settings too (nablafx.allocator)")
    ap.add_argument("--child", choices=["reference", "nablafx"], help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--context", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--num-controls", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.quick:
        a.batch, a.seconds = min(a.batch, 2), min(a.seconds, 0.25)
        a.configs = a.configs or QUICK_CONFIGS
    a.n = int(round(a.seconds * SAMPLE_RATE))
    if a.readme:
        tag = ("training_quick_" if a.quick else "training_") + a.device
        results = Path(a.out or ROOT / "benchmarks" / "results" / tag).with_suffix(".json")
        from nablafx.errors import ConfigError

        try:
            update_readme(Path(a.readme), results, "python benchmarks/bench_training.py --readme " + a.readme)
        except ConfigError as err:  # no section markers in the README
            raise SystemExit(str(err)) from None
        print(f"{a.readme}: table updated from {results}")
        return 0
    if a.reference is None:
        ap.error("--reference is required to measure")
    if a.child:
        sys.stdout = sys.stderr  # prints of either package stay out of the protocol
        child_reference(a.reference, a.config, a) if a.child == "reference" else child_nablafx(a.config, a)
        return 0
    configs = a.configs or list(CONFIGS)
    from nablafx.provenance import record, write_results

    sys.path.insert(0, str(ROOT))

    used = {k: v for k, v in vars(a).items() if k not in ("out", "child", "config", "context", "num_controls", "n")}
    used["reference"] = str(a.reference)
    prov = record(used)  # before measuring: the commit the code came from
    tag = ("training_quick_" if a.quick else "training_") + a.device + ("_same_heap" if a.reference_heap else "")
    out = Path(a.out or ROOT / "benchmarks" / "results" / tag)
    rows = []
    with tempfile.TemporaryDirectory(prefix="nablafx-ref-") as tmp:
        tree, commit, date = reference_tree(a.reference.resolve(), Path(tmp))
        meta = {"device": a.device, "batch": a.batch, "seconds": a.seconds, "steps": a.steps, "warmup": a.warmup,
                "threads": a.threads, "loss": "0.5 L1 + 0.5 MR-STFT (auraloss defaults)",
                "optimizer": "AdamW", "clip_grad_value": CLIP_VALUE, "reference_repository": "mcomunita/nablafx",
                "reference_commit": commit, "reference_commit_date": date,
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "planned": len(configs),
                "nablafx_set": parse_sets(a.nablafx_set), "reference_heap": a.reference_heap}
        for i, config in enumerate(configs):
            info = reference_info(tree, config)
            model, _, variant = build_nablafx(config, info["num_controls"], sets=meta["nablafx_set"])
            context = context_of(model)
            del model
            common = [sys.executable, str(Path(__file__).resolve()), "--reference", str(tree), "--config", config,
                      "--context", str(context), "--num-controls", str(info["num_controls"]), "--device", a.device,
                      "--batch", str(a.batch), "--seconds", str(a.seconds), "--steps", str(a.steps),
                      "--warmup", str(a.warmup), "--threads", str(a.threads),
                      *(["--reference-heap"] if a.reference_heap else []),
                      *[arg for item in a.nablafx_set for arg in ("--nablafx-set", item)]]
            res = run_pair({"reference": [*common, "--child", "reference"], "nablafx": [*common, "--child", "nablafx"]},
                           a.warmup, a.steps, i % 2, a.mem_limit_gb * 1024, a.timeout, a.threads)
            ref, our = res["reference"], res["nablafx"]
            speedup = (round(ref["s_per_step"] / our["s_per_step"], 2)
                       if "s_per_step" in ref and "s_per_step" in our else None)
            rows.append({"config": config, "variant": variant, **info, "overrides": {**CONFIGS.get(config, {}), **meta["nablafx_set"]},
                         "context": context, "reference": ref, "nablafx": our, "speedup": speedup})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            # written after every pair, marked partial until the last: a stopped run keeps what it measured
            meta["complete"] = len(rows) == len(configs)
            write_results(out, markdown(meta, rows), {"meta": meta, "rows": rows}, provenance=prov)
    print(f"wrote {out}.md")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
