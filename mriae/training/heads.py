"""Synthetic whole-head MR volumes drawn from the 2009c head atlas (issue 13).

Each draw picks a contrast — T1, T2, PD, FLAIR or EPI-like, as tissue intensities per atlas
class with random variation (relative values from typical 1.5–3 T spin-echo / gradient-echo
appearance: fat bright on T1, fluid bright on T2 and dark on FLAIR, bone and air dark on all,
fat suppressed in EPI) or one of the real template contrasts — keeps the template's texture,
then images it like a scanner would: a field of view that may cut the head or the neck, 0.5–4 mm
voxels (thick slices on one axis), an oblique orientation, a head slightly larger or smaller and
warped, a bias field, motion ringing, for EPI a low resolution, a geometric distortion and a
Nyquist ghost along the phase-encoding axis and signal dropout near air, and receiver noise in
the air around the head (mriae.training.artifacts).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from mriae.training import artifacts
from mriae.training.atlas import CLASSES, HeadAtlas

CONTRASTS = {
    #         gm    wm    csf   fluid fat   soft  bone  air
    "t1":    (0.65, 1.00, 0.25, 0.20, 1.15, 0.55, 0.06, 0.0),
    "t2":    (0.60, 0.45, 1.00, 1.00, 0.70, 0.30, 0.05, 0.0),
    "pd":    (0.85, 0.70, 1.00, 1.00, 0.90, 0.60, 0.08, 0.0),
    "flair": (0.80, 0.60, 0.08, 0.12, 0.90, 0.40, 0.05, 0.0),
    "epi":   (0.70, 0.50, 1.00, 1.00, 0.25, 0.30, 0.03, 0.0),
}
"""Mean intensity of every atlas class (CLASSES order) per contrast, relative to the brightest."""

MAX_VOXELS = 4_000_000
"""Largest output grid; finer voxels image a smaller field of view (a slab, as real 0.5 mm
scans do) instead of a bigger array."""


class SyntheticHeads:
    """Draws whole-head volumes (1, D, H, W) scaled to [0, 1] from ``atlas``; every axis is at
    least ``min_size`` voxels (a field of view larger than the head is air)."""

    def __init__(self, atlas: HeadAtlas, seed: int, min_size: int = 64) -> None:
        self.atlas = atlas
        self.rng = np.random.default_rng(seed)
        self.min_size = min_size
        self.real = {name: torch.from_numpy(volume) for name, volume in atlas.contrasts.items()}
        self.memberships = torch.from_numpy(atlas.memberships)
        self.texture = torch.from_numpy(atlas.texture)
        self.dropout_zone = torch.from_numpy(
            ndimage.gaussian_filter(atlas.memberships[CLASSES.index("bone_air")], 3.0)
        )

    def __call__(self) -> torch.Tensor:
        contrast = str(self.rng.choice([*CONTRASTS, "real"], p=[0.3, 0.15, 0.1, 0.1, 0.15, 0.2]))
        epi = contrast == "epi"
        volume = self.tissue(contrast)
        spacing = self.spacing(epi)
        volume = self.image(volume, spacing, epi)
        volume = artifacts.bias_field(volume, self.rng, float(self.rng.uniform(0.0, 0.4)))
        signal = volume.to(torch.complex64)
        axis = int(self.rng.integers(3))
        if self.rng.random() < 0.25:
            shift = float(self.rng.uniform(-3, 3))
            signal = artifacts.motion(signal, self.rng, axis, shift, float(self.rng.uniform(0.05, 0.4)))
        if epi and self.rng.random() < 0.7:
            signal = artifacts.nyquist_ghost(signal, axis, float(self.rng.uniform(0.01, 0.08)),
                                             float(self.rng.uniform(0, 2 * math.pi)))
        peak = float(volume.max())
        if self.rng.random() < 0.9:
            sigma = peak * math.exp(self.rng.uniform(math.log(0.004), math.log(0.06)))
            channels = int(self.rng.choice([1, 1, 2, 4, 8]))
            volume = artifacts.noisy_magnitude(signal, self.rng, sigma, channels)
        else:
            volume = signal.abs()
        low, high = volume.min(), volume.max()
        return ((volume - low) / (high - low).clamp_min(1e-8))[None].float()

    def tissue(self, contrast: str) -> torch.Tensor:
        """The head at atlas resolution in ``contrast``, with texture (and EPI dropout)."""
        if contrast == "real":
            name = str(self.rng.choice(sorted(self.real)))
            return self.real[name] ** float(self.rng.uniform(0.8, 1.25))
        means = np.asarray(CONTRASTS[contrast]) * np.exp(self.rng.normal(0, 0.15, len(CLASSES)))
        volume = torch.einsum("c,cdhw->dhw", torch.from_numpy(means.astype(np.float32)), self.memberships)
        volume = volume * (1 + float(self.rng.uniform(0, 1.0)) * self.texture)
        if contrast == "epi":
            volume = volume * (1 - float(self.rng.uniform(0.3, 1.0)) * self.dropout_zone.clamp(0, 1))
        return volume.clamp_min(0)

    def spacing(self, epi: bool) -> np.ndarray:
        """Output voxel size (mm) per axis: around 1 mm (0.5–3 mm), EPI 2–4 mm; sometimes one
        thick axis."""
        if epi:
            spacing = np.full(3, self.rng.uniform(2.0, 4.0)) * self.rng.uniform(0.9, 1.1, 3)
        else:
            spacing = np.full(3, float(np.clip(math.exp(self.rng.normal(0.0, 0.35)), 0.5, 3.0)))
        if self.rng.random() < 0.35:
            spacing[int(self.rng.integers(3))] = self.rng.uniform(2.0, 5.0)
        return spacing

    def image(self, volume: torch.Tensor, spacing: np.ndarray, epi: bool) -> torch.Tensor:
        """Resample ``volume`` onto a rotated, scaled, warped grid of ``spacing`` mm voxels,
        filtered against aliasing, with a field of view that may cut the head."""
        source = self.atlas.spacing
        extent = np.asarray(volume.shape) * source
        fov = extent * np.where(self.rng.random(3) < 0.3, self.rng.uniform(0.5, 1.0, 3), self.rng.uniform(1.0, 1.25, 3))
        shape = np.maximum(np.round(fov / spacing), 1)
        if shape.prod() > MAX_VOXELS:
            shape = np.floor(shape * (MAX_VOXELS / shape.prod()) ** (1 / 3))
        shape = np.maximum(shape, self.min_size).astype(int)
        blur = 0.4 * np.maximum(spacing / source, 1.0)
        blur = np.where(blur > 0.45, blur, 0.0)
        if blur.any():
            volume = torch.from_numpy(ndimage.gaussian_filter(volume.numpy(), blur))
        angles = self.rng.uniform(-0.45, 0.45, 3) if self.rng.random() < 0.5 else self.rng.uniform(-0.08, 0.08, 3)
        rotation = rotation_matrix(angles) * self.rng.uniform(0.88, 1.12, 3)[None, :]
        centre_shift = self.rng.uniform(-0.1, 0.1, 3) * extent
        axes = [(torch.arange(n, dtype=torch.float32) - (n - 1) / 2) * float(s) for n, s in zip(shape, spacing)]
        points = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
        warp_mm = float(self.rng.uniform(0, 4.0))
        points = points + warp_mm * torch.stack([artifacts.smooth_field(tuple(shape), self.rng, 5) for _ in range(3)], -1)
        if epi:
            axis = int(self.rng.integers(3))
            points[..., axis] += float(self.rng.uniform(0, 3.0)) * float(spacing[axis]) * artifacts.smooth_field(
                tuple(shape), self.rng, 4)
        mm = points @ torch.from_numpy(rotation.T.astype(np.float32)) + torch.from_numpy(centre_shift.astype(np.float32))
        index = mm / source + (torch.tensor(volume.shape, dtype=torch.float32) - 1) / 2
        normalized = 2 * index / (torch.tensor(volume.shape, dtype=torch.float32) - 1) - 1
        grid = normalized.flip(-1)[None]  # grid_sample wants (x, y, z) = (W, H, D)
        sampled = F.grid_sample(volume[None, None].float(), grid, mode="bilinear", padding_mode="zeros",
                                align_corners=True)
        return sampled[0, 0]


def rotation_matrix(angles: np.ndarray) -> np.ndarray:
    """Rotation by ``angles`` (radians) about the three axes in turn."""
    matrix = np.eye(3)
    for axis, angle in enumerate(angles):
        a, b = [i for i in range(3) if i != axis]
        turn = np.eye(3)
        turn[a, a] = turn[b, b] = math.cos(angle)
        turn[a, b], turn[b, a] = -math.sin(angle), math.sin(angle)
        matrix = turn @ matrix
    return matrix
