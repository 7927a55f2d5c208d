"""Where a result came from: the commit, the params, the machine and the command that made it.

Every generated results file (stage reports, benchmark results, experiment records) carries a
``provenance`` block from :func:`record`, so a number in the README can be traced to a run.
Nothing here reads the network or writes files.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE_PATHS = ("nablafx", "stages", "benchmarks", "scripts", "dvc.yaml", "pyproject.toml", "uv.lock")
OUTPUT_PATHS = ("benchmarks/results",)  # inside CODE_PATHS but written by runs: a benchmark's results


def git_state(root: str | Path = ROOT) -> dict:
    """``{"commit": sha or None, "dirty": bool or None}`` of the repository holding ``root``.

    ``dirty`` is true when tracked *code* differs from the commit (:data:`CODE_PATHS`, less
    :data:`OUTPUT_PATHS`): stage outputs, benchmark results, dvc.lock and params.yaml change during
    ordinary runs (params are in ``params_hash``).
    """

    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30,
                              check=False)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        status = git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS,
                     *[f":(exclude){p}" for p in OUTPUT_PATHS])
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine() -> dict:
    """CPU model and counts, torch build and threads, the GPU if one is visible."""
    import torch

    info = {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        info["load_avg"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    return info


def params_hash(params) -> str:
    """sha256 (first 16 hex digits) of the params as canonical JSON: equal settings, equal hash."""
    blob = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def command_line(argv: list[str] | None = None) -> str:
    """The command as a user would retype it (``python stages/test.py --params …``)."""
    argv = list(sys.argv if argv is None else argv)
    if argv and argv[0].endswith(".py"):
        try:
            argv[0] = str(Path(argv[0]).resolve().relative_to(ROOT))
        except ValueError:
            pass
        argv = ["python"] + argv
    return shlex.join(argv)


def record(params=None, command: str | None = None, root: str | Path = ROOT) -> dict:
    """The provenance block: commit, dirty flag, params hash, machine, command and UTC time."""
    state = git_state(root)
    return {
        "commit": state["commit"],
        "dirty": state["dirty"],
        "params_hash": None if params is None else params_hash(params),
        "machine": machine(),
        "command": command if command is not None else command_line(),
        "utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def markdown_footer(prov: dict) -> str:
    """Two generated lines for the end of a results page (no hand-written prose)."""
    m = prov["machine"]
    commit = (prov["commit"] or "unknown")[:12] + (" (with uncommitted changes)" if prov.get("dirty") else "")
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ""
    load = f", load average {' / '.join(str(v) for v in m['load_avg'])}" if m.get("load_avg") else ""
    return (f"Made by `{prov['command']}` at commit {commit} on {prov['utc']}; params hash "
            f"{prov['params_hash'] or '—'}.\n"
            f"Machine: {m['cpu']} ({m['usable_cpus']} of {m['logical_cpus']} CPUs usable, torch threads "
            f"{m['torch_threads']}{load}), torch {m['torch']}, Python {m['python']}{gpu}.\n")


def write_results(stem: str | Path, markdown: str, data: dict, params=None, command: str | None = None,
                  provenance: dict | None = None) -> dict:
    """Write ``<stem>.json`` (``{"provenance": …, **data}``) and ``<stem>.md`` (``markdown`` + footer).

    Both files are written atomically; the markdown is exactly what the calling script generated
    followed by :func:`markdown_footer`, so nothing in it is typed by hand. A long benchmark passes
    the ``provenance`` it recorded when it started (the commit its code came from); otherwise it is
    recorded now. Returns the provenance.
    """
    from nablafx.fileio import write_text_atomic

    prov = provenance if provenance is not None else record(params, command)
    stem = Path(stem)
    write_text_atomic(stem.with_suffix(".json"), json.dumps({"provenance": prov, **data}, indent=2) + "\n")
    write_text_atomic(stem.with_suffix(".md"), markdown.rstrip("\n") + "\n\n" + markdown_footer(prov))
    return prov
