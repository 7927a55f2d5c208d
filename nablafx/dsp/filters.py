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

import contextlib
import math

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio.functional as taf

IIRState = tuple[torch.Tensor, torch.Tensor]  # (past inputs (B, C, M), past outputs (B, C, N))

# Export (``nablafx export``): the recursion of ``iir_filter`` runs as block matrices built in the graph
# (``allpole_blocks``) instead of torchaudio's C++ loop, which neither TorchScript nor ONNX can carry.
_BLOCK_RECURSION = {"on": False, "chunk": 64}


@contextlib.contextmanager
def block_recursion(chunk: int = 64):
    """Within this context :func:`iir_filter` runs its recursion by :func:`allpole_blocks` (exportable)."""
    before = dict(_BLOCK_RECURSION)
    _BLOCK_RECURSION.update(on=True, chunk=int(chunk))
    try:
        yield
    finally:
        _BLOCK_RECURSION.update(before)


def block_recursion_on() -> bool:
    return _BLOCK_RECURSION["on"]


def allpole_impulse(a: torch.Tensor, length: int) -> torch.Tensor:
    """First ``length`` samples of the impulse response of ``1/A(z)`` (``a (..., N+1)``, ``a[..., 0] = 1``).

    ``g[k] = (C^k)[0, 0]`` for the companion matrix ``C`` of ``A``; the powers ``C^0 … C^(length-1)``
    come by doubling (``log2(length)`` batched matrix products), so the graph has no loop over samples.
    """
    order = a.shape[-1] - 1
    lead = a.shape[:-1]
    comp = torch.zeros(*lead, order, order, dtype=a.dtype, device=a.device)
    comp[..., 0, :] = -a[..., 1:]
    if order > 1:
        comp[..., 1:, :-1] = torch.eye(order - 1, dtype=a.dtype, device=a.device)
    powers = torch.eye(order, dtype=a.dtype, device=a.device).expand(*lead, 1, order, order)  # (..., 1, N, N)
    step = comp  # C^(len(powers))
    while powers.shape[-3] < length:
        powers = torch.cat([powers, torch.matmul(powers, step.unsqueeze(-3))], dim=-3)
        step = torch.matmul(step, step)
    return powers[..., :length, 0, 0]


def allpole_blocks(w: torch.Tensor, a: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """``y[t] = w[t] − Σ_k a_k y[t−k]`` from rest: ``w (B, C, n)``, ``a (B, N+1)`` with ``a[:, 0] = 1``.

    In chunks of ``L`` samples, all at once: ``Y0 = W Gᵀ`` is every chunk's response from rest (``G``:
    the lower-triangular Toeplitz matrix of :func:`allpole_impulse`), and ``H = G[:, :N] E`` the
    response of a chunk to the ``N`` outputs before it (entering as an excitation of its first ``N``
    samples, as ``iir_filter`` does with its state).  Only the ``N`` outputs carried from chunk to
    chunk are computed in sequence (``N × N`` products); then ``Y = Y0 + P Hᵀ``.  Exact: the same
    recursion, rearranged, in float64.
    """
    batch, channels, n = w.shape
    order = a.shape[-1] - 1
    size = max(min(chunk, n), order)
    nc = -(-n // size)
    if nc * size != n:  # zeros after the end change nothing before it
        w = torch.cat([w, w.new_zeros(batch, channels, nc * size - n)], dim=-1)
    g = allpole_impulse(a, size)  # (B, L)
    idx = torch.arange(size, device=w.device)
    lag = idx[:, None] - idx[None, :]  # [t, j] = t − j
    toeplitz = g[:, lag.clamp(min=0)] * (lag >= 0).to(w.dtype)  # (B, L, L): y[t] = Σ_j G[t, j] w[j]
    y0 = torch.matmul(w.reshape(batch, channels, nc, size), toeplitz.transpose(-1, -2)[:, None])  # (B, C, nc, L)
    # e[t] = −a_(t+N−p) · prev[p] for p ≥ t (prev = the N outputs before the chunk, oldest first)
    t_idx = torch.arange(order, device=w.device)
    k_idx = t_idx[:, None] + order - t_idx[None, :]  # [t, p] = t + N − p
    excite = -a[:, k_idx.clamp(max=order)] * (t_idx[None, :] >= t_idx[:, None]).to(w.dtype)  # (B, N, N)
    resp = torch.matmul(toeplitz[:, :, :order], excite)  # (B, L, N)
    resp_t = resp.transpose(-1, -2)[:, None]  # (B, 1, N, L)
    tail_t = resp[:, size - order :, :].transpose(-1, -2)[:, None]  # (B, 1, N, N)
    prev = w.new_zeros(batch, channels, 1, order)
    carried = []
    for j in range(nc):
        carried.append(prev)
        prev = y0[:, :, j : j + 1, size - order :] + torch.matmul(prev, tail_t)
    p = torch.cat(carried, dim=2)  # (B, C, nc, N)
    y = y0 + torch.matmul(p, resp_t)
    return y.reshape(batch, channels, nc * size)[..., :n]


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
    exporting = _BLOCK_RECURSION["on"]  # explicit sums: a graph cannot hold a convolution whose kernel it computes
    if exporting:
        v = sum(b[:, k, None, None] * xp[..., m_ord - k : m_ord - k + n] for k in range(m_ord + 1))
    else:
        w = b.flip(-1).repeat_interleave(channels, dim=0).unsqueeze(1)  # (B·C, 1, M+1)
        v = F.conv1d(xp.reshape(1, batch * channels, -1), w, groups=batch * channels).reshape(batch, channels, n)
    if n_ord == 0:
        y = v
    else:
        # Past outputs enter as an excitation of the all-pole filter on the first N samples:
        # e[n] = −Σ_{k=n+1..N} a_k y[n − k],   n = 0 … N−1.
        y_ext = torch.cat([y_hist.to(x.dtype), x.new_zeros(batch, channels, n_ord - 1)], dim=-1)
        if exporting:
            a_rev = a[:, 1:].flip(-1)
            e = -sum(a_rev[:, j, None, None] * y_ext[..., j : j + n_ord] for j in range(n_ord))
        else:
            wa = a[:, 1:].flip(-1).repeat_interleave(channels, dim=0).unsqueeze(1)  # (B·C, 1, N)
            e = -F.conv1d(y_ext.reshape(1, batch * channels, -1), wa, groups=batch * channels)
            e = e.reshape(batch, channels, n_ord)
        if n < n_ord:
            e = e[..., :n]
        else:
            e = F.pad(e, (0, n - n_ord))
        if exporting:
            y = allpole_blocks(v + e, a, _BLOCK_RECURSION["chunk"])
        else:
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


class CascadeCache:
    """Inference-time fast path for a cascade whose coefficients stay put (static controllers, still knobs).

    A cascade is linear in its input block and its state (the direct-form-I histories of every
    section), so for blocks of ``L`` samples it is one matrix ``M`` with ``[y, s'] = [x, s] M``
    (``(L + S) × (L + S)``, ``S`` state values).  ``M`` is built once per coefficient set and block
    length by running :func:`sos_filter` itself on the basis vectors (so it is that recursion, exactly,
    in float64), and a block then costs one matrix product instead of a Python-level recursion per
    section.  Long calls go in chunks of ``chunk`` samples.  The design step (parameters →
    coefficients) is cached too, keyed on the parameter values.
    """

    def __init__(self, chunk: int = 256):
        self.chunk = chunk
        self.params: torch.Tensor | None = None
        self.coeffs = None
        self.mats: dict[tuple[int, int], torch.Tensor] = {}

    def coefficients(self, params: torch.Tensor, design):
        if self.params is None or self.params.shape != params.shape or not torch.equal(self.params, params):
            self.params, self.coeffs, self.mats = params.clone(), design(params), {}
        return self.coeffs

    @staticmethod
    def _sizes(b, a):
        return [(b.shape[-1] - 1, a.shape[-1] - 1)] * b.shape[-2]

    def _matrix(self, m: int, b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        batch = b.shape[0]
        if (m, batch) not in self.mats:
            sizes = self._sizes(b, a)
            n_state = sum(p + q for p, q in sizes)
            eye = torch.eye(m + n_state, dtype=torch.float64, device=b.device)  # one basis vector per row
            rows = m + n_state
            xb = eye[:, :m].repeat(batch, 1)[:, None, :]  # (B·rows, 1, m)
            states, at = [], m
            for p, q in sizes:
                states.append((eye[:, at : at + p].repeat(batch, 1)[:, None, :],
                               eye[:, at + p : at + p + q].repeat(batch, 1)[:, None, :]))
                at += p + q
            y, new = sos_filter(xb, b.repeat_interleave(rows, dim=0), a.repeat_interleave(rows, dim=0), states)
            flat = torch.cat([y.double(), *[t.double() for s in new for t in s]], dim=-1)  # (B·rows, 1, rows)
            self.mats[(m, batch)] = flat.reshape(batch, rows, rows)
        return self.mats[(m, batch)]

    def run(self, x: torch.Tensor, params: torch.Tensor, design, state):
        """``sos_filter(x, *design(params), state)`` for ``x (B, C, n)`` and constant ``params (B, P)``."""
        if x.shape[-1] == 0 and state is not None:
            return x, state
        b, a = self.coefficients(params, design)
        b = b.to(torch.float64).expand(x.shape[0], -1, -1)
        a = a.to(torch.float64).expand(x.shape[0], -1, -1)
        sizes = self._sizes(b, a)
        batch, channels, n = x.shape
        if state is None:
            state = [init_iir_state(batch, channels, p + 1, q + 1, x.device, torch.float64) for p, q in sizes]
        s = torch.cat([t.to(torch.float64) for st in state for t in st], dim=-1)  # (B, C, S)
        outs = []
        for start in range(0, n, self.chunk):
            xc = x[..., start : start + self.chunk].to(torch.float64)
            z = torch.matmul(torch.cat([xc, s], dim=-1), self._matrix(xc.shape[-1], b, a))
            outs.append(z[..., : xc.shape[-1]])
            s = z[..., xc.shape[-1] :]
        new_state, at = [], 0
        for p, q in sizes:
            new_state.append((s[..., at : at + p], s[..., at + p : at + p + q]))
            at += p + q
        y = torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]
        return y.to(x.dtype), new_state


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
