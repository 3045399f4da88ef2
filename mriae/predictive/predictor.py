"""The predictor: each voxel of a pass as an integer-weighted sum of its known neighbours.

The **features** of a voxel are the sums of its neighbour groups (pyramid.GROUPS) and twice
the median of its near (face and edge) neighbours, a robust estimate that holds at tissue
edges; the median comes from a pruned sorting network, elementwise. The prediction is the
features weighted by integers in units of 2**-SHIFT, rounded and clipped to the stream's value
range. The encoder fits the weights by least squares on the pass's own voxels and stores them;
small passes take the plain mean; large passes get a weight row per **weight group** (the
activity bucket, by fours, of the known neighbours' spread about their mean), since smooth
regions and edges want different weights.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from mriae.predictive import pyramid
from mriae.predictive.arithmetic import deviation, sum_in
from mriae.predictive.contexts import activity_table

if TYPE_CHECKING:
    from mriae.predictive.passes import PassData

SHIFT = 12
"""Weights are integers in units of 2**-SHIFT."""
WEIGHT_LIMIT = 1 << 15
"""Weights lie within ±WEIGHT_LIMIT."""
WEIGHT_GROUPS = 5
"""Activity groups with their own weights in large passes (buckets 0–3, 4–7, …, ≥ 16)."""
GROUPED_PASS = 1 << 16
FITTED_PASS = 1 << 10
"""Passes with at least this many voxels get grouped / fitted weights; smaller ones average."""
FIT_SAMPLES = 1 << 17
"""Least-squares fits use about this many voxels, evenly strided."""


def feature_count(step: pyramid.Pass) -> int:
    """The number of features (so of weights per row) of a pass: its nonempty neighbour groups
    and the median."""
    return sum(1 for g in step.groups if g) + 1


def features(step: pyramid.Pass, neighbours: dict[tuple[int, int, int], np.ndarray],
             dtype: np.dtype) -> tuple[list[np.ndarray], list[int], np.ndarray]:
    """The features of ``step`` given its ``neighbours`` by offset, in ``dtype``: the sums of
    the neighbour groups, then twice the median of the near neighbours; how many values each
    adds up; and the sum of the near neighbours."""
    sums, counts, near_sums = [], [], []
    for index, offsets in enumerate(step.groups):
        if offsets:
            sums.append(sum_in([neighbours[d] for d in offsets], dtype))
            counts.append(len(offsets))
            if index < 6:
                near_sums.append(sums[-1])
    near_sum = sum_in(near_sums or sums[-1:], dtype)
    sums.append(_middle_sum([neighbours[d] for d in step.near], dtype))
    return sums, counts + [2], near_sum


@functools.cache
def _median_network(count: int) -> tuple[tuple[int, int, bool, bool], ...]:
    """Compare-exchange steps (i, j, keep min, keep max) of Batcher's odd-even merge sort
    of ``count`` wires, pruned to those that decide the two middle wires."""
    steps, size = [], 1
    while size < count:
        stride = size
        while stride:
            for start in range(stride % size, count - stride, 2 * stride):
                for i in range(start, min(start + stride, count - stride)):
                    if i // (2 * size) == (i + stride) // (2 * size):
                        steps.append((i, i + stride))
            stride //= 2
        size *= 2
    needed = {(count - 1) // 2, count // 2}
    kept = []
    for i, j in reversed(steps):
        if i in needed or j in needed:
            kept.append((i, j, i in needed, j in needed))
            needed |= {i, j}
    return tuple(reversed(kept))


def _middle_sum(values: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """Elementwise sum, in ``dtype``, of the two middle values of ``values`` (twice the median)."""
    wires = list(values)
    for i, j, low, high in _median_network(len(wires)):
        a, b = wires[i], wires[j]
        if low:
            wires[i] = np.minimum(a, b)
        if high:
            wires[j] = np.maximum(a, b)
    return np.add(wires[(len(wires) - 1) // 2], wires[len(wires) // 2], dtype=dtype)


@functools.cache
def _weight_group_table(count: int) -> np.ndarray:
    """Weight group of each sum of ``count`` distances (activity buckets by fours)."""
    return np.minimum(activity_table(count) // 4, WEIGHT_GROUPS - 1).astype(np.uint8)


def weight_groups(data: PassData) -> np.ndarray:
    """Weight group of each voxel (uint8): the activity bucket, by fours, of the spread of all
    known neighbours about their mean."""
    values = list(data.neighbours.values())
    total = sum_in(data.features[:-1], data.near_sum.dtype)
    mean = (total // len(values)).astype(values[0].dtype)
    spread = deviation(values, mean, total)
    return np.take(_weight_group_table(len(values)), spread, mode="clip")


def predict(data: PassData, weights: np.ndarray, low: int, high: int) -> np.ndarray:
    """The weighted features of each voxel, clipped to [low, high], in the neighbours' type.
    Sums run in int32 when the weights and value range bound them below 2**31, else int64."""
    magnitude = max(-low, high)
    bound = (1 << (SHIFT - 1)) + sum(int(np.abs(weights[:, index]).max()) * count * magnitude
                                      for index, count in enumerate(data.counts))
    dtype = np.result_type(np.int32 if bound < 1 << 31 else np.int64, data.near_sum.dtype)
    total = np.full(data.near_sum.shape, 1 << (SHIFT - 1), dtype=dtype)
    term = np.empty_like(total)
    weights = weights.astype(dtype)
    per_voxel = np.take(weights.T, data.groups, axis=1) if len(weights) > 1 else None
    for index, feature in enumerate(data.features):
        if per_voxel is not None:
            np.multiply(feature, per_voxel[index], out=term)
        elif weights[0, index]:
            np.multiply(feature, weights[0, index], out=term)
        else:
            continue
        total += term
    total >>= SHIFT
    return np.clip(total, low, high, out=total).astype(data.near[0].dtype)


def default_weights(step: pyramid.Pass) -> np.ndarray:
    """The plain mean of all known neighbours (the median unweighted), as one weight row."""
    count = sum(len(g) for g in step.groups)
    return np.array([[round((1 << SHIFT) / count)] * (feature_count(step) - 1) + [0]], dtype=np.int64)


def encoder_weights(windows: list[PassData], values: pyramid.Phases, step: pyramid.Pass, magnitude: int) -> np.ndarray:
    """The weight rows the encoder chooses for a pass: fitted on the pass's own voxels (whose
    values lie within ±``magnitude``)."""
    size = int(np.prod(values.extent(step.parity)))
    if size < FITTED_PASS:
        return default_weights(step)
    sums = [np.concatenate(parts) for parts in zip(*(data.features for data in windows))]
    target = values.neighbour(step.parity, (0, 0, 0))
    largest = max(windows[0].counts) * magnitude
    positions = values.inner(step.parity, np.arange(values.span(step.parity))).ravel()
    overall = _fit(sums, target, positions[:: max(1, size // FIT_SAMPLES)], largest)
    if overall is None:
        return default_weights(step)
    if size < GROUPED_PASS:
        return overall[None]
    groups = np.full(values.span(step.parity), WEIGHT_GROUPS, dtype=np.uint8)
    values.inner(step.parity, groups)[...] = values.inner(step.parity, np.concatenate([d.groups for d in windows]))
    rows = []
    for group in range(WEIGHT_GROUPS):
        inside = np.flatnonzero(groups == group)
        fitted = None
        if inside.size >= FITTED_PASS:
            fitted = _fit(sums, target, inside[:: max(1, inside.size // FIT_SAMPLES)], largest)
        rows.append(overall if fitted is None else fitted)
    return np.stack(rows)


def _fit(features: list[np.ndarray], target: np.ndarray, sample: np.ndarray, largest: int) -> np.ndarray | None:
    """Integer weights of flat ``features`` that best predict ``target`` (least squares) at the
    flat positions ``sample``, or None; no feature or target exceeds ±``largest``."""
    rows = np.empty((len(features) + 1, sample.size))
    for row, values in zip(rows, [*features, target]):
        row[...] = values[sample]
    gram, moments = _products(rows, largest)
    gram += np.eye(len(gram)) * (1e-9 * np.trace(gram) + 1e-12)
    try:
        weights = np.linalg.solve(gram, moments)
    except np.linalg.LinAlgError:
        return None
    if not np.isfinite(weights).all():
        return None
    return np.clip(np.round(weights * (1 << SHIFT)), -WEIGHT_LIMIT, WEIGHT_LIMIT).astype(np.int64)


def _products(rows: np.ndarray, largest: int) -> tuple[np.ndarray, np.ndarray]:
    """The Gram matrix of the feature rows (all but the last of integer ``rows``, within
    ±``largest``) and their products with the target (the last), deterministically: by a matrix
    product when every partial sum is an integer below 2**53 (so exact in any order), else by
    numpy's pairwise sums."""
    if largest * largest * rows.shape[1] < 1 << 53:
        products = rows @ rows.T
        return products[:-1, :-1], products[:-1, -1]
    x, y = rows[:-1], rows[-1]
    return np.array([[np.sum(a * b) for b in x] for a in x]), np.array([np.sum(a * y) for a in x])
