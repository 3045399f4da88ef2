"""Context model over the quantized latents: which table codes each symbol.

Channels are coded one after another, and within a channel the positions split like a 3D
checkerboard: first the anchors (``(i + j + k)`` even), then the others. A symbol's context
combines what the decoder already has:

- **across channels**: how many earlier channels are nonzero at the same position (latent
  activity is shared by the channels: an edge lights up many of them), in CROSS_BOUNDS
  intervals;
- **within the channel**, for non-anchors only: the summed magnitude of the six face
  neighbours, which are all anchors, in NEIGHBOUR_BOUNDS intervals.

Counted over calibration volumes, per channel, these tables take 5–50 % off the rate of the
factorized prior on MRI volumes (docs/benchmarks.md). Contexts are integers computed from decoded
integers, so encoder and decoder agree on every machine.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterable

import numpy as np

CROSS_BOUNDS = np.array([0, 1, 2, 4, 8, 16])
"""Inclusive upper bounds of the intervals of the number of earlier nonzero channels:
{0}, {1}, {2}, {3, 4}, {5–8}, {9–16}, ≥ 17."""
NEIGHBOUR_BOUNDS = np.array([0, 1, 3, 6, 10])
"""Inclusive upper bounds of the intervals of a non-anchor's anchor-neighbour magnitude sum:
{0}, {1}, {2, 3}, {4–6}, {7–10}, ≥ 11."""
_WITHIN = len(NEIGHBOUR_BOUNDS) + 2  # anchor, or one of the neighbour intervals
CONTEXTS = (len(CROSS_BOUNDS) + 1) * _WITHIN
PRIOR_COUNT = 50.0
"""Weight, in symbols, of the factorized table mixed into every counted context table."""


_CROSS_CLASS = np.searchsorted(CROSS_BOUNDS, np.arange(CROSS_BOUNDS[-1] + 2))
"""CROSS_BOUNDS interval of each count 0 … CROSS_BOUNDS[-1] + 1 (and more, clipped to it)."""
_NEIGHBOUR_CLASS = np.searchsorted(NEIGHBOUR_BOUNDS, np.arange(NEIGHBOUR_BOUNDS[-1] + 2))
"""NEIGHBOUR_BOUNDS interval of each sum 0 … NEIGHBOUR_BOUNDS[-1] + 1 (and more, clipped to it)."""


def anchor_mask(shape: tuple[int, ...]) -> np.ndarray:
    """Boolean mask of the anchor positions of a (D, H, W) latent grid."""
    i, j, k = np.indices(shape, sparse=True)
    return (i + j + k) % 2 == 0


@functools.lru_cache(maxsize=32)
def positions(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(anchors, non-anchors): the flat (C order) indices of each kind of position of a
    (D, H, W) latent grid, read-only (one pair per tile shape, made once)."""
    anchors = anchor_mask(shape).ravel()
    pair = np.flatnonzero(anchors), np.flatnonzero(~anchors)
    for indices in pair:
        indices.flags.writeable = False
    return pair


@functools.lru_cache(maxsize=32)
def _face_neighbours(shape: tuple[int, int, int]) -> np.ndarray:
    """(6, M) flat indices of the six face neighbours of each of the M non-anchors of a (D, H,
    W) grid (:func:`positions`); a neighbour beyond the grid is D·H·W, where a zero is appended."""
    coordinates = np.unravel_index(positions(shape)[1], shape)
    neighbours = np.full((6, coordinates[0].size), math.prod(shape), dtype=np.intp)
    for row, (axis, step) in enumerate(itertools.product(range(3), (-1, 1))):
        moved = list(coordinates)
        moved[axis] = coordinates[axis] + step
        inside = (moved[axis] >= 0) & (moved[axis] < shape[axis])
        neighbours[row, inside] = np.ravel_multi_index([axis_indices[inside] for axis_indices in moved], shape)
    neighbours.flags.writeable = False
    return neighbours


def anchor_contexts(earlier_nonzero: np.ndarray) -> np.ndarray:
    """Context of an anchor at every position, from the count of nonzero earlier channels there."""
    return _CROSS_CLASS[np.minimum(earlier_nonzero, len(_CROSS_CLASS) - 1)] * _WITHIN


def neighbour_contexts(values: np.ndarray) -> np.ndarray:
    """What each non-anchor adds to its anchor context, for (…, D, H, W) ``values``: 1 + the
    interval of the summed magnitude of its six face neighbours (anchors, all of them); shape
    (…, M), the non-anchors in :func:`positions` order."""
    grid = values.shape[-3:]
    magnitude = np.zeros((*values.shape[:-3], math.prod(grid) + 1), dtype=np.int64)  # a zero beyond the grid
    magnitude[..., :-1] = np.abs(values.reshape(*values.shape[:-3], -1), dtype=np.int64)
    neighbours = _face_neighbours(grid)
    total = magnitude[..., neighbours[0]]
    for face in neighbours[1:]:  # one face at a time: memory of one (…, M) array, not six
        total += magnitude[..., face]
    return 1 + _NEIGHBOUR_CLASS[np.minimum(total, len(_NEIGHBOUR_CLASS) - 1)]


def channel_contexts(values: np.ndarray, earlier_nonzero: np.ndarray) -> np.ndarray:
    """Context (0 … CONTEXTS − 1) of every position of (…, D, H, W) symbols: one channel's, or
    channels stacked on the first axis.

    ``earlier_nonzero`` counts the nonzero earlier channels per position. Anchors' contexts
    do not read ``values``; the others' read the anchors' values only.
    """
    contexts = np.ascontiguousarray(anchor_contexts(earlier_nonzero))
    flat = contexts.reshape(*contexts.shape[:-3], -1)  # a view of the C-ordered array: written through
    flat[..., positions(values.shape[-3:])[1]] += neighbour_contexts(values)
    return contexts


def all_contexts(symbols: np.ndarray) -> np.ndarray:
    """Contexts of all (C, D, H, W) ``symbols`` at once (as channel by channel decoding sees them)."""
    nonzero = (symbols != 0).astype(np.int64)
    return channel_contexts(symbols, np.cumsum(nonzero, axis=0) - nonzero)


def table_indices(symbols: np.ndarray, offset: int, size: int) -> np.ndarray:
    """Index of every symbol in a table of ``size`` entries starting at ``offset``; values
    outside it map to the escape entry ``size``."""
    index = symbols.astype(np.int64) - offset
    return np.where((index < 0) | (index >= size), size, index)


def fit_context_rows(offset: int, factorized: np.ndarray, observed: Iterable[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """(CONTEXTS, len(factorized)) float32 rows of one channel: per context, its symbol counts
    over the ``observed`` (symbols, contexts) pairs plus PRIOR_COUNT × the factorized table,
    normalised. Entries may round to 0 in float32; constriction's non-perfect categorical
    still gives every entry a nonzero probability, so every symbol stays codable."""
    counts = np.zeros((CONTEXTS, len(factorized)))
    for symbols, context in observed:
        np.add.at(counts, (context.ravel(), table_indices(symbols.ravel(), offset, len(factorized) - 1)), 1)
    mixed = counts + PRIOR_COUNT * factorized.astype(np.float64)
    return (mixed / mixed.sum(axis=1, keepdims=True)).astype(np.float32)
