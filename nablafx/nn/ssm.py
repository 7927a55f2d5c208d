"""Diagonal state-space layer (S4D; Gu et al., "On the Parameterization and Initialization of
Diagonal State Space Models", NeurIPS 2022), causal and exactly streamable.

Per channel h, ``N/2`` complex modes with continuous poles ``A_n = -exp(log_A_real) + i·A_imag``,
step ``dt = exp(log_dt)``, input matrix B = 1 and learnable output C.  Zero-order hold:

    s[t] = dA ⊙ s[t-1] + u[t],   y[t] = 2·Re(Σ_n C̃_n s_n[t]) + D·u[t],
    dA = exp(dt·A),  C̃ = C·(dA - 1)/A

i.e. ``y = K * u`` with the SSM kernel ``K[l] = 2·Re(Σ_n C̃_n dA_n^l) (+ D at l = 0)``.

The signal is processed in chunks of ``L`` samples (``chunk`` offline; a whole streaming block
when shorter).  Within a chunk the output is the convolution of the chunk with the kernel
truncated to L samples (a Toeplitz matmul, or FFT convolution for long chunks), plus the
response to the complex state carried in from the previous chunk; the state is carried from
chunk to chunk by the exact recurrence ``s ← dA^L ⊙ s + Σ_j dA^(L-1-j) u[j]``.  Cost per sample
is O(L + N) per channel whatever the signal length, and any split into blocks gives the same
output as one offline call (the reference instead builds a kernel as long as the whole signal).

The discretisation and the chunk matrices are computed in float64 and cached while gradients
are off (inference), keyed on the parameters' versions so training steps invalidate them.

Training (gradients recorded, a zero starting state, more than one chunk) takes another exact
route: one FFT convolution of the whole signal with the whole kernel (``y = K * u``, zero-padded
to a fast FFT length ≥ 2T − 1, :class:`_FFTConv`, whose backward pass is three more FFTs and keeps
only the input), the kernel being built √T lags at a time as ``K[cM + j] = 2·Re Σ_n
(C̃_n dA_n^(cM)) dA_n^j`` (one complex matmul, in the model's precision).  The chunk scan's
complex128 states cost ~4× more there.  The state returned on that route carries no gradient
(truncated back-propagation detaches it anyway).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nablafx.errors import ConfigError

SSM_INITS = ("lin", "inv")


def fast_fft_length(n: int) -> int:
    """The smallest 2^a·3^b·5^c ≥ n (lengths the FFT libraries handle fastest)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


class _FFTConv(torch.autograd.Function):
    """``y[b, h, t] = Σ_(j≤t) u[b, h, j] K[h, t − j]`` for t < T by FFTs of length ``nfft`` ≥ 2T − 1.

    Backward: ``∂u = corr(g, K)``, ``∂K = Σ_b corr(g, u)``.  With ``keep_spectrum`` the input's
    spectrum is kept for it (twice the size of u, one FFT fewer: what the S4 blocks use, which are
    recomputed one at a time in the backward pass so only one block's spectrum is ever held);
    otherwise u is kept and transformed again there.
    """

    @staticmethod
    def forward(ctx, u, K, nfft: int, keep_spectrum: bool = False):
        n = u.shape[-1]
        Uf = torch.fft.rfft(u, n=nfft)
        Kf = torch.fft.rfft(K, n=nfft)
        y = torch.fft.irfft(Uf * Kf, n=nfft)[..., :n].contiguous()
        ctx.save_for_backward(Uf if keep_spectrum else u, Kf)
        ctx.n, ctx.nfft, ctx.keep_spectrum = n, nfft, keep_spectrum
        return y

    @staticmethod
    def backward(ctx, g):
        saved, Kf = ctx.saved_tensors
        n, nfft = ctx.n, ctx.nfft
        Gf = torch.fft.rfft(g, n=nfft)
        du = dK = None
        if ctx.needs_input_grad[0]:
            du = torch.fft.irfft(Gf * Kf.conj(), n=nfft)[..., :n]
        if ctx.needs_input_grad[1]:
            Uf = saved if ctx.keep_spectrum else torch.fft.rfft(saved, n=nfft)
            dK = torch.fft.irfft((Gf * Uf.conj()).sum(0), n=nfft)[..., :n]
        return du, dK, None, None


class S4D(nn.Module):
    def __init__(self, channels: int, state_dim: int = 32, init: str = "lin", dt_min: float = 1e-3,
                 dt_max: float = 1e-1, chunk: int = 64, fft_above: int = 2048):
        super().__init__()
        if state_dim < 2 or state_dim % 2:
            raise ConfigError(f"must be an even integer ≥ 2, got {state_dim}", key="state_dim")
        if init not in SSM_INITS:
            raise ConfigError(f"unknown initialisation {init!r}; known: {', '.join(SSM_INITS)}", key="ssm_init")
        if not 0 < dt_min <= dt_max:
            raise ConfigError(f"need 0 < dt_min ≤ dt_max, got {dt_min}, {dt_max}", key="dt_min")
        if chunk < 1:
            raise ConfigError(f"must be ≥ 1, got {chunk}", key="chunk")
        self.channels = channels
        self.modes = n2 = state_dim // 2
        self.chunk = chunk
        self.fft_above = fft_above
        self.fft_train = True  # the FFT route while training (False: the chunk scan, for comparisons)
        self.keep_spectrum = False  # FFT route: keep the input's spectrum for the backward pass (S4Block sets it)
        log_dt = torch.rand(channels) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)
        self.log_A_real = nn.Parameter(torch.full((channels, n2), math.log(0.5)))
        n = torch.arange(n2, dtype=torch.float32)
        if init == "lin":  # S4D-Lin
            imag = math.pi * n
        else:  # S4D-Inv
            imag = (state_dim / math.pi) * (state_dim / (2 * n + 1) - 1)
        self.A_imag = nn.Parameter(imag.expand(channels, n2).clone())
        self.C = nn.Parameter(torch.randn(channels, n2, 2) * math.sqrt(0.5))  # complex as (re, im)
        self.D = nn.Parameter(torch.randn(channels))
        self._cache: dict = {}

    # ------------------------------------------------------------------ discretisation
    def _discrete(self):
        """(dt·A, C̃) in complex128, shapes (H, N/2)."""
        dt = self.log_dt.double().exp()[:, None]
        A = torch.complex(-self.log_A_real.double().exp(), self.A_imag.double())
        dtA = dt * A
        Ct = torch.view_as_complex(self.C.double().contiguous()) * (dtA.exp() - 1) / A
        return dtA, Ct

    def _matrices(self, L: int, dtype: torch.dtype):
        """Chunk matrices for chunks of L samples (see the module docstring), cast to ``dtype``.

        conv: Toeplitz (H, L, L) with ``y = u @ conv`` (or the kernel's spectrum for FFT), stacked
        on top of m_out (then returned as None) so that ``y = [u, s] @ conv`` in one matmul;
        w_in: (H, L, 2·N/2) interleaved (re, im) with ``z = u @ w_in`` (state gathered by the chunk);
        m_out: (H, 2·N/2, L) with ``y_state = s @ m_out`` (response to the carried-in state);
        a_L: dA^L, complex (H, N/2).
        """
        dtA, Ct = self._discrete()
        H, n2 = Ct.shape
        ell = torch.arange(L + 1, device=dtA.device, dtype=torch.float64)
        V = torch.exp(dtA[..., None] * ell)  # (H, N/2, L+1): dA^l
        kernel = 2 * (Ct[..., None] * V[..., :L]).real.sum(1)  # (H, L)
        kernel = torch.cat([kernel[:, :1] + self.D.double()[:, None], kernel[:, 1:]], dim=1)
        if L > self.fft_above:
            conv = torch.fft.rfft(kernel, n=2 * L)  # (H, L+1) complex
            conv = conv.to(torch.complex64 if dtype == torch.float32 else torch.complex128)
        else:
            idx = torch.arange(L, device=dtA.device)
            lag = idx[None, :] - idx[:, None]  # [j, t] = t - j
            conv = kernel[:, lag.clamp(min=0)] * (lag >= 0)  # (H, L, L): y[t] = Σ_j u[j] K[t-j]
            conv = conv.to(dtype)
        w_in = torch.view_as_real(V[..., :L].flip(-1).transpose(1, 2))  # (H, L, N/2, 2): dA^(L-1-j)
        w_in = w_in.reshape(H, L, 2 * n2).to(dtype)
        cv = Ct[..., None] * V[..., 1:]  # (H, N/2, L): C̃ dA^(t+1)
        m_out = torch.stack([2 * cv.real, -2 * cv.imag], dim=2).reshape(H, 2 * n2, L).to(dtype)
        # chunk-level scan s_k = a_L s_(k-1) + z_k, solved G chunks at a time in closed form:
        # s_(g0+m) = a_L^(m+1) s_(g0-1) + a_L^m Σ_(i≤m) a_L^(-i) z_(g0+i).  G keeps a_L^(-G) < e^300 (float64).
        log_aL = dtA * L  # (H, N/2)
        decay = float((-log_aL.real).detach().max().clamp_min(1e-12))
        G = int(max(1, min(256, 300.0 // decay)))
        k = torch.arange(G + 1, device=dtA.device, dtype=torch.float64)[:, None, None]  # (G+1, 1, 1)
        pows = torch.exp(k * log_aL).transpose(0, 1)  # (H, G+1, N/2): a_L^k
        inv_pows = torch.exp(-k[:G] * log_aL).transpose(0, 1)  # (H, G, N/2): a_L^-k
        scan = (G, inv_pows, pows)
        if not conv.is_complex():
            # one matmul for both: y = [u, s_prev] @ [[Toeplitz], [m_out]]; for a single chunk also the
            # gathered state: [y, z] = [u, s_prev] @ [[Toeplitz, w_in], [m_out, 0]]
            conv = torch.cat([conv, m_out], dim=1)  # (H, L + 2·N/2, L)
            fused = torch.cat([conv, torch.cat([w_in, w_in.new_zeros(H, 2 * n2, 2 * n2)], dim=1)], dim=2)
            return conv, w_in, None, scan, fused
        return conv, w_in, m_out, scan, None

    def _get_matrices(self, L: int, dtype: torch.dtype, device):
        if torch.is_grad_enabled() and self.log_dt.requires_grad:
            return self._matrices(L, dtype)
        key = (dtype, device, *[(id(p), p._version) for p in self._parameters.values()])
        hit = self._cache.get(L)
        if hit is None or hit[0] != key:
            with torch.no_grad():
                hit = self._cache[L] = (key, self._matrices(L, dtype))
        return hit[1]

    # ------------------------------------------------------------------ processing
    def init_state(self, batch_size: int, device=None, dtype=None) -> torch.Tensor:
        # complex128 whatever the model dtype: the state of a slowly decaying mode sums thousands of
        # samples, and float32 rounding there drifts (block-1 streaming off by ~1e-5 of the RMS).
        return torch.zeros(batch_size, self.channels, self.modes, device=device or self.log_dt.device,
                           dtype=torch.complex128)

    def _chunks(self, u: torch.Tensor, s: torch.Tensor, L: int):
        """u: (B, H, nc, L) consecutive chunks; s: state before the first.  Returns y (B, H, nc, L), s."""
        bsz, H, nc, _ = u.shape
        conv, w_in, m_out, (G, inv_pows, pows), fused = self._get_matrices(L, u.dtype, u.device)
        s = s.to(torch.complex128)
        if nc == 1 and fused is not None:  # one chunk (short streaming blocks): a single matmul
            s_prev = torch.view_as_real(s).reshape(bsz, H, 1, 2 * self.modes).to(u.dtype)
            yz = torch.matmul(torch.cat([u, s_prev], dim=-1), fused)  # (B, H, 1, L + 2·N/2)
            z = torch.view_as_complex(yz[..., L:].reshape(bsz, H, self.modes, 2).double().contiguous())
            return yz[..., :L], torch.addcmul(z, pows[:, 1], s)
        z = torch.matmul(u, w_in).reshape(bsz, H, nc, self.modes, 2)
        z = torch.view_as_complex(z.double() if z.dtype != torch.float64 else z)  # (B, H, nc, N/2)
        if nc == 1:
            s_prev = s[:, :, None]
            s = torch.addcmul(z[:, :, 0], pows[:, 1], s)
        else:
            s_prev, s = self._scan(z, s, G, inv_pows, pows)
        s_prev = torch.view_as_real(s_prev).reshape(bsz, H, nc, 2 * self.modes).to(u.dtype)
        if m_out is None:  # Toeplitz and state response fused
            return torch.matmul(torch.cat([u, s_prev], dim=-1), conv), s
        spec = torch.fft.rfft(u, n=2 * L) * conv[:, None]
        return torch.fft.irfft(spec, n=2 * L)[..., :L] + torch.matmul(s_prev, m_out), s

    @staticmethod
    def _scan(z, s, G, inv_pows, pows):
        """States before each chunk and after the last: ``s_prev`` (B, H, nc, N/2), ``s`` (B, H, N/2),
        for chunk inputs z (B, H, nc, N/2) and the state s before the first chunk.

        The chunks are taken in groups of G (padded with empty chunks to ng·G ≥ nc + 1).  Within a
        group, for every group at once, ``s_prev[i] = a^i Σ_(m≤i) a^(-m) v_m + a^i c`` with
        ``v_m = z_(m-1)`` (``v_0 = 0``) and c the state before the group; the ng group states follow
        from one short loop ``c ← a^G c + a^G Σ_m a^(-m) v_m + z_(G-1)``.  Large tensors are sliced
        twice only (their gradients are zero-filled copies of the whole).
        """
        bsz, H, nc, n2 = z.shape
        if nc + 1 < G:  # few chunks (a streaming block): one group just long enough, not G mostly empty chunks
            G, inv_pows, pows = nc + 1, inv_pows[:, : nc + 1], pows[:, : nc + 2]
        ng = nc // G + 1
        z = torch.cat([z, z.new_zeros(bsz, H, ng * G - nc, n2)], dim=2).view(bsz, H, ng, G, n2)
        v = torch.cat([z.new_zeros(bsz, H, ng, 1, n2), z[:, :, :, : G - 1]], dim=3)
        w = v * inv_pows[:, None]  # (B, H, ng, G, N/2): a^-m v_m
        before = torch.cumsum(w, dim=3) * pows[:, None, :G]  # Σ_(j<i) a^(i-1-j) z_j
        a_G = pows[:, G]
        group = torch.addcmul(z[:, :, :, G - 1], w.sum(3), a_G[:, None])  # (B, H, ng, N/2): a group's own end state
        c_in = []
        for g in range(ng):
            c_in.append(s)
            s = torch.addcmul(group[:, :, g], a_G, s)
        c_in = torch.stack(c_in, dim=2)  # (B, H, ng, N/2): state before each group
        s_all = torch.addcmul(before, pows[:, None, :G], c_in[:, :, :, None]).reshape(bsz, H, ng * G, n2)
        return s_all[:, :, :nc], s_all[:, :, nc]

    def _kernel(self, n: int, dtype: torch.dtype) -> torch.Tensor:
        """The SSM kernel K (H, n), D included at lag 0, in ``dtype``'s precision: rows of
        M ≈ √n lags, ``K[cM + j] = 2·Re Σ_n (C̃_n dA_n^(cM)) dA_n^j``, one complex matmul."""
        dtA, Ct = self._discrete()
        M = max(1, math.isqrt(n - 1) + 1)
        nc = -(-n // M)
        rdtype = torch.float32 if dtype != torch.float64 else torch.float64
        c = torch.arange(nc, device=dtA.device, dtype=torch.float64)[None, :, None] * M
        left = 2 * Ct[:, None, :] * torch.exp(dtA[:, None, :] * c)  # (H, nc, N/2): 2 C̃ dA^(cM)
        j = torch.arange(M, device=dtA.device, dtype=torch.float64)
        right = torch.exp(dtA[..., None] * j)  # (H, N/2, M): dA^j
        # Re(l·r) = Re l·Re r − Im l·Im r: one real matmul
        left = torch.cat([left.real, -left.imag], dim=2).to(rdtype)  # (H, nc, N)
        right = torch.cat([right.real, right.imag], dim=1).to(rdtype)  # (H, N, M)
        K = torch.matmul(left, right).reshape(self.channels, nc * M)[:, :n]
        return torch.cat([K[:, :1] + self.D.to(K.dtype)[:, None], K[:, 1:]], dim=1)

    @torch.no_grad()
    def _end_state(self, u: torch.Tensor, M: int = 512) -> torch.Tensor:
        """``Σ_t dA^(T-1-t) u[t]`` (B, H, N/2) complex128: the state after u from a zero state,
        gathered M samples at a time (one real matmul), then across the pieces."""
        bsz, H, n = u.shape
        M = min(M, n)
        nc = -(-n // M)
        u = torch.nn.functional.pad(u, (nc * M - n, 0)).reshape(bsz, H, nc, M)  # leading zeros: no effect
        dtA, _ = self._discrete()
        cdtype = torch.complex64 if u.dtype != torch.float64 else torch.complex128
        j = torch.arange(M - 1, -1, -1, device=u.device, dtype=torch.float64)
        w_in = torch.view_as_real(torch.exp(dtA[:, None, :] * j[None, :, None]).to(cdtype))  # (H, M, N/2, 2)
        z = torch.matmul(u, w_in.reshape(H, M, 2 * self.modes)).reshape(bsz, H, nc, self.modes, 2)
        k = torch.arange(nc - 1, -1, -1, device=u.device, dtype=torch.float64)[None, :, None] * M
        s = torch.einsum("bhkn,hkn->bhn", torch.view_as_complex(z.contiguous()), torch.exp(dtA[:, None, :] * k).to(cdtype))
        return s.to(torch.complex128)

    def forward(self, u: torch.Tensor, state: torch.Tensor | None = None):
        """u: (B, H, T) → (y (B, H, T), state (B, H, N/2) complex)."""
        bsz, H, n = u.shape
        if self.fft_train and torch.is_grad_enabled() and n > self.chunk and (state is None or not bool(state.any())):
            y = _FFTConv.apply(u, self._kernel(n, u.dtype), fast_fft_length(2 * n - 1), self.keep_spectrum)
            return y, self._end_state(u)
        s = self.init_state(bsz, u.device, u.dtype) if state is None else state
        L = min(self.chunk, n) if n else 1
        nc, rest = divmod(n, L)
        outs = []
        if nc:
            y, s = self._chunks(u[..., : nc * L].reshape(bsz, H, nc, L), s, L)
            outs.append(y.reshape(bsz, H, nc * L))
        if rest:
            y, s = self._chunks(u[..., nc * L :].reshape(bsz, H, 1, rest), s, rest)
            outs.append(y.reshape(bsz, H, rest))
        y = torch.cat(outs, dim=-1) if len(outs) > 1 else (outs[0] if outs else u.clone())
        return y, s

    def recurrence(self, u: torch.Tensor, state: torch.Tensor | None = None):
        """Reference: the sample-by-sample diagonal recurrence (slow; for tests)."""
        dtA, Ct = self._discrete()
        dA = dtA.exp()
        s = (self.init_state(u.shape[0], u.device, torch.float64) if state is None else state).to(torch.complex128)
        ys = []
        for t in range(u.shape[-1]):
            ut = u[..., t].double()
            s = dA * s + ut[..., None]
            ys.append(2 * (Ct * s).real.sum(-1) + self.D.double() * ut)
        return torch.stack(ys, dim=-1).to(u.dtype), s
