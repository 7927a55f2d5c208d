"""Every black-box variant in params.yaml: build, gradients, causality, streaming, save/load, receptive field.

Variants are read from params.yaml (families lstm, tcn, gcn, s4); each is built with 3 knobs
(variants without conditioning ignore them).

Streaming = offline is checked on every variant with irregular blocks (1 … 129 samples, across the
128-sample conditioning grid) over a short signal.  The sweep over block sizes 64, 512 and 4096 on a
signal longer than the receptive field, and 300 blocks of one sample, run on every project variant
and on a representative subset of the 56 ``paper-*`` variants (:data:`PAPER_FULL_STREAMING`: each
family, conditioning kind, residual kind and size class, the long-dilation ring buffer of a 2.5 s
model): on all of them they would take minutes, and the paper variants are built from the same layers.
Likewise the impulse test runs on five of the sixteen 2.5 s paper variants (:data:`PAPER_2500_IMPULSE`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from nablafx.registry import build_model
from nablafx.streaming import process_in_blocks

ROOT = Path(__file__).resolve().parents[2]
BLACK_BOX = ("lstm", "tcn", "gcn", "s4")
N_KNOBS = 3
SR = 48000


def _variants() -> dict[str, dict]:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    return {name: spec for name, spec in params["variants"].items() if spec.get("family") in BLACK_BOX}


VARIANTS = _variants()
NAMES = sorted(VARIANTS)
PAPER_FULL_STREAMING = (
    "paper-lstm-32", "paper-lstm-tvc-32",
    "paper-tcn-45-s-16", "paper-tcn-f-45-l-16", "paper-tcn-tf-250-s-16", "paper-tcn-ttf-45-l-16",
    "paper-tcn-tvf-2500-s-16",
    "paper-gcn-45-l-16", "paper-gcn-tf-45-s-16",
    "paper-s4-b4-s4-c16", "paper-s4-f-b4-s4-c16", "paper-s4-tf-b4-s4-c16", "paper-s4-ttf-b4-s4-c16",
    "paper-s4-tvf-b8-s32-c16",
)
FULL_STREAMING = sorted(n for n in NAMES if not n.startswith("paper-") or n in PAPER_FULL_STREAMING)
# the 2.5 s paper models take seconds each in float64: their impulse test runs on these (every conv stack
# size of TCN and GCN; the conditioned ones share the stacks, their receptive fields are in test_paper.py)
PAPER_2500_IMPULSE = ("paper-tcn-2500-s-16", "paper-tcn-2500-l-16", "paper-gcn-2500-s-16", "paper-gcn-2500-l-16",
                      "paper-tcn-tvf-2500-s-16")
IMPULSE = sorted(n for n in NAMES if "-2500-" not in n or not n.startswith("paper-") or n in PAPER_2500_IMPULSE)
IRREGULAR_BLOCKS = (1,) * 40 + (3, 64, 129, 7, 128, 1, 250, 2, 127)  # 800 samples


def make(name: str, dtype=torch.float32, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(VARIANTS[name], n_knobs=N_KNOBS, sample_rate=SR).to(dtype)
    return model.eval()


def inputs(model, n: int, dtype=torch.float32, batch: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.randn(batch, 1, n, generator=g, dtype=dtype)
    knobs = torch.rand(batch, model.n_knobs, generator=g, dtype=dtype) if model.n_knobs else None
    return x, knobs


def core_rf(model) -> int:
    """The bounded part of the receptive field (convolutions), 1 for purely recurrent models."""
    return getattr(model, "core_receptive_field", None) or model.receptive_field or 1


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.pow(2).mean().sqrt().clamp_min(1e-12))


def test_params_yaml_has_black_box_variants():
    assert {spec["family"] for spec in VARIANTS.values()} >= {"lstm", "tcn"}


def test_full_streaming_subset_covers_the_paper_variants():
    """The subset spans every family, conditioning kind, residual kind and size class."""
    assert set(PAPER_FULL_STREAMING) <= set(NAMES)
    specs = [VARIANTS[n] for n in PAPER_FULL_STREAMING]
    paper = [VARIANTS[n] for n in NAMES if n.startswith("paper-")]

    def kinds(group):
        return {(s["family"], s.get("cond", "none"), s.get("residual", "identity")) for s in group}

    assert kinds(specs) == kinds(paper)
    assert {n.split("-16")[0].rsplit("-", 1)[-1] for n in PAPER_FULL_STREAMING if "-16" in n} == {"s", "l"}
    assert any("2500" in n for n in PAPER_FULL_STREAMING) and any("b8" in n for n in PAPER_FULL_STREAMING)


@pytest.mark.parametrize("name", NAMES)
def test_builds_and_runs(name):
    model = make(name)
    assert model.n_knobs in (0, N_KNOBS)
    assert sum(p.numel() for p in model.parameters()) > 0
    x, knobs = inputs(model, 257)
    with torch.no_grad():
        y, _ = model(x, knobs)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert model.config()["family"] == VARIANTS[name]["family"]


@pytest.mark.parametrize("name", NAMES)
def test_gradient_reaches_every_parameter(name):
    model = make(name).train()
    x, knobs = inputs(model, 1024)
    target = torch.randn_like(x)
    y, _ = model(x, knobs)
    ((y - target) ** 2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not bool((p.grad != 0).any())]
    assert not missing, f"{name}: no gradient for {missing}"


@pytest.mark.parametrize("name", NAMES)
def test_causal(name):
    model = make(name, torch.float64)
    n = min(core_rf(model), 3000) + 700
    x, knobs = inputs(model, n, torch.float64)
    t = n // 2
    x2 = x.clone()
    x2[..., t + 1 :] += torch.randn_like(x2[..., t + 1 :])
    with torch.no_grad():
        y1, _ = model(x, knobs)
        y2, _ = model(x2, knobs)
    assert rel_err(y2[..., : t + 1], y1[..., : t + 1]) < 1e-10
    assert rel_err(y2[..., t + 1 :], y1[..., t + 1 :]) > 1e-6  # the perturbation does reach the output


@pytest.mark.parametrize("name", NAMES)
def test_streaming_irregular_blocks_equal_offline(name):
    model = make(name)
    x, knobs = inputs(model, sum(IRREGULAR_BLOCKS))
    with torch.no_grad():
        y, _ = model(x, knobs)
        state = model.init_state(x.shape[0], dtype=x.dtype)
        outs, start = [], 0
        for block in IRREGULAR_BLOCKS:
            out, state = model(x[..., start : start + block], knobs, state)
            outs.append(out)
            start += block
    assert rel_err(torch.cat(outs, dim=-1), y) < 1e-5


@pytest.mark.parametrize("name", FULL_STREAMING)
def test_streaming_block_1_equals_offline(name):
    model = make(name)
    x, knobs = inputs(model, 300)
    with torch.no_grad():
        y, _ = model(x, knobs)
    assert rel_err(process_in_blocks(model, x, knobs, 1), y) < 1e-5


@pytest.mark.parametrize("name", FULL_STREAMING)
def test_streaming_equals_offline(name):
    model = make(name)
    x, knobs = inputs(model, core_rf(model) + 5000)
    with torch.no_grad():
        y, _ = model(x, knobs)
    for block in (64, 512, 4096):
        assert rel_err(process_in_blocks(model, x, knobs, block), y) < 1e-5, f"block {block}"


@pytest.mark.parametrize("name", NAMES)
def test_save_load_identical(name, tmp_path):
    model = make(name)
    path = tmp_path / "model.pt"
    torch.save({"config": model.config(), "n_knobs": N_KNOBS, "sample_rate": SR,
                "state_dict": model.state_dict()}, path)
    saved = torch.load(path, weights_only=True)
    torch.manual_seed(123)  # a different init, overwritten by the state dict
    loaded = build_model(saved["config"], n_knobs=saved["n_knobs"], sample_rate=saved["sample_rate"]).eval()
    loaded.load_state_dict(saved["state_dict"])
    x, knobs = inputs(model, 700)
    with torch.no_grad():
        assert torch.equal(model(x, knobs)[0], loaded(x, knobs)[0])


@pytest.mark.parametrize("name", IMPULSE)
def test_receptive_field_by_impulse(name):
    """The response to an impulse lasts as long as the documented receptive field.

    Bounded models: the impulse response ends within ``rf`` samples, and the output's sensitivity
    to an impulse at each past sample (one backward pass, float64: exactly zero outside the
    receptive field) is non-zero exactly over the last ``rf`` samples — at the far end a deep gated
    stack's finite response is the product of one tap per layer, below float64 resolution next to
    its peak (the GCNs of 10–11 blocks), while its derivative is still non-zero.
    """
    model = make(name, torch.float64)
    rf = model.receptive_field
    n = (rf + 300) if rf is not None else core_rf(model) + 2000
    x = torch.zeros(1, 1, n, dtype=torch.float64)
    knobs = torch.full((1, model.n_knobs), 0.5, dtype=torch.float64) if model.n_knobs else None
    imp = x.clone()
    imp[..., 0] = 0.5
    with torch.no_grad():
        diff = (model(imp, knobs)[0] - model(x, knobs)[0]).abs().flatten()
    if rf is None:
        # unbounded (recurrent): the response must outlast the convolutional part; it may decay below
        # float64 resolution later, which a finite test cannot tell from a bounded response.
        last = int(torch.nonzero(diff > 0).flatten()[-1])
        assert last >= core_rf(model) + 50, f"{name}: unbounded receptive field but response ends at {last}"
        return
    last = int(torch.nonzero(diff > 1e-13 * diff.max()).flatten()[-1])
    assert last + 1 <= rf, f"{name}: impulse response lasts {last + 1} samples, receptive field {rf}"
    xs, _ = inputs(model, n, torch.float64, batch=1)
    xs.requires_grad_(True)
    model(xs, knobs)[0][..., -1].sum().backward()
    support = torch.nonzero(xs.grad.flatten()).flatten()
    assert n - int(support[0]) == rf, f"{name}: the last output depends on {n - int(support[0])} samples, rf {rf}"
