"""Compressor against a plain per-sample loop of its own equations; attack and release both honoured;
streaming; gradients."""

import math

import numpy as np
import pytest
import torch

from nablafx.dsp.compressor import compressor, gain_computer, time_constant_to_coeff

FS = 48000


def reference_loop(x, fs, thr, ratio, att_ms, rel_ms, knee, makeup):
    """The module docstring's equations, one sample at a time, float64."""
    a_att = math.exp(-1000.0 / (att_ms * fs))
    a_rel = math.exp(-1000.0 / (rel_ms * fs))
    r1 = r2 = 0.0
    y = np.zeros_like(x)
    thr, ratio, knee, makeup = (np.broadcast_to(np.asarray(v, dtype=float), x.shape) for v in (thr, ratio, knee, makeup))
    for n, s in enumerate(x):
        lvl = 20 * math.log10(max(abs(s), 1e-8))
        over = lvl - thr[n]
        if 2 * over < -knee[n]:
            g = lvl
        elif 2 * over > knee[n]:
            g = thr[n] + over / ratio[n]
        else:
            g = lvl + (1 / ratio[n] - 1) * (over + knee[n] / 2) ** 2 / (2 * knee[n])
        r = max(lvl - g, 0.0)
        r1 = max(r, a_rel * r1)
        r2 = a_att * r2 + (1 - a_att) * r1
        y[n] = s * 10 ** ((makeup[n] - r2) / 20)
    return y


def make_signal():
    t = np.arange(6000) / FS
    env = np.where((t > 0.03) & (t < 0.08), 1.0, 0.05)
    return 0.8 * env * np.sin(2 * np.pi * 220 * t) + 0.01 * np.random.default_rng(1).standard_normal(t.size)


@pytest.mark.parametrize("thr,ratio,att,rel,knee,makeup", [
    (-20.0, 4.0, 5.0, 100.0, 6.0, 0.0),
    (-30.0, 10.0, 0.5, 20.0, 0.0, 6.0),
    (-10.0, 2.0, 30.0, 500.0, 12.0, -3.0),
])
def test_matches_per_sample_loop(thr, ratio, att, rel, knee, makeup):
    x = make_signal()
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    y, _, _ = compressor(t(x).reshape(1, 1, -1), FS, t(thr), t(ratio), t(att), t(rel), t(knee), t(makeup))
    ref = reference_loop(x, FS, thr, ratio, att, rel, knee, makeup)
    np.testing.assert_allclose(y[0, 0].numpy(), ref, rtol=1e-9, atol=1e-10)


def test_time_varying_threshold_matches_loop():
    x = make_signal()
    thr = np.linspace(-40, -5, x.size)
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    y, _, _ = compressor(t(x).reshape(1, 1, -1), FS, t(thr).reshape(1, 1, -1), t(4.0), t(3.0), t(80.0), t(6.0), t(0.0))
    np.testing.assert_allclose(y[0, 0].numpy(), reference_loop(x, FS, thr, 4.0, 3.0, 80.0, 6.0, 0.0), rtol=1e-9, atol=1e-10)


def test_gain_computer_is_continuous_across_the_knee():
    lvl = torch.linspace(-40, 0, 4001, dtype=torch.float64)
    g = gain_computer(lvl, torch.tensor(-20.0, dtype=torch.float64), torch.tensor(4.0, dtype=torch.float64),
                      torch.tensor(10.0, dtype=torch.float64))
    assert (g.diff().abs() < 0.02).all()
    assert g[0] == -40 and abs(g[-1].item() - (-20 + 20 / 4)) < 1e-12


def test_hard_knee_is_exact_at_the_threshold():
    """With knee 0 the knee branch is taken at L = T only, and must give G(T) = T (it gave T − 9e−8 dB
    at ratio 4 when the 1e−6 dB guard entered the numerator too)."""
    d = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    for ratio in (1.5, 4.0, 20.0):
        assert gain_computer(d(-20.0), d(-20.0), d(ratio), d(0.0)).item() == -20.0


def _reduction(att_ms, rel_ms):
    n = int(0.6 * FS)
    t = np.arange(n) / FS
    x = np.where((t >= 0.1) & (t < 0.3), 1.0, 0.01)  # a loud step, then quiet again
    td = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    _, _, red = compressor(td(x).reshape(1, 1, -1), FS, td(-20.0), td(10.0), td(att_ms), td(rel_ms), td(0.0), td(0.0))
    return t, red[0, 0].numpy()


def test_attack_time_is_honoured():
    for att in (1.0, 10.0):
        t, red = _reduction(att, 50.0)
        full = red[int(0.29 * FS)]
        # time from the step to 1 − 1/e of the final reduction ≈ the attack time constant
        k = np.argmax(red[int(0.1 * FS):] >= (1 - math.exp(-1)) * full)
        assert abs(k / FS * 1000 - att) < 0.05 * att + 0.05


def test_release_time_is_honoured():
    """dasp-pytorch's compressor ignores its release time; this one does not."""
    decays = {}
    for rel in (20.0, 200.0):
        t, red = _reduction(0.1, rel)
        start = int(0.3 * FS)
        k = np.argmax(red[start:] <= math.exp(-1) * red[start - 1])
        decays[rel] = k / FS * 1000
        assert abs(decays[rel] - rel) < 0.05 * rel + 0.2
    assert decays[200.0] > 5 * decays[20.0]


def test_streaming_equals_offline():
    x = torch.tensor(make_signal()).reshape(1, 1, -1)
    args = [torch.tensor(v, dtype=torch.float64) for v in (-25.0, 6.0, 2.0, 60.0, 4.0, 3.0)]
    y, _, _ = compressor(x, FS, *args)
    state, outs = None, []
    for s in range(0, x.shape[-1], 333):
        yy, state, _ = compressor(x[..., s:s + 333], FS, *args, state=state)
        outs.append(yy)
    torch.testing.assert_close(torch.cat(outs, -1), y, rtol=1e-12, atol=1e-12)


def test_batch_of_time_constants():
    x = torch.tensor(make_signal()).reshape(1, 1, -1).repeat(2, 1, 1)
    td = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    y, _, _ = compressor(x, FS, td(-20.0), td(4.0), td([1.0, 20.0]), td([30.0, 300.0]), td(6.0), td(0.0))
    for i, (a, r) in enumerate([(1.0, 30.0), (20.0, 300.0)]):
        np.testing.assert_allclose(y[i, 0].numpy(), reference_loop(x[i, 0].numpy(), FS, -20.0, 4.0, a, r, 6.0, 0.0),
                                   rtol=1e-9, atol=1e-10)


def test_gradcheck():
    x = torch.tensor(make_signal()[1400:1430]).reshape(1, 1, -1).requires_grad_()
    params = [torch.tensor([v], dtype=torch.float64, requires_grad=True) for v in (-25.0, 4.0, 0.5, 5.0, 6.0, 1.0)]

    def f(x, thr, ratio, att, rel, knee, makeup):
        return compressor(x, FS, thr, ratio, att, rel, knee, makeup)[0]

    assert torch.autograd.gradcheck(f, (x, *params), atol=1e-6, rtol=1e-4)


def test_coefficient():
    assert abs(time_constant_to_coeff(torch.tensor(1.0), 1000).item() - math.exp(-1)) < 1e-7


def test_release_towards_zero_is_a_plain_one_pole_and_finite():
    """Releases so short that α_R underflows (≤ 3e−5 ms at 48 kHz) used to give 0·log 0 = NaN; they
    now mean "no hold": the per-sample loop with α_R = 0, to 1e-9."""
    x = make_signal()
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    for rel in (1e-5, 1e-9, 1e-30):
        rel_t = t(rel).requires_grad_()
        y, _, _ = compressor(t(x).reshape(1, 1, -1), FS, t(-25.0), t(4.0), t(2.0), rel_t, t(6.0), t(0.0))
        np.testing.assert_allclose(y[0, 0].detach().numpy(), reference_loop(x, FS, -25.0, 4.0, 2.0, 1e-300, 6.0, 0.0),
                                   rtol=1e-9, atol=1e-10)
        y.sum().backward()
        assert torch.isfinite(rel_t.grad)


# --- dasp-pytorch as an independent oracle (adapter and its defects: tests/oracles/dasp.py) -------
# dasp smooths the gain with the attack pole alone (no release, defect D3); ours holds the reduction
# with the release, then smooths with the attack.  They define the same map (1) on the static curve,
# (2) whenever the reduction never falls, whatever our release, and (3) when our release → 0.


def _dasp_tolerance(y, alpha, n, max_reduction_db):
    """dasp filters the gain (dB) by frequency sampling: off by ≤ max r · α^(n_fft − n + 1) dB."""
    from tests.oracles import dasp

    bound_db = max_reduction_db * alpha ** (dasp.fsm_n_fft(n) - n + 1)
    assert bound_db < 1e-6, "signal too short for a meaningful comparison"
    return float(y.abs().max()) * math.log(10) / 20 * bound_db * 1.01 + 1e-10  # + FFT round-off


@pytest.mark.parametrize("thr,ratio,knee", [(-20.0, 4.0, 0.0), (-20.0, 4.0, 6.0), (-35.0, 20.0, 24.0),
                                            (-6.0, 1.5, 12.0), (-50.0, 1.0, 10.0)])
def test_static_curve_matches_dasp(thr, ratio, knee):
    """Settled gain of constant-magnitude input at 301 levels from −80 to +10 dBFS (each one batch
    example, attack 0.05 ms, 2400 samples): ours, dasp's and the closed-form curve agree to 1e-9 dB,
    across the knee (including a hard knee, which dasp cannot differentiate: defect D4)."""
    from tests.oracles import dasp

    levels = torch.linspace(-80, 10, 301, dtype=torch.float64)
    x = (10 ** (levels / 20)).reshape(-1, 1, 1) * torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(1200)
    b = levels.numel()
    full = lambda v: torch.full((b,), v, dtype=torch.float64)  # noqa: E731
    ours, _, _ = compressor(x, FS, full(thr).reshape(-1, 1, 1), full(ratio).reshape(-1, 1, 1), full(0.05),
                            full(0.05), full(knee).reshape(-1, 1, 1), full(0.0).reshape(-1, 1, 1))
    theirs = dasp.compressor(x, FS, full(thr), full(ratio), full(0.05), full(knee), full(0.0))
    gain_ours = 20 * torch.log10(ours[:, 0, -1].abs() / x[:, 0, -1].abs())
    gain_dasp = 20 * torch.log10(theirs[:, 0, -1].abs() / x[:, 0, -1].abs())
    lv = levels.numpy()
    over = lv - thr
    closed = np.where(2 * over < -knee, lv, np.where(2 * over > knee, thr + over / ratio,
                      lv + (1 / ratio - 1) * (over + knee / 2) ** 2 / (2 * max(knee, 1e-300))))
    np.testing.assert_allclose(gain_ours.numpy(), closed - lv, rtol=0, atol=1e-9)
    np.testing.assert_allclose(gain_dasp.numpy(), closed - lv, rtol=0, atol=1e-9)


@pytest.mark.parametrize("att,rel", [(1.0, 1.0), (5.0, 5.0), (10.0, 300.0)])
def test_rising_reduction_matches_dasp_whatever_the_release(att, rel):
    """A rising staircase of constant-magnitude levels: the reduction never falls, so our release never
    acts and every sample (onsets included) equals dasp's, within dasp's time-aliasing bound."""
    from tests.oracles import dasp

    levels = np.arange(-60.0, 7.0, 3.0)
    x = np.concatenate([np.full(2400, 10 ** (lv / 20)) for lv in levels]) * np.resize([1.0, -1.0], 2400 * levels.size)
    t = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    xt = torch.tensor(x).reshape(1, 1, -1)
    ours, _, _ = compressor(xt, FS, t(-30.0), t(5.0), t(att), t(rel), t(8.0), t(2.0))
    theirs = dasp.compressor(xt, FS, t(-30.0), t(5.0), t(att), t(8.0), t(2.0))
    tol = _dasp_tolerance(ours, math.exp(-1000 / (att * FS)), x.size, 6.0 + 30.0 + 4.0)
    assert float((ours - theirs).abs().max()) <= tol
    np.testing.assert_allclose(ours[0, 0].numpy(), reference_loop(x, FS, -30.0, 5.0, att, rel, 8.0, 2.0),
                               rtol=1e-9, atol=1e-10)


def test_any_programme_matches_dasp_when_our_release_tends_to_zero():
    """Noise bursts with decays and gaps (the reduction rises and falls): with release → 0 our detector
    is the same single attack pole as dasp's; stereo, channels detected separately."""
    from tests.oracles import dasp

    n = 24000
    g = torch.Generator().manual_seed(5)
    tt = torch.arange(n, dtype=torch.float64) / FS
    env = torch.exp(-((tt % 0.1) * 30)) * (tt % 0.25 < 0.2)
    x = (env * torch.randn(2, 2, n, generator=g, dtype=torch.float64)).clamp(-1, 1)
    args = [torch.tensor(v, dtype=torch.float64) for v in ([-24.0, -10.0], [6.0, 3.0], [2.0, 8.0])]
    knee, makeup = torch.tensor([6.0, 0.0], dtype=torch.float64), torch.tensor([3.0, 0.0], dtype=torch.float64)
    ours, _, _ = compressor(x, FS, args[0].reshape(-1, 1, 1), args[1].reshape(-1, 1, 1), args[2],
                            torch.full((2,), 1e-9, dtype=torch.float64), knee.reshape(-1, 1, 1), makeup.reshape(-1, 1, 1))
    theirs = dasp.compressor(x, FS, args[0], args[1], args[2], knee, makeup)
    for i in range(2):
        # the gain reduction is at most L − T + W/2 ≤ 0 dBFS − T + W/2, and floored at −160 dB: +160
        tol = _dasp_tolerance(ours[i], math.exp(-1000 / (float(args[2][i]) * FS)), n, 160.0 - float(args[0][i]))
        assert float((ours[i] - theirs[i]).abs().max()) <= tol
