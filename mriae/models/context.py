"""Checkerboard context model over the quantized latents of one channel.

The latent positions split like a 3D checkerboard. Anchors (``(i + j + k)`` even) are coded
with the channel's factorized table; every other position with one of ``CONTEXTS`` tables,
chosen by the summed magnitude of its six anchor neighbours, which the decoder already has.
Latent magnitudes cluster at edges, so a position next to busy anchors is itself likely to be
busy: this takes 10–20 % off the rate of the factorized prior. Contexts are integers computed
from integers, so encoder and decoder agree on every machine; the tables are counted over
calibration volumes when weights are exported.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

CONTEXT_BOUNDS = np.array([0, 1, 3, 6, 10])
"""Upper bounds of the anchor-neighbour magnitude sums of contexts 0.. (the last is open)."""
CONTEXTS = len(CONTEXT_BOUNDS) + 1
PRIOR_COUNT = 50.0
"""Weight, in symbols, of the factorized table mixed into every counted context table."""


def anchor_mask(shape: tuple[int, ...]) -> np.ndarray:
    """Boolean mask of the anchor positions of a (D, H, W) latent grid."""
    i, j, k = np.indices(shape, sparse=True)
    return (i + j + k) % 2 == 0


def contexts(anchor_symbols: np.ndarray) -> np.ndarray:
    """Context (0 … CONTEXTS − 1) of every position of one channel's (D, H, W) symbols, from
    the values at the anchor positions only (the others are ignored)."""
    magnitude = np.where(anchor_mask(anchor_symbols.shape), np.abs(anchor_symbols.astype(np.int64)), 0)
    padded = np.pad(magnitude, 1)
    total = (padded[:-2, 1:-1, 1:-1] + padded[2:, 1:-1, 1:-1] + padded[1:-1, :-2, 1:-1]
             + padded[1:-1, 2:, 1:-1] + padded[1:-1, 1:-1, :-2] + padded[1:-1, 1:-1, 2:])
    return np.searchsorted(CONTEXT_BOUNDS, total, side="left")


def table_indices(symbols: np.ndarray, offset: int, size: int) -> np.ndarray:
    """Index of every symbol in a table of ``size`` entries starting at ``offset``; values
    outside it map to the escape entry ``size``."""
    index = symbols.astype(np.int64) - offset
    return np.where((index < 0) | (index >= size), size, index)


def fit_context_rows(
    offset: int, factorized: np.ndarray, channel_symbols: Iterable[np.ndarray]
) -> np.ndarray:
    """(1 + CONTEXTS, len(factorized)) float32 rows of one channel: the factorized table
    (anchors), then per context its symbol counts over ``channel_symbols`` (each (D, H, W))
    plus PRIOR_COUNT × the factorized table, normalised."""
    counts = np.zeros((CONTEXTS, len(factorized)))
    for symbols in channel_symbols:
        others = ~anchor_mask(symbols.shape)
        index = table_indices(symbols[others], offset, len(factorized) - 1)
        np.add.at(counts, (contexts(symbols)[others], index), 1)
    mixed = counts + PRIOR_COUNT * factorized.astype(np.float64)
    rows = np.vstack([factorized, mixed / mixed.sum(axis=1, keepdims=True)])
    return rows.astype(np.float32)
