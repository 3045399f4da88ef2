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
        channels = x.shape[1]
        beta = self.beta_root**2 + 1e-6
        gamma = (self.gamma_root**2).view(channels, channels, 1, 1, 1)
        norm = F.conv3d(x * x, gamma, beta)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)
