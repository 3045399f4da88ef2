"""Synthetic MR-like training volumes: brains from nilearn's MNI152 templates and, when an
atlas is given, whole heads (mriae.training.heads).

Brains: tissue probability maps (grey matter, white matter, the rest of the head) receive random
intensities, then a random elastic/affine deformation, bias field, a coarser voxel grid
(clinical scans have 2–4 mm voxels, so more detail per voxel than a 1 mm template), slice
thickness, noise and orientation. The real T1 template is drawn too. Nothing here downloads: the maps ship
inside nilearn's wheel.
"""

from __future__ import annotations

from pathlib import Path

import monai.transforms as mt
import nibabel as nib
import numpy as np
import torch

from mriae.training.atlas import HeadAtlas
from mriae.training.heads import SyntheticHeads

TEMPLATES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


def template_dir() -> Path:
    """Folder of nilearn's bundled MNI152 2009 templates."""
    import nilearn.datasets

    return Path(nilearn.datasets.__file__).parent / "data"


def load_templates() -> dict[str, torch.Tensor]:
    """T1, GM and WM maps as float tensors in [0, 1], shaped (1, 197, 233, 189)."""
    folder = template_dir()
    return {
        name: torch.from_numpy(nib.load(folder / file).get_fdata(dtype=np.float32) / 255.0)[None]
        for name, file in TEMPLATES.items()
    }


def normalize(volume: torch.Tensor) -> torch.Tensor:
    """Min–max scale to [0, 1], as the codec does."""
    low, high = volume.min(), volume.max()
    return (volume - low) / (high - low).clamp_min(1e-8)


class SyntheticVolumes:
    """Draws whole MR-like volumes in [0, 1]: ``head_fraction`` of them synthetic whole heads
    from ``atlas`` (none without one), of the brains ``real_fraction`` the real T1."""

    def __init__(self, seed: int, real_fraction: float = 0.25, min_size: int = 64, coarse_fraction: float = 0.5,
                 atlas: HeadAtlas | None = None, head_fraction: float = 0.0):
        self.maps = load_templates()
        self.rng = np.random.default_rng(seed)
        self.real_fraction = real_fraction
        self.min_size = min_size
        self.coarse_fraction = coarse_fraction
        self.heads = SyntheticHeads(atlas, seed + 3, min_size) if atlas is not None else None
        self.head_fraction = head_fraction if atlas is not None else 0.0
        self.deform = mt.Rand3DElastic(
            sigma_range=(6, 9), magnitude_range=(30, 150), prob=0.8, rotate_range=(0.3,) * 3,
            scale_range=(0.15,) * 3, padding_mode="zeros", mode="bilinear",
        )
        self.bias = mt.RandBiasField(prob=0.7, coeff_range=(0.1, 0.5))
        self.deform.set_random_state(seed + 1)
        self.bias.set_random_state(seed + 2)

    def contrast(self) -> torch.Tensor:
        """Random tissue contrast mixed from the probability maps and the T1's head texture."""
        t1, gm, wm = self.maps["t1"], self.maps["gm"], self.maps["wm"]
        head = torch.clamp(t1 * 4, 0, 1)
        rest = torch.clamp(head - gm - wm, 0, 1)
        brain = torch.clamp(gm + wm, 0, 1)
        csf = (1 - brain) * (t1 < 0.3) * head
        weights = self.rng.uniform(0, 1, size=4)
        texture = self.rng.uniform(0, 0.8)
        mixed = weights[0] * gm + weights[1] * wm + weights[2] * csf + weights[3] * (rest - csf).clamp_min(0)
        return mixed + texture * t1

    def __call__(self) -> torch.Tensor:
        """One volume (1, D, H, W) in [0, 1]."""
        if self.heads is not None and self.rng.random() < self.head_fraction:
            return self.heads()
        if self.rng.random() < self.real_fraction:
            volume = self.maps["t1"].clone()
        else:
            volume = self.contrast() ** self.rng.uniform(0.6, 1.6)
        volume = self.deform(volume)
        volume = self.bias(volume.clamp_min(0)).clamp_min(0)
        volume = self.degrade(self.coarsen(normalize(volume)))
        return normalize(self.orient(volume))

    def coarsen(self, volume: torch.Tensor) -> torch.Tensor:
        """With probability ``coarse_fraction``, average onto a grid up to 3× coarser per axis
        (independently: anisotropic voxels), keeping every axis at least ``min_size`` long."""
        if self.rng.random() >= self.coarse_fraction:
            return volume
        size = volume.shape[1:]
        low = [max(self.min_size, round(n / self.rng.uniform(1.0, 3.0))) for n in size]
        return torch.as_tensor(mt.Resize(low, mode="area")(volume))

    def degrade(self, volume: torch.Tensor) -> torch.Tensor:
        """Random slice thickness along one axis, then Rician-like noise."""
        if self.rng.random() < 0.5:
            axis = int(self.rng.integers(1, 4))
            factor = float(self.rng.uniform(1.5, 5.0))
            size = list(volume.shape[1:])
            low = list(size)
            low[axis - 1] = max(2, round(size[axis - 1] / factor))
            volume = mt.Resize(low, mode="area")(volume)
            volume = mt.Resize(size, mode="trilinear")(volume)
        sigma = float(self.rng.choice([0.0, self.rng.uniform(0.0, 0.04)]))
        if sigma > 0:
            noise = torch.randn((2, *volume.shape), generator=torch.Generator().manual_seed(int(self.rng.integers(2**31))))
            volume = torch.sqrt((volume + sigma * noise[0]) ** 2 + (sigma * noise[1]) ** 2)
        return torch.as_tensor(volume)

    def orient(self, volume: torch.Tensor) -> torch.Tensor:
        """Random axis permutation and flips."""
        order = [0, *(1 + self.rng.permutation(3))]
        volume = volume.permute(*order)
        flips = [axis for axis in (1, 2, 3) if self.rng.random() < 0.5]
        return volume.flip(flips) if flips else volume
