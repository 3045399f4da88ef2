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
position's parity, so a neighbour beyond the border is always a known voxel. A level is
worked on as its parity phases (:class:`Phases`), where a pass's neighbours are contiguous.
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


def level_passes(shape: tuple[int, int, int]) -> list[tuple[tuple[int, int, int], list[Pass]]]:
    """The refinement levels of a volume of ``shape`` in coding order: each grid's shape and passes."""
    return [(tuple(-(-n // (1 << level)) for n in shape), list(steps))  # type: ignore[misc]
            for level, steps in itertools.groupby(passes(shape), key=lambda step: step.level)]


class Phases:
    """A level's grid held as its eight parity phases, so that a pass is computed on flat,
    contiguous arrays.

    A phase (the grid's voxels of one parity) is stored padded by one voxel by repeating its
    edge voxels, on every axis of length ≥ 2 — which on a phase is exactly the grid's
    reflection (parity kept). All phases share one padded shape and are flattened, so a voxel
    of a pass sits at the same flat index in every phase's buffer, and its neighbour at an
    offset lies a fixed flat shift away in one phase: :meth:`neighbour` is a contiguous slice.
    Flat arrays computed from them cover a pass's **span** — its voxels and, between them,
    padding whose entries are meaningless (finite, within the values' range); :meth:`inner`
    picks out the pass's voxels, in pass order.
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype | type) -> None:
        self.shape = tuple(shape)
        self.pad = tuple(int(n >= 2) for n in shape)
        self.counts = tuple((len(range(0, n, 2)), len(range(1, n, 2))) for n in shape)
        self.padded = tuple(c[0] + 2 * p for c, p in zip(self.counts, self.pad))
        self.strides = (self.padded[1] * self.padded[2], self.padded[2], 1)
        self.base = sum(p * s for p, s in zip(self.pad, self.strides))
        # room for every span (which starts at ``base``) shifted by up to ``base`` either way
        self.buffer = np.zeros((8, 2 * self.base + self.counts[0][0] * self.strides[0]), dtype=dtype)

    @classmethod
    def of(cls, fine: np.ndarray) -> Phases:
        """The phases of the whole grid ``fine``."""
        phases = cls(fine.shape, fine.dtype)
        for parity in itertools.product((0, 1), repeat=3):
            if all(phases.extent(parity)):
                phases.set(parity, fine[targets(parity)])
        return phases

    def extent(self, parity: tuple[int, int, int]) -> tuple[int, int, int]:
        """The shape of the phase ``parity`` (unpadded)."""
        return tuple(c[p] for c, p in zip(self.counts, parity))  # type: ignore[return-value]

    def span(self, parity: tuple[int, int, int]) -> int:
        """The length of the flat arrays of a pass of ``parity``."""
        return self.extent(parity)[0] * self.strides[0]

    def _padded(self, parity: tuple[int, int, int]) -> np.ndarray:
        size = self.padded[0] * self.strides[0]
        return self.buffer[4 * parity[0] + 2 * parity[1] + parity[2], :size].reshape(self.padded)

    def set(self, parity: tuple[int, int, int], values: np.ndarray) -> None:
        """Store the voxels of phase ``parity`` (in the phase's shape) and its padding."""
        phase = self._padded(parity)
        extent = self.extent(parity)
        phase[tuple(slice(p, p + n) for p, n in zip(self.pad, extent))] = values
        for axis, (p, n) in enumerate(zip(self.pad, extent)):
            if p:
                index = [slice(None)] * 3
                for target, source in ((0, 1), (n + 1, n)):
                    index[axis] = target
                    destination = tuple(index)
                    index[axis] = source
                    phase[destination] = phase[tuple(index)]

    def neighbour(self, parity: tuple[int, int, int], offset: tuple[int, int, int]) -> np.ndarray:
        """The flat span of the neighbours at ``offset`` of the voxels of ``parity`` (a view)."""
        source = tuple((p + d) % 2 for p, d in zip(parity, offset))
        start = self.base + sum((p + d - q) // 2 * s for p, d, q, s in zip(parity, offset, source, self.strides))
        return self.buffer[4 * source[0] + 2 * source[1] + source[2], start : start + self.span(parity)]

    def inner(self, parity: tuple[int, int, int], flat: np.ndarray) -> np.ndarray:
        """The entries of the flat span ``flat`` that belong to the voxels of ``parity``, in the
        phase's shape (a view)."""
        extent = self.extent(parity)
        return flat.reshape(extent[0], *self.padded[1:])[:, : extent[1], : extent[2]]

    def grid(self, dtype: np.dtype | type | None = None) -> np.ndarray:
        """The grid assembled from its phases (in ``dtype``, by default theirs)."""
        fine = np.empty(self.shape, dtype=dtype or self.buffer.dtype)
        for parity in itertools.product((0, 1), repeat=3):
            extent = self.extent(parity)
            if all(extent):
                phase = self._padded(parity)
                fine[targets(parity)] = phase[tuple(slice(p, p + n) for p, n in zip(self.pad, extent))]
        return fine


def next_level(fine_shape: tuple[int, int, int], coarse: np.ndarray | None, dtype: np.dtype | type) -> Phases | None:
    """The phases of a level whose even phase is the coarser grid ``coarse`` (None: none)."""
    if coarse is None:
        return None
    phases = Phases(fine_shape, dtype)
    phases.set((0, 0, 0), coarse)
    return phases


def targets(parity: tuple[int, int, int]) -> tuple[slice, slice, slice]:
    """The slices of a grid holding the voxels of ``parity``."""
    return tuple(slice(p, None, 2) for p in parity)  # type: ignore[return-value]
