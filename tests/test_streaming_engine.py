"""Per-sample knobs in every conditioned variant, and the streaming engine a host drives:
fixed blocks with state, no added latency, ragged last block, smoothed knob changes (no zipper
noise), silence in → silence out while knobs move."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from nablafx.registry import build_model
from nablafx.streaming import StreamEngine, StreamingModel, process_in_blocks

from .conftest import slow_if_paper_big

ROOT = Path(__file__).resolve().parents[1]
SR = 48000
N_KNOBS = 3
VARIANTS = yaml.safe_load((ROOT / "params.yaml").read_text())["variants"]


def make(name: str):
    torch.manual_seed(0)
    return build_model(VARIANTS[name], n_knobs=N_KNOBS, sample_rate=SR).eval()


def _conditioned() -> list[str]:
    return sorted(n for n in VARIANTS if make(n).n_knobs)


CONDITIONED = _conditioned()


def rel_err(a, b) -> float:
    return float((a - b).abs().max() / b.pow(2).mean().sqrt().clamp_min(1e-12))


def test_every_family_has_conditioned_variants():
    assert {VARIANTS[n]["family"] for n in CONDITIONED} == {"lstm", "tcn", "gcn", "s4", "graybox"}


@pytest.mark.parametrize("name", slow_if_paper_big(CONDITIONED))
def test_per_sample_knobs(name):
    """Constant per-sample knobs are the constant knobs; a moving trajectory streams exactly
    (blocks that are multiples of the 32-sample control hop of recursive filters) and is heard."""
    model = make(name)
    n = 1536
    g = torch.Generator().manual_seed(1)
    x = 0.3 * torch.randn(2, 1, n, generator=g)
    k = torch.rand(2, N_KNOBS, generator=g)
    ramp = torch.linspace(0, 1, n)
    traj = k[..., None] * (1 - ramp) + (1 - k[..., None]) * ramp
    with torch.no_grad():
        y_const, _ = model(x, k)
        y_flat, _ = model(x, k[..., None].expand(-1, -1, n))
        y_moving, _ = model(x, traj)
    assert rel_err(y_flat, y_const) < 1e-5
    assert rel_err(y_moving, y_const) > 1e-3
    for block in (64, 96):  # 96: block-pooled conditioning (128) sees every position
        assert rel_err(process_in_blocks(model, x, traj, block), y_moving) < 1e-5, block


def test_engine_is_the_model_streamed_without_latency():
    """silence_reference off, knobs still: exactly the offline output, ragged last block included."""
    model = make("tcn-45-film")
    x = 0.3 * torch.randn(2, 1, 5 * 128 + 17, generator=torch.Generator().manual_seed(2))
    knobs = [[0.2, 0.4, 0.6], [0.9, 0.1, 0.5]]
    engine = StreamEngine(model, 128, batch=2, knobs=knobs, silence_reference=False)
    with torch.no_grad():
        offline, _ = model(x, torch.tensor(knobs))
    assert rel_err(engine.run(x), offline) < 1e-5
    with pytest.raises(ValueError, match="1 … 128"):
        engine.process(torch.zeros(2, 1, 129))


class KnobProbe(StreamingModel):
    """Outputs its first knob, sample by sample (shows what the model sees)."""

    n_knobs = 2
    sample_rate = SR
    receptive_field = 1

    def init_state(self, batch_size, device=None, dtype=None):
        return None

    def forward(self, x, knobs=None, state=None):
        knobs = self.check_knobs(x, knobs)
        k = knobs[:, :1] if knobs.dim() == 3 else knobs[:, :1, None].expand(-1, -1, x.shape[-1])
        return k + 0 * x, state


def test_knob_changes_ramp_per_sample():
    engine = StreamEngine(KnobProbe(), 100, knobs=[0.2, 0.0], smoothing_ms=10.0, silence_reference=False)
    ramp = engine.ramp
    assert ramp == 480
    x = torch.zeros(1, 1, 1000)
    y = engine.run(x, [(300, [0.8, 0.0])])[0, 0].double()
    assert torch.all(y[:300] == float(torch.tensor(0.2))) and torch.allclose(y[300 + ramp - 1 :], torch.tensor(0.8, dtype=torch.float64))
    t = torch.arange(1, ramp + 1, dtype=torch.float64) / ramp
    expected = 0.2 + 0.6 * (0.5 - 0.5 * torch.cos(math.pi * t))  # raised cosine across block boundaries
    assert torch.allclose(y[300 : 300 + ramp], expected, atol=1e-6)
    steps = (y[1:] - y[:-1]).abs()
    assert float(steps.max()) <= 0.6 * math.pi / (2 * ramp) * 1.01  # no step bigger than the ramp's slope


def _zipper_db(name: str, smoothing_ms: float, f0: float = 3000.0, block: int = 128) -> float:
    """Energy more than 400 Hz away from every harmonic of a sine, relative to the total, over
    8192 samples (Kaiser β=20 window: leakage below −150 dB there) centred on a knob step."""
    model = make(name)
    n, step = 3 * 8192, 96 * block
    x = torch.tensor(0.5 * np.sin(2 * np.pi * f0 * np.arange(n) / SR), dtype=torch.float32)[None, None]
    engine = StreamEngine(model, block, knobs=[0.2, 0.5, 0.5], smoothing_ms=smoothing_ms)
    y = engine.run(x, [(step, [0.9, 0.5, 0.5])])[0, 0].double().numpy()
    seg = y[step - 4096 : step + 4096]
    spec = np.abs(np.fft.rfft(seg * np.kaiser(len(seg), 20))) ** 2
    f = np.fft.rfftfreq(len(seg), 1 / SR)
    near = np.zeros_like(f, dtype=bool)
    for h in range(int(SR / 2 / f0) + 1):
        near |= np.abs(f - h * f0) < 400
    return 10 * np.log10(spec[~near].sum() / spec.sum())


# per-sample conditioning (FiLM, LSTM input): the ramp leaves nothing; block-pooled conditioning
# (TVFiLM: constant per 128-sample block) and gray-box filters (coefficients every 32 samples) keep
# the steps of their own control rate, far below a hard step
ZIPPER = {"tcn-45-film": -90.0, "lstm-32": -90.0, "s4-film-b4-s32-c16": -85.0, "gcn-45-tvf": -70.0,
          "gb-amp-cond": -75.0}


@pytest.mark.parametrize("name", sorted(ZIPPER))
def test_no_zipper_noise_when_a_knob_steps(name):
    hard = _zipper_db(name, 0.0)  # the step applied at a block boundary, as it comes
    smooth = _zipper_db(name, 20.0)
    assert smooth < ZIPPER[name] and smooth < hard - 15.0, (name, hard, smooth)


@pytest.mark.parametrize("name", slow_if_paper_big(CONDITIONED))
def test_knobs_moving_over_silence_stay_silent(name):
    """Zero input, smoothed knob sweeps with pauses (the silence stream settles and restarts):
    peak ≤ −100 dBFS.  The model alone is far louder (benchmarks/results/knob_motion.md)."""
    model = make(name)
    x = torch.zeros(1, 1, int(0.5 * SR))
    events = [(0, [0.5, 0.5, 0.5]), (4800, [1.0, 0.0, 1.0]), (12000, [0.0, 1.0, 0.2]), (19200, [0.7, 0.3, 0.9])]
    if starts_silent(VARIANTS[name]):  # no offset anywhere at initialisation: the network alone is silent
        raw = StreamEngine(model, 100, knobs=[0.5, 0.5, 0.5], silence_reference=False).run(x, events)
        assert float(raw.abs().max()) == 0.0
    if VARIANTS[name]["family"] == "s4":  # S4 starts without offsets, silent on silence (docs/training.md):
        with torch.no_grad():              # give it offsets as a trained one has, so the reference has work
            for pname, p in model.named_parameters():
                if pname.endswith("bias"):
                    p.uniform_(-0.3, 0.3, generator=torch.Generator().manual_seed(1))
    engine = StreamEngine(model, 100, knobs=[0.5, 0.5, 0.5])
    y = engine.run(x, events)
    peak = float(y.abs().max())
    peak_db = -math.inf if peak == 0 else 20 * math.log10(peak)
    print(f"{name}: knob motion over silence, peak {peak_db:.1f} dBFS")
    assert peak_db <= -100.0
    if VARIANTS[name]["family"] != "graybox":
        raw = StreamEngine(model, 100, knobs=[0.5, 0.5, 0.5], silence_reference=False).run(x, events)
        assert float(raw.abs().max()) > 1e-3  # the networks alone (their biases) are far from silent


def starts_silent(spec: dict) -> bool:
    """S4 starts without offsets (its 1×1-conv biases and modulation shifts are zeroed at
    initialisation, nablafx/models/s4.py): silence in, silence out — except with the papers' TFiLM,
    whose shift *is* an LSTM's output (nothing to zero)."""
    return spec["family"] == "s4" and not (spec.get("cond") == "tfilm" and spec.get("cond_style") == "paper")


def test_a_settled_silence_stream_resumes_on_the_main_streams_block_grid():
    """While settled the silence stream skips samples; when the knobs move it first catches up on its
    128-sample conditioning grid, so its blocks complete (and read the moving knobs) at the same
    samples as the main stream's: the difference of the two over silence stays at rounding level."""
    model = make("paper-lstm-tvc-32")  # LSTM-TVC: its state carries the grid position
    engine = StreamEngine(model, 100, knobs=[0.5, 0.5, 0.5])
    engine.run(torch.zeros(1, 1, 9000))
    assert engine.ref_value is not None and engine._ref_skipped % 128 != 0  # settled, off the grid
    engine.set_knobs([1.0, 0.0, 1.0])
    y = engine.process(torch.zeros(1, 1, 100))
    assert engine.ref_state[2]["pos"] == engine.state[2]["pos"]
    assert float(y.abs().max()) < 1e-6


def test_silence_reference_settles_and_costs_nothing_when_still():
    model = make("tcn-45-film")
    engine = StreamEngine(model, 256, knobs=[0.3, 0.3, 0.3])
    x = 0.1 * torch.randn(1, 1, 256 * 40, generator=torch.Generator().manual_seed(3))
    y = engine.run(x)
    assert engine.ref_value is not None  # settled: the silence stream no longer runs
    with torch.no_grad():
        raw, _ = model(x, torch.tensor([[0.3, 0.3, 0.3]]))
        silence, _ = model(torch.zeros_like(x), torch.tensor([[0.3, 0.3, 0.3]]))
    assert rel_err(y, raw - silence) < 1e-5
    engine.set_knobs([0.9, 0.3, 0.3])
    assert engine.moving
    engine.process(x[..., :256])
    assert engine.ref_value is None  # the knobs move: the silence stream runs again
