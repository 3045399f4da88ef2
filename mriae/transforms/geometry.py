"""Spatial stages between an image's grid and the network's: resample, pad, and back.

A :class:`GridPlan` records everything the inverse needs, so a decoder rebuilds the original
grid from the plan alone (TorchIO-style: the transform records what it did). Resampling
(:mod:`mriae.transforms.resample`, torch alone, the same as MONAI's ``Spacing`` forward and
``SpatialResample`` back) goes onto the voxel size asked for and back onto the original
affine and shape; padding replicates edge voxels (cheap to code) up to the multiples the
network's per-axis strides need, and the inverse crops them off.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from mriae.limits import Limits
from mriae.transforms.grid import GridPlan, plan_on
from mriae.transforms.resample import recorded_affine, resample, spacing_grid
from mriae.transforms.tiles import Box, box_shape, region_affine


def plan(shape: tuple[int, ...], affine: np.ndarray, levels: int, spacing: tuple[float, ...] | None = None) -> GridPlan:
    """Plan the grids of a 3D volume of ``shape`` for a network with ``levels`` stride-2 stages,
    resampled to ``spacing`` first if it is given."""
    if spacing is None:
        return plan_on(shape, affine, levels)
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be three positive numbers in mm (got {tuple(spacing)})")
    zooms = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    expected = tuple(int(np.ceil(n * z / s)) for n, z, s in zip(shape[:3], zooms, spacing))
    Limits.from_environment().check_volume(expected, f"resampling to {'×'.join(f'{s:g}' for s in spacing)} mm gives a grid")
    volume_shape = tuple(int(n) for n in shape[:3])
    coding_shape, target = spacing_grid(volume_shape, affine, spacing)
    return plan_on(shape, affine, levels, coding_shape, recorded_affine(affine, target, volume_shape, coding_shape))


def to_network_grid(volume: np.ndarray, grid: GridPlan) -> torch.Tensor:
    """(1, 1, *padded_shape) float32 tensor from a [0, 1] volume on the original grid."""
    affine = np.asarray(grid.affine).reshape(4, 4)
    if grid.resampled:
        spacing = np.linalg.norm(_affine(grid.coding_affine)[:3, :3], axis=0)
        coding_shape, target = spacing_grid(volume.shape[:3], affine, tuple(spacing))
        tensor = resample(volume, affine, target, coding_shape)
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
        return _resampled(cropped, _affine(grid.coding_affine), _affine(grid.affine), grid.shape)
    return cropped.detach().cpu().numpy().astype(np.float32)


def coding_region(grid: GridPlan, region: Box) -> Box:
    """The box of ``grid``'s coding grid that resampling back onto ``region`` of the original
    grid reads: the bilinear neighbours of every point it samples, and a voxel more on each
    side for rounding, within the coding grid (at least its edge voxels, which points beyond
    it take)."""
    to_coding = np.linalg.inv(_affine(grid.coding_affine)) @ _affine(grid.affine)
    corners = np.array(list(itertools.product(*((start, stop - 1) for start, stop in region))), dtype=np.float64)
    points = corners @ to_coding[:3, :3].T + to_coding[:3, 3]
    box = []
    for first, last, n in zip(np.floor(points.min(axis=0)) - 1, np.floor(points.max(axis=0)) + 3, grid.coding_shape):
        start = int(np.clip(first, 0, n - 1))
        box.append((start, int(np.clip(last, start + 1, n))))
    return tuple(box)


def resample_region(values: np.ndarray, grid: GridPlan, coding: Box, region: Box) -> np.ndarray:
    """``region`` of the original grid (float32), resampled from ``values``, the box
    ``coding`` of the coding grid (:func:`coding_region`); the same as that region of the
    whole volume resampled, to rounding."""
    return _resampled(values, region_affine(_affine(grid.coding_affine), coding),
                      region_affine(_affine(grid.affine), region), box_shape(region))


def _affine(values: tuple[float, ...]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(4, 4)


def _resampled(values: np.ndarray | torch.Tensor, affine: np.ndarray, target: np.ndarray,
               shape: tuple[int, ...]) -> np.ndarray:
    """``values`` on the grid of ``affine`` resampled (bilinear, edge values beyond the border)
    onto the grid of ``target`` and ``shape``, as float32."""
    return resample(values.detach().cpu() if isinstance(values, torch.Tensor) else values, affine, target,
                    shape).numpy().astype(np.float32)
