"""Tiles of the network grid, and boxes of voxels: the geometry of coding a volume in pieces.

A network-coded volume's latent grid is cut into tiles of ``size`` voxels of the padded
network grid per axis (``size >> levels`` latents; :data:`TILE_SIZE` = 128 voxels = 16
latents with the 3 stride-2 levels), tiles in C order. Each tile's symbols are entropy-coded
on their own (their contexts see only the tile, as at a volume border), so a region decodes
from the tiles it needs, and the transforms run on one tile at a time (memory bounded by the
tile). The transforms see past the tile by their receptive field, so tiles leave no seams:

- **analysis**: latent ``i`` depends on the voxels ``8i − 7 … 8i + 7`` (three 3×3×3
  convolutions of stride 2, padding 1; in general ``2**k·i ± (2**k − 1)`` after k levels).
  A tile's latents are the whole volume's when the analysis runs on the tile's voxels and
  one latent (8 voxels) before it on each axis; nothing after it is needed, since the
  voxels of the tile's last latent end inside the tile;
- **synthesis**: voxel ``v`` depends on the latents ``⌊v/8⌋`` and ``⌈v/8⌉`` only (three
  3×3×3 transposed convolutions of stride 2, padding 1, output padding 1): a tile's voxels
  are the whole volume's when the synthesis runs on the tile's latents and one latent after
  it on each axis; nothing before it.

Both hold in exact arithmetic; in float32 the tiles equal a whole-volume transform to
rounding (docs/benchmarks.md measures it). At the grid's own borders the halo is cut, as the
whole volume's transform is.

Why 128 voxels: on the 1 mm MNI template at quality 5, tiles of 16 latents cost 0.24 % more
bits than one tile (8 latents: 0.76 %), the halos add (17/16)³ − 1 = 20 % to each transform
(8 latents: 42 %), and a tile's largest activation is 64 channels × 68³ floats, 80 MB
(32 latents: 590 MB). A size in voxels (not latents) keeps tiles aligned on every axis,
whatever its number of stride-2 levels, and lets a header be checked without the weights.

A :data:`Box` is a half-open range ``(start, stop)`` per axis, like Python slices.
"""

from __future__ import annotations

import itertools
import math
import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mriae.transforms.grid import GridPlan

TILE_SIZE = 128
"""Voxels of the network grid per tile axis (16 latents with 3 stride-2 levels)."""
TILE_SIZES = tuple(2**k for k in range(4, 11))
"""Tile sizes a file may record: powers of two from 16 to 1024 voxels."""

Span = tuple[int, int]
Box = tuple[Span, ...]
"""Half-open ``(start, stop)`` per axis."""


def box_shape(box: Box) -> tuple[int, ...]:
    """The number of voxels of ``box`` along each axis."""
    return tuple(stop - start for start, stop in box)


def box_slices(box: Box, origin: Box | None = None) -> tuple[slice, ...]:
    """Slices selecting ``box`` from an array that holds ``origin`` (the whole grid if None)."""
    starts = [0] * len(box) if origin is None else [start for start, _ in origin]
    return tuple(slice(start - base, stop - base) for (start, stop), base in zip(box, starts))


def intersection(first: Box, second: Box) -> Box | None:
    """The voxels two boxes share; None if they share none."""
    box = tuple((max(a, c), min(b, d)) for (a, b), (c, d) in zip(first, second))
    return box if all(start < stop for start, stop in box) else None


def whole(shape: tuple[int, ...]) -> Box:
    """The box of every voxel of a grid of ``shape``."""
    return tuple((0, int(n)) for n in shape)


def region_of(roi: tuple[slice, ...] | None, shape: tuple[int, int, int]) -> Box:
    """The box of a volume of ``shape`` that ``roi`` selects: three slices of voxel indices
    (x, y, z), half-open, step 1; None selects everything. ValueError (one line) unless
    every range lies within the shape and holds a voxel."""
    if roi is None:
        return whole(shape)
    if len(roi) != 3 or not all(isinstance(part, slice) for part in roi):
        raise ValueError(f"a region needs three ranges (x, y, z), got {len(roi)}")
    box = []
    for axis, (part, length) in enumerate(zip(roi, shape)):
        try:
            if isinstance(part.start, bool) or isinstance(part.stop, bool) or part.step not in (None, 1):
                raise TypeError(part)
            start = 0 if part.start is None else operator.index(part.start)
            stop = length if part.stop is None else operator.index(part.stop)
        except TypeError:
            raise ValueError(f"the region's range {_range_text(part)} on axis {'xyz'[axis]} is not whole voxel "
                             "indices start:stop") from None
        if not (0 <= start and stop <= length):
            raise ValueError(f"the region's range {start}:{stop} on axis {'xyz'[axis]} is outside the image's 0:{length}")
        if start >= stop:
            raise ValueError(f"the region's range {start}:{stop} on axis {'xyz'[axis]} is empty")
        box.append((start, stop))
    return tuple(box)


def _range_text(part: slice) -> str:
    text = f"{'' if part.start is None else part.start}:{'' if part.stop is None else part.stop}"
    return text if part.step is None else f"{text}:{part.step}"


def region_affine(affine: np.ndarray, box: Box) -> np.ndarray:
    """The affine of the region ``box`` of a grid with ``affine``: the same axes, the origin
    moved to the region's first voxel (``affine[:3, :3] @ start`` from the grid's)."""
    affine = np.array(affine, dtype=np.float64)
    affine[:3, 3] = affine[:3, :3] @ np.asarray([start for start, _ in box], dtype=np.float64) + affine[:3, 3]
    return affine


def latent_shape(grid: GridPlan) -> tuple[int, int, int]:
    """Spatial shape of the latents of a volume on ``grid``."""
    return tuple(n >> k for n, k in zip(grid.padded_shape, grid.levels))  # type: ignore[return-value]


def tile_counts(coding_shape: tuple[int, ...], size: int) -> tuple[int, ...]:
    """Tiles per axis over a coding grid of ``coding_shape`` in tiles of ``size`` voxels
    (padding to a multiple of ``2**levels`` never adds one, since ``size`` is a multiple)."""
    return tuple(-(-int(n) // size) for n in coding_shape)


@dataclass(frozen=True)
class TileGrid:
    """The tiles of one volume's latent grid: ``latents`` per axis, cut every ``tile``
    latents (``size`` voxels of the network grid; None: one tile); ``levels`` stride-2
    stages per axis make a latent 2**levels voxels."""

    latents: tuple[int, int, int]
    tile: tuple[int, int, int]
    levels: tuple[int, int, int]
    size: int | None

    @classmethod
    def of(cls, grid: GridPlan, size: int | None) -> TileGrid:
        """The tiles of ``size`` voxels per axis over ``grid``'s network grid (None: one tile,
        the whole grid, as files before version 6 were coded); ValueError unless a tile is a
        whole number of latents."""
        latents = latent_shape(grid)
        if size is None:
            return cls(latents, latents, grid.levels, None)  # type: ignore[arg-type]
        if size <= 0 or any(size % 2**k for k in grid.levels):
            raise ValueError(f"a tile of {size} voxels is not a whole number of latents of {2 ** max(grid.levels)} voxels")
        return cls(latents, tuple(size >> k for k in grid.levels), grid.levels, size)  # type: ignore[arg-type]

    @property
    def scale(self) -> tuple[int, ...]:
        """Voxels of the network grid per latent, per axis."""
        return tuple(2**k for k in self.levels)

    @property
    def counts(self) -> tuple[int, ...]:
        """Tiles per axis."""
        return tuple(-(-n // t) for n, t in zip(self.latents, self.tile))

    @property
    def count(self) -> int:
        """Tiles in all."""
        return math.prod(self.counts)

    def latent_box(self, index: int) -> Box:
        """The latents of tile ``index`` (C order over the tiles)."""
        position = _unravel(index, self.counts)
        return tuple((p * t, min((p + 1) * t, n)) for p, t, n in zip(position, self.tile, self.latents))

    def voxel_box(self, index: int) -> Box:
        """The network-grid voxels of tile ``index`` (the padding included)."""
        return self.voxels_of(self.latent_box(index))

    def analysis_box(self, index: int) -> Box:
        """The latents whose voxels the analysis reads for tile ``index``: its own and one
        before it on each axis (within the grid)."""
        return tuple((max(start - 1, 0), stop) for start, stop in self.latent_box(index))

    def synthesis_box(self, index: int) -> Box:
        """The latents the synthesis reads for tile ``index``: its own and one after it on
        each axis (within the grid)."""
        return tuple((start, min(stop + 1, n)) for (start, stop), n in zip(self.latent_box(index), self.latents))

    def voxels_of(self, latents: Box) -> Box:
        """The network-grid voxels the latents of ``latents`` cover."""
        return tuple((start * s, stop * s) for (start, stop), s in zip(latents, self.scale))

    def meeting(self, latents: Box) -> list[int]:
        """The tiles (C order) that hold some latent of the box ``latents``."""
        ranges = (range(start // t, (stop - 1) // t + 1) for (start, stop), t in zip(latents, self.tile))
        return [_ravel(position, self.counts) for position in itertools.product(*ranges)]

    def covering(self, voxels: Box) -> list[int]:
        """The tiles (C order) that hold some voxel of the network-grid box ``voxels``."""
        return self.meeting(tuple((start // s, -(-stop // s)) for (start, stop), s in zip(voxels, self.scale)))


def _unravel(index: int, counts: tuple[int, ...]) -> tuple[int, ...]:
    position = []
    for count in reversed(counts):
        index, rest = divmod(index, count)
        position.append(rest)
    return tuple(reversed(position))


def _ravel(position: tuple[int, ...], counts: tuple[int, ...]) -> int:
    index = 0
    for p, count in zip(position, counts):
        index = index * count + p
    return index
