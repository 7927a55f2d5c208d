"""Causal block pooling (TFiLM / TVFiLM engine) and the conditioning layers."""

from __future__ import annotations

import pytest
import torch

from nablafx.nn.blockpool import CausalBlockLSTM, expand_segments, segment_lengths
from nablafx.nn.conditioning import COND_KINDS, Conditioning


def test_segment_lengths():
    assert segment_lengths(0, 300, 128) == [128, 128, 44]
    assert segment_lengths(100, 300, 128) == [28, 128, 128, 16]
    assert segment_lengths(100, 10, 128) == [10]
    assert segment_lengths(0, 256, 128) == [128, 128]


def test_expand_segments():
    v = torch.arange(6.0).reshape(1, 3, 2)  # 3 segments, 2 features
    out = expand_segments(v, [2, 1, 3])
    assert out.shape == (1, 2, 6)
    assert out[0, 0].tolist() == [0, 0, 2, 4, 4, 4]


def _run(pool, z, block):
    state = pool.init_state(z.shape[0], dtype=z.dtype)
    outs = []
    for i in range(0, z.shape[-1], block):
        hs, lengths, state = pool(z[..., i : i + block], None, state)
        outs.append(expand_segments(hs, lengths).expand(-1, -1, sum(lengths)))
    return torch.cat(outs, -1)


def test_condition_for_block_k_uses_only_blocks_before_k():
    torch.manual_seed(0)
    pool = CausalBlockLSTM(3, 5, block_size=16).double()
    z = torch.randn(1, 3, 100, dtype=torch.float64)
    with torch.no_grad():
        ref = _run(pool, z, 100)
        for t in (5, 16, 40, 63):
            z2 = z.clone()
            z2[..., t:] += 1.0
            out = _run(pool, z2, 100)
            block_start = (t // 16) * 16
            # samples up to the end of t's block keep their condition; the next block sees the change
            torch.testing.assert_close(out[..., : block_start + 16], ref[..., : block_start + 16])
            assert not torch.allclose(out[..., block_start + 16 :], ref[..., block_start + 16 :])


@pytest.mark.parametrize("block", [1, 3, 16, 50])
def test_streaming_equals_offline(block):
    torch.manual_seed(0)
    pool = CausalBlockLSTM(3, 5, block_size=16, extra_features=0, bottleneck=2).double()
    z = torch.randn(2, 3, 150, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(_run(pool, z, block), _run(pool, z, 150))


@pytest.mark.parametrize("kind", COND_KINDS)
def test_every_kind_builds_layers(kind):
    cond = Conditioning(kind, n_knobs=2)
    layer = cond.make_layer(4)
    x = torch.randn(1, 1, 40)
    h = torch.randn(1, 4, 40)
    ctx, _ = cond(x, torch.rand(1, 2), cond.init_state(1))
    out, _ = layer(h, ctx, layer.init_state(1))
    assert out.shape == h.shape
