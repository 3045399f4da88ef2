"""The 3D context coder: an integer volume to bytes and back, exactly.

Voxels are coded coarse to fine (mriae.predictive.pyramid). Each pass predicts its voxels
from their known neighbours: integer weights, which the encoder fits by least squares and
stores in the stream, on the sums of the neighbour groups and on the median of the near
(face and edge) neighbours, a robust estimate that holds at tissue edges. Large passes get
weights per activity group (the known neighbours' spread about their mean): smooth regions
and edges want different weights. The residual's token (mriae.predictive.tokens) is coded
with constriction's ANS coder under a table chosen by the pass's kind and the local
**activity** (how far the near neighbours lie from the prediction): quiet regions get sharp
tables, busy ones broad tables. Large volumes also split contexts by the residual
magnitudes of the already coded near neighbours. Tables are counted by the encoder and
stored (mriae.predictive.tables).

Everything the decoder recomputes — neighbours, activities, predictions — is integer
arithmetic on decoded integers, so a stream decodes to the same voxels on every machine,
thread count and library build. Stream layout: parameters (zlib'd zigzag varints), raw bits,
then the ANS words; each part is checked as it is read.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

import constriction
import numpy as np

from mriae.predictive import pyramid, tables, tokens, varints
from mriae.predictive.pyramid import Pass

SCHEME = 2
"""Version of this stream layout, written first in every stream."""
SHIFT = 12
"""Weights are integers in units of 2**-SHIFT."""
WEIGHT_LIMIT = 1 << 15
VALUE_LIMIT = 1 << 40
"""Values (and so predictions) stay within ±VALUE_LIMIT: sums of weighted neighbours fit in int64."""
NARROW_LIMIT = 1 << 20
"""Volumes within ±NARROW_LIMIT are worked on in int32: neighbour sums and spreads fit."""
ACTIVITY_BOUNDS = np.array([0, 1, 2, 3, 4, 6, 8, 11, 16, 22, 32, 45, 64, 90, 128, 181, 256, 362, 512, 1024, 2048])
"""Upper bounds (inclusive) of the activity buckets, in eighths of a value step; one more bucket above."""
BUCKETS = len(ACTIVITY_BOUNDS) + 1
RESIDUAL_BOUNDS = np.array([4, 12, 32, 80])
"""Upper bounds (inclusive) of the residual classes: the mean |residual| of a voxel's coded
near neighbours, in eighths; one more class above."""
CLASSES = len(RESIDUAL_BOUNDS) + 1
CLASSED_VOLUME = 1 << 20
"""Volumes with at least this many voxels split their contexts by residual class too
(smaller ones cannot pay for the extra tables)."""
KINDS = 3
CONTEXTS = 1 + KINDS * CLASSES * BUCKETS
"""Context 0 codes the coarsest grid; then one per (pass kind, residual class, activity bucket)."""
WEIGHT_GROUPS = 5
"""Activity groups with their own weights in large passes (buckets 0–3, 4–7, …, ≥ 16)."""
GROUPED_PASS = 1 << 16
FITTED_PASS = 1 << 10
"""Passes with at least this many voxels get grouped / fitted weights; smaller ones average."""
FIT_SAMPLES = 1 << 17
MIN_TABLE_SYMBOLS = 4096
"""The encoder merges adjacent activity buckets of a (kind, residual class) until a table codes this many symbols."""


class CoderError(ValueError):
    """A stream that does not decode (damaged or forged); says what failed."""


@dataclass
class _PassData:
    """What both sides know of a pass before its residuals: where its voxels are, the
    predictor's features (sums of the neighbour groups, then twice the median of the
    pass's ``near`` neighbours) and how many values each adds up, the ``near`` neighbours
    themselves, each voxel's weight group and its residual class (0 in unclassed volumes)."""

    fine: np.ndarray
    where: tuple[slice, slice, slice]
    features: list[np.ndarray]
    counts: list[int]
    near: list[np.ndarray]
    groups: np.ndarray
    classes: np.ndarray | int

    @property
    def size(self) -> int:
        return int(self.groups.size)


def _pass_data(volume: np.ndarray, step: Pass, magnitudes: np.ndarray | None) -> _PassData:
    """The pass data of ``step``; ``magnitudes`` holds the |residual| (capped) of every coded
    voxel in classed volumes, None in others."""
    classes = 0 if magnitudes is None else _residual_classes(magnitudes, step)
    fine = pyramid.grid(volume, step.level)
    pad = pyramid.padded(fine)
    features, counts, neighbours = [], [], {}
    for offsets in step.groups:
        if offsets:
            group = [np.ascontiguousarray(pyramid.neighbour(pad, fine.shape, step.parity, d)) for d in offsets]
            neighbours.update(zip(offsets, group))
            features.append(sum(group[1:], group[0].copy()))
            counts.append(len(group))
    total = sum(features[1:], features[0].copy())
    mean = total // len(neighbours)
    spread = sum(np.abs(n - mean) for n in neighbours.values()) * 8 // len(neighbours)
    near = [neighbours[d] for d in step.near]
    features.append(_middle_sum(near))
    groups = np.minimum(np.searchsorted(ACTIVITY_BOUNDS, spread, side="left") // 4, WEIGHT_GROUPS - 1)
    return _PassData(fine, pyramid.targets(fine, step.parity), features, counts + [2], near, groups, classes)


def _residual_classes(magnitudes: np.ndarray, step: Pass) -> np.ndarray:
    """Residual class of each voxel of ``step``: its near neighbours' mean |residual|."""
    fine = pyramid.grid(magnitudes, step.level)
    pad = pyramid.padded(fine)
    total = sum(pyramid.neighbour(pad, fine.shape, step.parity, d).astype(np.int32) for d in step.near)
    return np.searchsorted(RESIDUAL_BOUNDS, total * 8 // len(step.near), side="left")


def _contexts(step: Pass, data: _PassData, prediction: np.ndarray) -> np.ndarray:
    """The context of each voxel of a pass, flat."""
    return (1 + (step.kind * CLASSES + data.classes) * BUCKETS + _context_buckets(data, prediction)).ravel()


def _record(magnitudes: np.ndarray | None, step: Pass, data: _PassData, residuals: np.ndarray) -> None:
    """Note a pass's residual magnitudes (capped at 255) for the residual classes of later passes."""
    if magnitudes is not None:
        pyramid.grid(magnitudes, step.level)[data.where] = np.minimum(np.abs(residuals), 255)


@functools.cache
def _median_network(count: int) -> tuple[tuple[int, int, bool, bool], ...]:
    """Compare-exchange steps (i, j, keep min, keep max) of Batcher's odd-even merge sort
    of ``count`` wires, pruned to those that decide the two middle wires."""
    steps, size = [], 1
    while size < count:
        stride = size
        while stride:
            for start in range(stride % size, count - stride, 2 * stride):
                for i in range(start, min(start + stride, count - stride)):
                    if i // (2 * size) == (i + stride) // (2 * size):
                        steps.append((i, i + stride))
            stride //= 2
        size *= 2
    needed = {(count - 1) // 2, count // 2}
    kept = []
    for i, j in reversed(steps):
        if i in needed or j in needed:
            kept.append((i, j, i in needed, j in needed))
            needed |= {i, j}
    return tuple(reversed(kept))


def _middle_sum(values: list[np.ndarray]) -> np.ndarray:
    """Elementwise sum of the two middle values of ``values`` (twice the median)."""
    wires = list(values)
    for i, j, low, high in _median_network(len(wires)):
        a, b = wires[i], wires[j]
        if low:
            wires[i] = np.minimum(a, b)
        if high:
            wires[j] = np.maximum(a, b)
    return wires[(len(wires) - 1) // 2] + wires[len(wires) // 2]


def _context_buckets(data: _PassData, prediction: np.ndarray) -> np.ndarray:
    """Activity bucket of each voxel: the mean |near neighbour − prediction|, in eighths."""
    spread = sum(np.abs(n - prediction) for n in data.near) * 8 // len(data.near)
    return np.searchsorted(ACTIVITY_BOUNDS, spread, side="left")


def _default_weights(step: Pass) -> np.ndarray:
    """The plain mean of all known neighbours (the median unweighted), as one weight row."""
    count = sum(len(g) for g in step.groups)
    groups = sum(1 for g in step.groups if g)
    return np.array([[round((1 << SHIFT) / count)] * groups + [0]], dtype=np.int64)


def _predict(data: _PassData, weights: np.ndarray, low: int, high: int) -> np.ndarray:
    """The weighted features of each voxel, clipped to [low, high], in the features' dtype.
    Sums run in int32 when the weights and value range bound them below 2**31, else int64."""
    magnitude = max(-low, high)
    bound = (1 << (SHIFT - 1)) + sum(int(np.abs(weights[:, index]).max()) * count * magnitude
                                      for index, count in enumerate(data.counts))
    total = np.full(data.groups.shape, 1 << (SHIFT - 1), dtype=np.int32 if bound < 1 << 31 else np.int64)
    for index, feature in enumerate(data.features):
        column = weights[:, index].astype(total.dtype)
        total += (column[data.groups] if len(column) > 1 else column[0]) * feature
    return np.clip(total >> SHIFT, low, high).astype(data.fine.dtype)


def _fit(features: list[np.ndarray], target: np.ndarray) -> np.ndarray | None:
    """Integer weights of ``features`` that best predict ``target`` (least squares), or None."""
    step = max(1, target.size // FIT_SAMPLES)
    x = np.stack([f.ravel()[::step] for f in features]).astype(np.float64)
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
    overall = _fit(data.features, target)
    if overall is None:
        return _default_weights(step)
    if data.size < GROUPED_PASS:
        return overall[None]
    rows = []
    for group in range(WEIGHT_GROUPS):
        inside = data.groups == group
        fitted = _fit([f[inside] for f in data.features], target[inside]) if inside.sum() >= FITTED_PASS else None
        rows.append(overall if fitted is None else fitted)
    return np.stack(rows)


def _table_map(counts: np.ndarray) -> np.ndarray:
    """Table index of each context: adjacent buckets of a (kind, residual class) merged until
    a table has MIN_TABLE_SYMBOLS symbols (the last table of each takes the remainder)."""
    mapping = np.zeros(CONTEXTS, dtype=np.int64)
    table = 1
    for kind in range(KINDS * CLASSES):
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


def _work_dtype(low: int, high: int) -> type:
    """The integer type the coder holds a volume of values in [low, high] in."""
    return np.int32 if max(-low, high) <= NARROW_LIMIT else np.int64


def _by_table(table_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The order that groups a pass's symbols by table (each table's in pass order, tables
    ascending, the order they are coded in) and how many symbols each table codes."""
    return np.argsort(table_of, kind="stable"), np.bincount(table_of)


def encode(volume: np.ndarray) -> bytes:
    """The stream of an integer 3D ``volume`` (values within ±VALUE_LIMIT)."""
    volume = np.asarray(volume)
    low, high = int(volume.min()), int(volume.max())
    if max(-low, high) > VALUE_LIMIT:
        raise ValueError(f"values beyond ±2**40 cannot be context-coded (range {low}..{high})")
    volume = np.ascontiguousarray(volume, dtype=_work_dtype(low, high))
    levels = pyramid.levels_of(volume.shape)
    classed = volume.size >= CLASSED_VOLUME
    magnitudes = np.zeros(volume.shape, dtype=np.uint8) if classed else None
    coarse = pyramid.grid(volume, levels).ravel()
    residuals = [np.diff(coarse.astype(np.int64), prepend=0)]
    contexts = [np.zeros(coarse.size, dtype=np.int64)]
    weights = []
    for step in pyramid.passes(volume.shape):
        data = _pass_data(volume, step, magnitudes)
        rows = _encoder_weights(data, step)
        weights.append(rows)
        prediction = _predict(data, rows, low, high)
        residual = data.fine[data.where] - prediction
        _record(magnitudes, step, data, residual)
        residuals.append(residual.ravel().astype(np.int64))
        contexts.append(_contexts(step, data, prediction))
    coded = [tokens.tokens_of(r) for r in residuals]
    alphabet = max(int(t.max()) for t, _, _ in coded) + 1
    counts = np.zeros((CONTEXTS, alphabet), dtype=np.int64)
    for (symbols, _, _), context in zip(coded, contexts):
        counts += np.bincount(context * alphabet + symbols, minlength=counts.size).reshape(counts.shape)
    mapping = _table_map(counts)
    stored = []
    for table in range(int(mapping.max()) + 1):
        stored.append(tables.scaled_counts(counts[mapping == table].sum(axis=0)))
    parameters = [SCHEME, low, high, int(classed), alphabet, len(stored), *mapping.tolist()]
    for row in stored:
        parameters += row.tolist()
    for rows in weights:
        parameters += [len(rows), *rows.ravel().tolist()]
    models = [tables.model(row) for row in stored]
    bits = tokens.BitWriter()
    segments = []
    for (symbols, raw_bits, raw), context in zip(coded, contexts):
        order, sizes = _by_table(mapping[context])
        runs = np.split(symbols[order], np.cumsum(sizes)[:-1])
        segments += [(run, models[table]) for table, run in enumerate(runs) if run.size]
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
    classed = reader.read(0, 1, "the residual classes flag")
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
        features = sum(1 for g in step.groups if g) + 1
        weights.append(np.array(reader.read_many(rows * features, -WEIGHT_LIMIT, WEIGHT_LIMIT, "a weight"),
                                dtype=np.int64).reshape(rows, features))
    reader.check_finished()
    coder = constriction.stream.stack.AnsCoder(words)
    bits = tokens.BitReader(raw)
    volume = np.zeros(shape, dtype=_work_dtype(low, high))
    magnitudes = np.zeros(shape, dtype=np.uint8) if classed else None

    def residuals(context: np.ndarray) -> np.ndarray:
        order, sizes = _by_table(mapping[context])
        symbols = np.zeros(context.size, dtype=np.int32)
        runs = [coder.decode(models[table], int(size)) for table, size in enumerate(sizes) if size]
        symbols[order] = np.concatenate(runs) if runs else symbols
        if symbols.size and int(symbols.max()) >= alphabet:
            raise CoderError("a token beyond the stream's alphabet")
        return tokens.residuals_of(symbols, bits.read(tokens.raw_bit_counts(symbols)))

    coarse = pyramid.grid(volume, pyramid.levels_of(shape))
    values = np.cumsum(residuals(np.zeros(coarse.size, dtype=np.int64)))
    _check_range(values, low, high)
    coarse[...] = values.reshape(coarse.shape)
    for step, rows in zip(steps, weights):
        data = _pass_data(volume, step, magnitudes)
        prediction = _predict(data, rows, low, high)
        residual = residuals(_contexts(step, data, prediction)).reshape(prediction.shape)
        _record(magnitudes, step, data, residual)
        values = prediction + residual
        _check_range(values, low, high)
        data.fine[data.where] = values
    if not coder.is_empty():
        raise CoderError(f"{coder.num_words()} coded words are left after the last voxel")
    bits.check_finished()
    return volume.astype(np.int64)


def _check_range(values: np.ndarray, low: int, high: int) -> None:
    if values.size and (int(values.min()) < low or int(values.max()) > high):
        raise CoderError("a decoded value lies outside the stream's range")
