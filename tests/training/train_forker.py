"""Test helper for tests/training/test_kill_resume.py: imports the train stage once, then forks a
fresh child per request that runs ``stages/train.py`` in-process, so that a test can SIGKILL real
training processes many times without paying the ~10-20 s of imports (lightning, dvclive) per start.

One JSON object per line.  stdin: ``{"argv": [...], "cwd": str, "env": {...}, "log": path}``;
stdout: ``{"pid": n}`` once the child runs, then ``{"pid": n, "status": "exit 0" | "signal 9"}``.
Run with ``OMP_NUM_THREADS=1`` (fork-safe, deterministic, kind to a shared machine).
"""

import json
import os
import sys

import dvclive.lightning  # noqa: F401  (imported once, inherited by every child)
import lightning  # noqa: F401

from nablafx.utils import run_stage
from stages import train as train_stage


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the training process
            code = 70
            try:
                fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.chdir(req["cwd"])
                os.environ.update(req.get("env") or {})
                code = run_stage(train_stage.main, req["argv"])
            except BaseException:  # noqa: BLE001
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        res = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"
        print(json.dumps({"pid": pid, "status": res}), flush=True)


if __name__ == "__main__":
    main()
