"""The bitstream of the network's latents: integer symbols in, bytes out, and back.

Each latent channel is coded with its own tables (:class:`ChannelTable`), shipped with the
weights, one row per context (mriae.entropy_coder.context), through constriction's ANS
coder. Tables and contexts are numbers fixed before coding, so encoder and decoder agree bit
for bit on any machine and thread count. The tables come from the network's density
(mriae.models.entropy); this module needs no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import constriction
import numpy as np

from mriae.entropy_coder.context import (
    all_contexts,
    anchor_contexts,
    fit_context_rows,
    neighbour_contexts,
    positions,
    table_indices,
)

ESCAPE_LIMIT = 2**20
"""Largest magnitude of an escaped symbol, relative to the channel's first table entry."""
ESCAPE_SCALE = 64.0
"""Scale of the quantized Laplace distribution (centred on the first table entry) that codes escaped symbols."""
PRECISION = 24
"""Bits of the fixed-point probabilities the ANS coder works with (constriction's default)."""
_ESCAPE_MODEL = constriction.stream.model.QuantizedLaplace(-ESCAPE_LIMIT, ESCAPE_LIMIT, 0.0, ESCAPE_SCALE)
_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)  # probabilities given per symbol


@dataclass(frozen=True)
class ChannelTable:
    """Coding tables of one channel at one quantization step, over symbols ``offset + i``.

    ``probabilities`` is float32 (rows, entries), one row per context (mriae.entropy_coder.context);
    the last entry is the escape symbol. Tables fresh from
    :meth:`mriae.models.entropy.EntropyBottleneck.coding_tables` have one row, the factorized density's.
    """

    offset: int
    probabilities: np.ndarray

    @property
    def escape(self) -> int:
        return self.probabilities.shape[1] - 1

    @cached_property
    def frequencies(self) -> np.ndarray:
        """The integer form of ``probabilities`` the coder uses (see :func:`fixed_point`)."""
        return fixed_point(self.probabilities)

    @cached_property
    def coding_rows(self) -> np.ndarray:
        """``frequencies − 1`` as float32: the rows handed to constriction, whose leaky
        quantization (each entry 1 + its share of 2**PRECISION − entries) turns them back into
        exactly ``frequencies`` (integers < 2**24 and their sums are exact in float32, so the
        scale it computes is exactly 1)."""
        return (self.frequencies - 1).astype(np.float32)


def fixed_point(probabilities: np.ndarray) -> np.ndarray:
    """Integer frequencies (int64, each ≥ 1, rows summing to 2**PRECISION) of float32
    probability rows: the conversion that files of format 3 were written with (constriction
    0.4–0.5's leaky "fast" quantization, computed here in IEEE float32 so that the bitstream
    no longer depends on the coding library's version). Entry i of a row of n entries starts
    at floor(sum(p[:i]) · (2**24 − n) / sum(p)) + i, the sums taken in order in float32."""
    rows = np.asarray(probabilities, dtype=np.float32)
    count = rows.shape[-1]
    sums = np.cumsum(rows, axis=-1, dtype=np.float32)  # in order, like the coder's
    scale = np.float32((1 << PRECISION) - count) / sums[..., -1:]
    before = np.concatenate([np.zeros_like(sums[..., :1]), sums[..., :-1]], axis=-1)
    starts = np.floor(before * scale).astype(np.int64) + np.arange(count)
    ends = np.concatenate([starts[..., 1:], np.full_like(starts[..., :1], 1 << PRECISION)], axis=-1)
    return ends - starts


class StreamError(ValueError):
    """A chunk whose bitstream does not decode to the symbols it should (damaged or forged)."""


def _encode(coder: constriction.stream.stack.AnsCoder, values: np.ndarray, table: ChannelTable, rows: np.ndarray) -> None:
    """Push ``values`` as table indices (the escape entry for values outside the table), one
    table row per value, then the escaped values, so that a decoder pops them in that order."""
    if not values.size:
        return
    index = table_indices(values, table.offset, table.escape)
    outside = index == table.escape
    raw = values[outside].astype(np.int64) - table.offset
    if raw.size and np.abs(raw).max() > ESCAPE_LIMIT:
        raise StreamError(f"a latent value ({int(np.abs(raw).max())} steps from its table) is beyond the coder's "
                          f"range of ±{ESCAPE_LIMIT}: this volume cannot be coded")
    if raw.size:
        coder.encode_reverse(raw.astype(np.int32), _ESCAPE_MODEL)
    coder.encode_reverse(index.astype(np.int32), _CATEGORICAL, rows)


def _decode(coder: constriction.stream.stack.AnsCoder, table: ChannelTable, rows: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_encode`: one symbol value per row of ``rows``."""
    if not len(rows):
        return np.zeros(0, dtype=np.int64)
    index = coder.decode(_CATEGORICAL, rows).astype(np.int64)
    outside = index == table.escape
    if escaped := int(np.count_nonzero(outside)):
        index[outside] = coder.decode(_ESCAPE_MODEL, escaped)
    return index + table.offset


def with_context_rows(tables: list[ChannelTable], calibration: list[np.ndarray]) -> list[ChannelTable]:
    """``tables`` (factorized row only) with their context rows counted over the
    ``calibration`` symbols, each shaped (C, D, H, W) (see mriae.entropy_coder.context)."""
    contexts = [all_contexts(symbols) for symbols in calibration]
    return [
        ChannelTable(table.offset, fit_context_rows(
            table.offset, table.probabilities[0], [(s[c], k[c]) for s, k in zip(calibration, contexts)]))
        for c, table in enumerate(tables)
    ]


def encode_symbols(symbols: np.ndarray, tables: list[ChannelTable]) -> bytes:
    """Entropy-code integer ``symbols`` shaped (C, D, H, W) with one table per channel (with
    context rows): channel by channel, its anchors then its other positions."""
    coder = constriction.stream.stack.AnsCoder()
    anchors, others = positions(symbols.shape[1:])
    channels = len(symbols)
    flat_symbols, flat_contexts = symbols.reshape(channels, -1), all_contexts(symbols).reshape(channels, -1)
    for c in reversed(range(channels)):
        table, values, context = tables[c], flat_symbols[c], flat_contexts[c]
        for part in (others, anchors):
            _encode(coder, values[part], table, table.coding_rows[context[part]])
    return coder.get_compressed().astype("<u4").tobytes()


def code_lengths(symbols: np.ndarray, tables: list[ChannelTable]) -> np.ndarray:
    """Ideal code length in bits, −log2 p, of every symbol of (C, D, H, W) ``symbols`` under
    exactly the probabilities :func:`encode_symbols` codes it with: the integer frequencies of
    its channel's table, in the row of its context; an escaped symbol adds its cost under the
    escape model. Their sum is the stream's size to within its final coder state (a few words)."""
    contexts = all_contexts(symbols)
    bits = np.empty(symbols.shape)
    for c, table in enumerate(tables):
        index = table_indices(symbols[c], table.offset, table.escape)
        bits[c] = PRECISION - np.log2(table.frequencies[contexts[c], index])
        outside = index == table.escape
        bits[c][outside] += _escape_bits(symbols[c][outside].astype(np.int64) - table.offset)
    return bits


def _escape_bits(raw: np.ndarray) -> np.ndarray:
    """−log2 of the mass of the unit bin around each of ``raw`` under the escape model's Laplace
    distribution (within 0.3 bits of the coder's)."""
    zero = -math.log2(1 - math.exp(-0.5 / ESCAPE_SCALE))
    edge = -math.log2(0.5 * (1 - math.exp(-1 / ESCAPE_SCALE)))  # then halved every ESCAPE_SCALE · ln 2 steps out
    bits = np.where(raw == 0, zero, edge + (np.abs(raw) - 0.5) / (ESCAPE_SCALE * math.log(2)))
    return np.minimum(bits, PRECISION)  # the coder gives every value at least 1 / 2**PRECISION


def decode_symbols(data: bytes, tables: list[ChannelTable], shape: tuple[int, int, int]) -> np.ndarray:
    """Inverse of :func:`encode_symbols`: (C, D, H, W) int32 symbols from ``data``.

    Raises StreamError unless the stream is whole 32-bit words that decode to exactly the
    symbols of ``shape`` and leave the coder empty (a forged or cut stream almost never does).
    """
    if len(data) % 4:
        raise StreamError(f"the latent stream is {len(data)} bytes, not whole 32-bit words")
    try:
        coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        shape = tuple(int(n) for n in shape)
        anchors, others = positions(shape)
        symbols = np.zeros((len(tables), math.prod(shape)), dtype=np.int32)  # flat per channel, C order
        earlier_nonzero = np.zeros(symbols.shape[1], dtype=np.int64)
        for table, values in zip(tables, symbols):
            values[anchors] = _decode(coder, table, table.coding_rows[anchor_contexts(earlier_nonzero[anchors])])
            contexts = anchor_contexts(earlier_nonzero[others]) + neighbour_contexts(values.reshape(shape))
            values[others] = _decode(coder, table, table.coding_rows[contexts])
            earlier_nonzero += values != 0
        finished = coder.is_empty()
    except (ValueError, RuntimeError, OverflowError) as error:  # constriction's own checks
        raise StreamError(f"the latent stream is invalid ({error})") from error
    if not finished:
        raise StreamError(f"the latent stream has {coder.num_words()} words left after its last symbol")
    return symbols.reshape(len(tables), *shape)
