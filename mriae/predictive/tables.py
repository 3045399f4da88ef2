"""Token frequency tables: counted by the encoder, stored briefly, exact for the coder.

A table is stored as counts scaled to about COUNT_SCALE (12 bits, every token that occurs
keeps ≥ 1), and both sides expand it, in integer arithmetic, to frequencies ≥ 1 summing to
2**PRECISION — the form constriction codes exactly (see mriae.entropy_coder.stream.fixed_point).
"""

from __future__ import annotations

import constriction
import numpy as np

PRECISION = 24
COUNT_SCALE = 4095


class TableError(ValueError):
    """A stored table that cannot be a distribution (damaged stream)."""


def scaled_counts(counts: np.ndarray) -> np.ndarray:
    """``counts`` (int64) scaled to sum about COUNT_SCALE, occurring tokens kept ≥ 1."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return counts.copy()
    scaled = (counts * COUNT_SCALE + total // 2) // total
    return np.where(counts > 0, np.maximum(scaled, 1), 0)


def frequencies(scaled: np.ndarray) -> np.ndarray:
    """Frequencies (int64, each ≥ 1, summing to 2**PRECISION) of a stored table."""
    scaled = np.asarray(scaled, dtype=np.int64)
    total = int(scaled.sum())
    if total <= 0 or (scaled < 0).any() or scaled.size >= 1 << 16:
        raise TableError("a token table is empty or negative")
    spare = (1 << PRECISION) - scaled.size
    result = 1 + scaled * spare // total
    result[int(np.argmax(scaled))] += (1 << PRECISION) - int(result.sum())
    return result


def model(scaled: np.ndarray) -> constriction.stream.model.Categorical:
    """The constriction model of a stored table: ``frequencies − 1`` as float32, which its
    leaky quantization turns back into exactly those frequencies."""
    return constriction.stream.model.Categorical((frequencies(scaled) - 1).astype(np.float32), perfect=False)


def cost_bits(counts: np.ndarray) -> float:
    """Bits to code symbols with these ``counts`` under their own scaled table (estimate)."""
    counts = np.asarray(counts, dtype=np.int64)
    probabilities = frequencies(scaled_counts(counts)) / float(1 << PRECISION)
    present = counts > 0
    return float(-(counts[present] * np.log2(probabilities[present])).sum())
