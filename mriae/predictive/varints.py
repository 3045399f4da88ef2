"""Signed integers as zigzag LEB128 bytes, read back with bounds (for stream parameters)."""

from __future__ import annotations

from collections.abc import Iterable


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
