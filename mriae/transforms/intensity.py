"""Intensity scaling to the network's [0, 1] range and its exact inverse back to a dtype.

The range is robust to outliers: a hot voxel at 32767 in a T1 whose tissue spans 0–1000, or
two float voxels at ±3e38, would otherwise squeeze the whole head into a sliver of [0, 1].
Voxels far outside the bulk of a volume's values are split off (and stored exactly beside
the code, mriae.exact), and the range is that of the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OUTLIER_QUANTILE = 1e-3
"""The bulk of a volume lies between its OUTLIER_QUANTILE and 1 − OUTLIER_QUANTILE quantiles."""
OUTLIER_MARGIN = 2.0
"""A voxel is an outlier when it lies more than OUTLIER_MARGIN × the bulk's width beyond it:
so at most 2 · OUTLIER_QUANTILE of the voxels (a marker of up to 0.1 % of the volume), and
none at all in an ordinary scan."""


def outlier_mask(volume: np.ndarray) -> np.ndarray | None:
    """Boolean mask of ``volume``'s outliers, or None if it has none."""
    low, high = np.quantile(volume, [OUTLIER_QUANTILE, 1 - OUTLIER_QUANTILE], method="nearest")
    margin = OUTLIER_MARGIN * (float(high) - float(low))
    mask = (volume < float(low) - margin) | (volume > float(high) + margin)
    return mask if mask.any() else None


@dataclass(frozen=True)
class IntensityRange:
    """The [low, high] of a volume, recorded so that scaling can be undone."""

    low: float
    high: float

    @classmethod
    def of(cls, volume: np.ndarray, outliers: np.ndarray | None = None) -> IntensityRange:
        """The range of ``volume`` without its ``outliers`` (a mask); ValueError if it
        is too wide for float64 arithmetic."""
        inside = volume if outliers is None else volume[~outliers]
        low, high = float(np.min(inside)), float(np.max(inside))
        if not np.isfinite(high - low):
            raise ValueError(f"its values span {low:.6g} … {high:.6g}, too wide a range to code")
        return cls(low, high)

    @property
    def constant(self) -> bool:
        """True for a volume of one value: nothing to code but the value."""
        return self.high <= self.low

    def scale(self, volume: np.ndarray) -> np.ndarray:
        """``volume`` mapped to [0, 1] as float32, values outside the range clipped (all
        zeros for a constant volume)."""
        if self.constant:
            return np.zeros(volume.shape, dtype=np.float32)
        scaled = (np.asarray(volume, dtype=np.float64) - self.low) / (self.high - self.low)
        return np.clip(scaled, 0.0, 1.0).astype(np.float32)

    def unscale(self, scaled: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """Inverse of :meth:`scale`, rounded and clipped to ``dtype`` (and to [low, high])."""
        values = np.array(scaled, dtype=np.float64)  # a copy, worked on in place
        np.clip(values, 0.0, 1.0, out=values)
        values *= self.high - self.low
        values += self.low
        dtype = np.dtype(dtype)
        if dtype.kind in "iu":
            np.clip(np.rint(values, out=values), self.low, self.high, out=values)
        return values.astype(dtype)
