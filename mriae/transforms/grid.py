"""The padded grid on which the network runs, and how deep it strides each axis.

Every axis is strided by all ``levels`` stages and padded (edge-replicated) up to a multiple
of ``2**levels``. Replicated slices carry no new information, so they code to almost
nothing: a single slice padded to 8 costs about what the slice alone carries, and the
latent grid is the same size as a dedicated 2D path would give. The per-axis form of the
plan (and of the network's strides) leaves room for shallower strides on some axes.

:class:`GridPlan` records the grids of one volume (torch-free, so that the header parser can
rebuild it); mriae.transforms.geometry moves volumes between them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


def padded_length(length: int, levels: int) -> int:
    """Smallest multiple of ``2**levels`` that holds ``length`` voxels."""
    if length < 1:
        raise ValueError(f"axis length must be >= 1, got {length}")
    unit = 2**levels
    return math.ceil(length / unit) * unit


def plan_grid(shape: tuple[int, ...], levels: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(stride-2 stages per axis, padded shape) for a spatial ``shape``."""
    return tuple(levels for _ in shape), tuple(padded_length(n, levels) for n in shape)


@dataclass(frozen=True)
class GridPlan:
    """Original grid → (optionally resampled) coding grid → padded network grid."""

    shape: tuple[int, int, int]
    affine: tuple[float, ...]  # 16 values, row-major
    coding_shape: tuple[int, int, int]
    coding_affine: tuple[float, ...]
    padded_shape: tuple[int, int, int]
    levels: tuple[int, int, int]

    @property
    def resampled(self) -> bool:
        return self.coding_shape != self.shape or self.coding_affine != self.affine

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> GridPlan:
        return cls(**{key: tuple(value) for key, value in record.items()})


def plan_on(
    shape: tuple[int, ...],
    affine: np.ndarray,
    levels: int,
    coding_shape: tuple[int, ...] | None = None,
    coding_affine: np.ndarray | None = None,
) -> GridPlan:
    """The plan of a volume of ``shape`` coded on its own grid, or on the given coding grid."""
    shape = tuple(int(n) for n in shape[:3])
    affine = np.asarray(affine, dtype=np.float64)
    coding_shape = shape if coding_shape is None else tuple(int(n) for n in coding_shape)
    coding_affine = affine if coding_affine is None else np.asarray(coding_affine, dtype=np.float64)
    axis_levels, padded = plan_grid(coding_shape, levels)
    return GridPlan(
        shape, tuple(affine.ravel().tolist()), coding_shape, tuple(coding_affine.ravel().tolist()), padded, axis_levels
    )
