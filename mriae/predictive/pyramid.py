"""The order in which the context coder visits a volume's voxels, and what it knows of each.

A volume is coded coarse to fine, like an image pyramid: first the voxels on the coarsest
grid (every 2**K-th voxel along each axis), then, level by level, the voxels of the next finer
grid in up to seven **passes**, one per parity class of their position on that grid. Within a
level the classes come in the order body centres (1,1,1), edge centres (1,1,0)…, then face
centres (1,0,0)…, so that most voxels are predicted from neighbours on every side: a face
centre knows all six face neighbours. Every pass is a strided slice of the volume, so the
decoder predicts a whole pass at once (numpy, no per-voxel loop).

A pass knows the voxels of the coarser grid and of the earlier passes of its level. Its
neighbours are the offsets in {-1, 0, 1}³ (on its level's grid) whose class is known, grouped
by their pattern of nonzero axes (faces along x, y or z; edges in a plane; corners): the
predictor weighs the sums of those groups. Volumes are padded by reflection, which keeps a
position's parity, so a neighbour beyond the border is always a known voxel.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

COARSEST = 8
"""The coarsest grid has at most this many voxels along its longest axis."""
CLASS_ORDER = ((1, 1, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1))
"""Parity classes of a level in coding order: body, edge, then face centres."""
GROUPS = ((1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 1, 1))
"""Neighbour groups by the axes their offsets move along; the predictor has a weight per group."""


@dataclass(frozen=True)
class Pass:
    """One pass: the voxels of parity ``parity`` on the grid of spacing ``2**level``."""

    level: int
    parity: tuple[int, int, int]
    groups: tuple[tuple[tuple[int, int, int], ...], ...]
    """Per entry of GROUPS, the known neighbour offsets in it (empty if none)."""

    @property
    def near(self) -> tuple[tuple[int, int, int], ...]:
        """The neighbours whose median the predictor uses and whose spread about the
        prediction picks the context: the face and edge neighbours, or the corners if
        there are none."""
        near = tuple(d for group in self.groups[:6] for d in group)
        return near or self.groups[6]

    @property
    def kind(self) -> int:
        """0 body, 1 edge, 2 face centres: passes of one kind share their context tables."""
        return 3 - sum(self.parity)


def levels_of(shape: tuple[int, int, int]) -> int:
    """Number of refinement levels: the coarsest grid keeps ≤ COARSEST voxels per axis."""
    levels = 0
    while max(-(-n // (1 << levels)) for n in shape) > COARSEST:
        levels += 1
    return levels


def grid(volume: np.ndarray, level: int) -> np.ndarray:
    """The view of ``volume`` on the grid of spacing ``2**level``."""
    step = 1 << level
    return volume[::step, ::step, ::step]


def passes(shape: tuple[int, int, int]) -> list[Pass]:
    """The refinement passes of a volume of ``shape``, in coding order."""
    result = []
    for level in reversed(range(levels_of(shape))):
        fine = tuple(-(-n // (1 << level)) for n in shape)
        known = {(0, 0, 0)}
        for parity in CLASS_ORDER:
            if any(p and n < 2 for p, n in zip(parity, fine)):
                continue
            offsets = [d for d in itertools.product((-1, 0, 1), repeat=3)
                       if any(d) and all(not (x and n < 2) for x, n in zip(d, fine))
                       and tuple((p + x) % 2 for p, x in zip(parity, d)) in known]
            groups = tuple(tuple(d for d in offsets if tuple(int(x != 0) for x in d) == g) for g in GROUPS)
            result.append(Pass(level, parity, groups))
            known.add(parity)
    return result


def padded(fine: np.ndarray) -> np.ndarray:
    """``fine`` padded by one voxel on every axis of length ≥ 2, by reflection (parity kept)."""
    return np.pad(fine, [(1, 1) if n >= 2 else (0, 0) for n in fine.shape], mode="reflect")


def targets(fine: np.ndarray, parity: tuple[int, int, int]) -> tuple[slice, slice, slice]:
    """The slices of ``fine`` holding the voxels of ``parity``."""
    return tuple(slice(p, None, 2) for p in parity)  # type: ignore[return-value]


def neighbour(pad: np.ndarray, fine_shape: tuple[int, ...], parity: tuple[int, int, int],
              offset: tuple[int, int, int]) -> np.ndarray:
    """The neighbours at ``offset`` of the voxels of ``parity``, from the padded grid ``pad``."""
    index = []
    for p, d, n, m in zip(parity, offset, fine_shape, pad.shape):
        count = len(range(p, n, 2))
        start = p + d + (1 if m > n else 0)
        index.append(slice(start, start + 2 * count - 1, 2) if count else slice(0, 0))
    return pad[tuple(index)]
