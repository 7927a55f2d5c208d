"""Every processor: ranges and units, defaults, streaming == offline, causality, gradients reaching
every parameter; plus the reference's gray-box processor defects, each shown absent."""

import math

import numpy as np
import pytest
import scipy.signal as ss
import torch

from nablafx.processors import PROCESSORS, ParamRange, build_processor
from nablafx.processors.eq import ParametricEQ

FS = 48000
SPECS = {
    "gain": {},
    "dc_offset": {},
    "phase_inversion": {},
    "peq": {},
    "peq-fsm": {"type": "peq", "method": "fsm", "n_taps": 512, "n_fft": 1024},
    "lowshelf": {},
    "highshelf": {},
    "peaking": {},
    "lowpass": {},
    "highpass": {},
    "fir": {"n_taps": 32},
    "tanh": {},
    "tanh-os4": {"type": "tanh", "oversample": 4},
    "mlp": {"hidden": [8, 8]},
    "mlp-os2-linear": {"type": "mlp", "hidden": [8], "oversample": 2, "os_phase": "linear"},
    "rational": {},
    "rational-os8": {"type": "rational", "oversample": 8},
    "compressor": {},
    "tonestack": {},
}


def make(name):
    spec = {"type": name, **SPECS[name]}
    return build_processor(spec, FS).double()


def test_every_registered_type_is_covered():
    assert set(PROCESSORS) <= {SPECS[n].get("type", n) for n in SPECS}


def signal(n=900, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.5 * torch.randn(batch, 1, n, generator=g, dtype=torch.float64)


def rand_params(proc, batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, proc.n_params, 1, generator=g, dtype=torch.float64)


def run_blocks(proc, x, params, sizes):
    state = proc.init_state(x.shape[0], dtype=x.dtype)
    outs, s = [], 0
    for n in sizes:
        p = params if params.shape[-1] == 1 else params[..., s:s + n]
        y, state = proc(x[..., s:s + n], p, state)
        outs.append(y)
        s += n
    return torch.cat(outs, -1)


@pytest.mark.parametrize("name", list(SPECS))
def test_ranges_have_units_and_denormalise(name):
    proc = make(name)
    assert len(proc.param_ranges) == proc.n_params
    for rng in proc.param_ranges.values():
        assert isinstance(rng, ParamRange)
        lo_hi = rng.denormalise(torch.tensor([0.0, 1.0], dtype=torch.float64))
        np.testing.assert_allclose(lo_hi.numpy(), [rng.min, rng.max], rtol=1e-12)
        assert 0.0 <= rng.default_normalised <= 1.0


@pytest.mark.parametrize("name", list(SPECS))
def test_streaming_equals_offline_and_causal(name):
    proc = make(name)
    x = signal()
    params = rand_params(proc)
    y, _ = proc(x, params, proc.init_state(2, dtype=x.dtype))
    assert y.shape == x.shape and torch.isfinite(y).all()
    for sizes in ([1, 2, 97, 800], [450, 450], [128] * 7 + [4]):
        yb = run_blocks(proc, x, params, sizes)
        rms = y.pow(2).mean().sqrt()
        assert ((yb - y).abs().max() / rms) < 1e-9, sizes
    x2 = x.clone()
    x2[..., 500:] += 0.3
    y2, _ = proc(x2, params, proc.init_state(2, dtype=x.dtype))
    torch.testing.assert_close(y2[..., :500], y[..., :500], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", list(SPECS))
def test_gradients_reach_everything(name):
    proc = make(name)
    x = signal(400)
    params = rand_params(proc)
    if name == "compressor":  # a rising level crosses the knee while it is the detector's peak
        params = proc.default_params().double().reshape(1, -1, 1).repeat(2, 1, 1)
        x = torch.logspace(-2, 0, 400, dtype=torch.float64) * torch.sin(torch.arange(400) * 0.3)
        x = x.reshape(1, 1, -1).repeat(2, 1, 1)
    x.requires_grad_()
    params.requires_grad_()
    y, _ = proc(x, params, None)
    (y ** 2).mean().backward()
    assert x.grad.abs().sum() > 0
    if proc.n_params:
        assert (params.grad.abs().sum(dim=(0, 2)) > 0).all(), proc.param_names
    for pname, p in proc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", [n for n in SPECS if make(n).supports_time_varying and make(n).n_params])
def test_time_varying_parameters(name):
    proc = make(name)
    x = signal(600)
    frames = torch.rand(2, proc.n_params, 5, dtype=torch.float64)
    params = frames.repeat_interleave(128, dim=-1)[..., :600]
    y, _ = proc(x, params, None)
    yb = run_blocks(proc, x, params, [50, 333, 217])
    torch.testing.assert_close(yb, y, rtol=1e-9, atol=1e-10)
    # inside each frame it equals the static processing of that frame's values, given the same state
    y0, _ = proc(x[..., :128], frames[..., :1], None)
    torch.testing.assert_close(y[..., :128], y0, rtol=1e-9, atol=1e-10)


def test_defaults_are_identity_for_linear_blocks():
    x = signal()
    for name in ("gain", "dc_offset", "peq", "lowshelf", "highshelf", "peaking"):
        proc = make(name)
        p = proc.default_params().double().reshape(1, -1, 1).expand(2, -1, 1)
        y, _ = proc(x, p, None)
        torch.testing.assert_close(y, x, rtol=1e-9, atol=1e-9, msg=name)


def _response_db(proc, params, freqs):
    x = torch.zeros(1, 1, 16384, dtype=torch.float64)
    x[..., 0] = 1.0
    h, _ = proc(x, params, None)
    _, resp = ss.freqz(h[0, 0].numpy(), worN=freqs, fs=FS)
    return 20 * np.log10(np.abs(resp))


def _set(proc, **values):
    p = proc.default_params().double().clone()
    for k, v in values.items():
        p[proc.param_names.index(k)] = proc.param_ranges[k].normalise(v)
    return p.reshape(1, -1, 1)


def test_shelf_processors_are_the_right_way_round():
    """Reference defect 2: its "high shelf" processor was a low shelf."""
    low, high = make("lowshelf"), make("highshelf")
    lo = _response_db(low, _set(low, low_shelf_gain_db=12.0, low_shelf_cutoff_hz=500.0), [20.0, 20000.0])
    hi = _response_db(high, _set(high, high_shelf_gain_db=12.0, high_shelf_cutoff_hz=2000.0), [20.0, 20000.0])
    assert lo[0] > 11.5 and abs(lo[1]) < 0.5
    assert abs(hi[0]) < 0.5 and hi[1] > 11.5
    peq = make("peq")
    p = _set(peq, low_shelf_gain_db=-9.0, high_shelf_gain_db=6.0)
    db = _response_db(peq, p, [20.0, 20000.0])
    assert abs(db[0] + 9.0) < 0.5 and abs(db[1] - 6.0) < 0.5


@pytest.mark.parametrize("name", ["lowshelf", "highshelf", "peq", "peaking", "lowpass", "highpass"])
def test_no_value_error_anywhere_in_the_range(name):
    """Reference defect 2: one of its shelving EQs raised ValueError.  Every corner of the range runs."""
    proc = make(name)
    x = signal(300)
    for corner in (0.0, 1.0):
        p = torch.full((2, proc.n_params, 1), corner, dtype=torch.float64)
        y, _ = proc(x, p, None)
        assert torch.isfinite(y).all()


def test_tanh_processor_works():
    """Reference defect 2: its tanh nonlinearity raised NameError."""
    proc = make("tanh")
    x = signal()
    p = _set(proc, drive_db=12.0, bias=0.0).expand(2, -1, 1)
    y, _ = proc(x, p, None)
    torch.testing.assert_close(y, torch.tanh(10 ** 0.6 * x))


def test_fsm_method_approximates_recursion():
    rec, fsm = make("peq"), build_processor({"type": "peq", "method": "fsm", "n_taps": 4096, "n_fft": 8192}, FS).double()
    p = rand_params(rec)
    x = signal(3000)
    y1, _ = rec(x, p, None)
    y2, _ = fsm(x, p, None)
    assert ((y1 - y2).pow(2).mean() / y1.pow(2).mean()).sqrt() < 1e-3
    assert fsm.receptive_field == 4096 and rec.receptive_field is None


def test_peq_frequency_response_helper():
    peq = ParametricEQ(FS)
    p = rand_params(peq, 1)[..., 0].float()
    h = peq.frequency_response(p, 2048)
    assert h.shape == (1, 1025)


def test_oversampled_nonlinearity_latency():
    lin = make("mlp-os2-linear")
    assert lin.latency_samples == 32 and make("tanh-os4").latency_samples == 0


def test_ranges_override_and_errors_name_the_key():
    g = build_processor({"type": "gain", "ranges": {"gain_db": [-6, 6]}}, FS)
    assert (g.param_ranges["gain_db"].min, g.param_ranges["gain_db"].max) == (-6.0, 6.0)
    with pytest.raises(ValueError, match=r"processors\[3\]\.type: unknown processor 'fuzzbox'; known: .*tanh"):
        build_processor({"type": "fuzzbox"}, FS, key="processors[3]")
    with pytest.raises(ValueError, match=r"processors\[1\]\.drive: unknown option for processor 'tanh'"):
        build_processor({"type": "tanh", "drive": 3}, FS, key="processors[1]")
    with pytest.raises(ValueError, match=r"processors\[0\]\.ranges\.gain: unknown parameter; known: gain_db"):
        build_processor({"type": "gain", "ranges": {"gain": [0, 1]}}, FS, key="processors[0]")
    with pytest.raises(ValueError, match="oversample: 3 not supported"):
        build_processor({"type": "tanh", "oversample": 3}, FS)


def test_compressor_processor_ranges_reach_behaviour():
    proc = make("compressor")
    x = 0.9 * torch.sin(2 * math.pi * 200 * torch.arange(4800, dtype=torch.float64) / FS).reshape(1, 1, -1)
    hard = _set(proc, threshold_db=-40.0, ratio=20.0, attack_ms=0.1, makeup_db=0.0)
    soft = _set(proc, threshold_db=0.0, ratio=1.0, makeup_db=0.0)
    y_hard, _ = proc(x, hard, None)
    y_soft, _ = proc(x, soft, None)
    assert y_hard[..., 2400:].abs().max() < 0.1 * x.abs().max()
    torch.testing.assert_close(y_soft, x)
