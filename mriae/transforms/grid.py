"""The padded grid on which the network runs, and how deep it strides each axis.

Every axis is strided by all ``levels`` stages and padded (edge-replicated) up to a multiple
of ``2**levels``. Replicated slices carry no new information, so they code to almost
nothing: a single slice padded to 8 costs about what the slice alone carries, and the
latent grid is the same size as a dedicated 2D path would give. The per-axis form of the
plan (and of the network's strides) leaves room for shallower strides on some axes.
"""

from __future__ import annotations

import math


def padded_length(length: int, levels: int) -> int:
    """Smallest multiple of ``2**levels`` that holds ``length`` voxels."""
    if length < 1:
        raise ValueError(f"axis length must be >= 1, got {length}")
    unit = 2**levels
    return math.ceil(length / unit) * unit


def plan_grid(shape: tuple[int, ...], levels: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(stride-2 stages per axis, padded shape) for a spatial ``shape``."""
    return tuple(levels for _ in shape), tuple(padded_length(n, levels) for n in shape)
