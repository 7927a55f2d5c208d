"""Gray-box chains: every variant in params.yaml builds, streams exactly, is causal, trains; errors
name the params.yaml key; documented parameter counts hold."""

from pathlib import Path

import pytest
import torch
import yaml

from nablafx.models.graybox import GrayBoxModel
from nablafx.registry import ConfigError, build_model, resolve_variant

ROOT = Path(__file__).resolve().parents[2]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
GRAYBOX = sorted(k for k, v in PARAMS["variants"].items() if v.get("family") == "graybox")
N_KNOBS = 3

# Documented in docs/graybox.md (n_knobs = 3 for the conditional variants).
EXPECTED_PARAMS = {
    "gb-dist": 2241, "gb-dist-tanh": 34, "gb-dist-rational": 44, "gb-fuzz": 2244, "gb-comp": 23,
    "gb-dist-cond": 4097, "gb-fuzz-cond": 4820, "gb-comp-cond": 1735, "gb-comp-dyn-cond": 2786,
    "gb-amp-cond": 2054,
}


def build(name, n_knobs=N_KNOBS, seed=0):
    torch.manual_seed(seed)
    return build_model(PARAMS["variants"][name], n_knobs=n_knobs, sample_rate=48000, key=f"variants.{name}")


def perturb(model, seed=1, scale=0.3):
    """Move every parameter off its initial value so no processor is an identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g) * (p.abs().mean() + 0.1))
    return model


def inputs(n=2400, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 48000
    x = 0.4 * torch.sin(2 * torch.pi * 220 * t) * torch.linspace(0.1, 1.0, n) + 0.05 * torch.randn(batch, 1, n, generator=g)
    knobs = torch.rand(batch, N_KNOBS, generator=g)
    return x.reshape(batch, 1, n), knobs


def test_expected_variants_present():
    assert set(EXPECTED_PARAMS) <= set(GRAYBOX)
    name, spec = resolve_variant(PARAMS, "gb")
    assert name == "gb-dist-cond" and spec["family"] == "graybox"


@pytest.mark.parametrize("name", GRAYBOX)
def test_builds_with_documented_parameter_count(name):
    model = build(name)
    assert isinstance(model, GrayBoxModel)
    assert sum(p.numel() for p in model.parameters()) == EXPECTED_PARAMS[name]
    assert model.n_knobs == (N_KNOBS if name.endswith("-cond") else 0)
    assert build(name, n_knobs=2) is not None


@pytest.mark.parametrize("name", GRAYBOX)
def test_streaming_equals_offline(name):
    model = perturb(build(name)).eval()
    x, knobs = inputs()
    k = knobs if model.n_knobs else None
    with torch.no_grad():
        y, _ = model(x, k)
        rms = y.pow(2).mean().sqrt()
        assert torch.isfinite(y).all() and rms > 1e-3
        for block in (64, 441, 1000):
            state, outs = model.init_state(2, dtype=x.dtype), []
            for s in range(0, x.shape[-1], block):
                yy, state = model(x[..., s:s + block], k, state)
                outs.append(yy)
            err = (torch.cat(outs, -1) - y).abs().max() / rms
            assert err < 1e-5, (block, err.item())


@pytest.mark.parametrize("name", GRAYBOX)
def test_causal(name):
    model = perturb(build(name)).eval()
    x, knobs = inputs(1200)
    k = knobs if model.n_knobs else None
    x2 = x.clone()
    x2[..., 700:] += 0.5
    with torch.no_grad():
        y, _ = model(x, k)
        y2, _ = model(x2, k)
    torch.testing.assert_close(y2[..., :700], y[..., :700], rtol=0, atol=1e-7)
    assert (y2[..., 700:] - y[..., 700:]).abs().max() > 1e-4


@pytest.mark.parametrize("name", GRAYBOX)
def test_trains_a_few_steps(name):
    model = build(name)
    x, knobs = inputs(4800)
    k = knobs if model.n_knobs else None
    target = 0.5 * torch.tanh(3.0 * x) if "comp" not in name else 0.2 * x
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        y, _ = model(x, k)
        loss = torch.mean((y - target) ** 2)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.9 * losses[0], losses
    assert all(p.grad is not None for p in model.parameters())


def test_save_load_round_trip(tmp_path):
    model = perturb(build("gb-amp-cond"))
    torch.save(model.state_dict(), tmp_path / "m.pt")
    other = build("gb-amp-cond", seed=5)
    other.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    x, knobs = inputs(600)
    with torch.no_grad():
        torch.testing.assert_close(other(x, knobs)[0], model(x, knobs)[0], rtol=0, atol=0)


def _spec(*processors):
    return {"family": "graybox", "processors": list(processors)}


def test_errors_name_the_key_path():
    bad = _spec({"type": "gain"}, {"type": "peq"}, {"type": "fuzzbox"})
    with pytest.raises(ConfigError, match=r"params\.yaml: variants\.gb-x\.processors\[2\]\.type: unknown processor 'fuzzbox'; "
                                          r"known: compressor, .*tanh, tonestack"):
        build_model(bad, n_knobs=0, key="variants.gb-x")
    with pytest.raises(ConfigError, match=r"processors\[1\]\.controller\.type: unknown controller 'lfo'"):
        build_model(_spec({"type": "gain"}, {"type": "gain", "controller": "lfo"}), n_knobs=0, key="variants.gb-x")
    with pytest.raises(ConfigError, match=r"processors\[0\]\.controller: processor 'compressor' cannot follow"):
        build_model(_spec({"type": "compressor", "controller": "dynamic"}), n_knobs=0, key="variants.gb-x")
    with pytest.raises(ConfigError, match=r"processors\[0\]\.controller: processor 'mlp' has no control parameters"):
        build_model(_spec({"type": "mlp", "controller": "static"}), n_knobs=0, key="variants.gb-x")
    with pytest.raises(ConfigError, match=r"processors\[0\]\.controller: static-cond controller needs knobs"):
        build_model(_spec({"type": "gain", "controller": "static-cond"}), n_knobs=0, key="variants.gb-x")
    with pytest.raises(ConfigError, match="processors: expected a non-empty list"):
        build_model(_spec(), n_knobs=0, key="variants.gb-x")
    with pytest.raises(ConfigError, match=r"variants\.gb-x\.procesors: unknown option for family 'graybox'"):
        build_model({"family": "graybox", "procesors": []}, n_knobs=0, key="variants.gb-x")


def test_receptive_field_and_latency():
    fir_only = build_model(_spec({"type": "gain"}, {"type": "fir", "n_taps": 16}, {"type": "tanh"}), n_knobs=0)
    assert fir_only.receptive_field == 16
    assert build("gb-dist").receptive_field is None
    lin = build_model(_spec({"type": "tanh", "oversample": 2, "os_phase": "linear"}), n_knobs=0)
    assert lin.latency_samples == 32 and build("gb-dist").latency_samples == 0


def test_control_values_in_real_units():
    vals = build("gb-comp").control_values()
    assert vals[1]["threshold_db"] == pytest.approx(-20.0, abs=0.1)
    assert vals[1]["ratio"] == pytest.approx(4.0, rel=0.01)
    cond = build("gb-comp-cond").control_values(torch.tensor([0.5, 0.5, 0.5]))
    assert set(cond[2]) >= {"low_shelf_gain_db", "high_shelf_cutoff_hz"}
