"""Batch-parallel recurrence (nablafx.nn.batch_parallel): the batch's rows on separate threads give
the outputs and gradients of one call over the whole batch (float64, tolerances 1e-12 / 1e-11: only
the summation order of the parameters' gradients differs), and the thread settings survive."""

from __future__ import annotations

import threading

import pytest
import torch

from nablafx.nn import batch_parallel as bp


def _lstm_case(batch: int = 5, layers: int = 2):
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 8, num_layers=layers, batch_first=True).double()
    out = torch.nn.Linear(8, 1).double()
    params = [w for layer in lstm.all_weights for w in layer] + [out.weight, out.bias]
    n = len(params) - 2

    def fn(seq, h0, c0, *p):
        h, hn, cn = torch._VF.lstm(seq, (h0, c0), list(p[:n]), True, layers, 0.0, True, False, True)
        return torch.nn.functional.linear(h, p[n], p[n + 1]), hn, cn

    g = torch.Generator().manual_seed(1)
    seq = torch.randn(batch, 50, 3, dtype=torch.float64, generator=g, requires_grad=True)
    h0 = torch.randn(layers, batch, 8, dtype=torch.float64, generator=g, requires_grad=True)
    c0 = torch.randn(layers, batch, 8, dtype=torch.float64, generator=g)  # no gradient wanted
    w = torch.randn(batch, 50, 1, dtype=torch.float64, generator=g)
    return fn, seq, h0, c0, params, w


def _run(case, parts, recompute):
    fn, seq, h0, c0, params, w = case
    y, hn, cn = bp.batch_parallel(fn, [seq, h0, c0], [0, 1, 1], params, [0, 1, 1], parts=parts, recompute=recompute)
    loss = (y * w).sum() + hn.pow(2).sum() + (cn * 0.5).sum()
    return (y.detach(), hn.detach(), cn.detach()), torch.autograd.grad(loss, [seq, h0, *params])


@pytest.mark.parametrize("parts", [2, 3, 5])
@pytest.mark.parametrize("recompute", [False, True])
def test_parts_equal_one_call_over_the_batch(parts, recompute):
    case = _lstm_case()
    outs_ref, grads_ref = _run(case, 1, False)
    outs, grads = _run(case, parts, recompute)
    for a, b in zip(outs, outs_ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)


class _Scale(torch.autograd.Function):
    """``x * w`` that records, in its backward pass, the thread and its intra-op thread count."""

    seen: list = []
    barrier: threading.Barrier | None = None

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x * w

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        _Scale.seen.append((threading.get_ident(), torch.get_num_threads()))
        _Scale.barrier.wait()  # the three parts' backward passes run at once (else: BrokenBarrierError)
        return g * w, (g * x).sum(0)


def test_parts_run_on_separate_threads_with_one_intra_op_thread_each():
    seen = []
    lock = threading.Lock()
    barrier = threading.Barrier(3, timeout=10)  # all three parts must be running at once

    def fn(x, w):
        with lock:
            seen.append((threading.get_ident(), torch.get_num_threads()))
        barrier.wait()
        return (_Scale.apply(x, w),)

    before = torch.get_num_threads()
    x, w = torch.randn(6, 4, requires_grad=True), torch.randn(4, requires_grad=True)
    (y,) = bp.batch_parallel(fn, [x], [0], [w], [0], parts=3)
    assert len({t for t, _ in seen}) == 3 and {n for _, n in seen} == {1}
    assert torch.get_num_threads() == before
    seen.clear()
    _Scale.seen.clear()
    _Scale.barrier = threading.Barrier(3, timeout=10)
    y.sum().backward()
    assert seen == []  # the parts' graphs were kept: nothing runs again
    assert len({t for t, _ in _Scale.seen}) == 3 and {n for _, n in _Scale.seen} == {1}  # three threads, backward too
    assert torch.get_num_threads() == before
    torch.testing.assert_close(x.grad, w.detach().expand(6, 4))
    torch.testing.assert_close(w.grad, x.detach().sum(0))


def test_recompute_keeps_only_the_inputs_for_the_backward_pass():
    case = _lstm_case(batch=4)
    fn, seq, h0, c0, params, w = case
    inputs = sum(t.numel() * t.element_size() for t in (seq, h0, c0, *params))
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y, _, _ = bp.batch_parallel(fn, [seq, h0, c0], [0, 1, 1], params, [0, 1, 1], parts=2, recompute=True)
    assert sum(saved) == inputs
    calls = []

    def counted(*a):
        calls.append(1)
        return fn(*a)

    y, _, _ = bp.batch_parallel(counted, [seq, h0, c0], [0, 1, 1], params, [0, 1, 1], parts=2, recompute=True)
    y.sum().backward()
    assert len(calls) == 4  # two parts, run again in the backward pass


def test_an_error_in_a_part_is_raised_and_the_thread_count_restored():
    before = torch.get_num_threads()

    def fn(x):
        if x[0, 0] > 0:
            raise ValueError("part failed")
        return (x * 2,)

    x = torch.tensor([[-1.0], [1.0]])
    with pytest.raises(ValueError, match="part failed"):
        bp.batch_parallel(fn, [x], [0], [], [0], parts=2)
    assert torch.get_num_threads() == before


def test_how_many_parts(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    cpu = torch.device("cpu")
    assert bp.parts_for(16, cpu) == 4 and bp.parts_for(3, cpu) == 3 and bp.parts_for(1, cpu) == 1
    assert bp.parts_for(16, torch.device("cuda")) == 1  # a GPU runs the whole batch in one kernel
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert bp.parts_for(16, cpu) == 1  # autocast's state does not reach the other threads
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False):
        assert bp.parts_for(16, cpu) == 1  # a dispatch mode sees only its own thread's operations
    monkeypatch.setattr(torch.jit, "is_tracing", lambda: True)
    assert bp.parts_for(16, cpu) == 1
    monkeypatch.undo()
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    monkeypatch.setenv(bp.ENV, "0")
    assert bp.parts_for(16, cpu) == 1


def test_parts_keep_inference_mode():
    modes = []

    def fn(x):
        modes.append(torch.is_inference_mode_enabled())
        return (x + 1,)

    with torch.inference_mode():
        (y,) = bp.batch_parallel(fn, [torch.zeros(4, 3)], [0], [], [0], parts=2)
    assert modes == [True, True] and y.is_inference()


def test_lstm_flops_are_counted_with_the_batch_split():
    """The cost counter (a dispatch mode) sees the whole batch: the route runs unsplit under it."""
    from torch.utils.flop_counter import FlopCounterMode

    from nablafx.registry import build_model

    model = build_model({"family": "lstm", "hidden_size": 16}, n_knobs=0, key="t")
    x = torch.randn(4, 1, 512)

    def flops(x):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
        return counter.get_total_flops()

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        assert flops(x) == 4 * flops(x[:1]) > 0
    finally:
        torch.set_num_threads(threads)


def test_one_part_with_recompute_is_torch_checkpoint():
    case = _lstm_case(batch=2)
    fn, seq, h0, c0, params, w = case
    calls = []

    def counted(*a):
        calls.append(1)
        return fn(*a)

    y, _, _ = bp.batch_parallel(counted, [seq, h0, c0], [0, 1, 1], params, [0, 1, 1], parts=1, recompute=True)
    (y * w).sum().backward()
    assert len(calls) == 2
    with torch.no_grad():
        bp.batch_parallel(counted, [seq, h0, c0], [0, 1, 1], params, [0, 1, 1], parts=2, recompute=True)
    assert len(calls) == 4  # without gradients: the two parts once, nothing kept
