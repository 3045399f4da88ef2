"""The wavelet transform coder: a 3D volume and a step to bytes, and back to a float64 volume.

The volume is transformed (mriae.wavelet.transform), its coefficients quantized
(mriae.wavelet.quantize) and coded band by band, coarsest level first, each band in eight
phases (mriae.wavelet.contexts). A coefficient's token (mriae.predictive.tokens) is coded with
constriction's ANS coder under its context's parametric table (mriae.wavelet.model), whose two
parameters the encoder fits and stores (mriae.wavelet.parameters). The low band comes first,
as differences of consecutive values (C order) under a context of its own.

Stream layout (every part checked as it is read):

- varint n, then n bytes: zigzag varints as raw DEFLATE: the scheme (1); the step, the
  volume's lowest and highest values (float64 bit patterns as int64); the reconstruction
  offset (64ths of a step); the token alphabet; then the contexts' parameters
  (parameters.Parameters.stored: only those that differ from their prediction);
- varint m, then m bytes: the raw bits of the large tokens, in coding order;
- the ANS words (little-endian u32), to the end.

Decoding is integer work and elementwise IEEE float64 arithmetic (dequantization, the inverse
transform, clipping to the stored range): the same bits on every machine.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable

import constriction
import numpy as np

from mriae.predictive import streams, tokens, varints
from mriae.wavelet import contexts, quantize, transform
from mriae.wavelet.parameters import Parameters, fitted

SCHEME = 1
"""Version of this stream layout, written first in every stream."""
VALUE_LIMIT = 1 << 40
"""Quantized coefficients stay within ±VALUE_LIMIT."""
MAGNITUDE_LIMIT = 2.0**500
"""Values lie within ±MAGNITUDE_LIMIT and steps within [1 / MAGNITUDE_LIMIT, MAGNITUDE_LIMIT],
so that no arithmetic of the transform overflows or comes near subnormal numbers."""
ROUNDING = 0.3
"""The encoder's default deadzone rounding."""
TRADE = 0.13
"""The encoder's default rate–distortion trade (squared error in steps² per bit)."""
_PARAMETER_BYTES = 1 << 16
"""At most this many bytes of unpacked parameters (the header, 3 varints of ≤ 2 bytes per context)."""

Orientation = tuple[int, int, int]
Coded = list[tuple[np.ndarray, np.ndarray]]
"""(contexts uint16, values int64) of the low band, then of every phase, in coding order."""


class WaveletError(ValueError):
    """A stream that does not decode (damaged or forged); says what failed."""


def encode(volume: np.ndarray, step: float, rounding: float = ROUNDING, trade: float = TRADE) -> bytes:
    """The stream of a 3D ``volume`` quantized with ``step`` (in the volume's units; the error
    is about step / √12 per voxel at fine steps). ``rounding`` (≤ ½) is the deadzone's; with
    ``trade`` > 0 each coefficient is then requantized to whichever of its nearest index and
    the next toward 0 costs less squared error (in steps²) + ``trade`` × bits."""
    return encode_and_decode(volume, step, rounding, trade)[0]


def encode_and_decode(volume: np.ndarray, step: float, rounding: float = ROUNDING,
                      trade: float = TRADE) -> tuple[bytes, np.ndarray]:
    """:func:`encode`'s stream, and the float64 volume :func:`decode` gives back from it: made
    from the indices coded by the decoder's own last step (:func:`_reconstructed`), without
    decoding the stream."""
    volume, step = np.asarray(volume), float(step)  # the stream holds a float64 step
    if volume.ndim != 3 or volume.size == 0:
        raise ValueError(f"a wavelet-coded volume is 3D and not empty (shape {volume.shape})")
    if not _valid_step(step) or not 0 <= rounding <= 0.5 or not trade >= 0:
        raise ValueError(f"the step must lie in [2**-500, 2**500], the rounding in [0, 0.5], the trade be ≥ 0 "
                         f"(got {step}, {rounding}, {trade})")
    x = volume.astype(np.float64)
    if not (np.abs(x) <= MAGNITUDE_LIMIT).all():
        raise ValueError("a wavelet-coded volume holds finite values within ±2**500 only")
    low, bands = transform.forward(x)
    low_step, steps = _steps(x.shape, step)
    ratios = [{o: c / steps[level][o] for o, c in band.items()} for level, band in enumerate(bands)]
    largest = max([float(np.abs(low).max()) / low_step]
                  + [float(np.abs(r).max()) for band in ratios for r in band.values()])
    if not largest < VALUE_LIMIT - 1:
        raise ValueError(f"the step {step} is too fine for this volume's values (indices up to {largest:.3g})")
    low_indices = quantize.quantize(low, low_step, 0.5)
    indices = [{o: quantize.quantize(r, 1.0, rounding) for o, r in band.items()} for band in ratios]
    offset = quantize.best_offset(ratios, indices)
    coded = _coded(x.shape, low_indices, lambda level, o, where, _: indices[level][o][where])
    parameters = fitted(coded)
    if trade > 0:
        bit_costs = parameters.bit_costs()

        def requantized(level: int, o: Orientation, where: contexts.Slices, keys: np.ndarray) -> np.ndarray:
            chosen = quantize.rd_quantize(ratios[level][o][where], offset, trade,
                                          lambda q: _bits_of(bit_costs, keys.reshape(q.shape), q))
            indices[level][o][where] = chosen
            return chosen

        coded = _coded(x.shape, low_indices, requantized)
        offset = quantize.best_offset(ratios, indices)
        parameters = fitted(coded)
    lowest, highest = float(x.min()), float(x.max())
    header = [SCHEME, _float_bits(step), _float_bits(lowest), _float_bits(highest), offset, parameters.alphabet]
    return (_stream(header + parameters.stored(), coded, parameters),
            _reconstructed(x.shape, step, offset, low_indices, indices, lowest, highest))


def _coded(shape: tuple[int, int, int], low_indices: np.ndarray,
           choose: Callable[[int, Orientation, contexts.Slices, np.ndarray], np.ndarray]) -> Coded:
    """The contexts and values to code: the low band's differences, then every phase's
    indices, which ``choose(level, orientation, positions, contexts)`` gives."""
    coded = [(np.zeros(low_indices.size, dtype=np.uint16), np.diff(low_indices.ravel(), prepend=0))]

    def code(level: int, orientation: Orientation, index: int, keys: np.ndarray, _: tuple[int, ...]) -> np.ndarray:
        values = choose(level, orientation, contexts.phase_slices(contexts.PHASES[index]), keys)
        coded.append((keys, values.ravel()))
        return values

    _walk(shape, code)
    return coded


def _bits_of(bit_costs: np.ndarray, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """About the bits of ``values`` in their contexts ``keys`` (``bit_costs``: Parameters.bit_costs)."""
    symbols = tokens.tokens_of(values.astype(np.int64).ravel())[0].reshape(values.shape)
    return bit_costs[keys, np.minimum(symbols, bit_costs.shape[1] - 1)]


def _stream(header: list[int], coded: Coded, parameters: Parameters) -> bytes:
    """The stream's bytes: the packed ``header``, the raw bits and the ANS words of ``coded``."""
    bits = tokens.BitWriter()
    symbols = []
    for keys, values in coded:
        tokens_, raw_bits, raw = tokens.tokens_of(values)
        bits.write(raw_bits, raw)
        symbols.append((keys, tokens_))
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw DEFLATE: no zlib header or checksum
    packed = deflater.compress(varints.pack(header)) + deflater.flush()
    coder = constriction.stream.stack.AnsCoder()
    for keys, phase_symbols in reversed(symbols):
        order, runs = _runs(keys, parameters)
        ordered = phase_symbols[order].astype(np.int32)
        ends = np.cumsum([size for size, _ in runs])
        for (size, table), end in zip(reversed(runs), reversed(ends)):
            coder.encode_reverse(ordered[end - size : end], table)
    return streams.stream_bytes(packed, bits.getvalue(), coder.get_compressed())


def decode(data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    """Inverse of :func:`encode`: the float64 volume of ``shape``; WaveletError if the stream
    is damaged."""
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"a wavelet-coded volume is 3D and not empty (shape {shape})")
    with streams.stream_errors(WaveletError):
        return _decode(bytes(data), shape)


def _decode(data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    """:func:`decode`, raising the errors of the parts it reads with."""
    unpacked, raw, words = _split(data)
    reader = varints.Reader(unpacked)
    reader.read(SCHEME, SCHEME, "the stream scheme")
    step = _read_float(reader, "the step")
    lowest, highest = _read_float(reader, "the lowest value"), _read_float(reader, "the highest value")
    if not _valid_step(step) or not -MAGNITUDE_LIMIT <= lowest <= highest <= MAGNITUDE_LIMIT:
        raise WaveletError(f"the step {step} or the value range [{lowest}, {highest}] is invalid")
    offset = reader.read(*quantize.OFFSET_RANGE, "the reconstruction offset")
    alphabet = reader.read(2, tokens.MAX_TOKEN, "the token alphabet")
    parameters = Parameters.read(reader, alphabet)
    reader.check_finished()
    coder = constriction.stream.stack.AnsCoder(words)
    bits = tokens.BitReader(raw)

    def values_of(keys: np.ndarray, limit: int = VALUE_LIMIT) -> np.ndarray:
        order, runs = _runs(keys, parameters)
        symbols = np.zeros(keys.size, dtype=np.int32)
        decoded = [coder.decode(table, size) for size, table in runs]
        if decoded:
            symbols[order] = np.concatenate(decoded)
        return tokens.decoded(symbols, bits, np.dtype(np.int64), limit)

    low_shape, band_shapes = transform.band_shapes(shape)
    low_indices = np.cumsum(values_of(np.zeros(math.prod(low_shape), dtype=np.uint16), 2 * VALUE_LIMIT))
    if int(np.abs(low_indices).max()) > VALUE_LIMIT:
        raise WaveletError("a decoded value lies outside the stream's range")
    indices = [{o: np.zeros(s, dtype=np.int64) for o, s in level.items()} for level in band_shapes]

    def decode_phase(level: int, orientation: Orientation, index: int, keys: np.ndarray,
                     phase_shape: tuple[int, ...]) -> np.ndarray:
        values = values_of(keys).reshape(phase_shape)
        indices[level][orientation][contexts.phase_slices(contexts.PHASES[index])] = values
        return values

    _walk(shape, decode_phase)
    if not coder.is_empty():
        raise WaveletError(f"{coder.num_words()} coded words are left after the last coefficient")
    bits.check_finished()
    return _reconstructed(shape, step, offset, low_indices.reshape(low_shape), indices, lowest, highest)


def _reconstructed(shape: tuple[int, int, int], step: float, offset: int, low_indices: np.ndarray,
                   indices: list[dict[Orientation, np.ndarray]], lowest: float, highest: float) -> np.ndarray:
    """The float64 volume of ``shape`` from its quantized low band and bands, clipped to
    [``lowest``, ``highest``]: the decoder's last step, which the encoder takes too."""
    low_step, steps = _steps(shape, step)
    low = quantize.dequantize(low_indices, low_step, 0)
    bands = [{o: quantize.dequantize(q, steps[level][o], offset) for o, q in band.items()}
             for level, band in enumerate(indices)]
    return np.clip(transform.inverse(low, bands), lowest, highest)


def _split(data: bytes) -> tuple[bytes, bytes, np.ndarray]:
    """The parts of a stream: its unpacked parameters, its raw bits and its ANS words."""
    packed, raw, words = streams.stream_parts(data)
    inflater = zlib.decompressobj(-15)
    unpacked = inflater.decompress(packed, _PARAMETER_BYTES)
    if inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
        raise WaveletError("the stream parameters are damaged or too large")
    return unpacked, raw, words


def _read_float(reader: varints.Reader, what: str) -> float:
    """A float64 stored as its bit pattern; WaveletError unless finite."""
    value = _float_of(reader.read(-(1 << 63), (1 << 63) - 1, what))
    if not math.isfinite(value):
        raise WaveletError(f"{what} is not finite")
    return value


def _valid_step(step: float) -> bool:
    """Whether ``step`` is one the coder takes (within [1 / MAGNITUDE_LIMIT, MAGNITUDE_LIMIT])."""
    return 1 / MAGNITUDE_LIMIT <= step <= MAGNITUDE_LIMIT


def _steps(shape: tuple[int, int, int], step: float) -> tuple[float, list[dict[Orientation, float]]]:
    """(the low band's step, per level: orientation → step) of a volume's transform."""
    levels = transform.splits(shape)
    low_step = step / transform.gain(shape, len(levels) - 1, (0, 0, 0)) if levels else step
    return low_step, [{o: step / transform.gain(shape, level, o) for o in transform.orientations(split)}
                      for level, split in enumerate(levels)]


def _walk(shape: tuple[int, int, int],
          code: Callable[[int, Orientation, int, np.ndarray, tuple[int, ...]], np.ndarray]) -> None:
    """Visit every phase of every band in coding order: ``code(level, orientation, phase,
    contexts, phase_shape)`` codes (or decodes) that phase's coefficients given their
    contexts and returns them (int64, ``phase_shape``)."""
    levels = transform.splits(shape)
    _, band_shapes = transform.band_shapes(shape)
    parents: dict[Orientation, np.ndarray] = {}
    for level in reversed(range(len(levels))):
        parent_split = levels[level + 1] if level + 1 < len(levels) else (False, False, False)
        orientations = transform.orientations(levels[level])
        sibling_shape = tuple(max(band_shapes[level][o][axis] for o in orientations) for axis in range(3))
        siblings = None
        magnitudes = {}
        for orientation in orientations:
            band_shape = band_shapes[level][orientation]
            parent = parents.get(tuple(b if s else 0 for b, s in zip(orientation, parent_split)))
            outside = contexts.outside_buckets(band_shape, parent, parent_split, siblings)
            band = contexts.BandContexts(band_shape, contexts.group(level, orientation), outside)
            for index, phase in enumerate(contexts.PHASES):
                phase_shape = tuple(len(range(p, n, 2)) for p, n in zip(phase, band_shape))
                band.record(index, code(level, orientation, index, band.keys(index), phase_shape))
            magnitudes[orientation] = band.magnitudes()
            if siblings is None:
                siblings = np.zeros(sibling_shape, dtype=np.int32)
            siblings += contexts.mapped(magnitudes[orientation], sibling_shape)
        parents = magnitudes


def _runs(keys: np.ndarray, parameters: Parameters) -> tuple[np.ndarray, list[tuple[int, object]]]:
    """The order that groups a phase's symbols by context, and (size, model) of each context
    that codes any, in that order."""
    sizes = np.bincount(keys)
    used = np.flatnonzero(sizes)
    return np.argsort(keys, kind="stable"), [(int(sizes[c]), parameters.table(int(c))) for c in used]


def _float_bits(value: float) -> int:
    """The bit pattern of a float64 as a signed integer."""
    return int(np.float64(value).view(np.int64))


def _float_of(bits: int) -> float:
    """Inverse of :func:`_float_bits`."""
    return float(np.int64(bits).view(np.float64))
