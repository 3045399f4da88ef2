"""Parametric token tables: each context's distribution is two stored integers, not a table.

A quantized wavelet coefficient q is 0 with probability p0; otherwise its sign is + or − with
equal odds and |q| − 1 is geometric with ratio θ. The tokens of mriae.predictive.tokens group
large values (a token, then raw bits), so a token's probability is the sum over its values,
in closed form. Both parameters are stored as logits in eighths (:data:`ZERO_RANGE`,
:data:`RATIO_RANGE`): p0 = 1 / (1 + e^(−z/8)), θ = 1 / (1 + e^(−h/8)). Two small integers per
context instead of a table of counts is what lets contexts be many (a table costs tens of
bytes; a small volume's whole stream can be a few kilobytes).

Tables are computed from the parameters by IEEE float64 multiplications, additions and
divisions only (powers by repeated squaring, tiny values flushed to zero so that no operand is
ever subnormal), then turned into integer frequencies by mriae.predictive.tables: the same
table on every machine.
"""

from __future__ import annotations

import functools
import math

import constriction
import numpy as np

from mriae.predictive import tables, tokens

ZERO_RANGE = (-120, 160)
"""Bounds of z, the logit of p0 in eighths (p0 from ~3e-7 to 1 − 2e-9)."""
RATIO_RANGE = (-64, 120)
"""Bounds of h, the logit of θ in eighths (θ from ~3e-4 to 1 − 3e-7)."""
_E = float.fromhex("0x1.c3d6a24ed8222p-1")
"""e^(−1/8) as a float64 literal (a libm's exp may round differently; its powers below are IEEE products)."""
_TINY = 2.0 ** -200
_SCALE = float(1 << 36)
"""Probabilities are scaled to integers of this size before mriae.predictive.tables narrows them."""


def _powers(bases: np.ndarray, exponents: np.ndarray) -> np.ndarray:
    """bases[i] ** exponents[j] (bases in [0, 1], exponents integers ≥ 0) as a 2D array, by
    repeated squaring: IEEE multiplications in a fixed order, values below 2**-200 flushed to
    0 (no operand is ever subnormal)."""
    exponents = np.asarray(exponents, dtype=np.int64)[None, :]
    square = np.asarray(bases, dtype=np.float64)[:, None]
    result = np.ones((square.shape[0], exponents.shape[1]))
    while exponents.any():
        result = np.where(exponents & 1, result * square, result)
        result = np.where(result < _TINY, 0.0, result)
        square = square * square
        square = np.where(square < _TINY, 0.0, square)
        exponents = exponents >> 1
    return result


@functools.cache
def token_ranges(alphabet: int) -> tuple[np.ndarray, np.ndarray]:
    """(first, last + 1) value u (zigzag: 2q, or −2q − 1 below 0) of each token below ``alphabet``."""
    codes = np.arange(alphabet, dtype=np.int64)
    bits = tokens.raw_bit_counts(codes)
    first = np.where(codes >= tokens.DIRECT, tokens.residuals_of(codes, np.zeros(alphabet, dtype=np.int64)), codes)
    first = np.where(codes >= tokens.DIRECT, np.where(first < 0, -2 * first - 1, 2 * first), codes)
    return first, first + (np.int64(1) << bits)


@functools.cache
def _logistics(low: int, high: int) -> np.ndarray:
    """1 / (1 + e^(−x/8)) of each logit x in [low, high] (eighths), in exact IEEE steps."""
    logits = np.arange(low, high + 1)
    tail = _powers(np.array([_E]), np.abs(logits))[0]  # e^(−|x|/8)
    return np.where(logits >= 0, 1.0 / (1.0 + tail), tail / (1.0 + tail))


@functools.cache
def _tails(alphabet: int) -> np.ndarray:
    """For each h in RATIO_RANGE (rows), the probability of each token below ``alphabet``
    given that the value is not 0 (column 0: 0)."""
    theta = _logistics(*RATIO_RANGE)
    first, end = token_ranges(alphabet)
    # the values u in [first, end) have magnitudes k = ceil(u / 2); u = 0 is q = 0. The sum over
    # them of θ^(k−1) counts u = first and u = end − 1 once and each magnitude between twice
    start, stop = (first + 1) // 2, end // 2
    single = end - first == 1
    exponents = np.concatenate([np.maximum(start - 1, 0), np.maximum(stop - 1, 0), start, np.maximum(stop - 1, start)])
    powers = _powers(theta, exponents).reshape(theta.size, 4, alphabet)
    edges = powers[:, 0] + np.where(single, 0.0, powers[:, 1])
    between = (powers[:, 2] - powers[:, 3]) / (1.0 - theta)[:, None]
    between = np.where(stop - start >= 2, between * 2.0, 0.0)
    tails = (edges + between) * ((1.0 - theta) * 0.5)[:, None]
    tails[:, 0] = 0.0
    return tails


def probabilities(zeros: np.ndarray, ratios: np.ndarray, alphabet: int) -> np.ndarray:
    """The probability of each token below ``alphabet`` (columns) under each pair (z, h) of
    ``zeros``, ``ratios`` (rows)."""
    p0 = _logistics(*ZERO_RANGE)[np.asarray(zeros) - ZERO_RANGE[0]][:, None]
    rows = _tails(alphabet)[np.asarray(ratios) - RATIO_RANGE[0]] * (1.0 - p0)
    rows[:, 0] = p0[:, 0]
    return rows


@functools.lru_cache(maxsize=1 << 12)
def table(zero: int, ratio: int, alphabet: int) -> constriction.stream.model.Categorical:
    """The constriction model of the tokens below ``alphabet`` under parameters (z, h): its
    probabilities as integers, which mriae.predictive.tables turns into exact frequencies."""
    scaled = np.floor(probabilities(np.array([zero]), np.array([ratio]), alphabet)[0] * _SCALE).astype(np.int64)
    scaled[0] = max(int(scaled[0]), 1)
    return tables.model(scaled)


def costs(counts: np.ndarray, zeros: list[int], ratios: list[int]) -> np.ndarray:
    """About the bits to code tokens with these ``counts`` (one per token of the alphabet)
    under each pair (z, h) (for the encoder's choices)."""
    present = np.flatnonzero(counts)
    rows = probabilities(np.array(zeros), np.array(ratios), counts.size)[:, present]
    return -(np.log2(np.maximum(rows, 2.0 ** -tables.PRECISION)) @ counts[present])


def fit(zeros: int, count: int, excess: int) -> tuple[int, int]:
    """The parameters (z, h), within their ranges, that fit ``count`` coefficients of which
    ``zeros`` are 0 and the others' magnitudes sum to ``excess`` more than their number."""
    nonzero = count - zeros
    p0 = (zeros + 0.5) / (count + 1.0)
    zero = round(8 * math.log(p0 / (1 - p0)))
    if nonzero:
        mean = excess / nonzero
        theta = min(max(mean / (1 + mean), 1e-6), 1 - 1e-9)
        ratio = round(8 * math.log(theta / (1 - theta)))
    else:
        ratio = RATIO_RANGE[0]
    return min(max(zero, ZERO_RANGE[0]), ZERO_RANGE[1]), min(max(ratio, RATIO_RANGE[0]), RATIO_RANGE[1])
