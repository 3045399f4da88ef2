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
thread count and library build. For speed, a level is held as its parity phases
(pyramid.Phases), where every neighbour of a pass is a contiguous slice; a pass is computed in
cache-sized windows of its flat span, in the narrowest integer types that the stream's value
range allows (values in one type, neighbour sums and spreads in a wider signed one), with
lookup tables in place of bucket searches. Stream layout: parameters (zlib'd zigzag varints), raw bits,
then the ANS words; each part is checked as it is read.
"""

from __future__ import annotations

import functools
import itertools
import zlib
from collections.abc import Iterable, Iterator
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
SPREAD_LIMIT = 52
"""Sums a pass forms (of up to 26 neighbours, and of their distances to a centre) stay within
±SPREAD_LIMIT times the largest magnitude: the working type of sums holds that."""
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
KEYS = CLASSES * BUCKETS
"""Contexts per pass kind: a key, residual class × BUCKETS + activity bucket."""
CONTEXTS = 1 + KINDS * KEYS
"""Context 0 codes the coarsest grid; then one per (pass kind, residual class, activity bucket)."""
WEIGHT_GROUPS = 5
"""Activity groups with their own weights in large passes (buckets 0–3, 4–7, …, ≥ 16)."""
GROUPED_PASS = 1 << 16
FITTED_PASS = 1 << 10
"""Passes with at least this many voxels get grouped / fitted weights; smaller ones average."""
FIT_SAMPLES = 1 << 17
MIN_TABLE_SYMBOLS = 4096
"""The encoder merges adjacent activity buckets of a (kind, residual class) until a table codes this many symbols."""
WINDOW = 1 << 16
"""Passes are computed in windows of this many flat positions, whose working arrays stay in cache."""


class CoderError(ValueError):
    """A stream that does not decode (damaged or forged); says what failed."""


@dataclass
class _PassData:
    """What both sides know of a pass before its residuals, over a ``window`` of its flat span
    (pyramid.Phases): its known neighbours by offset, the predictor's features (sums of the
    neighbour groups, then twice the median of the pass's ``near`` neighbours) and how many
    values each adds up, the ``near`` neighbours themselves and their sum, and the
    residual-class part of each voxel's context key (class × BUCKETS; 0 in unclassed volumes):
    the residual class is the near neighbours' mean |residual|."""

    window: slice
    neighbours: dict[tuple[int, int, int], np.ndarray]
    features: list[np.ndarray]
    counts: list[int]
    near: list[np.ndarray]
    near_sum: np.ndarray
    classes: np.ndarray | int

    @functools.cached_property
    def groups(self) -> np.ndarray:
        """Weight group of each voxel (uint8): the activity bucket, by fours, of the spread of
        all known neighbours about their mean."""
        values = list(self.neighbours.values())
        total = _sum(self.features[:-1], self.near_sum.dtype)
        mean = (total // len(values)).astype(values[0].dtype)
        spread = _deviation(values, mean, total)
        return np.take(_weight_group_table(len(values)), spread, mode="clip")


def _pass_data(values: pyramid.Phases, step: Pass, magnitudes: pyramid.Phases | None,
               dtype: np.dtype) -> Iterator[_PassData]:
    """The pass data of ``step``, window by window (WINDOW positions of its span each), with
    sums in ``dtype``; ``magnitudes`` holds the |residual| (capped) of every coded voxel of the
    level in classed volumes, None in others."""
    neighbours = {d: values.neighbour(step.parity, d) for group in step.groups for d in group}
    known = None if magnitudes is None else [magnitudes.neighbour(step.parity, d) for d in step.near]
    span = values.span(step.parity)
    for start in range(0, span, WINDOW):
        window = slice(start, min(start + WINDOW, span))
        yield _window_data(step, {d: n[window] for d, n in neighbours.items()},
                           None if known is None else [m[window] for m in known], dtype, window)


def _window_data(step: Pass, neighbours: dict[tuple[int, int, int], np.ndarray], magnitudes: list[np.ndarray] | None,
                 dtype: np.dtype, window: slice) -> _PassData:
    """The pass data of ``step`` over ``window``, given its neighbours there (and the near
    neighbours' magnitudes in classed volumes)."""
    features, counts, near_features = [], [], []
    for index, offsets in enumerate(step.groups):
        if offsets:
            features.append(_sum([neighbours[d] for d in offsets], dtype))
            counts.append(len(offsets))
            if index < 6:
                near_features.append(features[-1])
    near = [neighbours[d] for d in step.near]
    near_sum = _sum(near_features or features[-1:], dtype)
    features.append(_middle_sum(near, dtype))
    classes = 0 if magnitudes is None else np.take(_class_table(len(near)), _sum(magnitudes, np.dtype(np.uint16)),
                                                   mode="clip")
    return _PassData(window, neighbours, features, counts + [2], near, near_sum, classes)


def _sum(arrays: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """Elementwise sum of ``arrays`` in ``dtype`` (the array itself if it is one of that type)."""
    if len(arrays) == 1:
        return arrays[0] if arrays[0].dtype == dtype else arrays[0].astype(dtype)
    total = np.add(arrays[0], arrays[1], dtype=dtype)
    for array in arrays[2:]:
        np.add(total, array, out=total)
    return total


def _deviation(values: list[np.ndarray], centre: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Elementwise Σ |value − centre| over ``values``, given their sum ``total`` (whose type it
    takes): as |v − c| = 2·max(v, c) − v − c, the sum of maxima less ``total``, plus the sum of
    maxima less n·centre — each part ≥ 0, so no partial sum leaves the type's range."""
    highest = np.empty_like(centre)
    maxima = np.zeros(centre.shape, dtype=total.dtype)
    for value in values:
        np.maximum(value, centre, out=highest)
        maxima += highest
    spread = maxima - total
    maxima -= np.multiply(centre, len(values), dtype=total.dtype)
    spread += maxima
    return spread


@functools.cache
def _bucket_table(bounds: tuple[int, ...], count: int) -> np.ndarray:
    """For each sum s of ``count`` values (0, 1, … up to where it stops changing), the bucket
    of s·8 // count among the inclusive upper ``bounds`` (uint8)."""
    sums = np.arange((bounds[-1] + 1) * count // 8 + 2)
    return np.searchsorted(np.array(bounds), sums * 8 // count, side="left").astype(np.uint8)


def _activity_table(count: int) -> np.ndarray:
    """Activity bucket of each sum of ``count`` distances, in value steps."""
    return _bucket_table(tuple(ACTIVITY_BOUNDS.tolist()), count)


@functools.cache
def _weight_group_table(count: int) -> np.ndarray:
    """Weight group of each sum of ``count`` distances (activity buckets by fours)."""
    return np.minimum(_activity_table(count) // 4, WEIGHT_GROUPS - 1).astype(np.uint8)


@functools.cache
def _class_table(count: int) -> np.ndarray:
    """Residual class × BUCKETS of each sum of ``count`` magnitudes."""
    return (_bucket_table(tuple(RESIDUAL_BOUNDS.tolist()), count) * BUCKETS).astype(np.uint8)


def _context_keys(data: _PassData, prediction: np.ndarray) -> np.ndarray:
    """The context key of each voxel (uint8): residual class and activity bucket, the mean
    |near neighbour − prediction| in eighths."""
    spread = _deviation(data.near, prediction, data.near_sum)
    keys = np.take(_activity_table(len(data.near)), spread, mode="clip")
    keys += data.classes
    return keys


def _predictions(windows: Iterable[_PassData], weights: np.ndarray, low: int, high: int, span: int,
                 dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The prediction (in ``dtype``) and context key of every position of a pass's flat span
    of length ``span``, window by window."""
    prediction, keys = np.empty(span, dtype=dtype), np.empty(span, dtype=np.uint8)
    for data in windows:
        prediction[data.window] = _predict(data, weights, low, high)
        keys[data.window] = _context_keys(data, prediction[data.window])
    return prediction, keys


def _record(magnitudes: pyramid.Phases | None, step: Pass, residuals: np.ndarray) -> None:
    """Note a pass's residual magnitudes (capped at 255) for the residual classes of later passes."""
    if magnitudes is not None:
        magnitudes.set(step.parity, np.minimum(np.abs(residuals), 255).astype(np.uint8))


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


def _middle_sum(values: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """Elementwise sum, in ``dtype``, of the two middle values of ``values`` (twice the median)."""
    wires = list(values)
    for i, j, low, high in _median_network(len(wires)):
        a, b = wires[i], wires[j]
        if low:
            wires[i] = np.minimum(a, b)
        if high:
            wires[j] = np.maximum(a, b)
    return np.add(wires[(len(wires) - 1) // 2], wires[len(wires) // 2], dtype=dtype)


def _default_weights(step: Pass) -> np.ndarray:
    """The plain mean of all known neighbours (the median unweighted), as one weight row."""
    count = sum(len(g) for g in step.groups)
    groups = sum(1 for g in step.groups if g)
    return np.array([[round((1 << SHIFT) / count)] * groups + [0]], dtype=np.int64)


def _predict(data: _PassData, weights: np.ndarray, low: int, high: int) -> np.ndarray:
    """The weighted features of each voxel, clipped to [low, high], in the neighbours' type.
    Sums run in int32 when the weights and value range bound them below 2**31, else int64."""
    magnitude = max(-low, high)
    bound = (1 << (SHIFT - 1)) + sum(int(np.abs(weights[:, index]).max()) * count * magnitude
                                      for index, count in enumerate(data.counts))
    dtype = np.result_type(np.int32 if bound < 1 << 31 else np.int64, data.near_sum.dtype)
    total = np.full(data.near_sum.shape, 1 << (SHIFT - 1), dtype=dtype)
    term = np.empty_like(total)
    weights = weights.astype(dtype)
    per_voxel = np.take(weights.T, data.groups, axis=1) if len(weights) > 1 else None
    for index, feature in enumerate(data.features):
        if per_voxel is not None:
            np.multiply(feature, per_voxel[index], out=term)
        elif weights[0, index]:
            np.multiply(feature, weights[0, index], out=term)
        else:
            continue
        total += term
    total >>= SHIFT
    return np.clip(total, low, high, out=total).astype(data.near[0].dtype)


def _fit(features: list[np.ndarray], target: np.ndarray, sample: np.ndarray, largest: int) -> np.ndarray | None:
    """Integer weights of flat ``features`` that best predict ``target`` (least squares) at the
    flat positions ``sample``, or None; no feature or target exceeds ±``largest``."""
    rows = np.empty((len(features) + 1, sample.size))
    for row, values in zip(rows, [*features, target]):
        row[...] = values[sample]
    gram, moments = _products(rows, largest)
    gram += np.eye(len(gram)) * (1e-9 * np.trace(gram) + 1e-12)
    try:
        weights = np.linalg.solve(gram, moments)
    except np.linalg.LinAlgError:
        return None
    if not np.isfinite(weights).all():
        return None
    return np.clip(np.round(weights * (1 << SHIFT)), -WEIGHT_LIMIT, WEIGHT_LIMIT).astype(np.int64)


def _products(rows: np.ndarray, largest: int) -> tuple[np.ndarray, np.ndarray]:
    """The Gram matrix of the feature rows (all but the last of integer ``rows``, within
    ±``largest``) and their products with the target (the last), deterministically: by a matrix
    product when every partial sum is an integer below 2**53 (so exact in any order), else by
    numpy's pairwise sums."""
    if largest * largest * rows.shape[1] < 1 << 53:
        products = rows @ rows.T
        return products[:-1, :-1], products[:-1, -1]
    x, y = rows[:-1], rows[-1]
    return np.array([[np.sum(a * b) for b in x] for a in x]), np.array([np.sum(a * y) for a in x])


def _encoder_weights(windows: list[_PassData], values: pyramid.Phases, step: Pass, magnitude: int) -> np.ndarray:
    """The weight rows the encoder chooses for a pass: fitted on the pass's own voxels (whose
    values lie within ±``magnitude``)."""
    size = int(np.prod(values.extent(step.parity)))
    if size < FITTED_PASS:
        return _default_weights(step)
    features = [np.concatenate(parts) for parts in zip(*(data.features for data in windows))]
    target = values.neighbour(step.parity, (0, 0, 0))
    largest = max(windows[0].counts) * magnitude
    positions = values.inner(step.parity, np.arange(values.span(step.parity))).ravel()
    overall = _fit(features, target, positions[:: max(1, size // FIT_SAMPLES)], largest)
    if overall is None:
        return _default_weights(step)
    if size < GROUPED_PASS:
        return overall[None]
    groups = np.full(values.span(step.parity), WEIGHT_GROUPS, dtype=np.uint8)
    values.inner(step.parity, groups)[...] = values.inner(step.parity, np.concatenate([d.groups for d in windows]))
    rows = []
    for group in range(WEIGHT_GROUPS):
        inside = np.flatnonzero(groups == group)
        fitted = None
        if inside.size >= FITTED_PASS:
            fitted = _fit(features, target, inside[:: max(1, inside.size // FIT_SAMPLES)], largest)
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


def _work_dtypes(low: int, high: int) -> tuple[np.dtype, np.dtype]:
    """The integer types the coder works on values in [low, high] in: the narrowest that holds
    them (and 0, which pads phases), and a signed one that also holds the sums passes form."""
    values = _narrowest(min(low, 0), max(high, 0), (np.uint8, np.int8, np.int16, np.uint16, np.int32, np.int64))
    limit = SPREAD_LIMIT * max(-low, high)
    return values, np.result_type(values, _narrowest(-limit, limit, (np.int16, np.int32, np.int64)))


def _narrowest(low: int, high: int, types: tuple[type, ...]) -> np.dtype:
    """The first of ``types`` that holds [low, high]."""
    return next(np.dtype(t) for t in types if np.iinfo(t).min <= low and high <= np.iinfo(t).max)


def _levels(shape: tuple[int, int, int]) -> list[tuple[tuple[int, int, int], list[Pass]]]:
    """The refinement levels of a volume of ``shape`` in coding order: each grid's shape and passes."""
    return [(tuple(-(-n // (1 << level)) for n in shape), list(steps))  # type: ignore[misc]
            for level, steps in itertools.groupby(pyramid.passes(shape), key=lambda step: step.level)]


def _next_level(fine_shape: tuple[int, int, int], coarse: np.ndarray | None, dtype: type) -> pyramid.Phases | None:
    """The phases of a level whose even phase is the coarser grid ``coarse`` (None: none)."""
    if coarse is None:
        return None
    phases = pyramid.Phases(fine_shape, dtype)
    phases.set((0, 0, 0), coarse)
    return phases


class _Tables:
    """The table of each context key of each pass kind, as the coder visits a pass's symbols:
    grouped by table (ascending), each table's in pass order."""

    def __init__(self, mapping: np.ndarray, models: list) -> None:
        self._kinds = []
        for kind in range(KINDS):
            tables = mapping[1 + kind * KEYS : 1 + (kind + 1) * KEYS]
            used = np.unique(tables)
            self._kinds.append((np.searchsorted(used, tables).astype(np.uint8), [models[t] for t in used]))

    def runs(self, kind: int, keys: np.ndarray) -> tuple[np.ndarray, list[tuple[int, object]]]:
        """The order that groups a pass's symbols by table, and (symbol count, model) of each
        table in that order that codes any."""
        local, models = self._kinds[kind]
        ranks = np.take(local, keys)
        sizes = np.bincount(ranks, minlength=len(models))
        return np.argsort(ranks, kind="stable"), [(int(n), m) for n, m in zip(sizes, models) if n]


def encode(volume: np.ndarray) -> bytes:
    """The stream of an integer 3D ``volume`` (values within ±VALUE_LIMIT)."""
    volume = np.asarray(volume)
    low, high = int(volume.min()), int(volume.max())
    if max(-low, high) > VALUE_LIMIT:
        raise ValueError(f"values beyond ±2**40 cannot be context-coded (range {low}..{high})")
    value_type, sum_type = _work_dtypes(low, high)
    volume = volume.astype(value_type)
    classed = volume.size >= CLASSED_VOLUME
    coarse = pyramid.grid(volume, pyramid.levels_of(volume.shape))
    magnitudes = np.zeros(coarse.shape, dtype=np.uint8) if classed else None
    counts = np.zeros((CONTEXTS, tokens.MAX_TOKEN), dtype=np.int64)
    bits = tokens.BitWriter()
    symbols, raw_bits, raw = tokens.tokens_of(np.diff(coarse.ravel().astype(np.int64), prepend=0))
    counts[0] += np.bincount(symbols, minlength=tokens.MAX_TOKEN)
    bits.write(raw_bits, raw)
    coded, weights = [(None, np.zeros(symbols.size, dtype=np.uint8), symbols)], []
    for fine_shape, steps in _levels(volume.shape):
        values = pyramid.Phases.of(pyramid.grid(volume, steps[0].level))
        known = _next_level(fine_shape, magnitudes, np.uint8)
        for step in steps:
            windows = list(_pass_data(values, step, known, sum_type))
            rows = _encoder_weights(windows, values, step, max(-low, high))
            weights.append(rows)
            prediction, keys = _predictions(windows, rows, low, high, values.span(step.parity), value_type)
            residual = np.subtract(values.neighbour(step.parity, (0, 0, 0)), prediction, dtype=sum_type)
            residual = np.ascontiguousarray(values.inner(step.parity, residual))
            _record(known, step, residual)
            keys = values.inner(step.parity, keys).ravel()
            symbols, raw_bits, raw = tokens.tokens_of(residual.ravel())
            block = counts[1 + step.kind * KEYS : 1 + (step.kind + 1) * KEYS]
            block += np.bincount(keys * np.uint16(tokens.MAX_TOKEN) + symbols, minlength=block.size).reshape(block.shape)
            bits.write(raw_bits, raw)
            coded.append((step.kind, keys, symbols))
        magnitudes = None if known is None else known.grid()
    alphabet = int(np.flatnonzero(counts.any(axis=0))[-1]) + 1
    counts = counts[:, :alphabet]
    mapping = _table_map(counts)
    stored = [tables.scaled_counts(counts[mapping == table].sum(axis=0)) for table in range(int(mapping.max()) + 1)]
    parameters = [SCHEME, low, high, int(classed), alphabet, len(stored), *mapping.tolist()]
    for row in stored:
        parameters += row.tolist()
    for rows in weights:
        parameters += [len(rows), *rows.ravel().tolist()]
    packed = zlib.compress(varints.pack(parameters), 9)
    raw_bytes = bits.getvalue()
    return (varints.pack([len(packed)]) + packed + varints.pack([len(raw_bytes)]) + raw_bytes
            + _ans_words(coded, mapping, [tables.model(row) for row in stored]).astype("<u4").tobytes())


def _ans_words(coded: list[tuple[int | None, np.ndarray, np.ndarray]], mapping: np.ndarray, models: list) -> np.ndarray:
    """The ANS words of the tokens of every pass (kind, context keys, tokens; kind None for the
    coarsest grid), each pass's grouped by table, in coding order."""
    by_table = _Tables(mapping, models)
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
    levels = _levels(shape)
    weights = []
    for _, steps in levels:
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
    value_type, sum_type = _work_dtypes(low, high)

    def residuals(order: np.ndarray, runs: list[tuple[int, object]], dtype: type = sum_type,
                  limit: int = high - low) -> np.ndarray:
        symbols = np.zeros(order.size, dtype=np.int32)
        decoded = [coder.decode(model, size) for size, model in runs]
        symbols[order] = np.concatenate(decoded) if decoded else symbols
        if symbols.size and int(symbols.max()) >= alphabet:
            raise CoderError("a token beyond the stream's alphabet")
        return _residuals_of(symbols, bits, np.dtype(dtype), limit)

    coarse_shape = tuple(-(-n // (1 << pyramid.levels_of(shape))) for n in shape)
    size = int(np.prod(coarse_shape))
    coarse = np.cumsum(residuals(np.arange(size), [(size, models[int(mapping[0])])], np.int64, 1 << 62))
    _check_range(coarse, low, high)
    fine = coarse.astype(value_type).reshape(coarse_shape)
    magnitudes = np.zeros(coarse_shape, dtype=np.uint8) if classed else None
    by_table = _Tables(mapping, models)
    steps = iter(weights)
    for fine_shape, level in levels:
        values = _next_level(fine_shape, fine, value_type)
        known = _next_level(fine_shape, magnitudes, np.uint8)
        for step, rows in zip(level, steps):
            windows = _pass_data(values, step, known, sum_type)
            prediction, keys = _predictions(windows, rows, low, high, values.span(step.parity), value_type)
            keys = values.inner(step.parity, keys).ravel()
            residual = residuals(*by_table.runs(step.kind, keys)).reshape(values.extent(step.parity))
            _record(known, step, residual)
            residual += values.inner(step.parity, prediction)
            _check_range(residual, low, high)
            values.set(step.parity, residual)
        fine = values.grid(np.int64 if fine_shape == tuple(shape) else value_type)  # the last level: the output
        magnitudes = None if known is None else known.grid()
    if not coder.is_empty():
        raise CoderError(f"{coder.num_words()} coded words are left after the last voxel")
    bits.check_finished()
    return fine.astype(np.int64, copy=False)


def _residuals_of(symbols: np.ndarray, bits: tokens.BitReader, dtype: np.dtype, limit: int) -> np.ndarray:
    """The residuals, in ``dtype``, of decoded tokens and the raw bits of the large ones, which
    must lie within ±``limit`` (so that adding a prediction stays within ``dtype``)."""
    residuals = tokens.small_residuals(symbols, dtype)
    large = np.flatnonzero(symbols >= tokens.DIRECT)
    if large.size:
        chosen = symbols[large]
        exact = tokens.residuals_of(chosen, bits.read(tokens.raw_bit_counts(chosen)))
        if int(np.abs(exact).max()) > limit:
            raise CoderError("a decoded value lies outside the stream's range")
        residuals[large] = exact
    return residuals


def _check_range(values: np.ndarray, low: int, high: int) -> None:
    if values.size and (int(values.min()) < low or int(values.max()) > high):
        raise CoderError("a decoded value lies outside the stream's range")
