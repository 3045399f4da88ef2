"""Fidelity of a reconstruction: PSNR, 3D SSIM and maximum absolute error.

All three use the original's full intensity range (max − min over all voxels) as the
peak / data range, so they do not depend on the storage dtype.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from mriae.codec import psnr, volumes_of

__all__ = ["max_abs_error", "psnr", "ssim", "ssim_map"]

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # Gaussian window of 11 voxels per axis, as in scikit-image
K1, K2 = 0.01, 0.03


def max_abs_error(original: np.ndarray, reconstruction: np.ndarray) -> float:
    """Largest absolute voxel difference, in the original's intensity units."""
    difference = np.asarray(original, dtype=np.float64) - np.asarray(reconstruction, dtype=np.float64)
    return float(np.abs(difference).max())


def ssim_map(original: np.ndarray, reconstruction: np.ndarray, data_range: float) -> np.ndarray:
    """Local SSIM of two 3D volumes with an isotropic Gaussian window (σ = 1.5 voxels,
    population statistics, reflected borders) — Wang et al. 2004, in 3D."""
    x = np.asarray(original, dtype=np.float64)
    y = np.asarray(reconstruction, dtype=np.float64)

    def blur(a: np.ndarray) -> np.ndarray:
        return gaussian_filter(a, SSIM_SIGMA, mode="reflect", truncate=SSIM_TRUNCATE)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def ssim(original: np.ndarray, reconstruction: np.ndarray) -> float:
    """Mean 3D SSIM over all voxels (every 3D volume of a 4D+ series, averaged), with
    data range = max − min of the whole original."""
    original = np.asarray(original)
    data_range = float(original.max()) - float(original.min())
    if data_range == 0:
        return 1.0 if np.array_equal(original, reconstruction) else 0.0
    a, b = volumes_of(original), volumes_of(np.asarray(reconstruction))
    return float(np.mean([ssim_map(a[..., i], b[..., i], data_range).mean() for i in range(a.shape[3])]))
