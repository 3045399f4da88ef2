"""3D convolutional autoencoder with a factorized entropy model.

Every stage halves (analysis) or doubles (synthesis) the axes it is told to stride (all of
them, as mriae.transforms.grid plans today). A volume whose strided axes are multiples of
``2**levels`` comes back with exactly its own shape.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mriae.models.entropy import EntropyBottleneck
from mriae.models.gdn import GDN3d

Strides = tuple[int, int, int]
"""Number of stride-2 stages (0..levels) applied to each spatial axis, first stages first."""


@dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture hyper-parameters; stored with the weights."""

    hidden_channels: int = 64
    latent_channels: int = 192
    levels: int = 3

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def stage_strides(strides: Strides, stage: int) -> tuple[int, int, int]:
    """Stride of each axis at analysis ``stage`` (0-based)."""
    return tuple(2 if stage < n else 1 for n in strides)  # type: ignore[return-value]


class StridedConv(nn.Module):
    """3×3×3 convolution whose per-axis stride (1 or 2) is chosen at call time."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: torch.Tensor, stride: tuple[int, int, int]) -> torch.Tensor:
        return F.conv3d(x, self.weight, self.bias, stride=stride, padding=1)


class StridedDeconv(nn.Module):
    """3×3×3 transposed convolution that exactly doubles the axes with stride 2."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_channels, out_channels, 3, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: torch.Tensor, stride: tuple[int, int, int]) -> torch.Tensor:
        extra = tuple(s - 1 for s in stride)
        return F.conv_transpose3d(x, self.weight, self.bias, stride=stride, padding=1, output_padding=extra)


class Autoencoder(nn.Module):
    """Analysis transform → quantized latents with a factorized prior → synthesis transform."""

    def __init__(self, config: AutoencoderConfig = AutoencoderConfig()) -> None:
        super().__init__()
        self.config = config
        n, m, levels = config.hidden_channels, config.latent_channels, config.levels
        widths = [1] + [n] * (levels - 1) + [m]
        self.analysis = nn.ModuleList(StridedConv(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.analysis_gdn = nn.ModuleList(GDN3d(n) for _ in range(levels - 1))
        back = widths[::-1]
        self.synthesis = nn.ModuleList(StridedDeconv(a, b) for a, b in zip(back[:-1], back[1:]))
        self.synthesis_gdn = nn.ModuleList(GDN3d(n, inverse=True) for _ in range(levels - 1))
        self.entropy_bottleneck = EntropyBottleneck(m)

    def encode(self, x: torch.Tensor, strides: Strides) -> torch.Tensor:
        """Latents of ``x`` shaped (B, 1, D, H, W), in [0, 1] intensity."""
        for stage, conv in enumerate(self.analysis):
            x = conv(x, stage_strides(strides, stage))
            if stage < len(self.analysis_gdn):
                x = self.analysis_gdn[stage](x)
        return x

    def decode(self, y: torch.Tensor, strides: Strides) -> torch.Tensor:
        """Reconstruction from (dequantized) latents."""
        levels = self.config.levels
        for i, deconv in enumerate(self.synthesis):
            y = deconv(y, stage_strides(strides, levels - 1 - i))
            if i < len(self.synthesis_gdn):
                y = self.synthesis_gdn[i](y)
        return y

    def forward(self, x: torch.Tensor, strides: Strides, step: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: (reconstruction, latent likelihoods)."""
        y = self.encode(x, strides)
        y_hat, likelihood = self.entropy_bottleneck(y, step)
        return self.decode(y_hat, strides), likelihood
