"""The 3D CDF 9/7 wavelet transform (JPEG 2000's irreversible one), by lifting, in float64.

Each level splits some axes of the previous level's low band into a low half (even samples)
and a high half (odd samples), with whole-sample symmetric extension at both ends, so that
any length ≥ 2 splits (odd lengths give one more low than high sample). Which axes a level
splits follows from the shape alone (:func:`splits`): an axis is split while its low band is
at least MIN_SPLIT long, up to MAX_LEVELS levels, so thin volumes keep splitting their long
axes. A level's bands are named by their **orientation**, one bit per axis (1: the high half
along that axis; 0 on every axis the level does not split); the all-zero orientation is the
low band, which the next level splits in turn.

The inverse is elementwise IEEE arithmetic (add, multiply, divide) in a fixed order, without
reductions, BLAS or threads, so it gives the same float64 bits on every machine. The synthesis
gains (:func:`gain`) are products of 1D gains measured once on a long signal with the same
lifting code (exactly rounded sums), so they are the same everywhere too.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

ALPHA, BETA, GAMMA, DELTA = -1.586134342059924, -0.052980118572961, 0.882911075530934, 0.443506852043971
KAPPA = 1.230174104914001
"""The lifting coefficients and the scaling of CDF 9/7."""
MAX_LEVELS = 6
MIN_SPLIT = 8
"""An axis is split at a level while its length there is at least MIN_SPLIT, for at most MAX_LEVELS levels."""

Orientation = tuple[int, int, int]
Bands = list[dict[Orientation, np.ndarray]]


def splits(shape: tuple[int, ...]) -> list[tuple[bool, bool, bool]]:
    """Which axes each level splits, finest level first (the decoder recomputes it from the shape)."""
    lengths, levels = list(shape), []
    while len(levels) < MAX_LEVELS:
        split = tuple(n >= MIN_SPLIT for n in lengths)
        if not any(split):
            break
        levels.append(split)
        lengths = [-(-n // 2) if s else n for n, s in zip(lengths, split)]
    return levels


def orientations(split: tuple[bool, bool, bool]) -> list[Orientation]:
    """The high bands' orientations of a level that splits the axes ``split``, in coding order."""
    choices = [(0, 1) if s else (0,) for s in split]
    return [o for o in itertools.product(*choices) if any(o)]


def band_shapes(shape: tuple[int, int, int]) -> tuple[tuple[int, ...], list[dict[Orientation, tuple[int, ...]]]]:
    """(the low band's shape, per level finest first: orientation → band shape) of a volume's transform."""
    low, levels = tuple(shape), []
    for split in splits(shape):
        halves = [((n + 1) // 2, n // 2) if s else (n, 0) for n, s in zip(low, split)]
        levels.append({o: tuple(h[b] for h, b in zip(halves, o)) for o in orientations(split)})
        low = tuple(h[0] for h in halves)
    return low, levels


def _at(axis: int, index: slice | int) -> tuple:
    """An index that takes ``index`` along ``axis`` and everything along the others."""
    return (slice(None),) * axis + (index,)


def _predict(high: np.ndarray, low: np.ndarray, weight: float, axis: int, sign: int, scratch: np.ndarray) -> None:
    """high[i] ±= weight·(low[i] + low[i+1]), low mirrored past its end (in place)."""
    nh, nl = high.shape[axis], low.shape[axis]
    inner = min(nh, nl - 1)
    terms = [(_at(axis, slice(0, inner)), low[_at(axis, slice(0, inner))], low[_at(axis, slice(1, inner + 1))])]
    if nh > inner:  # an even length: the last high sample's right neighbour mirrors to its left one
        last = _at(axis, slice(nh - 1, nh))
        terms.append((last, low[last], low[last]))
    _lift(high, terms, weight, sign, scratch)


def _update(low: np.ndarray, high: np.ndarray, weight: float, axis: int, sign: int, scratch: np.ndarray) -> None:
    """low[i] ±= weight·(high[i-1] + high[i]), high mirrored past both ends (in place)."""
    nh, nl = high.shape[axis], low.shape[axis]
    first = _at(axis, slice(0, 1))
    terms = [(first, high[first], high[first]),
             (_at(axis, slice(1, nh)), high[_at(axis, slice(0, nh - 1))], high[_at(axis, slice(1, nh))])]
    if nl > nh:  # an odd length: the last low sample's neighbours are both the last high one
        last = _at(axis, slice(nh - 1, nh))
        terms.append((_at(axis, slice(nh, nh + 1)), high[last], high[last]))
    _lift(low, terms, weight, sign, scratch)


def _lift(target: np.ndarray, terms: list, weight: float, sign: int, scratch: np.ndarray) -> None:
    """target[where] ±= weight·(a + b) for each (where, a, b), computed in ``scratch`` (flat,
    large enough); the same roundings both ways."""
    for where, a, b in terms:
        step = scratch[: a.size].reshape(a.shape)
        np.add(a, b, out=step)
        np.multiply(step, weight, out=step)
        view = target[where]
        (np.add if sign > 0 else np.subtract)(view, step, out=view)


def _forward1(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) halves of ``x`` along ``axis`` (length ≥ 2)."""
    low = np.ascontiguousarray(x[_at(axis, slice(0, None, 2))])
    high = np.ascontiguousarray(x[_at(axis, slice(1, None, 2))])
    scratch = np.empty(low.size)
    _predict(high, low, ALPHA, axis, 1, scratch)
    _update(low, high, BETA, axis, 1, scratch)
    _predict(high, low, GAMMA, axis, 1, scratch)
    _update(low, high, DELTA, axis, 1, scratch)
    low /= KAPPA
    high *= KAPPA
    return low, high


def _inverse1(low: np.ndarray, high: np.ndarray, axis: int) -> np.ndarray:
    """Inverse of :func:`_forward1` (the inputs are left unchanged): lifted in place in the
    interleaved output."""
    shape = list(low.shape)
    shape[axis] += high.shape[axis]
    x = np.empty(shape, dtype=np.float64)
    even, odd = x[_at(axis, slice(0, None, 2))], x[_at(axis, slice(1, None, 2))]
    np.multiply(low, KAPPA, out=even)
    np.divide(high, KAPPA, out=odd)
    scratch = np.empty(low.size)
    _update(even, odd, DELTA, axis, -1, scratch)
    _predict(odd, even, GAMMA, axis, -1, scratch)
    _update(even, odd, BETA, axis, -1, scratch)
    _predict(odd, even, ALPHA, axis, -1, scratch)
    return x


def forward(volume: np.ndarray) -> tuple[np.ndarray, Bands]:
    """(the low band, per level finest first: orientation → high band) of a 3D volume (float64)."""
    low = np.asarray(volume, dtype=np.float64)
    bands: Bands = []
    for split in splits(low.shape):
        parts: dict[tuple[int, ...], np.ndarray] = {(): low}
        for axis, split_axis in enumerate(split):
            halves: dict[tuple[int, ...], np.ndarray] = {}
            for key, part in parts.items():
                if split_axis:
                    halves[key + (0,)], halves[key + (1,)] = _forward1(part, axis)
                else:
                    halves[key + (0,)] = part
            parts = halves
        low = parts.pop((0, 0, 0))
        bands.append(parts)
    return low, bands


def inverse(low: np.ndarray, bands: Bands) -> np.ndarray:
    """Inverse of :func:`forward` (float64); ``bands`` must have the shapes of :func:`band_shapes`."""
    low = np.asarray(low, dtype=np.float64)
    for level in reversed(bands):
        split = tuple(any(o[axis] for o in level) for axis in range(3))
        parts: dict[tuple[int, ...], np.ndarray] = {(0, 0, 0): low, **level}
        for axis in reversed(range(3)):
            merged: dict[tuple[int, ...], np.ndarray] = {}
            for key, part in parts.items():
                if key[-1] == 0:
                    merged[key[:-1]] = _inverse1(part, parts[key[:-1] + (1,)], axis) if split[axis] else part
            parts = merged
        low = parts[()]
    return low


GAIN_LENGTH = 4096
"""Length of the 1D signal on which the 1D synthesis gains are measured (far from its ends)."""


@functools.cache
def _gains_1d() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(low, high): the L2 norm of the 1D synthesis function of a coefficient in the low band
    after k splits (low[0] = 1), and in the high band of the k-th split (high[0] unused)."""
    lows, highs = [1.0], [0.0]
    for depth in range(1, MAX_LEVELS + 1):
        lengths = [GAIN_LENGTH >> k for k in range(depth + 1)]
        norms = []
        for high_band in (False, True):
            highs_zero = [np.zeros(n // 2) for n in lengths[:-1]]
            low = np.zeros(lengths[-1])
            target = highs_zero[-1] if high_band else low
            target[target.size // 2] = 1.0
            for level in reversed(range(depth)):
                low = _inverse1(low, highs_zero[level], 0)
            norms.append(math.sqrt(math.fsum((low * low).tolist())))
        lows.append(norms[0])
        highs.append(norms[1])
    return tuple(lows), tuple(highs)


def gain(shape: tuple[int, int, int], level: int, orientation: Orientation) -> float:
    """The synthesis gain (L2 norm of the basis function) of a coefficient of the band
    ``orientation`` at ``level`` (0 the finest); the orientation (0, 0, 0) names the low band
    left after that level."""
    levels = splits(shape)
    lows, highs = _gains_1d()
    result = 1.0
    for axis in range(3):
        depth = sum(split[axis] for split in levels[: level + 1])
        result *= highs[depth] if orientation[axis] else lows[depth]
    return result
