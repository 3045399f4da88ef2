"""Residuals as small-alphabet tokens plus raw bits (the hybrid integers of JPEG XL).

A residual r maps to u = 2r (r ≥ 0) or −2r − 1 (r < 0). Values u < DIRECT are tokens of their
own; larger ones become a token naming their bit length and the two bits below the leading
one, followed by the remaining low bits stored raw. So the entropy coder's tables stay small
(≤ 16 + 4·(53 − 4) entries) whatever the data's range, at a cost of ~1 % against coding u
itself. All arithmetic is integer (tokens come from a table for u < 2**16, else their bit
lengths from ``frexp``, exact below 2**53).
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


_LOOKUP = 1 << 16
"""Tokens of values u below this come from a table."""


def _tokens_of_values(u: np.ndarray) -> np.ndarray:
    """The token (uint8) of each value u ≥ 0 (int64)."""
    large = u >= DIRECT
    length = np.frexp(np.where(large, u, 1).astype(np.float64))[1].astype(np.int64) - 1  # floor(log2 u)
    raw_bits = np.maximum(length - _MANTISSA, 0)
    return np.where(large, DIRECT + (length - _DIRECT_BITS) * (1 << _MANTISSA)
                    + ((u >> raw_bits) & ((1 << _MANTISSA) - 1)), u).astype(np.uint8)


_TOKENS = _tokens_of_values(np.arange(_LOOKUP, dtype=np.int64))
_TOKEN_CODES = np.arange(MAX_TOKEN, dtype=np.int64)
_RAW_BITS = np.where(_TOKEN_CODES >= DIRECT,
                     (_TOKEN_CODES - DIRECT) // (1 << _MANTISSA) + _DIRECT_BITS - _MANTISSA, 0).astype(np.uint8)
"""Raw bits that follow each token."""
_DIRECT_RESIDUALS = np.where(np.arange(DIRECT) & 1, -(np.arange(DIRECT) + 1) // 2, np.arange(DIRECT) // 2)
"""The residual of each token below DIRECT."""


def tokens_of(residuals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tokens uint8, raw bit counts uint8, raw values) of signed integer ``residuals``, whose
    type must hold 2·|r| + 1; the raw values are in that type."""
    residuals = np.asarray(residuals)
    u = (residuals << 1) ^ (residuals >> (8 * residuals.itemsize - 1))  # 2r, or −2r − 1 below 0
    tokens = np.take(_TOKENS, u, mode="clip")
    beyond = np.flatnonzero(u >= _LOOKUP)
    if beyond.size:
        tokens[beyond] = _tokens_of_values(u[beyond].astype(np.int64))
    raw_bits = np.take(_RAW_BITS, tokens)
    return tokens, raw_bits, u & (np.left_shift(u.dtype.type(1), raw_bits) - u.dtype.type(1))


def raw_bit_counts(tokens: np.ndarray) -> np.ndarray:
    """Raw bits that follow each token (int64)."""
    return np.take(_RAW_BITS, tokens).astype(np.int64)


def small_residuals(tokens: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The residuals, in ``dtype``, of tokens below DIRECT (larger tokens get a placeholder:
    their residuals need their raw bits, :func:`residuals_of`)."""
    return np.take(_DIRECT_RESIDUALS.astype(dtype), tokens, mode="clip")


def decoded(tokens: np.ndarray, bits: BitReader, dtype: np.dtype, limit: int) -> np.ndarray:
    """The residuals, in ``dtype``, of decoded ``tokens`` and the raw bits of the large ones,
    read from ``bits``; TokenError unless every one lies within ±``limit``."""
    residuals = small_residuals(tokens, dtype)
    large = np.flatnonzero(tokens >= DIRECT)
    if large.size:
        chosen = tokens[large]
        exact = residuals_of(chosen, bits.read(raw_bit_counts(chosen)))
        if int(np.abs(exact).max()) > limit:
            raise TokenError("a decoded value lies outside the stream's range")
        residuals[large] = exact
    return residuals


def residuals_of(tokens: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Inverse of :func:`tokens_of` given the tokens and their raw values (int64)."""
    tokens = tokens.astype(np.int64)
    bits = raw_bit_counts(tokens)
    lead = (1 << _MANTISSA) | ((tokens - DIRECT) & ((1 << _MANTISSA) - 1))
    u = np.where(tokens >= DIRECT, (lead << bits) | raw, tokens)
    return np.where(u & 1, -(u + 1) // 2, u // 2)


_CHUNK = 1 << 14
"""Values packed or unpacked per step: temporaries stay within a few MiB whatever the volume."""


class BitWriter:
    """Raw values of given bit counts, appended most significant bit first, kept packed."""

    def __init__(self) -> None:
        self._bytes: list[bytes] = []
        self._tail = np.zeros(0, np.uint8)  # the last bits, fewer than 8

    def write(self, counts: np.ndarray, values: np.ndarray) -> None:
        """Append ``values[i]`` in ``counts[i]`` bits, for every i."""
        keep = counts > 0
        counts, values = counts[keep].astype(np.int64), values[keep].astype(np.int64)
        for start in range(0, counts.size, _CHUNK):
            chunk, chosen = counts[start : start + _CHUNK], values[start : start + _CHUNK]
            owner = np.repeat(np.arange(chunk.size), chunk)
            ends = np.cumsum(chunk)
            position = np.arange(int(ends[-1])) - np.repeat(ends - chunk, chunk)
            bits = np.concatenate([self._tail, ((chosen[owner] >> (chunk[owner] - 1 - position)) & 1).astype(np.uint8)])
            whole = bits.size // 8 * 8
            self._bytes.append(np.packbits(bits[:whole]).tobytes())
            self._tail = bits[whole:]

    def getvalue(self) -> bytes:
        """The bits written so far, zero-padded to whole bytes."""
        return b"".join(self._bytes) + np.packbits(self._tail).tobytes()


class BitReader:
    """Reads what a :class:`BitWriter` wrote; refuses to read past the end."""

    def __init__(self, data: bytes) -> None:
        self._data = np.frombuffer(data, dtype=np.uint8)
        self._position = 0

    def read(self, counts: np.ndarray) -> np.ndarray:
        """Values of ``counts[i]`` bits each (int64)."""
        if self._position + int(counts.sum()) > self._data.size * 8:
            raise TokenError("the raw bits end before their last value")
        values = np.zeros(counts.size, dtype=np.int64)
        keep = np.flatnonzero(counts > 0)
        for start in range(0, keep.size, _CHUNK):
            index = keep[start : start + _CHUNK]
            values[index] = self._next(counts[index].astype(np.int64))
        return values

    def _next(self, counts: np.ndarray) -> np.ndarray:
        """The next values of ``counts`` (all > 0) bits."""
        total = int(counts.sum())
        first = self._position // 8
        bits = np.unpackbits(self._data[first : -(-(self._position + total) // 8)])
        bits = bits[self._position - 8 * first :][:total].astype(np.int64)
        ends = np.cumsum(counts)
        position = np.arange(total) - np.repeat(ends - counts, counts)
        self._position += total
        return np.add.reduceat(bits << (np.repeat(counts, counts) - 1 - position), ends - counts)

    def check_finished(self) -> None:
        """Raise TokenError unless every whole byte was read and the padding bits are zero."""
        left = self._data.size * 8 - self._position
        rest = np.unpackbits(self._data[self._position // 8 :])[self._position % 8 :]
        if left >= 8 or rest.any():
            raise TokenError(f"{left} raw bits are left over after the last value")
