"""nablafx.allocator: the heap's free pages go back to the system during training (glibc)."""

from __future__ import annotations

import collections
import subprocess
import sys
import textwrap

import pytest
import torch

from nablafx import allocator

glibc = pytest.mark.skipif(allocator._glibc() is None, reason="glibc only (the call does nothing elsewhere)")


@glibc
def test_release_gives_the_free_pages_inside_the_heap_back():
    """A fragmented heap (every other 4 MiB tensor freed, the rest kept above them) keeps its freed
    pages resident until release_free_heap(); then the resident set drops by most of them."""
    code = textwrap.dedent("""
        import torch
        from nablafx import allocator

        def rss_mb():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        big = torch.ones(4 << 20)                    # a 16 MiB mapped block, freed: glibc's threshold rises
        del big
        ts = [torch.ones(1 << 20) for _ in range(200)]   # 200 × 4 MiB from the heap, touched
        del ts[::2]                                  # 100 holes between the kept ones
        before = rss_mb()
        free = allocator.free_heap_bytes()
        assert allocator.release_free_heap(0)
        print(before, rss_mb(), free / 2**20)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[1])})
    before, after, free = map(float, out.stdout.split())
    assert free >= 390, free  # the 100 holes, 400 MiB, are free inside the heap
    assert before - after >= 300, (before, after)  # and most of them leave the resident set


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv(allocator.ENV, "0")
    assert not allocator.enabled() and allocator.release_free_heap() is False


@glibc
def test_backward_hook_is_the_identity_and_trims(monkeypatch):
    monkeypatch.setattr(allocator, "TRIM_ABOVE", 0)
    calls = []
    real = allocator.release_free_heap
    monkeypatch.setattr(allocator, "release_free_heap", lambda *a: calls.append(a) or real(*a))
    Pair = collections.namedtuple("Pair", "a b")
    w = torch.randn(3, requires_grad=True)
    fixed = torch.randn(3)
    state = (None, [fixed, {"h": w * 2, "c": w * 3}], Pair(w * 4, 1))
    marked = allocator.trim_in_backward(state)
    assert marked[0] is None and marked[1][0] is fixed  # tensors without gradients untouched
    assert isinstance(marked[2], Pair) and marked[2].b == 1
    assert marked[1][1]["c"] is state[1][1]["c"] and marked[2].a is state[2].a  # only the first one wrapped
    assert marked[1][1]["h"] is not state[1][1]["h"]
    torch.testing.assert_close(marked[1][1]["h"], state[1][1]["h"], rtol=0, atol=0)
    (g,) = torch.autograd.grad((marked[1][1]["h"] * torch.arange(3.0)).sum(), w)
    torch.testing.assert_close(g, 2 * torch.arange(3.0), rtol=0, atol=0)
    assert len(calls) == 1


@glibc
def test_trims_only_above_the_resident_threshold(monkeypatch):
    """Below the resident-set threshold the call does nothing (the pages would only be faulted in
    again); at or above it, and with a threshold of 0, it trims."""
    monkeypatch.delenv(allocator.ENV_ABOVE, raising=False)
    called = []
    monkeypatch.setattr(allocator._glibc(), "malloc_trim", lambda pad: called.append(pad), raising=False)
    rss = allocator.resident_bytes()
    assert rss is not None and rss > 10 << 20  # this process: torch is loaded
    monkeypatch.setattr(allocator, "TRIM_ABOVE", rss + (1 << 40))
    assert allocator.release_free_heap() is False and not called
    assert allocator.release_free_heap(rss // 2) is True and called == [0]
    monkeypatch.setenv(allocator.ENV_ABOVE, "0")
    assert allocator.trim_above() == 0 and allocator.release_free_heap() is True and called == [0, 0]
    monkeypatch.setenv(allocator.ENV_ABOVE, "1.5")
    assert allocator.trim_above() == 3 << 29


@pytest.mark.parametrize("raw", ["lots", "-1", "nan", "inf"])
def test_malformed_threshold_names_the_variable(monkeypatch, raw):
    monkeypatch.setenv(allocator.ENV_ABOVE, raw)
    with pytest.raises(ValueError, match=allocator.ENV_ABOVE):
        allocator.trim_above()


HEAP_PROBE = """
import json, os, sys
import torch
from nablafx import allocator

on = allocator.use_training_heap() if sys.argv[1] == "training" else None  # before any large tensor
base = allocator._glibc().mallinfo2().hblkhd  # bytes in separately mapped blocks
t = torch.ones(16 << 20)  # 64 MiB
print(json.dumps({"on": on, "mapped": allocator._glibc().mallinfo2().hblkhd - base,
                  "thp": os.environ.get(allocator.ENV_THP), "huge": allocator.huge_pages_in_use()}))
"""


def _heap_probe(mode, **env):
    import json
    from pathlib import Path

    out = subprocess.run([sys.executable, "-c", HEAP_PROBE, mode], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[1]), **env})
    return json.loads(out.stdout)


def _thp_mode():
    try:
        text = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return None
    return text.split("[")[1].split("]")[0]


@pytest.mark.skipif(allocator._glibc() is None or not hasattr(allocator._glibc(), "mallinfo2"),
                    reason="glibc ≥ 2.33 (mallinfo2)")
def test_training_heap_keeps_large_tensors_in_the_heap():
    """By default a 64 MiB tensor is mapped on its own (its pages zeroed afresh at every allocation);
    with the training heap it comes from the heap, and PyTorch's huge-page switch is set."""
    default, got = _heap_probe("default"), _heap_probe("training")
    assert default["mapped"] >= 64 << 20 and default["thp"] is None
    assert got["on"] is True and got["thp"] == "1" and got["mapped"] < 1 << 20, got
    if _thp_mode() in ("always", "madvise"):  # the kernel lends huge pages on request
        assert got["huge"] is True
    if _thp_mode() in ("madvise", "never"):
        assert default["huge"] is False


@glibc
def test_training_heap_switched_off_by_the_environment():
    got = _heap_probe("training", **{allocator.ENV_HEAP: "0"})
    assert got["on"] is False and got["thp"] is None and got["mapped"] >= 64 << 20, got


@pytest.mark.skipif(_thp_mode() not in ("always", "madvise") or allocator._glibc() is None,
                    reason="the kernel lends huge pages on request (glibc)")
def test_the_train_stage_gets_huge_pages():
    """PyTorch reads its huge-page switch at the process's first large allocation, and importing
    lightning makes one: the train stage's imports must leave run_training's call in time."""
    import json
    from pathlib import Path

    root = Path(__file__).parents[1]
    code = ("import importlib.util, json\n"
            f"spec = importlib.util.spec_from_file_location('train_stage', {str(root / 'stages' / 'train.py')!r})\n"
            "spec.loader.exec_module(importlib.util.module_from_spec(spec))  # the stage's imports\n"
            "from nablafx import allocator\n"
            "on = allocator.use_training_heap()  # what run_training does first\n"
            "print(json.dumps([on, allocator.huge_pages_in_use()]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [True, True]
