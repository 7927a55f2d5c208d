"""Causal, streamable layers shared by the convolutional families."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CausalConv1d(nn.Conv1d):
    """Dilated 1-D convolution that sees only the present and the past.

    Streaming state: the last ``(kernel_size - 1) * dilation`` input samples (zeros at the start,
    i.e. digital silence before the stream).  ``forward(x, buf) -> (y, buf)``; ``y`` has x's length.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, bias: bool = True):
        if kernel_size < 1 or dilation < 1:
            raise ValueError(f"kernel_size and dilation must be ≥ 1, got {kernel_size}, {dilation}")
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias)
        self.context = (kernel_size - 1) * dilation
        self.direct_max = 1024  # blocks up to this length use the stacked-taps matmul

    def init_state(self, batch_size: int, device=None, dtype=None) -> torch.Tensor | None:
        if self.context == 0:
            return None
        return torch.zeros(batch_size, self.in_channels, self.context, device=device or self.weight.device,
                           dtype=dtype or self.weight.dtype)

    def forward(self, x: torch.Tensor, buf: torch.Tensor | None = None):
        if self.context == 0:
            return F.conv1d(x, self.weight, self.bias), None
        if buf is None:
            buf = self.init_state(x.shape[0], x.device, x.dtype)
        xx = torch.cat([buf, x], dim=-1)
        n = x.shape[-1]
        if n <= self.direct_max:
            # Short blocks (streaming): one matmul over the stacked taps beats conv1d's per-call overhead.
            d = self.dilation[0]
            taps = torch.cat([xx[..., j * d : j * d + n] for j in range(self.kernel_size[0])], dim=1)
            w = self.weight.transpose(1, 2).reshape(self.out_channels, -1)  # (out, k·in), tap-major
            y = torch.matmul(w, taps)
            if self.bias is not None:
                y = y + self.bias[:, None]
        else:
            y = F.conv1d(xx, self.weight, self.bias, dilation=self.dilation)
        return y, xx[..., -self.context :]


class Pointwise(nn.Module):
    """1×1 convolution over ``(B, C_in, T)`` as one matmul (cheaper per call than ``conv1d``)."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        bound = 1.0 / in_channels**0.5  # nn.Conv1d's default initialisation
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return torch.matmul(self.weight, x)
        return torch.baddbmm(self.bias[:, None], self.weight.expand(x.shape[0], -1, -1), x)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, bias={self.bias is not None}"
