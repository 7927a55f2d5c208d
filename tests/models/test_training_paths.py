"""The routes taken only while training equal the plain ones: the S4 FFT convolution and block
recomputation, the GCN's fused gate / mix / read-out.  Same outputs as the offline (no-gradient)
route and the same gradients as plain autograd, in float64."""

from __future__ import annotations

import pytest
import torch

from tests.models.test_zoo import inputs, make

CASES = ["paper-tcn-tf-250-s-16", "paper-tcn-tvf-45-s-16", "paper-tcn-f-45-s-16", "paper-gcn-250-s-16", "paper-gcn-tf-45-s-16", "paper-s4-b4-s4-c16", "paper-s4-tvf-b4-s4-c16",
         "paper-s4-tf-b4-s4-c16"]


def _plain(model, on: bool) -> None:
    """``on``: the training routes; off: plain autograd through the offline route."""
    if hasattr(model, "fused_gate"):
        model.fused_gate = on
    if hasattr(model, "recompute"):
        model.recompute = on
    for m in model.modules():
        if hasattr(m, "fft_train"):
            m.fft_train = on


def _loss_and_grads(model, x, knobs, w):
    y, _ = model(x, knobs)
    loss = (y * w).sum() + y.pow(2).sum()
    return y.detach(), torch.autograd.grad(loss, list(model.parameters()))


def _assert_routes_agree(name, model, y, y_ref, y_offline, grads, grads_ref):
    """Both routes' outputs equal the offline route's; their gradients equal each other (float64)."""
    torch.testing.assert_close(y, y_offline, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(y_ref, y_offline, rtol=1e-10, atol=1e-10)
    for (pname, _), g, g_ref in zip(model.named_parameters(), grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-8, atol=1e-10, msg=lambda m, p=pname: f"{name} {p}: {m}")


@pytest.mark.parametrize("name", CASES)
def test_training_routes_equal_plain_autograd(name):
    model = make(name, torch.float64).train()
    x, knobs = inputs(model, 3000, torch.float64)
    w = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y_offline, _ = model(x, knobs)
    _plain(model, True)
    y, grads = _loss_and_grads(model, x, knobs, w)
    _plain(model, False)
    y_ref, grads_ref = _loss_and_grads(model, x, knobs, w)
    _assert_routes_agree(name, model, y, y_ref, y_offline, grads, grads_ref)


@pytest.mark.parametrize("name", ["paper-lstm-32", "paper-lstm-tvc-32", "lstm-16"])
def test_lstm_recompute_equals_plain_autograd(name):
    """``recompute``: each offline segment (700 samples here, 5 of them) is run again in the
    backward pass; outputs and gradients equal full back-propagation's through the whole signal."""
    model = make(name, torch.float64).train()
    model.segment = 700
    x, knobs = inputs(model, 3000, torch.float64)
    w = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    model.recompute = True
    y, grads = _loss_and_grads(model, x, knobs, w)
    model.recompute = False
    y_ref, grads_ref = _loss_and_grads(model, x, knobs, w)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    for (pname, _), g, g_ref in zip(model.named_parameters(), grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12, msg=lambda m, p=pname: f"{name} {p}: {m}")


def test_lstm_recompute_auto_turns_on_for_long_signals():
    """``recompute: auto`` (default): on while gradients are recorded over at least
    AUTO_RECOMPUTE_SEGMENTS offline segments (full back-propagation through a chunk), off for the short
    windows of truncated back-propagation and without gradients."""
    from nablafx.errors import ConfigError
    from nablafx.models import lstm as lstm_mod

    model = make("paper-lstm-32").train()
    assert model.recompute == "auto"
    model.segment = 700
    long, short = (torch.zeros(2, 1, n) for n in (700 * lstm_mod.AUTO_RECOMPUTE_SEGMENTS, 700 * lstm_mod.AUTO_RECOMPUTE_SEGMENTS - 1))
    assert model.recomputes(long) and not model.recomputes(short)
    with torch.no_grad():
        assert not model.recomputes(long)
    model.recompute = False
    assert not model.recomputes(long)
    model.recompute = True
    assert model.recomputes(short)
    with pytest.raises(ConfigError, match="recompute.*true, false or 'auto'"):
        lstm_mod.LSTMModel(recompute="yes")


@pytest.mark.parametrize("name", ["paper-lstm-32", "paper-lstm-tvc-32", "lstm-16"])
@pytest.mark.parametrize("recompute", [False, True])
def test_lstm_batch_parallel_equals_one_thread(name, recompute, monkeypatch):
    """The LSTM and its read-out over parts of the batch on separate threads (3 parts of a batch of
    5): outputs, final state and gradients equal the unsplit model's (float64)."""
    model = make(name, torch.float64).train()
    model.segment, model.recompute = 700, recompute
    x, knobs = inputs(model, 2000, torch.float64, batch=5)
    w = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    threads = torch.get_num_threads()

    def run():
        y, state = model(x, knobs)
        loss = (y * w).sum() + state[0].pow(2).sum()
        return y.detach(), state[1].detach(), torch.autograd.grad(loss, list(model.parameters()))

    try:
        torch.set_num_threads(3)
        y, c, grads = run()
        monkeypatch.setenv("NABLAFX_BATCH_PARALLEL", "0")
        y_ref, c_ref, grads_ref = run()
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(c, c_ref, rtol=1e-12, atol=1e-12)
    for (pname, _), g, g_ref in zip(model.named_parameters(), grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12, msg=lambda m, p=pname: f"{name} {p}: {m}")


def test_lstm_recompute_keeps_less_for_the_backward_pass(monkeypatch):
    """What autograd keeps after the forward pass (bytes packed by saved-tensor hooks): with
    ``recompute`` only the segments' inputs and states, a fraction of full back-propagation's.
    Unsplit batch: the parts' graphs of the batch-parallel route are built on other threads, where
    these (thread-local) hooks do not see them."""
    monkeypatch.setenv("NABLAFX_BATCH_PARALLEL", "0")
    model = make("paper-lstm-96").train()
    model.segment = 512
    x, knobs = inputs(model, 8192)

    def saved_bytes(recompute: bool) -> int:
        model.recompute = recompute
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y, _ = model(x, knobs)
        return total

    full, recomputed = saved_bytes(False), saved_bytes(True)
    assert recomputed < full / 4, (recomputed, full)


@pytest.mark.parametrize("name,recompute", [("paper-gcn-tf-45-s-16", True), ("paper-gcn-tf-45-s-16", "block"),
                                            ("paper-gcn-2500-s-16", True), ("paper-gcn-2500-s-16", "block"),
                                            ("paper-tcn-f-2500-l-16", True)])
def test_recompute_in_segments_under_long_contexts_equals_plain_autograd(name, recompute, monkeypatch):
    """Training segments shorter than the convolutions' contexts (the context then carried as views
    of earlier segments' inputs), the heap trimmed after each segment, and the blocks recomputed
    (GCN ``recompute``: the modulation, or with ``"block"`` the convolution too): outputs equal the
    offline route and gradients equal plain autograd over the whole signal (float64)."""
    from nablafx import allocator

    trims = []
    real = allocator.release_free_heap
    monkeypatch.setattr(allocator, "TRIM_ABOVE", 0)  # trim at every segment, whatever the resident set
    monkeypatch.delenv(allocator.ENV_ABOVE, raising=False)
    monkeypatch.setattr(allocator, "release_free_heap", lambda *a: trims.append(real(*a)) or trims[-1])
    # eval(): FiLM's batch normalisation then uses its running statistics, the same in every segment
    model = make(name, torch.float64)
    x, knobs = inputs(model, 3000, torch.float64, batch=24)  # batch × segment ≥ allocator.MIN_SAMPLES: trims run
    w = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y_offline, _ = model(x, knobs)
    for m in model.modules():
        if hasattr(m, "direct_max"):
            m.direct_max = 0  # the training convolution at any length
    model.grad_segment = 2800 if name.endswith("2500-l-16") else 2731  # several segments, last one short
    model.recompute = recompute
    y, grads = _loss_and_grads(model, x, knobs, w)
    assert sum(trims) >= 2 or not allocator.enabled()  # glibc: after each forward segment (2 of them here)
    model.grad_segment = None
    _plain(model, False)
    y_ref, grads_ref = _loss_and_grads(model, x, knobs, w)
    _assert_routes_agree(name, model, y, y_ref, y_offline, grads, grads_ref)


@pytest.mark.parametrize("name", ["paper-s4-tvf-b4-s4-c16", "paper-s4-b4-s4-c16"])
def test_s4_blocks_trim_the_heap_forward_and_backward_and_agree(name, monkeypatch):
    """The S4 trains each block over the whole signal: the heap is trimmed after each block's
    forward pass and before its backward pass (resident-set threshold and block size forced to 0
    here), and outputs and gradients stay those of plain autograd (float64)."""
    from nablafx import allocator
    from nablafx.models import _common

    calls = []
    real = allocator.release_free_heap
    monkeypatch.setattr(allocator, "TRIM_ABOVE", 0)
    monkeypatch.delenv(allocator.ENV_ABOVE, raising=False)
    monkeypatch.setattr(allocator, "release_free_heap", lambda *a: calls.append(torch.is_grad_enabled()) or real(*a))
    monkeypatch.setattr(_common, "BLOCK_TRIM_NUMEL", 0)
    model = make(name, torch.float64).train()
    x, knobs = inputs(model, 3000, torch.float64)
    w = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        y_offline, _ = model(x, knobs)
    assert not calls  # no gradients recorded: no trims
    _plain(model, True)
    y, _ = model(x, knobs)
    n_blocks = len(model.blocks)
    assert len(calls) == n_blocks or not allocator.enabled()  # after each block's forward pass
    loss = (y * w).sum() + y.pow(2).sum()
    grads = torch.autograd.grad(loss, list(model.parameters()))
    assert len(calls) == 2 * n_blocks or not allocator.enabled()  # and before each block's backward pass
    monkeypatch.setattr(_common, "BLOCK_TRIM_NUMEL", 1 << 60)
    _plain(model, False)
    y_ref, grads_ref = _loss_and_grads(model, x, knobs, w)
    assert len(calls) == 2 * n_blocks or not allocator.enabled()
    _assert_routes_agree(name, model, y.detach(), y_ref, y_offline, grads, grads_ref)


def test_gcn_recompute_is_checked():
    from nablafx.errors import ConfigError
    from nablafx.models.gcn import GCNModel

    with pytest.raises(ConfigError, match="recompute"):
        GCNModel(recompute="all")


@pytest.mark.parametrize("name", ["paper-tcn-f-45-s-16", "paper-s4-f-b4-s4-c16"])
def test_recomputed_blocks_update_batch_norm_statistics_once(name):
    """FiLM's batch normalisation inside a recomputed block (TCN tail, S4 block): the backward
    pass's second forward normalises as the first did but leaves the running statistics alone, so
    one training step moves them exactly as without recomputation (it used to move them twice)."""
    stats = {}
    for rec in (False, True):
        model = make(name, torch.float64).train()
        model.recompute = rec
        x, knobs = inputs(model, 3000, torch.float64)
        y, _ = model(x, knobs)
        (y * y).sum().backward()
        stats[rec] = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "batches" in k}
    assert stats[False] and stats[True].keys() == stats[False].keys()
    for k in stats[False]:
        torch.testing.assert_close(stats[True][k], stats[False][k], rtol=0, atol=0, msg=k)
