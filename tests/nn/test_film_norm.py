"""FiLM's optional BatchNorm (``film_norm: batch``, the reference's FiLM): batch statistics in
training and running statistics at inference against closed forms in float64; a model trained with
it (running statistics moved away from 0 / 1) is causal, streams like offline and exports with
parity; config errors name the key."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nablafx.nn.film import FiLM
from nablafx.portable import FORMATS, ExportedRunner, export_bytes
from nablafx.registry import ConfigError, build_model
from nablafx.streaming import process_in_blocks

TCN_F = {"family": "tcn", "channels": 8, "blocks": 3, "kernel_size": 3, "dilation_growth": 2, "activation": "tanh",
         "cond": "film", "cond_style": "paper", "residual": "gain", "output_tanh": True, "film_norm": "batch"}


def test_train_uses_batch_statistics_and_eval_the_running_ones():
    torch.manual_seed(0)
    film = FiLM(4, 3, norm="batch").double()
    h = torch.randn(2, 3, 50, dtype=torch.float64) * torch.tensor([0.1, 1.0, 5.0], dtype=torch.float64)[:, None] + 2.0
    emb = torch.randn(2, 4, dtype=torch.float64)
    y = film.train()(h, emb)
    w, b = film.proj.weight.detach().numpy(), film.proj.bias.detach().numpy()
    hn = h.numpy()
    mean, var = hn.mean(axis=(0, 2)), hn.var(axis=(0, 2))  # biased, as BatchNorm normalises
    ss = emb.numpy() @ w.T + b
    scale, shift = ss[:, :3, None], ss[:, 3:, None]
    want = (hn - mean[:, None]) / np.sqrt(var[:, None] + 1e-5) * (1 + scale) + shift
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-10, atol=1e-12)
    # running statistics after one step (momentum 0.1; the variance unbiased)
    rm = 0.1 * mean
    rv = 0.9 + 0.1 * hn.var(axis=(0, 2), ddof=1)
    np.testing.assert_allclose(film.norm.running_mean.numpy(), rm, rtol=1e-12)
    np.testing.assert_allclose(film.norm.running_var.numpy(), rv, rtol=1e-12)
    y_eval = film.eval()(h, emb)
    want_eval = (hn - rm[:, None]) / np.sqrt(rv[:, None] + 1e-5) * (1 + scale) + shift
    np.testing.assert_allclose(y_eval.detach().numpy(), want_eval, rtol=1e-10, atol=1e-12)
    assert sum(p.numel() for p in film.parameters()) == sum(p.numel() for p in FiLM(4, 3).parameters())


def _trained(seed=0):
    """A small TCN with FiLM BatchNorm after a few training forwards on loud, offset input, so that
    its running statistics are far from the initial 0 / 1."""
    torch.manual_seed(seed)
    model = build_model(TCN_F, n_knobs=2).train()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _ in range(20):
            model(2.0 * torch.randn(4, 1, 300, generator=g) + 0.5, torch.rand(4, 2, generator=g))
    norms = [m.norm for m in model.modules() if isinstance(m, FiLM)]
    assert len(norms) == 3 and all(float(n.running_var.mean()) > 1.5 for n in norms[:1])
    return model.eval()


def test_trained_model_is_causal_and_streams_like_offline():
    model = _trained().double()
    g = torch.Generator().manual_seed(1)
    x = 0.3 * torch.randn(2, 1, 900, generator=g, dtype=torch.float64)
    knobs = torch.rand(2, 2, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y, _ = model(x, knobs)
        x2 = x.clone()
        x2[..., 451:] += 1.0
        y2, _ = model(x2, knobs)
        assert torch.equal(y[..., :451], y2[..., :451]) and not torch.equal(y[..., 451:], y2[..., 451:])
        state, outs, s = model.init_state(2, dtype=torch.float64), [], 0
        for block in (1, 7, 128, 3, 261, 500):
            out, state = model(x[..., s : s + block], knobs, state)
            outs.append(out)
            s += block
    assert float((torch.cat(outs, -1) - y).abs().max()) < 1e-12


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_trained_model_exports_with_parity(fmt, tmp_path):
    model = _trained()
    block = 128
    data, desc = export_bytes(model, block, fmt)
    path = tmp_path / f"m{FORMATS[fmt]}"
    path.write_bytes(data)
    g = torch.Generator().manual_seed(3)
    x = 0.5 * torch.randn(1, 1, 20 * block, generator=g)
    knobs = torch.tensor([[0.3, 0.8]])
    runner = ExportedRunner(path, desc)
    y = torch.cat([torch.as_tensor(runner.process(x[..., s : s + block], knobs)) for s in range(0, x.shape[-1], block)], -1)
    with torch.no_grad():
        ref = process_in_blocks(model, x, knobs, block)
    assert float((y - ref).abs().max() / ref.pow(2).mean().sqrt()) < 1e-5


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="needs cond: film") as err:
        build_model({**TCN_F, "cond": "tfilm"}, n_knobs=2)
    assert "film_norm" in str(err.value)
    with pytest.raises(ConfigError, match="unknown FiLM normalisation 'layer'"):
        build_model({**TCN_F, "film_norm": "layer"}, n_knobs=2)


def test_raw_scale_is_the_references_affine_form():
    """``film_scale: raw``: ``h·γ(e) + β(e)`` (the reference's FiLM), against float64 numpy."""
    torch.manual_seed(1)
    film = FiLM(4, 3, norm="none", scale="raw").double()
    h = torch.randn(2, 3, 40, dtype=torch.float64)
    emb = torch.randn(2, 4, dtype=torch.float64)
    ss = emb.numpy() @ film.proj.weight.detach().numpy().T + film.proj.bias.detach().numpy()
    want = h.numpy() * ss[:, :3, None] + ss[:, 3:, None]
    np.testing.assert_allclose(film(h, emb).detach().numpy(), want, rtol=1e-12, atol=1e-14)
    unit = FiLM(4, 3)
    unit.load_state_dict({k: v.float() for k, v in film.state_dict().items()})  # same parameters, unit scale
    np.testing.assert_allclose((unit(h.float(), emb.float()) - h.float()).detach().numpy(), want, rtol=1e-5, atol=1e-5)


def test_raw_scale_model_streams_like_offline_and_config_errors_name_the_key():
    torch.manual_seed(0)
    model = build_model({**TCN_F, "film_scale": "raw"}, n_knobs=2).eval()
    x = 0.3 * torch.randn(1, 1, 900)
    knobs = torch.rand(1, 2)
    with torch.no_grad():
        y, _ = model(x, knobs)
        ys = process_in_blocks(model, x, knobs, 128)
    assert torch.allclose(ys, y, atol=1e-5 * float(y.pow(2).mean().sqrt()))
    with pytest.raises(ConfigError, match="unknown FiLM scale 'half'") as err:
        build_model({**TCN_F, "film_scale": "half"}, n_knobs=2)
    assert "film_scale" in str(err.value)
    with pytest.raises(ConfigError, match="needs cond: film"):
        build_model({**TCN_F, "cond": "tfilm", "film_norm": "none", "film_scale": "raw"}, n_knobs=2)
