"""Factorized entropy model (Ballé et al., 2018): the network's density over its latents.

The density of each latent channel is a learned monotone cumulative function. For coding,
its probability mass over the quantization bins is tabulated once per quality level (at that
level's channel steps) at export time, as :class:`~mriae.entropy_coder.stream.ChannelTable`
rows that mriae.entropy_coder then refines per context and codes with; the tables ship with
the weights, so encoder and decoder share bit-identical models on any machine and thread count.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mriae.entropy_coder.stream import ChannelTable

TAIL_MASS = 1e-7
"""Probability left outside a channel's table on each side; such values are escaped."""
STEP_SLOPE_LIMIT = 1.0
"""Bound on a channel's step slope: its step moves between step**0 and step**2."""


class FactorizedDensity(nn.Module):
    """One learned univariate density per channel, parametrized by its cumulative logit."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        self.channels = channels
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def cdf_logits(self, values: torch.Tensor) -> torch.Tensor:
        """Cumulative logits of ``values`` shaped (C, 1, N), one row of points per channel."""
        x = values
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
            x = torch.matmul(F.softplus(matrix), x) + bias
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def bin_likelihood(self, values: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """Probability mass of the bins of width ``step`` (per channel, (C, 1, 1)) centred on
        ``values`` (C, 1, N)."""
        lower = self.cdf_logits(values - step / 2)
        upper = self.cdf_logits(values + step / 2)
        sign = -torch.sign(lower + upper).detach()
        return torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))

    @torch.no_grad()
    def quantile(self, probability: float) -> torch.Tensor:
        """Per-channel point (float64) where the cumulative distribution equals ``probability``."""
        density = copy.deepcopy(self).double()
        target = math.log(probability / (1 - probability))
        low = torch.full((self.channels, 1, 1), -1e4, dtype=torch.float64)
        high = torch.full((self.channels, 1, 1), 1e4, dtype=torch.float64)
        for _ in range(80):
            mid = (low + high) / 2
            below = density.cdf_logits(mid) < target
            low = torch.where(below, mid, low)
            high = torch.where(below, high, mid)
        return ((low + high) / 2).view(-1)


def channels_first(y: torch.Tensor) -> torch.Tensor:
    """(B, C, *spatial) → (C, 1, B·prod(spatial)), the layout the density works on."""
    return y.transpose(0, 1).reshape(y.shape[1], 1, -1)


class EntropyBottleneck(nn.Module):
    """Quantizes latents around per-channel medians and models their rate.

    One nominal quantization step per quality level sets every channel's own step,
    ``step ** (1 + slope)`` with a learned slope per channel: a channel that carries fine
    detail can be coarsened faster at low quality and refined faster at high quality
    (a continuous form of the gain units of Cui et al., 2021).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.density = FactorizedDensity(channels)
        self.step_slopes = nn.Parameter(torch.zeros(channels))
        self.register_buffer("medians", torch.zeros(channels))

    def update_medians(self) -> None:
        """Recompute the per-channel medians from the learned density."""
        self.medians.copy_(self.density.quantile(0.5).to(self.medians))

    def channel_steps(self, step: float) -> torch.Tensor:
        """Quantization step of every channel (C,) at the nominal ``step``."""
        slopes = self.step_slopes.clamp(-STEP_SLOPE_LIMIT, STEP_SLOPE_LIMIT)
        return torch.exp(math.log(step) * (1 + slopes))

    def _per_channel(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values.view(1, -1, *([1] * (like.dim() - 2)))

    def quantize(self, y: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """Integer symbols of ``y`` at the channel quantization ``steps`` (C,)."""
        return torch.round((y - self._per_channel(self.medians, y)) / self._per_channel(steps, y))

    def dequantize(self, symbols: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """Latent values of integer ``symbols`` at the channel quantization ``steps`` (C,)."""
        return symbols * self._per_channel(steps, symbols) + self._per_channel(self.medians, symbols)

    def forward(self, y: torch.Tensor, step: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: (straight-through quantized latents, likelihoods of noisy latents)."""
        steps = self.channel_steps(step)
        centre, width = self._per_channel(self.medians, y), self._per_channel(steps, y)
        noisy = y + (torch.rand_like(y) - 0.5) * width
        likelihood = self.density.bin_likelihood(channels_first(noisy - centre), steps.view(-1, 1, 1))
        rounded = y + (torch.round((y - centre) / width) * width + centre - y).detach()
        return rounded, likelihood.clamp_min(1e-9)

    @torch.no_grad()
    def coding_tables(self, steps: torch.Tensor) -> list[ChannelTable]:
        """Probability tables of every channel at the channel quantization ``steps`` (C,)."""
        median, steps = self.medians.double(), steps.double()
        low = torch.floor((self.density.quantile(TAIL_MASS) - median) / steps)
        high = torch.ceil((self.density.quantile(1 - TAIL_MASS) - median) / steps)
        density = copy.deepcopy(self.density).double()
        first, last = int(low.min()), int(high.max())
        symbols = torch.arange(first, last + 1, dtype=torch.float64)
        centres = median.view(-1, 1, 1) + symbols.view(1, 1, -1) * steps.view(-1, 1, 1)
        mass = density.bin_likelihood(centres, steps.view(-1, 1, 1))[:, 0].numpy()
        tables = []
        for c in range(self.density.channels):
            row = mass[c, int(low[c]) - first : int(high[c]) - first + 1]
            escape = max(1.0 - row.sum(), 2 * TAIL_MASS)
            tables.append(ChannelTable(int(low[c]), np.append(row, escape).astype(np.float32)[None]))
        return tables
