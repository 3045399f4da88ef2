"""Exact mirror symmetry: a volume equal to its own reflection is coded as its first half.

Symmetric templates and atlases (the MNI152 "sym" templates, atlases built on them) are left–
right mirror images voxel for voxel; a general-purpose compressor such as zstd finds those
repeats, a predictive coder does not. The encoder checks each axis (one comparison pass);
the decoder unfolds the half it decodes. Anything short of exact equality is coded as it is.
"""

from __future__ import annotations

import numpy as np


def mirror_axis(volume: np.ndarray) -> int | None:
    """The first axis (of length ≥ 2) along which ``volume`` equals its reflection, or None."""
    for axis, length in enumerate(volume.shape):
        if length >= 2 and np.array_equal(volume, np.flip(volume, axis)):
            return axis
    return None


def half_shape(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    """Shape of the half coded for a volume of ``shape`` mirrored along ``axis``."""
    return tuple(-(-n // 2) if a == axis else n for a, n in enumerate(shape))


def first_half(volume: np.ndarray, axis: int) -> np.ndarray:
    """The half of ``volume`` that is coded (the middle slice included for odd lengths)."""
    return np.take(volume, range(half_shape(volume.shape, axis)[axis]), axis=axis)


def unfold(half: np.ndarray, axis: int, length: int) -> np.ndarray:
    """The whole volume of ``length`` along ``axis`` from its coded ``half``."""
    rest = np.flip(np.take(half, range(length // 2), axis=axis), axis)
    return np.concatenate([half, rest], axis=axis)
