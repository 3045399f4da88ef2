"""The coder's integer arithmetic: working types from a stream's value range, and sums in them.

Both sides compute on the narrowest integer types that the stream's value range allows:
values in one type, and the sums a pass forms (of neighbours, and of their distances to a
centre) in a wider signed one, chosen so that no sum leaves its range.
"""

from __future__ import annotations

import numpy as np

SPREAD_LIMIT = 52
"""Sums a pass forms (of up to 26 neighbours, and of their distances to a centre) stay within
±SPREAD_LIMIT times the largest magnitude: the working type of sums holds that."""


def work_dtypes(low: int, high: int) -> tuple[np.dtype, np.dtype]:
    """The integer types the coder works on values in [low, high] in: the narrowest that holds
    them (and 0, which pads phases), and a signed one that also holds the sums passes form."""
    values = _narrowest(min(low, 0), max(high, 0), (np.uint8, np.int8, np.int16, np.uint16, np.int32, np.int64))
    limit = SPREAD_LIMIT * max(-low, high)
    return values, np.result_type(values, _narrowest(-limit, limit, (np.int16, np.int32, np.int64)))


def _narrowest(low: int, high: int, types: tuple[type, ...]) -> np.dtype:
    """The first of ``types`` that holds [low, high]."""
    return next(np.dtype(t) for t in types if np.iinfo(t).min <= low and high <= np.iinfo(t).max)


def sum_in(arrays: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """Elementwise sum of ``arrays`` in ``dtype`` (the array itself if it is one of that type)."""
    if len(arrays) == 1:
        return arrays[0] if arrays[0].dtype == dtype else arrays[0].astype(dtype)
    result = np.add(arrays[0], arrays[1], dtype=dtype)
    for array in arrays[2:]:
        np.add(result, array, out=result)
    return result


def deviation(values: list[np.ndarray], centre: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Elementwise Σ |value − centre| over ``values``, given their sum ``total`` (whose type it
    takes): as |v − c| = 2·max(v, c) − v − c, the sum of maxima less ``total``, plus the sum of
    maxima less n·centre — each part ≥ 0, so no partial sum leaves the type's range."""
    highest = np.empty_like(centre)
    maxima = np.zeros(centre.shape, dtype=total.dtype)
    for value in values:
        np.maximum(value, centre, out=highest)
        maxima += highest
    spread = maxima - total
    maxima -= np.multiply(centre, len(values), dtype=total.dtype)
    spread += maxima
    return spread
