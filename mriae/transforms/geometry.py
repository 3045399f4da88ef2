"""Spatial stages between an image's grid and the network's: resample, pad, and back.

A :class:`GridPlan` records everything the inverse needs, so a decoder rebuilds the original
grid from the plan alone (TorchIO-style: the transform records what it did). Resampling
uses MONAI's ``Spacing`` forward and ``SpatialResample`` onto the original affine and shape
back; padding replicates edge voxels (cheap to code) up to the multiples the network's
per-axis strides need, and the inverse crops them off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from mriae.limits import Limits
from mriae.transforms.grid import GridPlan, plan_on

if TYPE_CHECKING:
    from monai.data import MetaTensor


def _meta(volume: np.ndarray | torch.Tensor, affine: np.ndarray) -> MetaTensor:
    from monai.data import MetaTensor  # MONAI is imported only when a volume is resampled

    return MetaTensor(torch.as_tensor(volume, dtype=torch.float32)[None], affine=torch.as_tensor(affine))


def _resample_to_spacing(volume: np.ndarray, affine: np.ndarray, spacing: tuple[float, ...]) -> MetaTensor:
    from monai.transforms import Spacing

    return Spacing(pixdim=spacing, mode="bilinear", padding_mode="border", dtype=torch.float64)(_meta(volume, affine))


def plan(shape: tuple[int, ...], affine: np.ndarray, levels: int, spacing: tuple[float, ...] | None = None) -> GridPlan:
    """Plan the grids of a 3D volume of ``shape`` for a network with ``levels`` stride-2 stages,
    resampled to ``spacing`` first if it is given."""
    if spacing is None:
        return plan_on(shape, affine, levels)
    zooms = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    expected = tuple(int(np.ceil(n * z / s)) for n, z, s in zip(shape[:3], zooms, spacing))
    Limits.from_environment().check_volume(expected, f"resampling to {'×'.join(f'{s:g}' for s in spacing)} mm gives a grid")
    probe = _resample_to_spacing(np.zeros(tuple(int(n) for n in shape[:3]), dtype=np.float32), affine, spacing)
    return plan_on(shape, affine, levels, tuple(int(n) for n in probe.shape[1:]), np.asarray(probe.affine))


def to_network_grid(volume: np.ndarray, grid: GridPlan) -> torch.Tensor:
    """(1, 1, *padded_shape) float32 tensor from a [0, 1] volume on the original grid."""
    affine = np.asarray(grid.affine).reshape(4, 4)
    if grid.resampled:
        spacing = np.linalg.norm(np.asarray(grid.coding_affine).reshape(4, 4)[:3, :3], axis=0)
        tensor = _resample_to_spacing(volume, affine, tuple(spacing)).as_tensor().float()[0]
    else:
        tensor = torch.as_tensor(np.asarray(volume, dtype=np.float32))
    pad = [p for n, q in zip(reversed(grid.coding_shape), reversed(grid.padded_shape)) for p in (0, q - n)]
    tensor = tensor[None, None]
    return torch.nn.functional.pad(tensor, pad, mode="replicate") if any(pad) else tensor


def from_network_grid(tensor: torch.Tensor, grid: GridPlan) -> np.ndarray:
    """Inverse of :func:`to_network_grid`: crop the padding, resample onto the original grid."""
    d, h, w = grid.coding_shape
    cropped = tensor[0, 0, :d, :h, :w]
    if grid.resampled:
        from monai.transforms import SpatialResample

        back = SpatialResample(mode="bilinear", padding_mode="border", dtype=torch.float64)(
            _meta(cropped, np.asarray(grid.coding_affine).reshape(4, 4)),
            dst_affine=torch.as_tensor(np.asarray(grid.affine).reshape(4, 4)),
            spatial_size=grid.shape,
        )
        cropped = back.as_tensor()[0]
    return cropped.detach().cpu().numpy().astype(np.float32)
