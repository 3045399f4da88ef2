"""Residuals as small-alphabet tokens plus raw bits (the hybrid integers of JPEG XL).

A residual r maps to u = 2r (r ≥ 0) or −2r − 1 (r < 0). Values u < DIRECT are tokens of their
own; larger ones become a token naming their bit length and the two bits below the leading
one, followed by the remaining low bits stored raw. So the entropy coder's tables stay small
(≤ 16 + 4·(63 − 4) entries) whatever the data's range, at a cost of ~1 % against coding u
itself. All arithmetic is integer (bit lengths come from ``frexp``, exact below 2**53).
"""

from __future__ import annotations

import numpy as np

DIRECT = 16
_DIRECT_BITS = 4
_MANTISSA = 2
MAX_TOKEN = DIRECT + (1 << _MANTISSA) * (53 - _DIRECT_BITS)
"""Tokens lie in [0, MAX_TOKEN): residuals stay below 2**52."""


class TokenError(ValueError):
    """Raw bits that do not match their tokens (a damaged stream)."""


def tokens_of(residuals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tokens int32, raw bit counts int64, raw values int64) of int64 ``residuals``."""
    u = np.where(residuals >= 0, 2 * residuals, -2 * residuals - 1)
    large = u >= DIRECT
    length = np.frexp(np.where(large, u, 1).astype(np.float64))[1].astype(np.int64) - 1  # floor(log2 u)
    raw_bits = np.where(large, length - _MANTISSA, 0)
    tokens = np.where(large, DIRECT + (length - _DIRECT_BITS) * (1 << _MANTISSA)
                      + ((u >> np.maximum(raw_bits, 0)) & ((1 << _MANTISSA) - 1)), u)
    raw = np.where(large, u & ((np.int64(1) << raw_bits) - 1), 0)
    return tokens.astype(np.int32), raw_bits, raw


def raw_bit_counts(tokens: np.ndarray) -> np.ndarray:
    """Raw bits that follow each token (int64)."""
    tokens = tokens.astype(np.int64)
    return np.where(tokens >= DIRECT, (tokens - DIRECT) // (1 << _MANTISSA) + _DIRECT_BITS - _MANTISSA, 0)


def residuals_of(tokens: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Inverse of :func:`tokens_of` given the tokens and their raw values."""
    tokens = tokens.astype(np.int64)
    bits = raw_bit_counts(tokens)
    lead = (1 << _MANTISSA) | ((tokens - DIRECT) & ((1 << _MANTISSA) - 1))
    u = np.where(tokens >= DIRECT, (lead << bits) | raw, tokens)
    return np.where(u & 1, -(u + 1) // 2, u // 2)


class BitWriter:
    """Raw values of given bit counts, appended most significant bit first."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = []

    def write(self, counts: np.ndarray, values: np.ndarray) -> None:
        """Append ``values[i]`` in ``counts[i]`` bits, for every i."""
        keep = counts > 0
        counts, values = counts[keep], values[keep]
        if not counts.size:
            return
        owner = np.repeat(np.arange(counts.size), counts)
        ends = np.cumsum(counts)
        position = np.arange(int(ends[-1])) - np.repeat(ends - counts, counts)
        self._parts.append(((values[owner] >> (counts[owner] - 1 - position)) & 1).astype(np.uint8))

    def getvalue(self) -> bytes:
        """The bits written so far, zero-padded to whole bytes."""
        bits = np.concatenate(self._parts) if self._parts else np.zeros(0, np.uint8)
        return np.packbits(bits).tobytes()


class BitReader:
    """Reads what a :class:`BitWriter` wrote; refuses to read past the end."""

    def __init__(self, data: bytes) -> None:
        self._bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
        self._position = 0

    def read(self, counts: np.ndarray) -> np.ndarray:
        """Values of ``counts[i]`` bits each (int64)."""
        total = int(counts.sum())
        if self._position + total > self._bits.size:
            raise TokenError("the raw bits end before their last value")
        values = np.zeros(counts.size, dtype=np.int64)
        keep = np.flatnonzero(counts > 0)
        if keep.size:
            kept = counts[keep]
            bits = self._bits[self._position : self._position + total].astype(np.int64)
            ends = np.cumsum(kept)
            position = np.arange(total) - np.repeat(ends - kept, kept)
            weighted = bits << (np.repeat(kept, kept) - 1 - position)
            values[keep] = np.add.reduceat(weighted, ends - kept)
        self._position += total
        return values

    def check_finished(self) -> None:
        """Raise TokenError unless every whole byte was read and the padding bits are zero."""
        left = self._bits.size - self._position
        if left >= 8 or self._bits[self._position :].any():
            raise TokenError(f"{left} raw bits are left over after the last value")
