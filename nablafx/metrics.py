"""Time-domain metrics and spectral loss terms on ``(batch, 1, samples)`` tensors, shared by
training (``nablafx.training.losses``) and evaluation (``nablafx.evaluation.evaluate``).

ESR (error-to-signal ratio) = Σ(y − ŷ)² / Σy² (Wright et al. 2019); it sees polarity, so an
inverted output scores ≈ 4 however good its spectrum looks.  As a *metric* (:func:`esr`,
:func:`dc_error`) it is per example then averaged: one whole passage per example in evaluation.

As a *loss term* (:func:`esr_loss`, :func:`dc_loss`) the sums run over the whole batch, and the
denominator has a floor: ``Σ(y − ŷ)² / (Σy² + N·floor)`` with ``N`` the number of samples and
``floor`` a power (mean square) set relative to the training data's level (params.yaml
``train.loss_floor_db``).  Per example with a 1e-10 guard, a near-silent training crop (a gap
between sections, digital silence) turned any output into a ratio of 1e6–1e15, so that one
crop's gradient decided every clipped update; see docs/training.md, "Quiet material".

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


def esr_loss(pred: torch.Tensor, target: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
    """ESR over the whole batch: ``Σ(y − ŷ)² / (Σy² + N·floor)``, sums over every example and sample.

    ``floor`` is a power (mean square per sample): a batch quieter than it is scored against it,
    so the term stays bounded on near-silent batches (with ``floor`` = 0 only the 1e-10 guard
    remains).  Loud batches are scored as plain ESR: an inverted output still scores ≈ 4.
    """
    den = torch.sum(target**2) + target.numel() * floor + EPS
    return torch.sum((target - pred) ** 2) / den


def dc_loss(pred: torch.Tensor, target: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
    """DC error over the whole batch: each example's squared mean error, summed over examples and
    samples (``Σ_i T·mean_i(y − ŷ)²``), relative to the batch's energy with the same floor as
    :func:`esr_loss`.  One example with ``floor`` = 0 is :func:`dc_error`."""
    num = target.shape[-1] * torch.sum(torch.mean(target - pred, dim=-1) ** 2)
    den = torch.sum(target**2) + target.numel() * floor + EPS
    return num / den


class FlooredSpectralConvergence(nn.Module):
    """Spectral convergence ``‖|Y| − |Ŷ|‖_F / ‖|Y|‖_F`` (Arik et al. 2018; auraloss's form, over the
    whole batch) with the floor in the denominator: ``‖|Y|‖²_F + ‖F‖²_F``, where ``F`` is the
    magnitude spectrogram of white noise whose power is the loss floor.  With floor 0 it is
    auraloss's ``SpectralConvergenceLoss``; with a floor an all-silent batch is scored against the
    floor instead of auraloss's 1e-4 magnitude clamp (a −40 dBFS hiss over digital silence: 1.5e3)."""

    def __init__(self, floor_bin_power: torch.Tensor):
        super().__init__()
        self.register_buffer("floor_bin_power", floor_bin_power.reshape(-1, 1), persistent=False)  # (bins, 1)

    def forward(self, x_mag: torch.Tensor, y_mag: torch.Tensor) -> torch.Tensor:
        floor_energy = self.floor_bin_power.sum() * (y_mag.numel() / y_mag.shape[-2])
        return torch.norm(y_mag - x_mag, p="fro") / torch.sqrt(torch.sum(y_mag**2) + floor_energy)


def _floor_spectral(stft_loss: nn.Module, floor: float) -> nn.Module:
    """Put the floor into an auraloss STFT loss's spectral convergence.  White noise of power
    ``floor`` has an expected power ``floor·Σw²`` in every STFT bin (w: the analysis window); on a
    mel scale each band sums its filter's weights of those magnitudes."""
    if floor > 0:
        bin_power = torch.full((stft_loss.fft_size // 2 + 1,), floor * float(torch.sum(stft_loss.window**2)))
        fb = getattr(stft_loss, "fb", None) if stft_loss.scale is not None else None
        if fb is not None:
            bin_power = (fb[0].float() @ bin_power.sqrt()) ** 2
        stft_loss.spectralconv = FlooredSpectralConvergence(bin_power)
    return stft_loss


def _stft(x: torch.Tensor, n_fft: int, hop: int, win: torch.Tensor) -> torch.Tensor:
    """``torch.stft`` as auraloss calls it: Hann window of its own length centred in n_fft, frames
    centred on the samples (reflect padding), one-sided, (B, n_fft/2 + 1, frames) complex."""
    return torch.stft(x, n_fft, hop, win.shape[-1], win.to(x), return_complex=True)


def _magnitude(X: torch.Tensor) -> torch.Tensor:
    """``|X|`` of a complex tensor as √(re² + im²): the same values as ``X.abs()`` to float rounding
    (no overflow at audio levels), and about 3× faster on the CPU than ``abs`` or a vector norm over
    the (re, im) pairs."""
    r = torch.view_as_real(X)
    re, im = r[..., 0], r[..., 1]
    return torch.addcmul(re * re, im, im).sqrt_()


def _stft_adjoint(G: torch.Tensor, n_fft: int, hop: int, win: torch.Tensor, n: int) -> torch.Tensor:
    """The gradient of a real loss with respect to the signal, given ``G = ∂L/∂Re X + i·∂L/∂Im X``
    for ``X = _stft(x)`` (the transpose of the STFT): per frame ``Re Σ_f G_f e^(2πi f k/N)``
    (an inverse real FFT with the inner bins halved), windowed, overlap-added, and the reflect
    padding folded back onto the samples it copied.  ``G`` (B, bins, frames) is changed in place."""
    G[:, 1 : n_fft // 2] *= 0.5
    frames = torch.fft.irfft(G, n=n_fft, dim=1, norm="forward")  # (B, n_fft, frames): fold's layout
    w = win.to(frames)
    left = (n_fft - w.shape[-1]) // 2
    frames = frames[:, left : left + w.shape[-1]] * w[:, None]
    pad = n_fft // 2
    length = n + 2 * pad
    span = (frames.shape[-1] - 1) * hop + w.shape[-1]  # from the first windowed sample to the last
    out = torch.nn.functional.fold(frames, (1, span), (1, w.shape[-1]), stride=(1, hop))
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
            ym = _magnitude(_stft(y, n_fft, hop, win)).clamp_min_(loss.floor)
            mag = _magnitude(X)
            xm = mag.clamp_min(loss.floor)
            diff = ym - xm
            num = torch.linalg.vector_norm(diff)
            den = torch.sqrt(torch.sum(ym**2) + loss.floor_power * float(torch.sum(win**2)) * ym.numel())
            log_diff = xm.log().sub_(ym.log_())
            total += (num / den).double() + log_diff.abs().mean().double()
            if want_grad:
                # ∂/∂|X|: spectral convergence −(|Y|−|X|)/(‖·‖‖Y‖), log magnitude sign(log|X|−log|Y|)/(N|X|);
                # ∂|X|/∂X = X/|X| where |X| ≥ the floor (clamp), so ∂L/∂X = ∂L/∂|X| · X/|X|
                # (num = 0 only where diff is all zeros: a floored denominator keeps that 0, not NaN)
                scale = diff.mul_(-1.0 / (num * den).clamp_min(torch.finfo(num.dtype).tiny))
                scale.addcdiv_(log_diff.sign_(), xm, value=1.0 / xm.numel())
                scale.div_(xm).masked_fill_(mag < loss.floor, 0.0).div_(n_res)
                torch.view_as_real(X).mul_(scale[..., None])  # X·scale in place (a real factor: no complex copy)
                grad += _stft_adjoint(X, n_fft, hop, win, x.shape[-1])
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
    a time, keeping one signal instead of every resolution's spectra.

    ``floor`` (a power, see :func:`esr_loss`) floors the spectral-convergence denominator:
    ``‖|Y|‖²_F + floor·Σw²·(bins·frames)``, the expected energy of white noise at that power in the
    same spectrogram (w: the analysis window), so an all-silent target is scored against the floor,
    as :class:`FlooredSpectralConvergence` does for auraloss's losses (tested equal to it)."""

    def __init__(self, fft_sizes=(1024, 2048, 512), hop_sizes=(120, 240, 50), win_lengths=(600, 1200, 240),
                 eps: float = 1e-8, floor: float = 0.0):
        super().__init__()
        self.floor_power = float(floor)
        self.fft_sizes, self.hop_sizes, self.win_lengths = tuple(fft_sizes), tuple(hop_sizes), tuple(win_lengths)
        self.floor = eps**0.5  # sqrt(clamp(|X|², eps))
        self._windows = [torch.hann_window(w) for w in self.win_lengths]

    def windows(self):
        return self._windows

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _MRSTFT.apply(pred, target, self)


def mrstft_loss(floor: float = 0.0) -> nn.Module:
    """Multi-resolution STFT loss (auraloss's default resolutions); its largest window is 2048 samples.
    ``floor`` (a power, see :func:`esr_loss`) floors its spectral-convergence denominator; 0 is
    auraloss's loss."""
    return MRSTFTLoss(floor=floor)


def melstft_loss(sample_rate: int, floor: float = 0.0) -> nn.Module:
    """Mel-scaled STFT loss (auraloss), 2048-sample frames, 128 mel bands; ``floor`` as in
    :func:`mrstft_loss`."""
    import auraloss

    loss = auraloss.freq.MelSTFTLoss(sample_rate, fft_size=2048, hop_size=512, win_length=2048, n_mels=128)
    return _floor_spectral(loss, floor)


def pre_emphasis(x: torch.Tensor, coef: float) -> torch.Tensor:
    return torch.cat([x[..., :1], x[..., 1:] - coef * x[..., :-1]], dim=-1)


TIME_TERMS = {"l1": l1, "mse": mse, "esr": esr_loss, "dc": dc_loss}  # name → fn(pred, target[, floor])
FLOORED_TERMS = ("esr", "dc")  # time terms that take the energy floor
SPECTRAL_TERMS = {"mrstft": lambda sample_rate, floor=0.0: mrstft_loss(floor),
                  "melstft": melstft_loss}  # name → builder(sample_rate, floor)
LOSS_TERMS = (*TIME_TERMS, *SPECTRAL_TERMS)
