"""Contexts of the quantized wavelet coefficients, computed from what the decoder already knows.

A band is coded in eight **phases**, one per parity class of its positions (:data:`PHASES`), so
that all but the first eighth of its coefficients see some of their 26 neighbours already
decoded. A coefficient's context is its band's **group** (the level: finest, next, coarser;
and how many axes the band is high along) and two buckets:

- the **neighbour** bucket: the mean magnitude of its already decoded neighbours in the band
  (the first phase has none, and a context of its own);
- the **outside** bucket: an estimate of its magnitude from other bands, the mean magnitude
  of the parent's 3×3×3 neighbourhood (the same orientation one level coarser), the parent
  itself, and the magnitudes of the level's earlier bands at the same position.

Magnitudes are capped at CAP. Everything is computed from decoded integers (elementwise
float64 for the outside estimate, the same on every machine), with the coefficients not yet
decoded counting as 0 on both sides.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

PHASES = ((0, 0, 0), (1, 1, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1))
"""The parity classes of a band's positions, in coding order."""
CAP = 255
NEAR_WEIGHTS = (4, 2, 1)
"""Weights of a coefficient's face, edge and corner neighbours in the neighbour mean."""
NEIGHBOUR_BOUNDS = (0, 0.05, 0.12, 0.25, 0.4, 0.6, 1, 1.5, 2.2, 3.2, 4.5, 6.5, 9, 13, 18, 26)
"""Upper bounds (inclusive) of the neighbour buckets (mean magnitude); one more bucket above."""
OUTSIDE_BOUNDS = (0, 0.05, 0.15, 0.3, 0.5, 0.8, 1.2, 2, 3, 5, 8, 12)
"""Upper bounds (inclusive) of the outside buckets; one more bucket above."""
PARENT_BOX, PARENT, SIBLINGS = 1 / 27, 0.5, 0.5
"""Weights of the outside estimate: the parent neighbourhood's sum, the parent, the siblings' sum."""
LEVEL_CLASSES, ORIENTATION_CLASSES = 3, 3
NEIGHBOUR_BUCKETS, OUTSIDE_BUCKETS = len(NEIGHBOUR_BOUNDS) + 1, len(OUTSIDE_BOUNDS) + 1
GROUP_CONTEXTS = OUTSIDE_BUCKETS * (1 + NEIGHBOUR_BUCKETS)
"""Contexts of a group: the first phase's (by outside bucket), then neighbour × outside bucket."""
GROUPS = LEVEL_CLASSES * ORIENTATION_CLASSES
CONTEXTS = 1 + GROUPS * GROUP_CONTEXTS
"""Context 0 codes the low band; then each group's."""

Slices = tuple[slice, slice, slice]


def group(level: int, orientation: tuple[int, int, int]) -> int:
    """The group of the band ``orientation`` at ``level`` (0 the finest)."""
    return min(level, LEVEL_CLASSES - 1) * ORIENTATION_CLASSES + sum(orientation) - 1


@functools.cache
def neighbours() -> tuple[tuple[int, int, int], ...]:
    """For each context, the contexts (left, up, up-left; −1: none) whose parameters predict
    its own: left has the next lower outside bucket, up the next lower neighbour bucket (or
    is the first phase's), in a group's grid of contexts; the first context of a group has
    the previous group's first context as its left one."""
    result = [(-1, -1, -1)] * CONTEXTS
    for g in range(GROUPS):
        base = 1 + g * GROUP_CONTEXTS
        for row, column in itertools.product(range(1 + NEIGHBOUR_BUCKETS), range(OUTSIDE_BUCKETS)):
            index = base + row * OUTSIDE_BUCKETS + column
            left = index - 1 if column else (base - GROUP_CONTEXTS if g and not row else -1)
            up = index - OUTSIDE_BUCKETS if row else -1
            result[index] = (left, up, up - 1 if row and column else -1)
    return tuple(result)


def predicted(values: list[int], where: tuple[int, int, int], default: int) -> int:
    """The prediction of a context's parameter from those of its :func:`neighbours` ``where``
    (``values`` by context): the median of left, up and left + up − up-left (LOCO-I's), or
    whichever of left and up exists, or ``default``."""
    left, up, corner = where
    if left >= 0 and up >= 0:
        return sorted((values[left], values[up], values[left] + values[up] - values[corner]))[1]
    return values[left] if left >= 0 else values[up] if up >= 0 else default


def phase_slices(phase: tuple[int, int, int]) -> Slices:
    """The positions of a band in parity class ``phase``."""
    return tuple(slice(p, None, 2) for p in phase)


@functools.cache
def _known_offsets(index: int) -> tuple[tuple[int, int, int], ...]:
    """The neighbour offsets whose parity class precedes phase ``index``."""
    phase, earlier = PHASES[index], set(PHASES[:index])
    return tuple(o for o in itertools.product((-1, 0, 1), repeat=3) if any(o)
                 and tuple((p + d) % 2 for p, d in zip(phase, o)) in earlier)


@functools.cache
def _neighbour_table(count: int) -> np.ndarray:
    """Neighbour bucket (× OUTSIDE_BUCKETS, shifted past the first phase's row) of each sum of
    ``count`` capped magnitudes."""
    means = np.arange(count * CAP + 1) / count
    buckets = np.searchsorted(np.array(NEIGHBOUR_BOUNDS), means, side="left")
    return ((buckets + 1) * OUTSIDE_BUCKETS).astype(np.uint16)


def mapped(array: np.ndarray, shape: tuple[int, ...],
           halves: tuple[bool, bool, bool] = (False, False, False)) -> np.ndarray:
    """``array`` read at each position of a band of ``shape``: position i along an axis reads
    i // 2 where ``halves`` says so (a coarser level that split that axis), else i; clipped to
    the array's ends."""
    for axis, half in enumerate(halves):
        index = np.arange(shape[axis]) // (2 if half else 1)
        array = np.take(array, np.minimum(index, array.shape[axis] - 1), axis=axis)
    return array


def _box_sum(magnitudes: np.ndarray) -> np.ndarray:
    """The sum over each position's 3×3×3 neighbourhood (edges repeated), int32."""
    total = magnitudes.astype(np.int32)
    for axis in range(3):
        padded = np.pad(total, [(1, 1) if a == axis else (0, 0) for a in range(3)], mode="edge")
        n = total.shape[axis]
        total = (padded[(slice(None),) * axis + (slice(0, n),)] + padded[(slice(None),) * axis + (slice(1, n + 1),)]
                 + padded[(slice(None),) * axis + (slice(2, n + 2),)])
    return total


def outside_buckets(shape: tuple[int, int, int], parent: np.ndarray | None, parent_split: tuple[bool, bool, bool],
                    siblings: np.ndarray | None) -> np.ndarray:
    """The outside bucket (uint16) of each position of a band of ``shape``, from its parent
    band's capped magnitudes (None: none), the axes the parent's level split, and the sum of
    the capped magnitudes of the level's earlier bands (None: none)."""
    estimate = np.zeros(shape)
    if parent is not None:
        estimate += mapped(_box_sum(parent), shape, parent_split) * PARENT_BOX
        estimate += mapped(parent, shape, parent_split) * PARENT
    if siblings is not None:
        estimate += mapped(siblings, shape) * SIBLINGS
    return np.searchsorted(np.array(OUTSIDE_BOUNDS), estimate, side="left").astype(np.uint16)


class BandContexts:
    """The context of each coefficient of one band, phase by phase, as its coefficients are
    decoded (:meth:`record`)."""

    def __init__(self, shape: tuple[int, int, int], band_group: int, outside: np.ndarray) -> None:
        self.shape = shape
        self._base = 1 + band_group * GROUP_CONTEXTS
        self._outside = outside
        self._known = np.zeros(tuple(n + 2 for n in shape), dtype=np.uint8)  # capped magnitudes, edges repeated

    def keys(self, index: int) -> np.ndarray:
        """The contexts (uint16, C order) of the coefficients of phase ``index``."""
        phase = PHASES[index]
        slices = phase_slices(phase)
        outside = self._outside[slices]
        offsets = _known_offsets(index)
        if not offsets:
            return (outside + self._base).ravel()
        sums = [np.zeros(outside.shape, dtype=np.int32) for _ in NEAR_WEIGHTS]  # face, edge, corner neighbours
        weights = 0
        for offset in offsets:
            kind = sum(map(abs, offset)) - 1
            sums[kind] += self._known[tuple(slice(1 + p + d, 1 + p + d + 2 * n - 1, 2)
                                            for p, d, n in zip(phase, offset, outside.shape))]
            weights += NEAR_WEIGHTS[kind]
        total = sums[0] * NEAR_WEIGHTS[0] + sums[1] * NEAR_WEIGHTS[1] + sums[2] * NEAR_WEIGHTS[2]
        return (np.take(_neighbour_table(weights), total) + outside + self._base).ravel()

    def record(self, index: int, values: np.ndarray) -> None:
        """Note the decoded coefficients of phase ``index`` (its shape)."""
        inner = self._known[1:-1, 1:-1, 1:-1]
        inner[phase_slices(PHASES[index])] = np.minimum(np.abs(values), CAP)
        for axis in range(3):
            n = self.shape[axis]
            at = (slice(None),) * axis
            self._known[at + (0,)] = self._known[at + (1,)]
            self._known[at + (n + 1,)] = self._known[at + (n,)]

    def magnitudes(self) -> np.ndarray:
        """The band's capped magnitudes (uint8), once every phase is recorded."""
        return self._known[1:-1, 1:-1, 1:-1].copy()
