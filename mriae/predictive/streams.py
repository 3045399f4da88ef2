"""The layout of a context or wavelet coder's stream: varint n and n bytes of packed
parameters, varint m and m bytes of raw bits, then the ANS words (uint32, to the end); and the
errors reading a damaged one can raise, as the coder's own."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator

import numpy as np

from mriae.predictive import varints


def stream_bytes(packed: bytes, raw: bytes, words: np.ndarray) -> bytes:
    """A stream of ``packed`` parameters, ``raw`` bits and ANS ``words`` (uint32)."""
    return varints.pack([len(packed)]) + packed + varints.pack([len(raw)]) + raw + words.astype("<u4").tobytes()


def stream_parts(data: bytes) -> tuple[bytes, bytes, np.ndarray]:
    """Inverse of :func:`stream_bytes`: (packed parameters, raw bits, ANS words); VarintError
    if it is cut short or its words are not whole."""
    head = varints.Reader(data[:10])
    size = head.read(0, len(data), "the parameter size")
    start = len(varints.pack([size]))
    packed = data[start : start + size]
    head = varints.Reader(data[start + size : start + size + 10])
    raw_size = head.read(0, len(data), "the raw bit size")
    raw_start = start + size + len(varints.pack([raw_size]))
    raw = data[raw_start : raw_start + raw_size]
    words = data[raw_start + raw_size :]
    if len(packed) != size or len(raw) != raw_size or len(words) % 4:
        raise varints.VarintError("the coded stream is cut short or not whole 32-bit words")
    return packed, raw, np.frombuffer(words, dtype="<u4").astype(np.uint32)


@contextlib.contextmanager
def stream_errors(error: type[ValueError]) -> Iterator[None]:
    """Turn what reading a damaged stream can raise — the varints', the tables' and the
    tokens' errors, zlib's, and constriction's own checks (ValueError, RuntimeError,
    OverflowError) — into ``error`` with a message; ``error`` itself passes through."""
    from mriae.predictive import tables, tokens

    try:
        yield
    except error:
        raise
    except (varints.VarintError, tables.TableError, tokens.TokenError, zlib.error) as reason:
        raise error(str(reason)) from reason
    except (ValueError, RuntimeError, OverflowError) as reason:
        raise error(f"the coded stream is invalid ({reason})") from reason
