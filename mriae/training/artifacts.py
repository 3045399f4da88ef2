"""Acquisition effects applied to a synthetic magnitude volume (issue 13), each modelled on how
an MR scanner produces it:

- bias field: a smooth multiplicative receive-coil sensitivity (a coarse random field, upsampled);
- motion: the subject moves part-way through the acquisition, so a contiguous block of k-space
  lines along the phase-encoding axis carries the phase ramp of a shift (ringing and ghosts);
- EPI Nyquist ghost: odd/even echo mismatch adds a faint copy shifted by half the field of view
  along the phase-encoding axis;
- noise: complex Gaussian noise in each receive channel; the magnitude of one channel is Rician,
  a root-sum-of-squares of L channels non-central χ (so the air around the head is noisy and
  never zero, as in real single-subject scans, unlike templates).

Every function takes and returns a float32 tensor (D, H, W) and draws from the generator given.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def smooth_field(shape: tuple[int, int, int], rng: np.random.Generator, knots: int = 4) -> torch.Tensor:
    """A zero-mean, unit-scale smooth random field on ``shape`` (cubic-ish, from ``knots``³)."""
    coarse = torch.from_numpy(rng.standard_normal((1, 1, knots, knots, knots)).astype(np.float32))
    return F.interpolate(coarse, size=shape, mode="trilinear", align_corners=True)[0, 0]


def bias_field(volume: torch.Tensor, rng: np.random.Generator, strength: float) -> torch.Tensor:
    """``volume`` times exp(strength · smooth field)."""
    return volume * torch.exp(strength * smooth_field(tuple(volume.shape), rng))


def motion(image: torch.Tensor, rng: np.random.Generator, axis: int, shift: float, fraction: float) -> torch.Tensor:
    """Complex ``image`` whose k-space lines along ``axis`` from a random point on (``fraction``
    of them, sequential order) were acquired after a rigid shift of ``shift`` voxels."""
    n = image.shape[axis]
    spectrum = torch.fft.fft(image, dim=axis)
    frequencies = torch.fft.fftfreq(n)
    count = max(1, round(fraction * n))
    start = int(rng.integers(0, n - count + 1))
    moved = torch.zeros(n, dtype=torch.bool)
    moved[start : start + count] = True
    ramp = torch.where(moved, torch.exp(-2j * math.pi * frequencies * shift), torch.ones(n, dtype=torch.complex64))
    view = [1, 1, 1]
    view[axis] = n
    return torch.fft.ifft(spectrum * ramp.reshape(view).to(spectrum.dtype), dim=axis)


def nyquist_ghost(image: torch.Tensor, axis: int, level: float, phase: float) -> torch.Tensor:
    """Complex ``image`` plus its copy shifted by half the field of view along ``axis``."""
    ghost = torch.roll(image, image.shape[axis] // 2, dims=axis)
    return image + level * complex(math.cos(phase), math.sin(phase)) * ghost


def noisy_magnitude(image: torch.Tensor, rng: np.random.Generator, sigma: float, channels: int) -> torch.Tensor:
    """Magnitude of complex ``image`` with Gaussian noise σ per real component, combined as the
    root sum of squares of ``channels`` receive channels (1: Rician; more: non-central χ)."""
    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
    total = (image.real + sigma * torch.randn(image.shape, generator=generator)) ** 2
    total += (image.imag + sigma * torch.randn(image.shape, generator=generator)) ** 2
    for _ in range(channels - 1):
        total += sigma**2 * torch.randn(image.shape, generator=generator) ** 2
        total += sigma**2 * torch.randn(image.shape, generator=generator) ** 2
    return torch.sqrt(total)
