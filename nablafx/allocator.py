"""The C library's heap during training (glibc): large tensors kept in it, free pages given back.

PyTorch takes CPU tensor memory from the C library's ``malloc``.  glibc serves requests below its
*mmap threshold* from its heap; the threshold starts at 128 KiB and rises, each time a mapped block
is freed, to that block's size (up to 32 MiB).  After the first frees of a training step, the
segment-sized activations of the convolutional families (16 items × 16 channels × 16,384 samples
× 4 B = 16 MiB at batch 16) all come from the heap.  A forward pass in segments keeps some of each
segment's tensors for the backward pass and frees the others (concatenations, modulation and
activation temporaries), of many different sizes: the freed ones leave holes between kept ones that
the heap can neither give back nor always reuse, and the resident set grows to about twice the live
tensors.  One step of paper-tcn-f-2500-l-16 at 16 × 3 s: 15.6 GB resident at the end of the forward
pass, of which 7.4 GB live (measured with ``malloc_trim`` right after it).

:func:`release_free_heap` (``malloc_trim(0)``) hands the free pages inside those holes back; the
forward pass in segments (:func:`nablafx.models._common.forward_in_segments`) calls it after each
large segment while gradients are recorded, and :func:`trim_in_backward` at each segment of the
backward pass (which frees the segments' tensors in reverse and allocates their gradients).  It
trims only while the process's resident set is at least :func:`trim_above` (5 GiB unless
``NABLAFX_HEAP_TRIM_ABOVE_GIB`` says otherwise): a page given back is faulted in again when the heap
reuses it, and trimming at every segment made the steps of models that never come near the memory
target 25–50 % slower (paper-tcn-45-s-16: 2.75 → 3.62 s, 4.2 GB resident untrimmed; one-off A/B on
the 2-core machine).  Above the threshold a trim costs less than the pages it saves (the largest
TCN's forward pass got faster with it: the heap no longer grows into fresh pages).  The count of
free heap bytes (``mallinfo2``) cannot decide this: it includes pages already given back.

Measured and rejected for the resident set: a *low* fixed mmap threshold (``mallopt(M_MMAP_THRESHOLD)``
or ``MALLOC_MMAP_THRESHOLD_`` at segment size) gives the same resident set but maps and zeroes every
large tensor afresh: paper-tcn-45-s-16's step took 7.3–8.3 s instead of 4.3 s; PyTorch's
``THP_MEM_ALLOC_ENABLE`` (huge pages) does not change the resident set (it is used below for speed).

**Training keeps large tensors in the heap** (:func:`use_training_heap`).  By default a tensor larger
than the mmap threshold (at most 32 MiB) is mapped afresh at each allocation and unmapped when freed:
every such tensor costs the kernel zeroing its pages on first touch.  The S4 blocks, the LSTM's
workspaces, the loss and every full-length activation of a batch of 16 × 3 s are 37–300 MB each, and
a training step allocates them by the hundred: a 150 MB ``tanh`` took 71 ms fresh against 38 ms
into memory already touched, a product 41 ms against 7 ms.  Training therefore raises the mmap and
top-trim thresholds (``mallopt``, :data:`HEAP_MMAP_THRESHOLD`, :data:`HEAP_TRIM_THRESHOLD`), so freed
tensors are reused from the heap, sets PyTorch's ``THP_MEM_ALLOC_ENABLE`` (blocks ≥ 2 MiB on
transparent huge pages: one fault per 2 MiB where pages must be faulted in), and keeps the resident
set bounded by giving free pages back once it is large (:func:`release_free_heap` after each training
segment and each S4 block, :func:`trim_in_backward`): without those trims the heap grew by several GB
a step (an LSTM over 36 segments: 13 → 18 → 20 GB in three steps).  The settings are process-wide
and stay for the rest of the process.  ``NABLAFX_TRAINING_HEAP=0`` leaves glibc's defaults.  Step
times with and without: ``benchmarks/results/training_cpu.md`` and docs/models.md.

Elsewhere (macOS, musl, Windows) the calls do nothing and return False: those allocators return
large blocks on their own terms.  ``NABLAFX_HEAP_TRIM=0`` turns it off (to compare both).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

import torch

ENV = "NABLAFX_HEAP_TRIM"
ENV_ABOVE = "NABLAFX_HEAP_TRIM_ABOVE_GIB"
MIN_SAMPLES = 1 << 16  # a segment of batch × samples below this leaves too little behind to be worth a call
# Trim only while the resident set is at least this large (bytes; NABLAFX_HEAP_TRIM_ABOVE_GIB overrides):
# below it the memory target is not at stake and the re-faulted pages only cost time.  Measured with it
# (benchmarks/results/memory_cpu.md): every paper variant peaks within 8 GB, the largest at 7.02 GB.
TRIM_ABOVE = 5 << 30


ENV_HEAP = "NABLAFX_TRAINING_HEAP"
ENV_THP = "THP_MEM_ALLOC_ENABLE"
# use_training_heap(): tensors up to this size come from the heap (glibc's default: 128 KiB rising to 32 MiB)
HEAP_MMAP_THRESHOLD = 1 << 30
# … and free() gives the top of the heap back above this much (glibc's default: 128 KiB).  1 GiB here made
# paper-tcn-f-2500-l-16 peak at 7.80 GB, 256 MiB at 7.47 GB, at the same step time (15.1 / 15.6 s)
HEAP_TRIM_THRESHOLD = 1 << 28
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


@functools.lru_cache(maxsize=1)
def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # only glibc has it (musl does not)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]  # an int value: larger ones would be truncated
        if hasattr(libc, "mallinfo2"):  # glibc ≥ 2.33
            libc.mallinfo2.restype = _MallInfo2
        return libc
    except (OSError, AttributeError):
        return None


def enabled() -> bool:
    """Whether :func:`release_free_heap` does anything here: glibc, and ``NABLAFX_HEAP_TRIM`` not 0."""
    return _glibc() is not None and os.environ.get(ENV, "1").strip() != "0"


def use_training_heap() -> bool:
    """Serve tensors up to :data:`HEAP_MMAP_THRESHOLD` from the heap and keep its top up to
    :data:`HEAP_TRIM_THRESHOLD` (glibc ``mallopt``; process-wide, for the rest of the process).
    True when set; False where it is not glibc or ``NABLAFX_TRAINING_HEAP=0``."""
    libc = _glibc()
    if libc is None or os.environ.get(ENV_HEAP, "1").strip() == "0":
        return False
    # PyTorch's own switch (c10's CPU allocator): blocks ≥ 2 MiB on transparent huge pages, one page
    # fault per 2 MiB; read once, at the process's first large allocation, so it only takes effect when
    # this runs before any (run_training calls this first thing)
    os.environ.setdefault(ENV_THP, "1")
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD))


def huge_pages_in_use() -> bool | None:
    """Whether a large tensor allocated now lands on transparent huge pages (``AnonHugePages`` grows
    in ``/proc/self/smaps_rollup``); None where that file does not exist."""
    def huge_kb():
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                if line.startswith("AnonHugePages:"):
                    return int(line.split()[1])
        return None

    try:
        before = huge_kb()
        probe = torch.ones(3 << 19)  # 6 MiB: at least one aligned 2 MiB page whatever the alignment
        after = huge_kb()
        del probe
    except OSError:
        return None
    return None if before is None or after is None else after > before


def trim_above() -> int:
    """The resident-set size (bytes) from which :func:`release_free_heap` trims: ``TRIM_ABOVE``, or
    ``NABLAFX_HEAP_TRIM_ABOVE_GIB`` (GiB, ≥ 0; 0 trims at every call)."""
    raw = os.environ.get(ENV_ABOVE, "").strip()
    if not raw:
        return TRIM_ABOVE
    try:
        gib = float(raw)
    except ValueError:
        gib = float("nan")
    if not (0 <= gib < float("inf")):
        raise ValueError(f"{ENV_ABOVE}={raw!r}: expected a size in GiB ≥ 0 (0: trim at every segment)")
    return int(gib * 2**30)


def resident_bytes() -> int | None:
    """The process's resident set in bytes (``/proc/self/statm``); None where there is none."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def free_heap_bytes() -> int | None:
    """Bytes free inside glibc's heaps (``mallinfo2().fordblks``), resident or not; None elsewhere."""
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    return int(libc.mallinfo2().fordblks)


def release_free_heap(above: int | None = None) -> bool:
    """Hand the free pages inside the heap back to the system (``malloc_trim(0)``) when the resident
    set is at least ``above`` bytes (None: :func:`trim_above`); True when it trimmed, False when it
    did not (below the threshold, switched off, or not glibc)."""
    if not enabled():
        return False
    above = trim_above() if above is None else above
    if above > 0:
        rss = resident_bytes()
        if rss is not None and rss < above:
            return False
    _glibc().malloc_trim(0)
    return True


class _TrimOnBackward(torch.autograd.Function):
    """The identity; its backward pass gives the heap's free pages back first."""

    @staticmethod
    def forward(ctx, t):
        return t.view_as(t)

    @staticmethod
    def backward(ctx, g):
        release_free_heap()
        return g


def trim_in_backward(state):
    """``state`` (a nested tuple / list / dict of tensors) with its first tensor that requires
    gradients passed through an identity whose backward calls :func:`release_free_heap`: carried from
    one training segment to the next, it fires once the next segment's backward pass has reached it."""
    done = False

    def mark(obj):
        nonlocal done
        if done:
            return obj
        if isinstance(obj, torch.Tensor):
            if obj.requires_grad:
                done = True
                return _TrimOnBackward.apply(obj)
            return obj
        if isinstance(obj, dict):
            return {k: mark(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            items = [mark(v) for v in obj]
            return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
        return obj

    return mark(state)


def trim_point(obj):
    """A trim point of a whole-signal training loop (a segment, an S4 block): the heap's free pages
    back now (:func:`release_free_heap`) and again when the backward pass reaches ``obj``
    (:func:`trim_in_backward`); returns ``obj`` to carry on with."""
    release_free_heap()
    return trim_in_backward(obj)
