"""What both sides compute for a pass before its residuals, window by window.

A pass is computed over its flat span in the level's phases (pyramid.Phases), in windows of
WINDOW positions whose working arrays stay in cache: its known neighbours, the predictor's
features, the near neighbours and the residual classes (:class:`PassData`), and from them
the prediction and context key of every position.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from mriae.predictive import contexts, predictor, pyramid

WINDOW = 1 << 16
"""Passes are computed in windows of this many flat positions, whose working arrays stay in cache."""


@dataclass
class PassData:
    """What both sides know of a pass before its residuals, over a ``window`` of its flat span
    (pyramid.Phases): its known neighbours by offset, the predictor's features (sums of the
    neighbour groups, then twice the median of the pass's ``near`` neighbours) and how many
    values each adds up, the ``near`` neighbours themselves and their sum, and the
    residual-class part of each voxel's context key (class × BUCKETS; 0 in unclassed volumes):
    the residual class is the near neighbours' mean |residual|."""

    window: slice
    neighbours: dict[tuple[int, int, int], np.ndarray]
    features: list[np.ndarray]
    counts: list[int]
    near: list[np.ndarray]
    near_sum: np.ndarray
    classes: np.ndarray | int

    @functools.cached_property
    def groups(self) -> np.ndarray:
        """Weight group of each voxel (predictor.weight_groups), computed once."""
        return predictor.weight_groups(self)


def pass_data(values: pyramid.Phases, step: pyramid.Pass, magnitudes: pyramid.Phases | None,
              dtype: np.dtype) -> Iterator[PassData]:
    """The pass data of ``step``, window by window (WINDOW positions of its span each), with
    sums in ``dtype``; ``magnitudes`` holds the |residual| (capped) of every coded voxel of the
    level in classed volumes, None in others."""
    neighbours = {d: values.neighbour(step.parity, d) for group in step.groups for d in group}
    known = None if magnitudes is None else [magnitudes.neighbour(step.parity, d) for d in step.near]
    span = values.span(step.parity)
    for start in range(0, span, WINDOW):
        window = slice(start, min(start + WINDOW, span))
        yield _window_data(step, {d: n[window] for d, n in neighbours.items()},
                           None if known is None else [m[window] for m in known], dtype, window)


def _window_data(step: pyramid.Pass, neighbours: dict[tuple[int, int, int], np.ndarray],
                 magnitudes: list[np.ndarray] | None, dtype: np.dtype, window: slice) -> PassData:
    """The pass data of ``step`` over ``window``, given its neighbours there (and the near
    neighbours' magnitudes in classed volumes)."""
    features, counts, near_sum = predictor.features(step, neighbours, dtype)
    near = [neighbours[d] for d in step.near]
    classes = 0 if magnitudes is None else contexts.residual_classes(magnitudes)
    return PassData(window, neighbours, features, counts, near, near_sum, classes)


def predictions(windows: Iterable[PassData], weights: np.ndarray, low: int, high: int, span: int,
                dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The prediction (in ``dtype``) and context key of every position of a pass's flat span
    of length ``span``, window by window."""
    prediction, keys = np.empty(span, dtype=dtype), np.empty(span, dtype=np.uint8)
    for data in windows:
        prediction[data.window] = predictor.predict(data, weights, low, high)
        keys[data.window] = contexts.context_keys(data, prediction[data.window])
    return prediction, keys
