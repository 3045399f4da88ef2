"""Intensity scaling to the network's [0, 1] range and its exact inverse back to a dtype."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class IntensityRange:
    """The [low, high] of a volume, recorded so that scaling can be undone."""

    low: float
    high: float

    @classmethod
    def of(cls, volume: np.ndarray) -> "IntensityRange":
        return cls(float(np.min(volume)), float(np.max(volume)))

    @property
    def constant(self) -> bool:
        return self.high <= self.low

    def scale(self, volume: np.ndarray) -> np.ndarray:
        """``volume`` mapped to [0, 1] as float32 (all zeros for a constant volume)."""
        if self.constant:
            return np.zeros(volume.shape, dtype=np.float32)
        scaled = (np.asarray(volume, dtype=np.float64) - self.low) / (self.high - self.low)
        return scaled.astype(np.float32)

    def unscale(self, scaled: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """Inverse of :meth:`scale`, rounded and clipped to ``dtype`` (and to [low, high])."""
        values = self.low + np.clip(np.asarray(scaled, dtype=np.float64), 0.0, 1.0) * (self.high - self.low)
        dtype = np.dtype(dtype)
        if dtype.kind in "iu":
            values = np.clip(np.rint(values), self.low, self.high)
        return values.astype(dtype)
