"""Generalized divisive normalization for 3D feature maps (Ballé et al., 2016)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GDN3d(nn.Module):
    """GDN over the channels of a (B, C, D, H, W) tensor; ``inverse=True`` gives IGDN.

    ``y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)``; beta and gamma are kept
    non-negative by squaring their parameters.
    """

    def __init__(self, channels: int, inverse: bool = False, gamma_init: float = 0.1) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta_root = nn.Parameter(torch.ones(channels))
        self.gamma_root = nn.Parameter(torch.eye(channels) * gamma_init**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` normalized; computed channels-last (one matrix product over the channels), and
        in place of the normalizer when no gradient is needed (it is memory-bound on a CPU)."""
        beta = self.beta_root**2 + 1e-6
        gamma = self.gamma_root**2
        last = x.movedim(1, -1)  # (B, D, H, W, C): a view without copying for channels-last x
        norm = F.linear(last * last, gamma, beta)
        if norm.requires_grad:
            scaled = last * (norm.sqrt() if self.inverse else norm.rsqrt())
        else:
            scaled = (norm.sqrt_() if self.inverse else norm.rsqrt_()).mul_(last)
        return scaled.movedim(-1, 1)
