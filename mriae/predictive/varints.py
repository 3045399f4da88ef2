"""Signed integers as zigzag LEB128 bytes, read back with bounds (for stream parameters), and
the three parts of a coder's stream that they size."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterable, Iterator

import numpy as np


class VarintError(ValueError):
    """Parameter bytes that end early or hold a value out of its bounds."""


def pack(values: Iterable[int]) -> bytes:
    """Zigzag LEB128 bytes of ``values``."""
    out = bytearray()
    for value in values:
        value = int(value)
        u = 2 * value if value >= 0 else -2 * value - 1
        while True:
            byte = u & 0x7F
            u >>= 7
            out.append(byte | (0x80 if u else 0))
            if not u:
                break
    return bytes(out)


class Reader:
    """Reads the values :func:`pack` wrote, each checked against the bounds asked for."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._position = 0

    def read(self, low: int, high: int, what: str) -> int:
        """The next value, which must lie in [low, high]."""
        u = shift = 0
        while True:
            if self._position >= len(self._data) or shift > 63:
                raise VarintError(f"the stream parameters end inside {what}")
            byte = self._data[self._position]
            self._position += 1
            u |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        value = u // 2 if not u & 1 else -(u + 1) // 2
        if not low <= value <= high:
            raise VarintError(f"{what} is {value}, outside [{low}, {high}]")
        return value

    def read_many(self, count: int, low: int, high: int, what: str) -> list[int]:
        """The next ``count`` values, each in [low, high]."""
        return [self.read(low, high, what) for _ in range(count)]

    def check_finished(self) -> None:
        """Raise VarintError unless every byte was read."""
        if self._position != len(self._data):
            raise VarintError(f"{len(self._data) - self._position} bytes are left after the stream parameters")


def stream_parts(data: bytes) -> tuple[bytes, bytes, np.ndarray]:
    """The parts of a context or wavelet coder's stream: varint n and n bytes of packed
    parameters, varint m and m bytes of raw bits, then the ANS words (uint32, to the end);
    VarintError if it is cut short or its words are not whole."""
    head = Reader(data[:10])
    size = head.read(0, len(data), "the parameter size")
    start = len(pack([size]))
    packed = data[start : start + size]
    head = Reader(data[start + size : start + size + 10])
    raw_size = head.read(0, len(data), "the raw bit size")
    raw_start = start + size + len(pack([raw_size]))
    raw = data[raw_start : raw_start + raw_size]
    words = data[raw_start + raw_size :]
    if len(packed) != size or len(raw) != raw_size or len(words) % 4:
        raise VarintError("the coded stream is cut short or not whole 32-bit words")
    return packed, raw, np.frombuffer(words, dtype="<u4").astype(np.uint32)


@contextlib.contextmanager
def stream_errors(error: type[ValueError]) -> Iterator[None]:
    """Turn what reading a damaged stream can raise — this module's, the tables' and the
    tokens' errors, zlib's, and constriction's own checks (ValueError, RuntimeError,
    OverflowError) — into ``error`` with a message; ``error`` itself passes through."""
    from mriae.predictive import tables, tokens

    try:
        yield
    except error:
        raise
    except (VarintError, tables.TableError, tokens.TokenError, zlib.error) as reason:
        raise error(str(reason)) from reason
    except (ValueError, RuntimeError, OverflowError) as reason:
        raise error(f"the coded stream is invalid ({reason})") from reason
