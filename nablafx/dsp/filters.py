"""Recursive (IIR) filtering with carried state, frequency responses, frequency-sampling filters and
the bilinear transform.

Two ways to run a filter ``B(z)/A(z)``:

* **time-domain recursion** (:func:`iir_filter`, :func:`sos_filter`): exact, stateful, streaming ==
  offline.  The all-pole part runs in ``torchaudio.functional.lfilter`` (C++/CUDA loop with an
  analytic backward), always with ``clamp=False`` — the same code path in training and evaluation.
  State is direct-form I: the last ``M`` inputs and last ``N`` outputs, so any block length
  (even shorter than the order) continues exactly where the previous block stopped.
* **frequency sampling** (:func:`freqz`, :func:`fsm_impulse_response`): ``H`` sampled on an FFT grid
  and turned into an FIR of ``n_taps`` (the IIR response time-aliased onto ``n_fft`` samples, then
  truncated), run by :func:`nablafx.dsp.fir.fir_filter`.  Fast and parallel on GPUs, approximate
  where the impulse response outlives ``n_taps``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio.functional as taf

IIRState = tuple[torch.Tensor, torch.Tensor]  # (past inputs (B, C, M), past outputs (B, C, N))


def _batch_coeffs(c: torch.Tensor, batch: int) -> torch.Tensor:
    if c.dim() == 1:
        return c.unsqueeze(0).expand(batch, -1)
    if c.dim() != 2 or c.shape[0] not in (1, batch):
        raise ValueError(f"filter coefficients must be (order+1,) or (batch, order+1); got {tuple(c.shape)}")
    return c.expand(batch, -1)


def init_iir_state(batch: int, channels: int, n_b: int, n_a: int, device=None, dtype=None) -> IIRState:
    """Zero state for a filter with ``n_b`` numerator and ``n_a`` denominator coefficients."""
    return (torch.zeros(batch, channels, n_b - 1, device=device, dtype=dtype),
            torch.zeros(batch, channels, n_a - 1, device=device, dtype=dtype))


def iir_filter(x: torch.Tensor, b: torch.Tensor, a: torch.Tensor,
               state: IIRState | None = None) -> tuple[torch.Tensor, IIRState]:
    """``y = B(z)/A(z) x`` with carried state.

    x: ``(batch, channels, samples)``; b: ``(M+1,)`` or ``(batch, M+1)``; a: ``(N+1,)`` or
    ``(batch, N+1)`` (normalised here by ``a[..., 0]``); state: ``(past x (B, C, M), past y (B, C, N))``
    or ``None`` for silence.  Returns ``(y, new_state)``.

    The recursion runs in float64 whatever the input dtype (``y`` comes back in it; the state stays
    float64): in float32, direct-form sections with low corner frequencies (poles near ``z = 1``)
    amplify round-off to ~1e-4 of the signal, and block-wise and offline runs would drift apart.
    """
    batch, channels, n = x.shape
    if state is not None and n == 0:
        return x, state
    out_dtype = x.dtype
    x = x.to(torch.float64)
    b = _batch_coeffs(b, batch).to(x.dtype)
    a = _batch_coeffs(a, batch).to(x.dtype)
    b = b / a[:, :1]
    a = a / a[:, :1]
    m_ord, n_ord = b.shape[-1] - 1, a.shape[-1] - 1
    if state is None:
        state = init_iir_state(batch, channels, m_ord + 1, n_ord + 1, x.device, x.dtype)
    x_hist, y_hist = state
    # FIR part over past + present inputs: v[n] = Σ_k b_k x[n − k]
    xp = torch.cat([x_hist.to(x.dtype), x], dim=-1)
    w = b.flip(-1).repeat_interleave(channels, dim=0).unsqueeze(1)  # (B·C, 1, M+1)
    v = F.conv1d(xp.reshape(1, batch * channels, -1), w, groups=batch * channels).reshape(batch, channels, n)
    if n_ord == 0:
        y = v
    else:
        # Past outputs enter as an excitation of the all-pole filter on the first N samples:
        # e[n] = −Σ_{k=n+1..N} a_k y[n − k],   n = 0 … N−1.
        y_ext = torch.cat([y_hist.to(x.dtype), x.new_zeros(batch, channels, n_ord - 1)], dim=-1)
        wa = a[:, 1:].flip(-1).repeat_interleave(channels, dim=0).unsqueeze(1)  # (B·C, 1, N)
        e = -F.conv1d(y_ext.reshape(1, batch * channels, -1), wa, groups=batch * channels)
        e = e.reshape(batch, channels, n_ord)
        if n < n_ord:
            e = e[..., :n]
        else:
            e = F.pad(e, (0, n - n_ord))
        delta = torch.zeros_like(a)
        delta[:, 0] = 1.0
        # lfilter with batching: waveform (..., num_filters, time) with one filter per example
        y = taf.lfilter((v + e).transpose(0, 1), a, delta, clamp=False, batching=True).transpose(0, 1)
    new_x_hist = xp[..., xp.shape[-1] - m_ord:] if m_ord > 0 else xp[..., :0]
    yp = torch.cat([y_hist.to(x.dtype), y], dim=-1)
    new_y_hist = yp[..., yp.shape[-1] - n_ord:] if n_ord > 0 else yp[..., :0]
    return y.to(out_dtype), (new_x_hist, new_y_hist)


def sos_filter(x: torch.Tensor, b: torch.Tensor, a: torch.Tensor,
               state: list[IIRState] | None = None) -> tuple[torch.Tensor, list[IIRState]]:
    """A cascade of sections. b, a: ``(batch, K, order+1)`` or ``(K, order+1)``; state: one per section."""
    n_sections = b.shape[-2]
    if state is None:
        state = [None] * n_sections
    new_state = []
    for k in range(n_sections):
        x, s = iir_filter(x, b[..., k, :], a[..., k, :], state[k])
        new_state.append(s)
    return x, new_state


def change_points(params: torch.Tensor) -> list[int]:
    """Sample indices (after 0) where any value of ``params (B, P, T)`` differs from the previous one."""
    if params.shape[-1] <= 1:
        return []
    changed = (params[..., 1:] != params[..., :-1]).flatten(0, -2).any(dim=0)
    return (torch.nonzero(changed).flatten() + 1).tolist()


def sos_filter_tv(x: torch.Tensor, params: torch.Tensor, design, state: list[IIRState] | None = None):
    """Cascade filtering with time-varying coefficients, held constant between changes.

    ``params``: ``(batch, P, samples)`` — piecewise constant (e.g. a controller's frame-rate output);
    ``design(p)`` maps ``(batch, P)`` to ``(b, a)`` of shape ``(batch, K, order+1)``.  The block is cut
    wherever ``params`` changes; state is carried across cuts, so the result does not depend on how the
    signal is split into blocks.
    """
    bounds = [0, *change_points(params), x.shape[-1]]
    outs = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        b, a = design(params[..., start])
        y, state = sos_filter(x[..., start:stop], b, a, state)
        outs.append(y)
    return torch.cat(outs, dim=-1), state


def freqz(b: torch.Tensor, a: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Complex response ``B(e^{jω})/A(e^{jω})`` at ``ω = 2πk/n_fft``, ``k = 0 … n_fft/2``.

    b, a: ``(..., order+1)``; returns ``(..., n_fft//2 + 1)``.  For ``(..., K, order+1)`` cascades use
    :func:`sos_freqz`.
    """
    return torch.fft.rfft(b, n_fft) / torch.fft.rfft(a, n_fft)


def sos_freqz(b: torch.Tensor, a: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Response of a cascade ``(..., K, order+1)`` → ``(..., n_fft//2 + 1)``."""
    return freqz(b, a, n_fft).prod(dim=-2)


def fsm_impulse_response(response: torch.Tensor, n_taps: int) -> torch.Tensor:
    """FIR taps from a frequency response sampled on a rfft grid (frequency sampling method).

    ``response``: ``(..., n_fft//2 + 1)`` complex; the result is the inverse FFT (the true impulse
    response time-aliased onto ``n_fft`` samples) truncated to ``n_taps ≤ n_fft``.
    """
    n_fft = 2 * (response.shape[-1] - 1)
    if n_taps > n_fft:
        raise ValueError(f"n_taps={n_taps} exceeds n_fft={n_fft}")
    return torch.fft.irfft(response, n_fft)[..., :n_taps]


def bilinear_matrix(order: int) -> np.ndarray:
    """``M[k, j]`` = coefficient of ``z^-j`` in ``(1 − z⁻¹)^k (1 + z⁻¹)^(order − k)``."""
    mat = np.zeros((order + 1, order + 1))
    for k in range(order + 1):
        poly = np.array([1.0])
        for _ in range(k):
            poly = np.convolve(poly, [1.0, -1.0])
        for _ in range(order - k):
            poly = np.convolve(poly, [1.0, 1.0])
        mat[k] = poly
    return mat


def bilinear(b_s: torch.Tensor, a_s: torch.Tensor, sample_rate: float,
             prewarp_hz: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear transform ``s = c (1 − z⁻¹)/(1 + z⁻¹)`` of an analog ``Σ b_k s^k / Σ a_k s^k``.

    b_s, a_s: ``(..., order+1)`` in *ascending* powers of ``s``; ``c = 2·sample_rate``, or
    ``2π f / tan(π f / sample_rate)`` with ``prewarp_hz = f``.  Returns digital ``(b, a)``
    (ascending powers of ``z⁻¹``) normalised so ``a[..., 0] == 1``.
    """
    order = a_s.shape[-1] - 1
    if b_s.shape[-1] != order + 1:
        raise ValueError("bilinear: b_s and a_s must have the same length (pad with zeros)")
    if prewarp_hz is None:
        c = 2.0 * sample_rate
    else:
        c = 2.0 * math.pi * prewarp_hz / math.tan(math.pi * prewarp_hz / sample_rate)
    mat = torch.as_tensor(bilinear_matrix(order), dtype=a_s.dtype, device=a_s.device)
    powers = torch.as_tensor([c ** k for k in range(order + 1)], dtype=a_s.dtype, device=a_s.device)
    b = (b_s * powers) @ mat
    a = (a_s * powers) @ mat
    return b / a[..., :1], a / a[..., :1]
