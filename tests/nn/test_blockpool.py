"""Causal block pooling (TFiLM / TVFiLM engine) and the conditioning layers."""

from __future__ import annotations

import pytest
import torch

from nablafx.nn.blockpool import CausalBlockLSTM, expand_blocks
from nablafx.nn.conditioning import COND_KINDS, Conditioning


def test_expand_blocks():
    v = torch.arange(3.0).reshape(1, 1, 3)  # 3 blocks of 4 samples, call starts at offset 2
    assert expand_blocks(v, 2, 9, 4)[0, 0].tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert expand_blocks(v[..., :1], 1, 2, 4).shape == (1, 1, 1)


def _run(pool, z, block, extra=None):
    state = pool.init_state(z.shape[0], dtype=z.dtype)
    outs = []
    for i in range(0, z.shape[-1], block):
        chunk = z[..., i : i + block]
        pos = state["pos"]
        hs, state = pool(chunk, extra, state)
        outs.append(expand_blocks(hs.transpose(1, 2), pos, chunk.shape[-1], pool.block_size)
                    .expand(-1, -1, chunk.shape[-1]))
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


@pytest.mark.parametrize("bottleneck", [None, 2])
@pytest.mark.parametrize("block", [1, 3, 16, 50, 150])
def test_streaming_equals_offline(block, bottleneck):
    """Short calls take the explicit-cell path, long ones nn.LSTM: both must agree."""
    torch.manual_seed(0)
    pool = CausalBlockLSTM(3, 5, block_size=8, extra_features=2, bottleneck=bottleneck).double()
    z = torch.randn(2, 3, 300, dtype=torch.float64)
    extra = torch.rand(2, 2, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(_run(pool, z, block, extra), _run(pool, z, 300, extra))


@pytest.mark.parametrize("kind", COND_KINDS)
def test_every_kind_builds_layers(kind):
    cond = Conditioning(kind, n_knobs=2)
    layer = cond.make_layer(4)
    x = torch.randn(1, 1, 40)
    h = torch.randn(1, 4, 40)
    ctx, _ = cond(x, torch.rand(1, 2), cond.init_state(1))
    out, _ = layer(h, ctx, layer.init_state(1))
    assert out.shape == h.shape
