"""Bilinear resampling between voxel grids, in torch alone (no MONAI needed).

Files compressed with ``--spacing`` record a coding grid that MONAI's ``Spacing`` chose, and
their decoded voxels come from MONAI's ``SpatialResample``; both depend on every rounding.
This module repeats those computations operation for operation, so it gives the same grid,
the same affine and the same voxels, bit for bit (tests/test_resample.py compares the two
where MONAI is installed; tests/test_golden.py decodes a resampled golden file):

* :func:`spacing_grid` — ``Spacing(pixdim, diagonal=False)``: the rotation of the affine is
  kept, its shear dropped, its voxel size set (a size within :data:`AFFINE_TOL` of the
  image's is kept as it is), the extent rounded from the corners' positions and the origin
  put on the corner that lands lowest (MONAI's ``zoom_affine`` and ``compute_shape_offset``);
* :func:`resample` — ``SpatialResample(mode="bilinear", padding_mode="border",
  dtype=float64)``: ``affine_grid`` and ``grid_sample`` (align_corners=False) in float64 on
  coordinates normalised to [-1, 1], the result in float32;
* :func:`recorded_affine` — the affine MONAI then records for the result.
"""

from __future__ import annotations

import numpy as np
import torch

AFFINE_TOL = 1e-3
"""MONAI's tolerance: voxel sizes, and grids, this close count as the same."""


def spacing_grid(shape: tuple[int, int, int], affine: np.ndarray,
                 spacing: tuple[float, float, float]) -> tuple[tuple[int, int, int], np.ndarray]:
    """The grid (shape, affine) that a 3D volume of ``shape`` on ``affine`` is resampled onto
    to get voxels of ``spacing`` mm (three positive numbers)."""
    affine = np.asarray(affine, dtype=np.float64)
    wanted = np.array(spacing, dtype=np.float64)
    current = np.sqrt(np.sum(affine[:3, :3] * affine[:3, :3], axis=0))
    current[current == 0] = 1.0
    sizes = np.where((wanted - AFFINE_TOL <= current) & (current <= wanted + AFFINE_TOL), current, wanted)
    linear = affine[:3, :3]
    upper = np.linalg.cholesky(linear.T @ linear).T
    target = np.eye(4)
    target[:3, :3] = linear @ np.linalg.inv(upper) @ np.diag(np.sign(np.diag(upper)) * np.abs(sizes))
    extent = np.array(tuple(shape), dtype=float)
    corners = np.asarray(np.meshgrid(*((0.0, n - 1.0) for n in extent), indexing="ij")).reshape((3, -1))
    corners = np.concatenate((corners, np.ones_like(corners[:1])))
    landed = np.linalg.solve(target, affine) @ corners
    world = affine @ corners
    size = np.round(np.ptp(landed[:-1] / landed[-1], axis=1) + 1.0)
    origin = next((world[:-1, i] for i in range(corners.shape[1])
                   if np.allclose(np.min(landed[:-1] - landed[:-1, i:i + 1], 1), 0.0, rtol=AFFINE_TOL)), None)
    if origin is None:  # no corner lowest on every axis: centre the new grid on the old one
        origin = affine[:3, :3] @ (extent / 2.0) + affine[:3, 3] - target[:3, :3] @ (size / 2.0)
    target[:3, 3] = origin
    return tuple(int(n) for n in size.astype(int)), target


def recorded_affine(affine: np.ndarray, target: np.ndarray, shape: tuple[int, ...],
                    target_shape: tuple[int, ...]) -> np.ndarray:
    """The affine of ``resample(values on shape and affine, target, target_shape)``:
    ``affine @ solve(affine, target)`` (``target`` to rounding), or ``affine`` itself when
    the grid does not move."""
    affine = np.asarray(affine, dtype=np.float64)
    move = np.linalg.solve(affine, np.asarray(target, dtype=np.float64))
    if _stays(affine, target, move, shape, target_shape):
        return affine
    return (torch.as_tensor(affine) @ torch.as_tensor(move)).numpy()


def resample(values: np.ndarray | torch.Tensor, affine: np.ndarray, target: np.ndarray,
             shape: tuple[int, int, int]) -> torch.Tensor:
    """The 3D ``values`` on the grid of ``affine`` resampled (bilinear, edge values beyond the
    border) onto the grid of ``target`` and ``shape``, as a float32 tensor (``values``
    themselves, as float32, when the grid does not move)."""
    values = torch.as_tensor(values, dtype=torch.float32)
    source_shape = tuple(int(n) for n in values.shape)
    affine = np.asarray(affine, dtype=np.float64)
    move = np.linalg.solve(affine, np.asarray(target, dtype=np.float64))
    if _stays(affine, target, move, source_shape, shape):
        return values
    theta = _normalised(source_shape) @ torch.as_tensor(move) @ torch.as_tensor(np.linalg.inv(_normalised(shape).numpy()))
    theta = theta[[2, 1, 0, 3]][:, [2, 1, 0, 3]]  # grid_sample's coordinates run (x, y, z) over dims (W, H, D)
    grid = torch.nn.functional.affine_grid(theta[None, :3], [1, 1, *shape], align_corners=False)
    out = torch.nn.functional.grid_sample(values.to(torch.float64)[None, None], grid, mode="bilinear",
                                          padding_mode="border", align_corners=False)
    return out[0, 0].float()


def _stays(affine: np.ndarray, target: np.ndarray, move: np.ndarray, shape: tuple[int, ...],
           target_shape: tuple[int, ...]) -> bool:
    """True when resampling would not move the grid (MONAI then returns the values as they are)."""
    return tuple(shape) == tuple(target_shape) and (
        np.allclose(affine, target, atol=AFFINE_TOL) or np.allclose(move, np.eye(4), atol=AFFINE_TOL))


def _normalised(shape: tuple[int, ...]) -> torch.Tensor:
    """Voxel indices → [-1, 1] over the voxels' outer edges (align_corners=False), homogeneous."""
    extent = torch.as_tensor(shape, dtype=torch.float64)
    scale = extent.clone()
    scale[scale <= 0.0] = 2.0
    matrix = torch.diag(torch.cat((2.0 / scale, torch.ones(1, dtype=torch.float64))))
    matrix[:-1, -1] = 1.0 / extent - 1.0
    return matrix
