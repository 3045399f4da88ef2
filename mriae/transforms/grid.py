"""Which axes the network strides, and the padded grid that makes them divide exactly."""

from __future__ import annotations

import math

MAX_PAD_FRACTION = 0.25
"""An axis is strided only as deep as its padding stays within this fraction of its length."""


def axis_levels(length: int, max_levels: int) -> int:
    """Number of stride-2 stages for an axis of ``length`` voxels (0 for a single slice)."""
    if length < 1:
        raise ValueError(f"axis length must be >= 1, got {length}")
    for levels in range(max_levels, 0, -1):
        if padded_length(length, levels) <= length * (1 + MAX_PAD_FRACTION):
            return levels
    return 0


def padded_length(length: int, levels: int) -> int:
    """Smallest multiple of ``2**levels`` that holds ``length`` voxels."""
    unit = 2**levels
    return math.ceil(length / unit) * unit


def plan_grid(shape: tuple[int, ...], max_levels: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(levels per axis, padded shape) for a spatial ``shape``."""
    levels = tuple(axis_levels(n, max_levels) for n in shape)
    return levels, tuple(padded_length(n, k) for n, k in zip(shape, levels))
