"""Batch-parallel recurrence on the CPU: the batch's rows on separate threads, one intra-op thread each.

A recurrent layer's step is a small matrix product (batch 16 × 96 units × 4 gates for LSTM-96) that
oneDNN splits across PyTorch's intra-op threads, with a barrier at every one of the 146,048 time
steps of a 3 s chunk.  The rows of a batch are independent, so the same layer over half the batch on
each of two threads, one intra-op thread each, needs no barrier at all.  Measured on the 2-core
machine (one 4096-sample segment at batch 16, median of 8; one-off): LSTM-96 forward 60 → 28 ms and
backward 82 → 51 ms, LSTM-32 24 → 10 ms and 35 → 16 ms.

:func:`batch_parallel` runs a function of batched tensors and shared parameters that way, in the
forward pass and, through its own autograd node, in the backward pass (where autograd alone would
run the parts one after the other on one thread).  Outputs and gradients equal one call over the
whole batch up to floating-point summation order (the parameters' gradients are sums over the
parts).  With ``recompute`` only the inputs are kept and the parts run again in the backward pass
(:func:`torch.utils.checkpoint.checkpoint` where the batch is not split).

The batch is split on the CPU only, into as many parts as PyTorch has intra-op threads
(:func:`torch.get_num_threads`), at most one row each; not where the caller's thread-local state
would not reach the other threads: CPU autocast, a dispatch mode (``FlopCounterMode``), tracing,
scripting or compiling.  Inference mode is passed on to the parts.  ``NABLAFX_BATCH_PARALLEL=0``
turns it off.  While the parts run, the calling
thread's and the workers' intra-op thread count is 1 and the previous count is restored afterwards
(:func:`torch.set_num_threads` is process-wide): code in other threads of the process sees the
change meanwhile.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

ENV = "NABLAFX_BATCH_PARALLEL"

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def _reset_pool_in_child() -> None:  # a forked child has none of the parent's threads
    global _pool, _pool_size
    _pool, _pool_size = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_pool_in_child)


def enabled() -> bool:
    return os.environ.get(ENV, "1") != "0"


def parts_for(batch: int, device: torch.device) -> int:
    """Into how many parts :func:`batch_parallel` splits a batch of ``batch`` rows on ``device``."""
    if device.type != "cpu" or not enabled() or _thread_local_state():
        return 1
    return max(1, min(torch.get_num_threads(), batch))


def _thread_local_state() -> bool:
    """Whether the calling thread has state that other threads would not share (see module doc)."""
    return (torch.is_autocast_enabled("cpu") or torch._C._len_torch_dispatch_stack() > 0
            or torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling())


def _workers(n: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < n:
            if _pool is not None:
                _pool.shutdown(wait=True)
            _pool, _pool_size = ThreadPoolExecutor(max_workers=n, thread_name_prefix="nablafx-batch"), n
        return _pool


def _single_threaded(task: Callable):
    torch.set_num_threads(1)  # this thread's OpenMP team (oneDNN's too); the caller restores the count
    return task()


def run_parts(tasks: Sequence[Callable]) -> list:
    """Run ``tasks`` at once, the first on the calling thread and the others on worker threads, each
    with one intra-op thread; their results in order.  The intra-op thread count is restored
    afterwards, and the first exception raised (after every task has finished) is re-raised."""
    if len(tasks) == 1:
        return [tasks[0]()]
    previous = torch.get_num_threads()
    futures = [_workers(len(tasks) - 1).submit(_single_threaded, t) for t in tasks[1:]]
    results, error = [None] * len(tasks), None
    try:
        try:
            results[0] = _single_threaded(tasks[0])
        except BaseException as e:  # noqa: BLE001 — re-raised below, after the workers are done
            error = e
        for i, f in enumerate(futures, 1):
            try:
                results[i] = f.result()
            except BaseException as e:  # noqa: BLE001
                error = error or e
    finally:
        torch.set_num_threads(previous)
    if error is not None:
        raise error
    return results


def _split(t: torch.Tensor, dim: int, parts: int) -> tuple[torch.Tensor, ...]:
    return tuple(p.contiguous() for p in torch.tensor_split(t, parts, dim=dim))


def _leaves(pieces, params, needs, i: int) -> list:
    """Part ``i``'s inputs as leaves of a graph of its own (gradients where the caller's need them)."""
    inputs = [p[i] for p in pieces] + list(params)
    return [t.detach().requires_grad_(n) for t, n in zip(inputs, needs)]


class _BatchParallel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, call, *tensors):
        fn, n_batched, in_dims, out_dims, parts, recompute = call
        ctx.call = call
        batched, params = tensors[:n_batched], tensors[n_batched:]
        needs = ctx.needs_input_grad[1:]
        keep_graph = any(needs) and not recompute
        inference = torch.is_inference_mode_enabled()
        pieces = [_split(t, d, parts) for t, d in zip(batched, in_dims)]

        def part(i: int):
            if not keep_graph:
                with torch.inference_mode(inference), torch.no_grad():
                    return None, fn(*(p[i] for p in pieces), *params)
            leaves = _leaves(pieces, params, needs, i)
            with torch.enable_grad():
                return leaves, fn(*leaves)

        done = run_parts([lambda i=i: part(i) for i in range(parts)])
        if keep_graph:
            ctx.graphs = done  # per part: (leaves, outputs), for the backward pass
        elif any(needs):
            ctx.save_for_backward(*tensors)
        outs = [torch.cat([d[1][k] for d in done], dim=dim) for k, dim in enumerate(out_dims)]
        return tuple(outs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        fn, n_batched, in_dims, out_dims, parts, recompute = ctx.call
        needs = ctx.needs_input_grad[1:]
        g_parts = [_split(g, d, parts) for g, d in zip(grads, out_dims)]
        graphs = getattr(ctx, "graphs", None)
        if graphs is None:
            tensors = ctx.saved_tensors
            pieces = [_split(t, d, parts) for t, d in zip(tensors[:n_batched], in_dims)]
            params = tensors[n_batched:]

        def part(i: int):
            if graphs is not None:
                leaves, outs = graphs[i]
            else:
                leaves = _leaves(pieces, params, needs, i)
                with torch.enable_grad():
                    outs = fn(*leaves)
            wanted = [leaf for leaf in leaves if leaf.requires_grad]
            pairs = [(o, g[i]) for o, g in zip(outs, g_parts) if o.requires_grad]
            got = iter(torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs],
                                           allow_unused=True, materialize_grads=True))
            return [next(got) if leaf.requires_grad else None for leaf in leaves]

        done = run_parts([lambda i=i: part(i) for i in range(parts)])
        ctx.graphs = None
        result = []
        for k, need in enumerate(needs):
            if not need:
                result.append(None)
            elif k < n_batched:
                result.append(torch.cat([d[k] for d in done], dim=in_dims[k]))
            else:
                result.append(sum((d[k] for d in done[1:]), done[0][k]))
        return (None, *result)


def batch_parallel(fn: Callable, batched: Sequence[torch.Tensor], in_dims: Sequence[int],
                   params: Sequence[torch.Tensor], out_dims: Sequence[int], *, recompute: bool = False,
                   parts: int | None = None) -> tuple[torch.Tensor, ...]:
    """``fn(*batched, *params)`` (a tuple of tensors) with the batch split across threads.

    ``batched`` have their batch rows along ``in_dims``, ``fn``'s outputs along ``out_dims``; ``fn``
    must treat the rows independently (a recurrent layer, a per-row read-out) and the ``params`` are
    shared by all rows.  ``parts`` defaults to :func:`parts_for`.  With ``recompute`` while gradients
    are recorded, only the inputs are kept for the backward pass, which runs ``fn`` again."""
    batch = batched[0].shape[in_dims[0]]
    if parts is None:
        parts = parts_for(batch, batched[0].device)
    parts = max(1, min(parts, batch))
    tensors = (*batched, *params)
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    if parts == 1:
        if recompute and grad:
            from torch.utils.checkpoint import checkpoint

            return checkpoint(fn, *tensors, use_reentrant=False)
        return fn(*tensors)
    return _BatchParallel.apply((fn, len(batched), tuple(in_dims), tuple(out_dims), parts, recompute), *tensors)
