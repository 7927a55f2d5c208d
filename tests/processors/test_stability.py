"""Gray-box filters stay stable for any value a controller can emit.

Controllers end in a sigmoid, so every normalised parameter can be anywhere in [0, 1] — in float32
both ends are reached exactly.  For every biquad-based processor and the tone stack, the poles of the
coefficients the processor itself produces (``coefficients()``, float64 — the same call the recursive
and time-varying paths make) must lie strictly inside the unit circle, by at least :data:`MARGIN`:

* a dense grid: 41 values per parameter, ends included.  A cascade's sections each depend on their
  own band's (gain, cutoff, Q) only, so for the 15-parameter EQ every band runs over the full 41³
  grid of its own three parameters;
* a hypothesis search over the whole [0, 1]^P, steered towards the largest pole radius;
* sample rates 16, 44.1, 48 and 96 kHz (the corner-frequency ranges are written for 44.1/48 kHz and
  clipped below Nyquist elsewhere).

The tightest cases are genuine: a 30 Hz peaking band at Q 10 and +24 dB (radius ≈ 1 − 2.5e−5 at
96 kHz) and the 10 Hz high pass at Q 10; they are stable by construction, and float64 recursion
handles them.  The tone stack had a real defect — a pole on the unit circle at bass 0, mid 1 — fixed
in :mod:`nablafx.dsp.tonestack` (``MID_MAX``).
"""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from nablafx.processors import build_processor

BIQUADS = ["peq", "lowshelf", "highshelf", "peaking", "lowpass", "highpass"]
PROCESSORS = [*BIQUADS, "tonestack-fender", "tonestack-marshall"]
RATES = [16000, 44100, 48000, 96000]
MARGIN = 1e-5  # every pole radius ≤ 1 − MARGIN
GRID = 41


def make(name, sample_rate):
    if name.startswith("tonestack"):
        return build_processor({"type": "tonestack", "circuit": name.split("-")[1]}, sample_rate)
    return build_processor({"type": name}, sample_rate)


def pole_radii(a: torch.Tensor) -> np.ndarray:
    """Largest |pole| per filter for denominators ``a (..., order+1)`` (float64 companion eigenvalues)."""
    a = a.detach().to(torch.float64).numpy()
    a = a.reshape(-1, a.shape[-1])
    order = a.shape[-1] - 1
    comp = np.zeros((a.shape[0], order, order))
    comp[:, 0, :] = -a[:, 1:] / a[:, :1]
    comp[:, np.arange(1, order), np.arange(order - 1)] = 1.0
    return np.abs(np.linalg.eigvals(comp)).max(-1)


def grid_params(proc) -> torch.Tensor:
    """(n, P) normalised parameters: the full GRID^k grid of each section's own k parameters."""
    axis = torch.linspace(0, 1, GRID, dtype=torch.float64)
    if proc.type_name == "tonestack":
        return torch.cartesian_prod(axis, axis, axis)
    per_band = {}
    for i, name in enumerate(proc.param_names):
        per_band.setdefault(name.rsplit("_", 2 if name.endswith(("_db", "_hz")) else 1)[0], []).append(i)
    k = max(len(v) for v in per_band.values())
    cube = torch.cartesian_prod(*[axis] * k).reshape(-1, k)
    params = torch.zeros(cube.shape[0], proc.n_params, dtype=torch.float64)
    for cols in per_band.values():
        params[:, cols] = cube[:, : len(cols)]
    return params


def test_grid_covers_each_band():
    proc = make("peq", 48000)
    params = grid_params(proc)
    assert params.shape == (GRID ** 3, 15)
    for band in ("low_shelf", "band1", "band2", "band3", "high_shelf"):
        cols = [i for i, n in enumerate(proc.param_names) if n.startswith(band)]
        assert torch.unique(params[:, cols], dim=0).shape[0] == GRID ** 3
    lp = make("lowpass", 48000)
    assert torch.unique(grid_params(lp), dim=0).shape[0] == GRID ** 2


@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize("name", PROCESSORS)
def test_poles_inside_the_unit_circle_on_a_dense_grid(name, sample_rate):
    proc = make(name, sample_rate)
    params = grid_params(proc)
    _, a = proc.coefficients(params)
    assert a.dtype == torch.float64
    radius = pole_radii(a)
    worst = int(radius.argmax() // a[0].shape[0]) if a.dim() == 3 else int(radius.argmax())
    assert radius.max() <= 1 - MARGIN, f"{name} @ {sample_rate} Hz: radius {radius.max()!r} at {params[worst].tolist()}"


@pytest.mark.parametrize("name", PROCESSORS)
def test_poles_inside_the_unit_circle_hypothesis(name):
    procs = {fs: make(name, fs) for fs in RATES}
    n_params = procs[48000].n_params

    @settings(max_examples=150, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(RATES), st.lists(st.floats(0.0, 1.0), min_size=n_params, max_size=n_params))
    def check(sample_rate, values):
        _, a = procs[sample_rate].coefficients(torch.tensor([values], dtype=torch.float64))
        radius = float(pole_radii(a).max())
        target(radius, label="pole radius")
        assert radius <= 1 - MARGIN, f"{name} @ {sample_rate} Hz: radius {radius!r} at {values}"

    check()


@pytest.mark.parametrize("name", ["peaking", "highpass", "tonestack-fender"])
def test_float32_controller_output_at_the_extremes_runs_stably(name):
    """Saturated float32 sigmoids (exactly 0 and 1) through the processor itself: the impulse response
    is finite and decays (its last 10 % holds < 1e-6 of its energy) — poles inside by more than
    rounding."""
    proc = make(name, 48000)
    worst, worst_r = None, -1.0
    for corner in torch.cartesian_prod(*[torch.tensor([0.0, 1.0])] * proc.n_params).reshape(-1, proc.n_params):
        r = float(pole_radii(proc.coefficients(corner.reshape(1, -1).double())[1]).max())
        if r > worst_r:
            worst, worst_r = corner, r
    params = torch.sigmoid(torch.where(worst > 0.5, 200.0, -200.0)).reshape(1, -1, 1)  # float32 0.0 / 1.0 exactly
    assert set(params.flatten().tolist()) <= {0.0, 1.0}
    n = 2 ** 19
    x = torch.zeros(1, 1, n)
    x[..., 0] = 1.0
    h, _ = proc(x, params, None)
    energy = h.double().square().flatten()
    assert torch.isfinite(energy).all()
    assert float(energy[-n // 10:].sum()) < 1e-6 * float(energy.sum())
