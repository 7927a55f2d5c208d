"""The two rearrangements of the IIR recursion: block matrices for export (``allpole_blocks`` inside
``block_recursion``) and the inference fast path of cascades (``CascadeCache``), against scipy's
``lfilter`` in float64 and against ``sos_filter``."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

from nablafx.dsp.filters import CascadeCache, allpole_impulse, block_recursion, iir_filter, sos_filter


def _stable(order: int, rng) -> np.ndarray:
    poles = []
    while len(poles) < order:
        if order - len(poles) >= 2:
            p = rng.uniform(0.5, 0.999) * np.exp(1j * rng.uniform(0.01, np.pi))
            poles += [p, np.conj(p)]
        else:
            poles.append(rng.uniform(-0.999, 0.999))
    return np.real(np.poly(poles))


def test_allpole_impulse_matches_lfilter():
    rng = np.random.default_rng(0)
    for order in (1, 2, 3, 4):
        a = _stable(order, rng)
        g = allpole_impulse(torch.tensor(a)[None], 300)[0].numpy()
        ref = scipy.signal.lfilter([1.0], a, np.r_[1.0, np.zeros(299)])
        assert np.abs(g - ref).max() < 1e-12 * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("blocks", [[1, 1, 1, 5, 300], [64, 64, 7], [1000]])
def test_block_recursion_streams_like_scipy(order, blocks):
    rng = np.random.default_rng(order)
    a, b = _stable(order, rng), rng.standard_normal(order + 1)
    x = torch.tensor(rng.standard_normal((2, 1, sum(blocks))))
    ref = scipy.signal.lfilter(b, a, x.numpy(), axis=-1)
    A, B = torch.tensor(a)[None].expand(2, -1), torch.tensor(b)[None].expand(2, -1)
    ys, state, at = [], None, 0
    with block_recursion(64):
        for n in blocks:
            y, state = iir_filter(x[..., at : at + n], B, A, state)
            ys.append(y)
            at += n
    assert np.abs(torch.cat(ys, -1).numpy() - ref).max() < 1e-11 * np.abs(ref).max()


def test_cascade_cache_is_sos_filter():
    rng = np.random.default_rng(3)
    K = 4
    a = torch.tensor(np.stack([[_stable(2, rng) for _ in range(K)] for _ in range(2)]))  # (B, K, 3)
    b = torch.tensor(rng.standard_normal((2, K, 3)))
    x = torch.tensor(rng.standard_normal((2, 1, 900)), dtype=torch.float32)
    ref, ref_state = sos_filter(x, b, a)
    cache = CascadeCache(chunk=256)
    calls = []

    def design(p):
        calls.append(1)
        return b, a

    params = torch.zeros(2, 1)
    ys, state, at = [], None, 0
    for n in (64, 64, 1, 500, 271):  # short blocks, a long one (chunks of 256), ragged ends
        y, state = cache.run(x[..., at : at + n], params, design, state)
        ys.append(y)
        at += n
    assert len(calls) == 1  # designed once while the parameters stay put
    y = torch.cat(ys, -1)
    assert y.dtype == torch.float32
    # sos_filter rounds to float32 between sections, the matrices stay in float64: float32-level agreement
    assert float((y - ref).abs().max() / ref.abs().max()) < 1e-6
    for (xh, yh), (rx, ry) in zip(state, ref_state):
        assert torch.allclose(xh, rx, rtol=1e-6, atol=1e-6) and torch.allclose(yh, ry, rtol=1e-6, atol=1e-6)
    cache.run(x[..., :10], params + 1, design, state)
    assert len(calls) == 2  # new parameters: designed again
