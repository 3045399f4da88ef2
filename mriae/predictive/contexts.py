"""Contexts: which table codes each residual, and how the encoder merges contexts into tables.

A residual's context is its pass's kind (body, edge or face centres) and a **key**: the
activity bucket (the mean distance of the near neighbours from the prediction, in eighths of
a value step) plus, in large volumes, the residual class (the mean |residual| of the already
coded near neighbours, in eighths). Buckets and classes are read from lookup tables indexed
by the integer sums, in place of bucket searches. The encoder merges adjacent buckets until
each table has enough symbols to pay for itself, and stores the context-to-table map.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from mriae.predictive import pyramid
from mriae.predictive.arithmetic import deviation, sum_in

if TYPE_CHECKING:
    from mriae.predictive.passes import PassData

ACTIVITY_BOUNDS = np.array([0, 1, 2, 3, 4, 6, 8, 11, 16, 22, 32, 45, 64, 90, 128, 181, 256, 362, 512, 1024, 2048])
"""Upper bounds (inclusive) of the activity buckets, in eighths of a value step; one more bucket above."""
BUCKETS = len(ACTIVITY_BOUNDS) + 1
RESIDUAL_BOUNDS = np.array([4, 12, 32, 80])
"""Upper bounds (inclusive) of the residual classes: the mean |residual| of a voxel's coded
near neighbours, in eighths; one more class above."""
CLASSES = len(RESIDUAL_BOUNDS) + 1
KINDS = 3
KEYS = CLASSES * BUCKETS
"""Contexts per pass kind: a key, residual class × BUCKETS + activity bucket."""
CONTEXTS = 1 + KINDS * KEYS
"""Context 0 codes the coarsest grid; then one per (pass kind, residual class, activity bucket)."""
MIN_TABLE_SYMBOLS = 4096
"""The encoder merges adjacent activity buckets of a (kind, residual class) until a table codes this many symbols."""


def of_kind(kind: int) -> slice:
    """The contexts of pass kind ``kind``, a slice of all CONTEXTS indexed by context key."""
    return slice(1 + kind * KEYS, 1 + (kind + 1) * KEYS)


@functools.cache
def _bucket_table(bounds: tuple[int, ...], count: int) -> np.ndarray:
    """For each sum s of ``count`` values (0, 1, … up to where it stops changing), the bucket
    of s·8 // count among the inclusive upper ``bounds`` (uint8)."""
    sums = np.arange((bounds[-1] + 1) * count // 8 + 2)
    return np.searchsorted(np.array(bounds), sums * 8 // count, side="left").astype(np.uint8)


def activity_table(count: int) -> np.ndarray:
    """Activity bucket of each sum of ``count`` distances, in value steps."""
    return _bucket_table(tuple(ACTIVITY_BOUNDS.tolist()), count)


@functools.cache
def _class_table(count: int) -> np.ndarray:
    """Residual class × BUCKETS of each sum of ``count`` magnitudes."""
    return (_bucket_table(tuple(RESIDUAL_BOUNDS.tolist()), count) * BUCKETS).astype(np.uint8)


def residual_classes(magnitudes: list[np.ndarray]) -> np.ndarray:
    """The residual-class part of each voxel's context key (class × BUCKETS, uint8), from the
    capped |residual| of its near neighbours (uint8 arrays)."""
    return np.take(_class_table(len(magnitudes)), sum_in(magnitudes, np.dtype(np.uint16)), mode="clip")


def record_magnitudes(magnitudes: pyramid.Phases | None, step: pyramid.Pass, residuals: np.ndarray) -> None:
    """Note a pass's residual magnitudes (capped at 255) for the residual classes of later
    passes (``magnitudes`` None: the volume is not classed)."""
    if magnitudes is not None:
        magnitudes.set(step.parity, np.minimum(np.abs(residuals), 255).astype(np.uint8))


def context_keys(data: PassData, prediction: np.ndarray) -> np.ndarray:
    """The context key of each voxel (uint8): residual class and activity bucket, the mean
    |near neighbour − prediction| in eighths."""
    spread = deviation(data.near, prediction, data.near_sum)
    keys = np.take(activity_table(len(data.near)), spread, mode="clip")
    keys += data.classes
    return keys


def table_map(counts: np.ndarray) -> np.ndarray:
    """Table index of each context, given its token ``counts``: adjacent buckets of a (kind,
    residual class) merged until a table has MIN_TABLE_SYMBOLS symbols (the last table of each
    takes the remainder), tables that code nothing dropped."""
    mapping = np.zeros(CONTEXTS, dtype=np.int64)
    table = 1
    for pair in range(KINDS * CLASSES):  # each (pass kind, residual class)
        contexts = range(1 + pair * BUCKETS, 1 + (pair + 1) * BUCKETS)
        filled = 0
        for context in contexts:
            mapping[context] = table
            filled += int(counts[context].sum())
            if filled >= MIN_TABLE_SYMBOLS and context != contexts[-1]:
                table, filled = table + 1, 0
        table += 1
    return _renumbered(mapping, counts)


def _renumbered(mapping: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``mapping`` with tables that code nothing dropped and the rest numbered 0, 1, …"""
    used = sorted({int(mapping[c]) for c in range(CONTEXTS) if counts[c].sum()} | {int(mapping[0])})
    index = {t: i for i, t in enumerate(used)}
    return np.array([index.get(int(t), 0) for t in mapping], dtype=np.int64)


class ContextTables:
    """The table of each context key of each pass kind, as the coder visits a pass's symbols:
    grouped by table (ascending), each table's in pass order."""

    def __init__(self, mapping: np.ndarray, models: list) -> None:
        self._kinds = []
        for kind in range(KINDS):
            tables = mapping[of_kind(kind)]
            used = np.unique(tables)
            self._kinds.append((np.searchsorted(used, tables).astype(np.uint8), [models[t] for t in used]))

    def runs(self, kind: int, keys: np.ndarray) -> tuple[np.ndarray, list[tuple[int, object]]]:
        """The order that groups a pass's symbols by table, and (symbol count, model) of each
        table in that order that codes any."""
        local, models = self._kinds[kind]
        ranks = np.take(local, keys)
        sizes = np.bincount(ranks, minlength=len(models))
        return np.argsort(ranks, kind="stable"), [(int(n), m) for n, m in zip(sizes, models) if n]
