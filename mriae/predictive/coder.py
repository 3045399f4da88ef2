"""The 3D context coder: an integer volume to bytes and back, exactly.

Voxels are coded coarse to fine (mriae.predictive.pyramid). Each pass predicts its voxels
from their known neighbours (mriae.predictive.predictor): integer weights, which the encoder
fits by least squares and stores in the stream, on the sums of the neighbour groups and on the
median of the near (face and edge) neighbours, a robust estimate that holds at tissue edges.
Large passes get weights per activity group (the known neighbours' spread about their mean):
smooth regions and edges want different weights. The residual's token
(mriae.predictive.tokens) is coded with constriction's ANS coder under a table chosen by the
pass's kind and the local **activity** (how far the near neighbours lie from the prediction):
quiet regions get sharp tables, busy ones broad tables. Large volumes also split contexts by
the residual magnitudes of the already coded near neighbours (mriae.predictive.contexts).
Tables are counted by the encoder and stored (mriae.predictive.tables).

Everything the decoder recomputes — neighbours, activities, predictions — is integer
arithmetic on decoded integers, so a stream decodes to the same voxels on every machine,
thread count and library build. For speed, a level is held as its parity phases
(pyramid.Phases), where every neighbour of a pass is a contiguous slice; a pass is computed in
cache-sized windows of its flat span (mriae.predictive.passes), in the narrowest integer types
that the stream's value range allows (mriae.predictive.arithmetic), with lookup tables in
place of bucket searches. This module holds the stream: its layout is parameters (zlib'd
zigzag varints: scheme, value range, residual-classes flag, alphabet, context-to-table map,
tables, each pass's weight rows), raw bits, then the ANS words; each part is checked as it is
read.
"""

from __future__ import annotations

import zlib

import constriction
import numpy as np

from mriae.predictive import contexts, passes, predictor, pyramid, streams, tables, tokens, varints
from mriae.predictive.arithmetic import work_dtypes

SCHEME = 2
"""Version of this stream layout, written first in every stream."""
VALUE_LIMIT = 1 << 40
"""Values (and so predictions) stay within ±VALUE_LIMIT: sums of weighted neighbours fit in int64."""
CLASSED_VOLUME = 1 << 20
"""Volumes with at least this many voxels split their contexts by residual class too
(smaller ones cannot pay for the extra tables)."""


class CoderError(ValueError):
    """A stream that does not decode (damaged or forged); says what failed."""


def encode(volume: np.ndarray) -> bytes:
    """The stream of an integer 3D ``volume`` (values within ±VALUE_LIMIT)."""
    return _encode(np.asarray(volume), None, 0.5)[0]


def encode_near(scaled: np.ndarray, rounding: float) -> tuple[bytes, np.ndarray]:
    """The stream of integers near the real 3D volume ``scaled``, and those integers (int64).

    The coarsest grid takes the nearest integers; every later voxel takes its prediction p
    plus the distance r = t − p from its real value t rounded toward zero with offset
    ``rounding``: p + sign(r)·⌊|r| + rounding⌋ (0.5: the nearest integer; below, residuals
    fall to zero sooner — fewer bits, more error: the quantizer's dead zone, centred on the
    prediction). Every integer lies between the nearest one and the prediction, so within the
    range of the nearest integers. Only the encoder chooses: the stream decodes with
    :func:`decode` like any other."""
    if not 0 <= rounding <= 0.5:
        raise ValueError(f"a rounding offset lies in [0, 0.5] (got {rounding})")
    scaled = np.asarray(scaled, dtype=np.float64)
    return _encode(np.floor(scaled + 0.5), scaled, rounding)


def _encode(volume: np.ndarray, scaled: np.ndarray | None, rounding: float) -> tuple[bytes, np.ndarray | None]:
    """The stream of ``volume`` (integer values), each voxel after the coarsest grid moved
    toward its prediction as :func:`encode_near` says when ``scaled`` is given; and the
    integers coded then (None without ``scaled``: they are ``volume``'s)."""
    low, high = int(volume.min()), int(volume.max())
    if max(-low, high) > VALUE_LIMIT:
        raise ValueError(f"values beyond ±2**40 cannot be context-coded (range {low}..{high})")
    value_type, sum_type = work_dtypes(low, high)
    volume = volume.astype(value_type)
    classed = volume.size >= CLASSED_VOLUME
    coarse = pyramid.grid(volume, pyramid.levels_of(volume.shape))
    magnitudes = np.zeros(coarse.shape, dtype=np.uint8) if classed else None
    counts = np.zeros((contexts.CONTEXTS, tokens.MAX_TOKEN), dtype=np.int64)
    bits = tokens.BitWriter()
    symbols, raw_bits, raw = tokens.tokens_of(np.diff(coarse.ravel().astype(np.int64), prepend=0))
    counts[0] += np.bincount(symbols, minlength=tokens.MAX_TOKEN)
    bits.write(raw_bits, raw)
    coded, weights = [(None, np.zeros(symbols.size, dtype=np.uint8), symbols)], []
    for fine_shape, steps in pyramid.level_passes(volume.shape):
        values = pyramid.Phases.of(pyramid.grid(volume, steps[0].level))
        targets = None if scaled is None else pyramid.Phases.of(np.ascontiguousarray(pyramid.grid(scaled, steps[0].level)))
        known = pyramid.next_level(fine_shape, magnitudes, np.uint8)
        for step in steps:
            windows = list(passes.pass_data(values, step, known, sum_type))
            rows = predictor.encoder_weights(windows, values, step, max(-low, high))
            weights.append(rows)
            prediction, keys = passes.predictions(windows, rows, low, high, values.span(step.parity), value_type)
            if targets is not None:
                values.set(step.parity, _toward(values.inner(step.parity, prediction),
                                                targets.inner(step.parity, targets.neighbour(step.parity, (0, 0, 0))),
                                                rounding).astype(value_type))
            residual = np.subtract(values.neighbour(step.parity, (0, 0, 0)), prediction, dtype=sum_type)
            residual = np.ascontiguousarray(values.inner(step.parity, residual))
            contexts.record_magnitudes(known, step, residual)
            keys = values.inner(step.parity, keys).ravel()
            symbols, raw_bits, raw = tokens.tokens_of(residual.ravel())
            block = counts[contexts.of_kind(step.kind)]
            block += np.bincount(keys * np.uint16(tokens.MAX_TOKEN) + symbols, minlength=block.size).reshape(block.shape)
            bits.write(raw_bits, raw)
            coded.append((step.kind, keys, symbols))
        if targets is not None:  # the next level predicts from the integers chosen here
            pyramid.grid(volume, steps[0].level)[...] = values.grid()
        magnitudes = None if known is None else known.grid()
    alphabet = max(2, int(np.flatnonzero(counts.any(axis=0))[-1]) + 1)  # constriction needs two entries
    counts = counts[:, :alphabet]
    mapping = contexts.table_map(counts)
    stored = [tables.scaled_counts(counts[mapping == table].sum(axis=0)) for table in range(int(mapping.max()) + 1)]
    parameters = [SCHEME, low, high, int(classed), alphabet, len(stored), *mapping.tolist()]
    for row in stored:
        parameters += row.tolist()
    for rows in weights:
        parameters += [len(rows), *rows.ravel().tolist()]
    packed = zlib.compress(varints.pack(parameters), 9)
    words = _ans_words(coded, mapping, [tables.model(row) for row in stored])
    return (streams.stream_bytes(packed, bits.getvalue(), words),
            None if scaled is None else volume.astype(np.int64))


def _toward(prediction: np.ndarray, scaled: np.ndarray, rounding: float) -> np.ndarray:
    """p + sign(t − p)·⌊|t − p| + rounding⌋ for predictions p and real values t (float64),
    kept between p and the nearest integer ⌊t + ½⌋ (a tie below p rounds past it otherwise)."""
    distance = scaled - prediction
    chosen = prediction + np.sign(distance) * np.floor(np.abs(distance) + rounding)
    nearest = np.floor(scaled + 0.5)
    return np.clip(chosen, np.minimum(prediction, nearest), np.maximum(prediction, nearest))


def _ans_words(coded: list[tuple[int | None, np.ndarray, np.ndarray]], mapping: np.ndarray, models: list) -> np.ndarray:
    """The ANS words of the tokens of every pass (kind, context keys, tokens; kind None for the
    coarsest grid), each pass's grouped by table, in coding order."""
    by_table = contexts.ContextTables(mapping, models)
    coder = constriction.stream.stack.AnsCoder()
    for kind, keys, symbols in reversed(coded):
        if kind is None:
            order, runs = np.arange(symbols.size), [(symbols.size, models[int(mapping[0])])]
        else:
            order, runs = by_table.runs(kind, keys)
        ordered = symbols[order].astype(np.int32)
        ends = np.cumsum([size for size, _ in runs])
        for (size, model), end in zip(reversed(runs), reversed(ends)):
            coder.encode_reverse(ordered[end - size : end], model)
    return coder.get_compressed()


def decode(data: bytes, shape: tuple[int, int, int], level: int = 0) -> np.ndarray:
    """Inverse of :func:`encode`: the int64 volume of ``shape``; CoderError if the stream is damaged.

    ``level`` > 0: only the voxels on the grid of spacing ``2**level`` (``volume[::s, ::s,
    ::s]``, exactly), decoded from the stream's first passes alone. The stream holds the
    coarsest grid, then each finer level's passes in turn, so decoding stops after the level
    of that grid (about 8**level times less work). Everything read is checked as in a full
    decode (parameters, every weight row, tokens, value ranges); the rest of the stream is
    not read, so damage there goes unnoticed (nor can a checksum of the whole volume be
    verified)."""
    if level < 0:
        raise ValueError(f"a level is ≥ 0 (got {level})")
    with streams.stream_errors(CoderError):
        return _decode(data, shape, level)


def _split(data: bytes) -> tuple[bytes, bytes, np.ndarray]:
    """The parts of a stream: its unpacked parameters, its raw bits and its ANS words."""
    packed, raw, words = streams.stream_parts(data)
    parameters = zlib.decompressobj()
    unpacked = parameters.decompress(packed, 1 << 24)
    if parameters.unconsumed_tail or not parameters.eof:
        raise CoderError("the stream parameters are damaged or too large")
    return unpacked, raw, words


def _decode(data: bytes, shape: tuple[int, int, int], last: int = 0) -> np.ndarray:
    """:func:`decode`, raising the errors of the parts it reads with."""
    unpacked, raw, words = _split(data)
    reader = varints.Reader(unpacked)
    if reader.read(SCHEME, SCHEME, "the stream scheme") != SCHEME:
        raise CoderError("unknown stream scheme")
    low = reader.read(-VALUE_LIMIT, VALUE_LIMIT, "the lowest value")
    high = reader.read(low, VALUE_LIMIT, "the highest value")
    classed = reader.read(0, 1, "the residual classes flag")
    alphabet = reader.read(2, tokens.MAX_TOKEN, "the token alphabet")
    count = reader.read(1, contexts.CONTEXTS, "the number of tables")
    mapping = np.array(reader.read_many(contexts.CONTEXTS, 0, count - 1, "a table index"), dtype=np.int64)
    models = [tables.model(np.array(reader.read_many(alphabet, 0, tables.COUNT_SCALE, "a table entry")))
              for _ in range(count)]
    levels = pyramid.level_passes(shape)
    weights = []
    for _, steps in levels:
        for step in steps:
            rows = reader.read(1, predictor.WEIGHT_GROUPS, "a pass's weight rows")
            if rows not in (1, predictor.WEIGHT_GROUPS):
                raise CoderError(f"a pass has {rows} weight rows")
            features = predictor.feature_count(step)
            weights.append(np.array(reader.read_many(rows * features, -predictor.WEIGHT_LIMIT, predictor.WEIGHT_LIMIT, "a weight"),
                                    dtype=np.int64).reshape(rows, features))
    reader.check_finished()
    coder = constriction.stream.stack.AnsCoder(words)
    bits = tokens.BitReader(raw)
    value_type, sum_type = work_dtypes(low, high)

    def residuals(order: np.ndarray, runs: list[tuple[int, object]], dtype: type = sum_type,
                  limit: int = high - low) -> np.ndarray:
        symbols = np.zeros(order.size, dtype=np.int32)
        decoded = [coder.decode(model, size) for size, model in runs]
        symbols[order] = np.concatenate(decoded) if decoded else symbols
        if symbols.size and int(symbols.max()) >= alphabet:
            raise CoderError("a token beyond the stream's alphabet")
        return tokens.decoded(symbols, bits, np.dtype(dtype), limit)

    coarse_shape = tuple(-(-n // (1 << pyramid.levels_of(shape))) for n in shape)
    size = int(np.prod(coarse_shape))
    coarse = np.cumsum(residuals(np.arange(size), [(size, models[int(mapping[0])])], np.int64, 2 * VALUE_LIMIT))
    _check_range(coarse, low, high)
    fine = coarse.astype(value_type).reshape(coarse_shape)
    coarsest = pyramid.levels_of(shape)
    if last >= coarsest:  # the coarse grid holds the lattice: nothing more to read
        step = 1 << (last - coarsest)
        return fine[::step, ::step, ::step].astype(np.int64)
    magnitudes = np.zeros(coarse_shape, dtype=np.uint8) if classed else None
    by_table = contexts.ContextTables(mapping, models)
    steps = iter(weights)
    for fine_shape, level in levels:
        values = pyramid.next_level(fine_shape, fine, value_type)
        known = pyramid.next_level(fine_shape, magnitudes, np.uint8)
        for step, rows in zip(level, steps):
            windows = passes.pass_data(values, step, known, sum_type)
            prediction, keys = passes.predictions(windows, rows, low, high, values.span(step.parity), value_type)
            keys = values.inner(step.parity, keys).ravel()
            residual = residuals(*by_table.runs(step.kind, keys)).reshape(values.extent(step.parity))
            contexts.record_magnitudes(known, step, residual)
            residual += values.inner(step.parity, prediction)
            _check_range(residual, low, high)
            values.set(step.parity, residual)
        fine = values.grid(np.int64 if fine_shape == tuple(shape) else value_type)  # the last level: the output
        magnitudes = None if known is None else known.grid()
        if level[0].level == last and last:  # the grid asked for: the rest of the stream is left unread
            return fine.astype(np.int64, copy=False)
    if not coder.is_empty():
        raise CoderError(f"{coder.num_words()} coded words are left after the last voxel")
    bits.check_finished()
    return fine.astype(np.int64, copy=False)


def _check_range(values: np.ndarray, low: int, high: int) -> None:
    """CoderError unless every decoded value lies in [low, high]."""
    if values.size and (int(values.min()) < low or int(values.max()) > high):
        raise CoderError("a decoded value lies outside the stream's range")
