"""The deadzone uniform quantizer of the wavelet coefficients, and its reconstruction.

A band's step is the volume's step divided by the band's synthesis gain, so that a unit of
quantization error costs the same squared error in the volume in every band. A coefficient c
becomes q = sign(c)·⌊|c| / step + rounding⌋ (rounding < ½ widens the zero bin, the deadzone:
small coefficients cost almost nothing to code as 0) and comes back as
sign(q)·(|q| + offset)·step, where the offset (stored in the stream) moves the reconstruction
toward the centroid of the bin, which for peaked coefficient distributions lies below its
middle. The low band is quantized without a deadzone (rounding ½, offset 0).

The encoder then requantizes (:func:`rd_quantize`): each coefficient takes whichever of its
nearest index and the next toward 0 costs less squared error plus a trade times its bits in
its context, which zeroes the costly isolated small coefficients a fixed deadzone keeps.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

OFFSET_DENOMINATOR = 64
"""Reconstruction offsets are stored as whole 64ths of a step."""
OFFSET_RANGE = (-32, 64)
"""Bounds of a stored offset, in 64ths."""


def quantize(coefficients: np.ndarray, step: float, rounding: float) -> np.ndarray:
    """The int64 indices of ``coefficients`` under ``step`` (deadzone ``rounding``)."""
    magnitude = np.floor(np.abs(coefficients) / step + rounding)
    return np.where(coefficients < 0, -magnitude, magnitude).astype(np.int64)


def dequantize(indices: np.ndarray, step: float, offset: int) -> np.ndarray:
    """The float64 coefficients of ``indices`` (``offset`` in 64ths of a step); elementwise
    IEEE arithmetic, the same on every machine."""
    magnitude = (np.abs(indices).astype(np.float64) + offset / OFFSET_DENOMINATOR) * step
    return np.where(indices < 0, -magnitude, np.where(indices > 0, magnitude, 0.0))


def best_offset(ratios: list[dict], indices: list[dict]) -> int:
    """The offset (64ths, within OFFSET_RANGE) that minimizes the squared error of the nonzero
    indices: the mean of |c| / step − |q| over them (``ratios``: c / step, per level and band)."""
    total = count = 0.0
    for level_ratios, level_indices in zip(ratios, indices):
        for orientation, q in level_indices.items():
            nonzero = q != 0
            total += float((np.abs(level_ratios[orientation][nonzero]) - np.abs(q[nonzero])).sum())
            count += int(nonzero.sum())
    offset = round(total / count * OFFSET_DENOMINATOR) if count else 0
    return min(max(offset, OFFSET_RANGE[0]), OFFSET_RANGE[1])


def rd_quantize(ratios: np.ndarray, offset: int, trade: float, bits: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Indices of coefficients (``ratios``: c / step) each chosen of the index nearest to it
    and the next toward 0, by squared error (in steps²) + ``trade`` × ``bits(indices)``."""
    shift = offset / OFFSET_DENOMINATOR
    magnitude = np.abs(ratios)
    near = np.maximum(np.floor(magnitude - shift + 0.5), 0.0)
    below = np.maximum(near - 1.0, 0.0)
    sign = np.where(ratios < 0, -1, 1)
    costs = []
    for level in (near, below):
        error = np.where(level > 0, magnitude - level - shift, magnitude)
        costs.append(error * error + trade * bits((sign * level).astype(np.int64)))
    return (sign * np.where(costs[1] < costs[0], below, near)).astype(np.int64)
