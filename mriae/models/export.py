"""A TorchScript-friendly decoder for ``python -m monai.bundle ckpt_export``.

:class:`~mriae.models.autoencoder.Autoencoder` itself does not script: its strides are
chosen per call (tuples built from generator expressions) and its forward takes them as an
argument. :class:`Decoder` is its synthesis transform with every axis strided (the case
of a full 3D volume): dequantized latents (B, latent_channels, d, h, w) → reconstruction
(B, 1, d·2^levels, h·2^levels, w·2^levels) in [0, 1]. Its parameters have the
Autoencoder's names (``synthesis.*``, ``synthesis_gdn.*``), so the shipped weights'
``state_dict`` loads into it directly. Entropy coding stays outside (it is not a network).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from mriae.models.gdn import GDN3d


class _Deconv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(in_channels, out_channels, 3, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose3d(x, self.weight, self.bias, stride=2, padding=1, output_padding=1)


class Decoder(nn.Module):
    """Synthesis transform of the codec for volumes strided on all axes; scriptable."""

    def __init__(self, hidden_channels: int = 64, latent_channels: int = 192, levels: int = 3) -> None:
        super().__init__()
        back = ([1] + [hidden_channels] * (levels - 1) + [latent_channels])[::-1]
        self.synthesis = nn.ModuleList(_Deconv(a, b) for a, b in itertools.pairwise(back))
        self.synthesis_gdn = nn.ModuleList(GDN3d(hidden_channels, inverse=True) for _ in range(levels - 1))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        stage = 0
        for deconv in self.synthesis:
            y = deconv(y)
            index = 0
            for gdn in self.synthesis_gdn:  # TorchScript cannot index a ModuleList by a variable
                if index == stage:
                    y = gdn(y)
                index += 1  # noqa: SIM113 (counted: TorchScript loops over modules without enumerate)
            stage += 1  # noqa: SIM113
        return y
