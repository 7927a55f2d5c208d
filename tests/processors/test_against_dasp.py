"""The EQ, compressor and tanh processors against dasp-pytorch, an independent implementation of the same
maths (adapter and its defects: tests/oracles/dasp.py).  Parameters go in normalised, as a controller
emits them; the processor's own denormalisation gives the values handed to dasp."""

import math

import dasp_pytorch.signal as dasp_signal
import pytest
import torch

from nablafx.processors import build_processor
from nablafx.processors.eq import BiquadCascade
from tests.oracles import dasp

FS = 48000
EQS = ["peq", "lowshelf", "highshelf", "peaking", "lowpass", "highpass"]


def make(name, **options):
    return build_processor({"type": name, **options}, FS).double()


def _real_bands(proc: BiquadCascade, params: torch.Tensor):
    """(gain_db, cutoff_hz, q), each (batch, K), as the processor denormalises ``params (batch, P)``."""
    real = proc.denormalise(params.unsqueeze(-1))
    cols = {"gain_db": [], "cutoff_hz": [], "q": []}
    for band in proc._bands:
        cols["cutoff_hz"].append(real[f"{band}_cutoff_hz"][:, 0, 0])
        cols["q"].append(real[f"{band}_q"][:, 0, 0])
        cols["gain_db"].append(real.get(f"{band}_gain_db", torch.zeros_like(real[f"{band}_q"]))[:, 0, 0])
    return tuple(torch.stack(cols[k], -1) for k in ("gain_db", "cutoff_hz", "q"))


def _dasp_sos(proc: BiquadCascade, params: torch.Tensor):
    gain_db, cutoff_hz, q = _real_bands(proc, params)
    bs, as_ = zip(*(dasp.biquad(kind, gain_db[:, k], cutoff_hz[:, k], q[:, k], FS) for k, kind in enumerate(proc.kinds)))
    return torch.cat([torch.stack(bs, 1), torch.stack(as_, 1)], dim=-1)  # (batch, K, 6)


def _params_with_corners(proc, n_random=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    corners = torch.tensor([[0.0], [1.0]], dtype=torch.float64).expand(2, proc.n_params)
    return torch.cat([corners, torch.rand(n_random, proc.n_params, generator=g, dtype=torch.float64)])


@pytest.mark.parametrize("name", EQS)
def test_frequency_response_matches_dasp_over_the_whole_range(name):
    """Every normalised value from 0 to 1 (both corners + 200 random points): the processor's complex
    response equals that of dasp's coefficients for the same real parameters, to 1e-9 relative."""
    proc = make(name)
    params = _params_with_corners(proc)
    ours = proc.frequency_response(params, n_fft=4096)
    theirs = dasp_signal.fft_sosfreqz(_dasp_sos(proc, params), n_fft=4096)
    err = ((ours - theirs).abs() / theirs.abs().clamp_min(1e-6)).max()
    assert float(err) < 1e-9


@pytest.mark.parametrize("name", EQS)
def test_filtered_audio_matches_dasp(name):
    """Processor output (exact recursion) against dasp filtering by frequency sampling, within dasp's
    time-aliasing bound (from the exact impulse response) + 1e-11, on 2^15 samples of stereo noise.
    Normalised values are drawn in [0.05, 0.95]: at the very corners (10 Hz high pass with Q = 10) the
    impulse response outlives any practical FFT and only the responses above compare."""
    proc = make(name)
    n, batch = 2 ** 15, 3
    g = torch.Generator().manual_seed(7)
    params = 0.05 + 0.9 * torch.rand(batch, proc.n_params, generator=g, dtype=torch.float64)
    x = 0.5 * torch.randn(batch, 2, n, generator=g, dtype=torch.float64)
    ours, _ = proc(x, params.unsqueeze(-1), None)
    if name == "peq":
        theirs = dasp.parametric_eq(x, FS, *_real_bands(proc, params))
    else:
        theirs = dasp_signal.sosfilt_via_fsm(_dasp_sos(proc, params), x)
    impulse = torch.zeros(batch, 1, 8 * n, dtype=torch.float64)
    impulse[..., 0] = 1.0
    h, _ = proc(impulse, params.unsqueeze(-1), None)
    for i in range(batch):
        bound = dasp.fsm_error_bound(h[i, 0], n, float(x[i].abs().max()))
        assert bound < 1e-6, "signal too short for a meaningful comparison"
        assert float((ours[i] - theirs[i]).abs().max()) <= bound + 1e-11


def _staircase(levels_db, step, sign_flip=True):
    """Constant |x| per step (a square wave at f_s/2), rising levels: the gain reduction never falls."""
    x = torch.cat([torch.full((step,), 10 ** (lv / 20), dtype=torch.float64) for lv in levels_db])
    if sign_flip:
        x = x * torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(x.numel() // 2 + 1)[: x.numel()]
    return x


def test_compressor_processor_matches_dasp_while_the_reduction_rises():
    """Normalised parameters → the compressor processor (any release) against dasp's compressor (which
    has no release, defect D3) on rising staircases of constant-magnitude audio, where a release
    cannot act.  Tolerance: dasp's time-aliasing of its gain smoother, ``max r · α^(n_fft−N+1)`` dB,
    turned into amplitude, + 1e-12."""
    proc = make("compressor")
    names = proc.param_names
    settings = [dict(threshold_db=-30.0, ratio=4.0, attack_ms=5.0, release_ms=5.0, knee_db=6.0, makeup_db=0.0),
                dict(threshold_db=-12.0, ratio=20.0, attack_ms=0.5, release_ms=800.0, knee_db=0.0, makeup_db=6.0),
                dict(threshold_db=-45.0, ratio=2.0, attack_ms=20.0, release_ms=20.0, knee_db=24.0, makeup_db=-3.0)]
    x = _staircase(range(-70, 7, 4), 2400).reshape(1, 1, -1).expand(len(settings), 1, -1)
    params = torch.tensor([[proc.param_ranges[k].normalise(s[k]) for k in names] for s in settings],
                          dtype=torch.float64)
    ours, _ = proc(x, params.unsqueeze(-1), None)
    real = {k: proc.denormalise(params.unsqueeze(-1))[k][:, 0, 0] for k in names}
    theirs = dasp.compressor(x, FS, real["threshold_db"], real["ratio"], real["attack_ms"], real["knee_db"],
                             real["makeup_db"])
    n = x.shape[-1]
    for i, s in enumerate(settings):
        alpha = math.exp(-1000.0 / (float(real["attack_ms"][i]) * FS))
        max_reduction_db = 6.0 - s["threshold_db"] + s["knee_db"] / 2  # ≥ L − G(L) for every level here
        bound_db = max_reduction_db * alpha ** (dasp.fsm_n_fft(n) - n + 1)
        tol = float(ours[i].abs().max()) * math.log(10) / 20 * bound_db * 1.01 + 1e-12
        assert bound_db < 1e-6
        assert float((ours[i] - theirs[i]).abs().max()) <= tol


def test_tanh_processor_matches_dasp_distortion():
    """``tanh`` processor at bias 0 (normalised 0.5) is dasp's distortion; drives over the whole range,
    stereo (dasp alone fails on stereo, defect D1)."""
    proc = make("tanh")
    drive = torch.linspace(0, 1, 9, dtype=torch.float64)
    params = torch.stack([drive, torch.full_like(drive, 0.5)], -1).unsqueeze(-1)  # (9, 2, 1)
    x = 2 * torch.randn(9, 2, 1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours, _ = proc(x, params, None)
    theirs = dasp.distortion(x, FS, proc.denormalise(params)["drive_db"][:, 0, 0])
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-15)
