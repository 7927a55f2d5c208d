"""Time-domain metrics and spectral loss terms on ``(batch, 1, samples)`` tensors, shared by
training (``nablafx.training.losses``) and evaluation (``nablafx.evaluation.evaluate``).

ESR (error-to-signal ratio) = Σ(y − ŷ)² / Σy², per example then averaged; it sees polarity,
so an inverted output scores ≈ 4 however good its spectrum looks.

Loss terms by name (params.yaml ``train.loss: {name: weight}``): time-domain ``l1``, ``mse``,
``esr``, ``dc`` see polarity; spectral ``mrstft`` (multi-resolution STFT loss; Yamamoto et al.
2020, Steinmetz & Reiss 2020: :class:`MRSTFTLoss`, auraloss's with its defaults, computed here) and
``melstft`` (mel-scaled STFT loss, from auraloss) are blind to polarity.  :func:`pre_emphasis` is the first-order filter ``y[n] − a·y[n−1]`` of
Wright et al. 2019.
"""

from __future__ import annotations

import torch
from torch import nn

EPS = 1e-10


def l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.mean(torch.abs(pred - target))


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.mean((pred - target) ** 2)


def esr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    num = torch.sum((target - pred) ** 2, dim=-1)
    den = torch.sum(target**2, dim=-1) + EPS
    return torch.mean(num / den)


def dc_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared difference of the means, relative to target energy (auraloss's DC loss)."""
    num = torch.mean(target - pred, dim=-1) ** 2
    den = torch.mean(target**2, dim=-1) + EPS
    return torch.mean(num / den)


def _stft(x: torch.Tensor, n_fft: int, hop: int, win: torch.Tensor) -> torch.Tensor:
    """``torch.stft`` as auraloss calls it: Hann window of its own length centred in n_fft, frames
    centred on the samples (reflect padding), one-sided, (B, n_fft/2 + 1, frames) complex."""
    return torch.stft(x, n_fft, hop, win.shape[-1], win.to(x), return_complex=True)


def _stft_adjoint(G: torch.Tensor, n_fft: int, hop: int, win: torch.Tensor, n: int) -> torch.Tensor:
    """The gradient of a real loss with respect to the signal, given ``G = ∂L/∂Re X + i·∂L/∂Im X``
    for ``X = _stft(x)`` (the transpose of the STFT): per frame ``Re Σ_f G_f e^(2πi f k/N)``
    (an inverse real FFT with the inner bins halved), windowed, overlap-added, and the reflect
    padding folded back onto the samples it copied."""
    G = G.transpose(1, 2).clone()  # (B, frames, bins)
    G[..., 1 : n_fft // 2] *= 0.5
    frames = torch.fft.irfft(G, n=n_fft, norm="forward")  # (B, frames, n_fft)
    w = win.to(frames)
    left = (n_fft - w.shape[-1]) // 2
    frames = frames[..., left : left + w.shape[-1]] * w
    pad = n_fft // 2
    length = n + 2 * pad
    span = (frames.shape[1] - 1) * hop + w.shape[-1]  # from the first windowed sample to the last
    out = torch.nn.functional.fold(frames.transpose(1, 2), (1, span), (1, w.shape[-1]), stride=(1, hop))
    out = torch.nn.functional.pad(out.reshape(out.shape[0], span), (left, length - left - span))
    dx = out[:, pad : pad + n].clone()
    dx[:, 1 : pad + 1] += out[:, :pad].flip(-1)
    dx[:, n - 1 - pad : n - 1] += out[:, pad + n :].flip(-1)
    return dx


class _MRSTFT(torch.autograd.Function):
    """The loss and, while recording gradients, its gradient with respect to ``pred``, formed in
    the forward pass one resolution at a time; only that gradient (one signal) is kept."""

    @staticmethod
    def forward(ctx, pred, target, loss: MRSTFTLoss):
        x, y = pred.reshape(-1, pred.shape[-1]), target.reshape(-1, target.shape[-1])
        want_grad = ctx.needs_input_grad[0]
        total = pred.new_zeros((), dtype=torch.float64)
        grad = torch.zeros_like(x) if want_grad else None
        n_res = len(loss.fft_sizes)
        for n_fft, hop, win in zip(loss.fft_sizes, loss.hop_sizes, loss.windows()):
            X = _stft(x, n_fft, hop, win)
            ym = torch.linalg.vector_norm(torch.view_as_real(_stft(y, n_fft, hop, win)), dim=-1).clamp_min_(loss.floor)
            mag = torch.linalg.vector_norm(torch.view_as_real(X), dim=-1)
            xm = mag.clamp_min(loss.floor)
            diff = ym - xm
            num, den = torch.linalg.vector_norm(diff), torch.linalg.vector_norm(ym)
            log_diff = xm.log().sub_(ym.log_())
            total += (num / den).double() + log_diff.abs().mean().double()
            if want_grad:
                # ∂/∂|X|: spectral convergence −(|Y|−|X|)/(‖·‖‖Y‖), log magnitude sign(log|X|−log|Y|)/(N|X|);
                # ∂|X|/∂X = X/|X| where |X| ≥ the floor (clamp), so ∂L/∂X = ∂L/∂|X| · X/|X|
                # (num = 0 only where diff is all zeros: a floored denominator keeps that 0, not NaN)
                scale = diff.mul_(-1.0 / (num * den).clamp_min(torch.finfo(num.dtype).tiny))
                scale.addcdiv_(log_diff.sign_(), xm, value=1.0 / xm.numel())
                scale.div_(xm).masked_fill_(mag < loss.floor, 0.0).div_(n_res)
                grad += _stft_adjoint(X.mul_(scale), n_fft, hop, win, x.shape[-1])
        ctx.save_for_backward(grad.reshape(pred.shape) if want_grad else None)
        return (total / n_res).to(pred.dtype)

    @staticmethod
    def backward(ctx, g):
        (grad,) = ctx.saved_tensors
        return g * grad, None, None


class MRSTFTLoss(nn.Module):
    """Multi-resolution STFT loss: the mean over resolutions of spectral convergence
    ``‖|Y|−|X|‖_F / ‖|Y|‖_F`` plus the mean ``|log|X| − log|Y||`` (magnitudes floored at 1e-4),
    Hann windows, centred frames — auraloss's ``MultiResolutionSTFTLoss`` with its defaults, the
    loss of the reference (tested against it).  Faster and far smaller while training: no phase
    (auraloss computes it, unused), and the gradient is formed in the forward pass one resolution at
    a time, keeping one signal instead of every resolution's spectra."""

    def __init__(self, fft_sizes=(1024, 2048, 512), hop_sizes=(120, 240, 50), win_lengths=(600, 1200, 240),
                 eps: float = 1e-8):
        super().__init__()
        self.fft_sizes, self.hop_sizes, self.win_lengths = tuple(fft_sizes), tuple(hop_sizes), tuple(win_lengths)
        self.floor = eps**0.5  # sqrt(clamp(|X|², eps))
        self._windows = [torch.hann_window(w) for w in self.win_lengths]

    def windows(self):
        return self._windows

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _MRSTFT.apply(pred, target, self)


def mrstft_loss() -> nn.Module:
    """Multi-resolution STFT loss (auraloss's default resolutions); its largest window is 2048 samples."""
    return MRSTFTLoss()


def melstft_loss(sample_rate: int) -> nn.Module:
    """Mel-scaled STFT loss (auraloss), 2048-sample frames, 128 mel bands."""
    import auraloss

    return auraloss.freq.MelSTFTLoss(sample_rate, fft_size=2048, hop_size=512, win_length=2048, n_mels=128)


def pre_emphasis(x: torch.Tensor, coef: float) -> torch.Tensor:
    return torch.cat([x[..., :1], x[..., 1:] - coef * x[..., :-1]], dim=-1)


TIME_TERMS = {"l1": l1, "mse": mse, "esr": esr, "dc": dc_error}
SPECTRAL_TERMS = {"mrstft": lambda sample_rate: mrstft_loss(), "melstft": melstft_loss}  # name → builder(sample_rate)
LOSS_TERMS = (*TIME_TERMS, *SPECTRAL_TERMS)
