"""dasp-pytorch 0.0.1 as an independent oracle — the one place the tests call it.

dasp-pytorch (C. J. Steinmetz et al.) writes some of the same textbook maths as nablafx in a
separate code base: R. Bristow-Johnson's cookbook biquads, the log-domain gain computer with a
quadratic soft knee of Giannoulis, Massberg & Reiss (JAES 2012), and a driven tanh waveshaper.
Agreement with it is evidence that neither side mistyped a formula.  The library never imports it
(README, "Where dasp-pytorch is used").

**Defects of 0.0.1** (last release 2023).  :func:`defects` probes each one; ``tests/oracles/
test_dasp_defects.py`` asserts they are all still there, so a release that fixes one fails that test
and tells us the workaround below can go.

* ``D1 distortion-multichannel`` — :func:`dasp_pytorch.functional.distortion` reshapes its drive with
  ``drive_db.view(bs, chs, -1)``, which needs ``bs·chs`` values: any input with more than one channel
  raises ``RuntimeError``.  *Workaround*: :func:`distortion` folds the channels into the batch.
* ``D2 Distortion-module`` — the ``Distortion`` module sets no ``sample_rate`` (``AttributeError`` in
  ``process_normalized``) and names its parameter ``gain_db`` while the function takes ``drive_db``
  (``TypeError`` once ``sample_rate`` is set).  *Workaround*: never used; we call the function.
* ``D3 compressor-release`` — :func:`dasp_pytorch.functional.compressor` computes no release
  coefficient: one one-pole smoother with the *attack* time acts in both directions, whatever
  ``release_ms`` says.  *Workaround*: :func:`compressor` takes a single ``attack_ms`` and the tests
  compare only where a release cannot matter (gain reduction never decreasing, or our release → 0).
* ``D4 compressor-hard-knee`` — with ``knee_db = 0`` the unused knee branch divides by zero
  (``0/0``), and the masked assignment lets the NaN into the gradients of *threshold* and *knee*
  (forward stays finite unless a sample's level equals the threshold exactly).
  *Workaround*: :func:`compressor` clamps the knee to at least :data:`MIN_KNEE_DB`.
* ``D5 not-implemented`` — ``advanced_distortion``, ``graphic_eq`` and ``expander`` raise
  ``NotImplementedError``.  *Workaround*: not used.

**Differences by design** (not defects), mapped here:

* attack time: dasp's smoothing pole is ``exp(−ln 9 / (f_s·t))`` — ``t`` is the 10 → 90 % rise time —
  ours is ``exp(−1 / (f_s·τ))`` with ``τ`` the time constant, so ``t = τ·ln 9`` (:func:`compressor`
  takes *our* τ and converts).
* compressor side chain: dasp sums the channels into one detector; ours detects each channel.
  :func:`compressor` folds channels into the batch so both detect per channel.
* compressor ballistics: dasp smooths the gain (dB) with the attack pole only; ours holds the gain
  reduction with the release (peak-hold decay), then smooths it with the attack pole.  Both are the
  same map whenever the reduction never decreases, and whenever our release tends to zero.
* parametric EQ: dasp has six bands (low shelf, four peaking, high shelf), ours five (low shelf,
  three peaking, high shelf).  :func:`parametric_eq` puts dasp's last peaking band at 0 dB, where the
  cookbook peaking filter is exactly the identity (``b == a``).  Q, gain (``A = 10^(g/40)``) and the
  corner frequency mean the same thing on both sides.
* filtering by frequency sampling: dasp applies its IIR filters (EQ cascade, compressor smoother)
  as the FFT of ``B/A`` on ``n_fft = 2^⌈log2(2N − 1)⌉`` bins for an ``N``-sample input, i.e. the
  impulse response time-aliased modulo ``n_fft``.  Its output differs from the exact recursion by at
  most ``max|x| · Σ_{j ≥ n_fft − N + 1} |h[j]|`` (:func:`fsm_error_bound`), which the tests use as
  their tolerance.
* kind names: ``lowshelf`` ↔ ``low_shelf``, ``highshelf`` ↔ ``high_shelf``, ``lowpass`` ↔ ``low_pass``,
  ``highpass`` ↔ ``high_pass``.
"""

from __future__ import annotations

import math

import dasp_pytorch
import dasp_pytorch.functional as dasp_fn
import dasp_pytorch.signal as dasp_signal
import torch

VERSION = "0.0.1"  # the release these defects were found in
MIN_KNEE_DB = 1e-9  # D4: dasp's knee must stay > 0 (costs ≤ MIN_KNEE_DB/8 dB, at a level exactly at threshold)
KIND_NAMES = {"lowshelf": "low_shelf", "highshelf": "high_shelf", "peaking": "peaking",
              "lowpass": "low_pass", "highpass": "high_pass"}
LN9 = math.log(9.0)


# --- the adapter ---------------------------------------------------------------------------------

def biquad(kind: str, gain_db: torch.Tensor, cutoff_hz: torch.Tensor, q: torch.Tensor, sample_rate: float):
    """dasp's cookbook biquad for our ``kind``; parameters ``(batch,)``; returns ``(b, a)`` each ``(batch, 3)``."""
    return dasp_signal.biquad(gain_db, cutoff_hz, q, sample_rate, KIND_NAMES[kind])


def parametric_eq(x: torch.Tensor, sample_rate: float, gain_db: torch.Tensor, cutoff_hz: torch.Tensor,
                  q: torch.Tensor) -> torch.Tensor:
    """Our five-band layout (low shelf, three peaking, high shelf) through dasp's six-band EQ.

    x: ``(batch, channels, samples)``; gain_db, cutoff_hz, q: ``(batch, 5)``.  dasp's fourth peaking
    band (``band3``) is set to 0 dB (identity) at 1 kHz, Q 0.707.
    """
    g, f, qq = (v.to(x.dtype) for v in (gain_db, cutoff_hz, q))
    unity = (torch.zeros_like(g[:, 0]), torch.full_like(f[:, 0], 1000.0), torch.full_like(qq[:, 0], 0.707))
    args = []
    for k in range(4):  # low shelf, band0, band1, band2
        args += [g[:, k], f[:, k], qq[:, k]]
    args += list(unity)  # band3: identity
    args += [g[:, 4], f[:, 4], qq[:, 4]]  # high shelf
    return dasp_fn.parametric_eq(x, sample_rate, *args)


def biquad_filter(x: torch.Tensor, kind: str, gain_db, cutoff_hz, q, sample_rate: float) -> torch.Tensor:
    """One cookbook biquad applied the dasp way (frequency sampling); parameters ``(batch,)``."""
    b, a = biquad(kind, gain_db.to(x.dtype), cutoff_hz.to(x.dtype), q.to(x.dtype), sample_rate)
    return dasp_signal.sosfilt_via_fsm(torch.cat([b, a], dim=-1).unsqueeze(1), x)


def parametric_eq_sos(gain_db: torch.Tensor, cutoff_hz: torch.Tensor, q: torch.Tensor, sample_rate: float):
    """dasp's coefficients for our five bands: ``(b, a)`` each ``(batch, 5, 3)`` (same order as ours)."""
    kinds = ("lowshelf", "peaking", "peaking", "peaking", "highshelf")
    bs, as_ = zip(*(biquad(k, gain_db[:, i], cutoff_hz[:, i], q[:, i], sample_rate) for i, k in enumerate(kinds)))
    return torch.stack(bs, 1), torch.stack(as_, 1)


def distortion(x: torch.Tensor, sample_rate: float, drive_db: torch.Tensor) -> torch.Tensor:
    """``tanh(10^(drive_db/20)·x)`` for any number of channels (D1: channels folded into the batch).

    drive_db: ``(batch,)``.
    """
    bs, chs, n = x.shape
    y = dasp_fn.distortion(x.reshape(bs * chs, 1, n), sample_rate, drive_db.reshape(bs, 1).expand(bs, chs).reshape(-1))
    return y.reshape(bs, chs, n)


def compressor(x: torch.Tensor, sample_rate: float, threshold_db, ratio, attack_ms, knee_db, makeup_db) -> torch.Tensor:
    """dasp's compressor with *our* conventions: per-channel detection, ``attack_ms`` a time constant τ.

    Parameters are ``(batch,)`` tensors.  There is no release argument (D3).  The knee is clamped
    to :data:`MIN_KNEE_DB` (D4).
    """
    bs, chs, n = x.shape

    def per_channel(v):
        return torch.as_tensor(v, dtype=x.dtype).reshape(-1, 1).expand(bs, chs).reshape(-1)

    att = per_channel(attack_ms) * LN9  # τ → 10–90 % rise time
    y = dasp_fn.compressor(x.reshape(bs * chs, 1, n), sample_rate, per_channel(threshold_db), per_channel(ratio),
                           att, att,  # release_ms: ignored by dasp (D3); passed equal to attack
                           per_channel(knee_db).clamp_min(MIN_KNEE_DB), per_channel(makeup_db))
    return y.reshape(bs, chs, n)


def fsm_n_fft(n: int) -> int:
    """dasp's FFT size for an ``n``-sample input: ``2^⌈log2(2n − 1)⌉``."""
    return 2 ** math.ceil(math.log2(2 * n - 1))


def fsm_error_bound(impulse_response: torch.Tensor, n: int, peak: float) -> float:
    """Largest difference between dasp's frequency-sampled filtering and the exact recursion.

    ``impulse_response``: the exact IR ``h`` (1-D, long enough to have decayed), ``n`` the input
    length, ``peak`` = ``max|x|``.  Output sample ``y[m]`` picks up ``Σ_k x[k] (h_alias − h)``; for
    each ``m`` the aliased indices are distinct and all ``≥ n_fft − n + 1``, hence the bound.
    """
    start = fsm_n_fft(n) - n + 1
    return peak * float(impulse_response[start:].abs().sum())


# --- probes for the defects: True while the defect is present -------------------------------------

def _d1_distortion_multichannel() -> bool:
    x = torch.zeros(2, 2, 16, dtype=torch.float64)
    try:
        dasp_fn.distortion(x, 48000, torch.tensor([6.0, 12.0], dtype=torch.float64))
    except RuntimeError:
        return True
    return False


def _d2_distortion_module() -> bool:
    module = dasp_pytorch.Distortion()
    x = torch.zeros(1, 1, 16, dtype=torch.float64)
    p = torch.full((1, 1), 0.5, dtype=torch.float64)
    try:
        module.process_normalized(x, p)
    except AttributeError:
        pass
    else:
        return False
    module.sample_rate = 48000
    try:
        module.process_normalized(x, p)
    except TypeError:
        return True
    return False


def _compress_step(release_ms: float, knee_db: float = 6.0, threshold_db: float = -20.0):
    n = 4800
    x = torch.full((1, 1, n), 0.01, dtype=torch.float64)
    x[..., 1000:2000] = 0.9  # loud burst, then quiet: a release would show after sample 2000
    t = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    return x, t(threshold_db), t(4.0), t(2.0), t(release_ms), t(knee_db), t(0.0)


def _d3_compressor_ignores_release() -> bool:
    x, thr, ratio, att, _, knee, makeup = _compress_step(0.0)
    fast = dasp_fn.compressor(x, 48000, thr, ratio, att, torch.tensor([5.0], dtype=torch.float64), knee, makeup)
    slow = dasp_fn.compressor(x, 48000, thr, ratio, att, torch.tensor([500.0], dtype=torch.float64), knee, makeup)
    return bool(torch.equal(fast, slow))


def _d4_compressor_hard_knee_nan_grad() -> bool:
    x, thr, ratio, att, rel, _, makeup = _compress_step(50.0)
    thr = thr.clone().requires_grad_()
    knee = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    y = dasp_fn.compressor(x, 48000, thr, ratio, att, rel, knee, makeup)
    y.sum().backward()
    return bool(torch.isfinite(y).all()) and bool(torch.isnan(thr.grad).any() or torch.isnan(knee.grad).any())


def _d5_not_implemented() -> bool:
    x = torch.zeros(1, 1, 16, dtype=torch.float64)
    z = torch.zeros(1, dtype=torch.float64)
    calls = [lambda: dasp_fn.advanced_distortion(x, 48000, z, z, z, z),
             lambda: dasp_fn.graphic_eq(x, 48000),
             lambda: dasp_fn.expander()]
    raised = 0
    for call in calls:
        try:
            call()
        except NotImplementedError:
            raised += 1
    return raised == len(calls)


DEFECTS = {
    "D1 distortion-multichannel": _d1_distortion_multichannel,
    "D2 Distortion-module": _d2_distortion_module,
    "D3 compressor-release": _d3_compressor_ignores_release,
    "D4 compressor-hard-knee": _d4_compressor_hard_knee_nan_grad,
    "D5 not-implemented": _d5_not_implemented,
}


def defects() -> dict[str, bool]:
    """``{defect: still present?}`` for the installed dasp-pytorch."""
    return {name: probe() for name, probe in DEFECTS.items()}
