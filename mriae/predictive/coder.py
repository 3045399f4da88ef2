"""The 3D context coder: an integer volume to bytes and back, exactly.

Voxels are coded coarse to fine (mriae.predictive.pyramid). Each pass predicts its voxels
from their known neighbours with integer weights the encoder fits by least squares (per
pass, and per activity group in large passes: smooth regions and edges want different
weights), stored in the stream. The residual's token (mriae.predictive.tokens) is coded with
constriction's ANS coder under a table chosen by the pass's kind and the local **activity**
(how much the known neighbours differ from their mean): quiet regions get sharp tables,
busy ones broad tables. Tables are counted by the encoder and stored (mriae.predictive.tables).

Everything the decoder recomputes — neighbours, activities, predictions — is integer
arithmetic on decoded integers, so a stream decodes to the same voxels on every machine,
thread count and library build. Stream layout: parameters (zlib'd zigzag varints), raw bits,
then the ANS words; each part is checked as it is read.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import constriction
import numpy as np

from mriae.predictive import pyramid, tables, tokens, varints
from mriae.predictive.pyramid import Pass

SCHEME = 1
"""Version of this stream layout, written first in every stream."""
SHIFT = 12
"""Weights are integers in units of 2**-SHIFT."""
WEIGHT_LIMIT = 1 << 15
VALUE_LIMIT = 1 << 40
"""Values (and so predictions) stay within ±VALUE_LIMIT: sums of weighted neighbours fit in int64."""
ACTIVITY_BOUNDS = np.array([0, 1, 2, 3, 4, 6, 8, 11, 16, 22, 32, 45, 64, 90, 128, 181, 256, 362, 512, 1024, 2048])
"""Upper bounds (inclusive) of the activity buckets, in eighths of a value step; one more bucket above."""
BUCKETS = len(ACTIVITY_BOUNDS) + 1
KINDS = 3
CONTEXTS = 1 + KINDS * BUCKETS
"""Context 0 codes the coarsest grid; then one per (pass kind, activity bucket)."""
WEIGHT_GROUPS = 5
"""Activity groups with their own weights in large passes (buckets 0–3, 4–7, …, ≥ 16)."""
GROUPED_PASS = 1 << 16
FITTED_PASS = 1 << 10
"""Passes with at least this many voxels get grouped / fitted weights; smaller ones average."""
FIT_SAMPLES = 1 << 17
MIN_TABLE_SYMBOLS = 4096
"""The encoder merges adjacent activity buckets of a kind until a table codes this many symbols."""


class CoderError(ValueError):
    """A stream that does not decode (damaged or forged); says what failed."""


@dataclass
class _PassData:
    """What both sides know of a pass before its residuals: where its voxels are, the sums
    of their neighbour groups, their activity bucket and weight group."""

    fine: np.ndarray
    where: tuple[slice, slice, slice]
    sums: list[np.ndarray]
    buckets: np.ndarray
    groups: np.ndarray

    @property
    def size(self) -> int:
        return int(self.buckets.size)


def _pass_data(volume: np.ndarray, step: Pass) -> _PassData:
    fine = pyramid.grid(volume, step.level)
    pad = pyramid.padded(fine)
    sums, neighbours = [], []
    for offsets in step.groups:
        if offsets:
            group = [pyramid.neighbour(pad, fine.shape, step.parity, d) for d in offsets]
            neighbours += group
            sums.append(sum(group[1:], group[0].copy()))
    total = sum(sums[1:], sums[0].copy())
    mean = total // len(neighbours)
    spread = sum(np.abs(n - mean) for n in neighbours) * 8 // len(neighbours)
    buckets = np.searchsorted(ACTIVITY_BOUNDS, spread, side="left")
    return _PassData(fine, pyramid.targets(fine, step.parity), sums, buckets,
                     np.minimum(buckets // 4, WEIGHT_GROUPS - 1))


def _default_weights(step: Pass) -> np.ndarray:
    """The plain mean of all known neighbours, as one weight row."""
    count = sum(len(g) for g in step.groups)
    return np.full((1, sum(1 for g in step.groups if g)), round((1 << SHIFT) / count), dtype=np.int64)


def _predict(data: _PassData, weights: np.ndarray, low: int, high: int) -> np.ndarray:
    rows = weights[data.groups] if len(weights) > 1 else weights[np.zeros_like(data.groups)]
    total = np.full(data.buckets.shape, 1 << (SHIFT - 1), dtype=np.int64)
    for index, sums in enumerate(data.sums):
        total += rows[..., index] * sums
    return np.clip(total >> SHIFT, low, high)


def _fit(sums: list[np.ndarray], target: np.ndarray) -> np.ndarray | None:
    """Integer weights of ``sums`` that best predict ``target`` (least squares), or None."""
    step = max(1, target.size // FIT_SAMPLES)
    x = np.stack([s.ravel()[::step] for s in sums]).astype(np.float64)
    y = target.ravel()[::step].astype(np.float64)
    gram = np.array([[np.sum(a * b) for b in x] for a in x])  # pairwise sums: deterministic
    moments = np.array([np.sum(a * y) for a in x])
    gram += np.eye(len(x)) * (1e-9 * np.trace(gram) + 1e-12)
    try:
        weights = np.linalg.solve(gram, moments)
    except np.linalg.LinAlgError:
        return None
    if not np.isfinite(weights).all():
        return None
    return np.clip(np.round(weights * (1 << SHIFT)), -WEIGHT_LIMIT, WEIGHT_LIMIT).astype(np.int64)


def _encoder_weights(data: _PassData, step: Pass) -> np.ndarray:
    target = data.fine[data.where]
    if data.size < FITTED_PASS:
        return _default_weights(step)
    overall = _fit(data.sums, target)
    if overall is None:
        return _default_weights(step)
    if data.size < GROUPED_PASS:
        return overall[None]
    rows = []
    for group in range(WEIGHT_GROUPS):
        inside = data.groups == group
        fitted = _fit([s[inside] for s in data.sums], target[inside]) if inside.sum() >= FITTED_PASS else None
        rows.append(overall if fitted is None else fitted)
    return np.stack(rows)


def _table_map(counts: np.ndarray) -> np.ndarray:
    """Table index of each context: adjacent buckets of a kind merged until a table has
    MIN_TABLE_SYMBOLS symbols (the last table of a kind takes the remainder)."""
    mapping = np.zeros(CONTEXTS, dtype=np.int64)
    table = 1
    for kind in range(KINDS):
        contexts = range(1 + kind * BUCKETS, 1 + (kind + 1) * BUCKETS)
        filled = 0
        for context in contexts:
            mapping[context] = table
            filled += int(counts[context].sum())
            if filled >= MIN_TABLE_SYMBOLS and context != contexts[-1]:
                table, filled = table + 1, 0
        table += 1
    return _renumbered(mapping, counts)


def _renumbered(mapping: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``mapping`` with tables that code nothing dropped and the rest numbered 0, 1, …"""
    used = sorted({int(mapping[c]) for c in range(CONTEXTS) if counts[c].sum()} | {int(mapping[0])})
    index = {t: i for i, t in enumerate(used)}
    return np.array([index.get(int(t), 0) for t in mapping], dtype=np.int64)


def encode(volume: np.ndarray) -> bytes:
    """The stream of an integer 3D ``volume`` (values within ±VALUE_LIMIT)."""
    volume = np.ascontiguousarray(volume, dtype=np.int64)
    low, high = int(volume.min()), int(volume.max())
    if max(-low, high) > VALUE_LIMIT:
        raise ValueError(f"values beyond ±2**40 cannot be context-coded (range {low}..{high})")
    levels = pyramid.levels_of(volume.shape)
    coarse = pyramid.grid(volume, levels).ravel()
    residuals = [coarse - np.concatenate([[0], coarse[:-1]])]
    contexts = [np.zeros(coarse.size, dtype=np.int64)]
    weights = []
    for step in pyramid.passes(volume.shape):
        data = _pass_data(volume, step)
        rows = _encoder_weights(data, step)
        weights.append(rows)
        residuals.append((data.fine[data.where] - _predict(data, rows, low, high)).ravel())
        contexts.append(1 + step.kind * BUCKETS + data.buckets.ravel())
    coded = [tokens.tokens_of(r) for r in residuals]
    alphabet = max(int(t.max()) for t, _, _ in coded) + 1
    counts = np.zeros((CONTEXTS, alphabet), dtype=np.int64)
    for (symbols, _, _), context in zip(coded, contexts):
        np.add.at(counts, (context, symbols), 1)
    mapping = _table_map(counts)
    stored = []
    for table in range(int(mapping.max()) + 1):
        stored.append(tables.scaled_counts(counts[mapping == table].sum(axis=0)))
    parameters = [SCHEME, low, high, alphabet, len(stored), *mapping.tolist()]
    for row in stored:
        parameters += row.tolist()
    for rows in weights:
        parameters += [len(rows), *rows.ravel().tolist()]
    models = [tables.model(row) for row in stored]
    bits = tokens.BitWriter()
    segments = []
    for (symbols, raw_bits, raw), context in zip(coded, contexts):
        table_of = mapping[context]
        for table in np.unique(table_of):
            segments.append((symbols[table_of == table], models[table]))
        bits.write(raw_bits, raw)
    coder = constriction.stream.stack.AnsCoder()
    for symbols, table_model in reversed(segments):
        coder.encode_reverse(symbols, table_model)
    packed = zlib.compress(varints.pack(parameters), 9)
    raw_bytes = bits.getvalue()
    return (varints.pack([len(packed)]) + packed + varints.pack([len(raw_bytes)]) + raw_bytes
            + coder.get_compressed().astype("<u4").tobytes())


def decode(data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    """Inverse of :func:`encode`: the int64 volume of ``shape``; CoderError if the stream is damaged."""
    try:
        return _decode(data, shape)
    except (varints.VarintError, tables.TableError, tokens.TokenError, zlib.error) as error:
        raise CoderError(str(error)) from error
    except (ValueError, RuntimeError, OverflowError) as error:  # constriction's own checks
        raise CoderError(f"the coded stream is invalid ({error})") from error


def _split(data: bytes) -> tuple[bytes, bytes, np.ndarray]:
    head = varints.Reader(data[:10])
    size = head.read(0, len(data), "the parameter size")
    start = len(varints.pack([size]))
    packed = data[start : start + size]
    head = varints.Reader(data[start + size : start + size + 10])
    raw_size = head.read(0, len(data), "the raw bit size")
    raw_start = start + size + len(varints.pack([raw_size]))
    raw = data[raw_start : raw_start + raw_size]
    words = data[raw_start + raw_size :]
    if len(raw) != raw_size or len(words) % 4:
        raise CoderError("the coded stream is cut short or not whole 32-bit words")
    parameters = zlib.decompressobj()
    unpacked = parameters.decompress(packed, 1 << 24)
    if parameters.unconsumed_tail or not parameters.eof:
        raise CoderError("the stream parameters are damaged or too large")
    return unpacked, raw, np.frombuffer(words, dtype="<u4").astype(np.uint32)


def _decode(data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    unpacked, raw, words = _split(data)
    reader = varints.Reader(unpacked)
    if reader.read(SCHEME, SCHEME, "the stream scheme") != SCHEME:
        raise CoderError("unknown stream scheme")
    low = reader.read(-VALUE_LIMIT, VALUE_LIMIT, "the lowest value")
    high = reader.read(low, VALUE_LIMIT, "the highest value")
    alphabet = reader.read(1, tokens.MAX_TOKEN, "the token alphabet")
    count = reader.read(1, CONTEXTS, "the number of tables")
    mapping = np.array(reader.read_many(CONTEXTS, 0, count - 1, "a table index"), dtype=np.int64)
    models = [tables.model(np.array(reader.read_many(alphabet, 0, tables.COUNT_SCALE, "a table entry")))
              for _ in range(count)]
    steps = pyramid.passes(shape)
    weights = []
    for step in steps:
        rows = reader.read(1, WEIGHT_GROUPS, "a pass's weight rows")
        if rows not in (1, WEIGHT_GROUPS):
            raise CoderError(f"a pass has {rows} weight rows")
        features = sum(1 for g in step.groups if g)
        weights.append(np.array(reader.read_many(rows * features, -WEIGHT_LIMIT, WEIGHT_LIMIT, "a weight"),
                                dtype=np.int64).reshape(rows, features))
    reader.check_finished()
    coder = constriction.stream.stack.AnsCoder(words)
    bits = tokens.BitReader(raw)
    volume = np.zeros(shape, dtype=np.int64)

    def residuals(context: np.ndarray) -> np.ndarray:
        table_of = mapping[context]
        symbols = np.zeros(context.size, dtype=np.int32)
        for table in np.unique(table_of):
            inside = table_of == table
            symbols[inside] = coder.decode(models[table], int(inside.sum()))
        if symbols.size and int(symbols.max()) >= alphabet:
            raise CoderError("a token beyond the stream's alphabet")
        return tokens.residuals_of(symbols, bits.read(tokens.raw_bit_counts(symbols)))

    coarse = pyramid.grid(volume, pyramid.levels_of(shape))
    values = np.cumsum(residuals(np.zeros(coarse.size, dtype=np.int64)))
    _check_range(values, low, high)
    coarse[...] = values.reshape(coarse.shape)
    for step, rows in zip(steps, weights):
        data = _pass_data(volume, step)
        prediction = _predict(data, rows, low, high)
        values = prediction + residuals(1 + step.kind * BUCKETS + data.buckets.ravel()).reshape(prediction.shape)
        _check_range(values, low, high)
        data.fine[data.where] = values
    if not coder.is_empty():
        raise CoderError(f"{coder.num_words()} coded words are left after the last voxel")
    bits.check_finished()
    return volume


def _check_range(values: np.ndarray, low: int, high: int) -> None:
    if values.size and (int(values.min()) < low or int(values.max()) > high):
        raise CoderError("a decoded value lies outside the stream's range")
