"""The one compression pipeline: image → scale → grid → network + entropy coder → container.

Everything that compresses or decompresses (CLI, Python API, MONAI transforms, bundle,
batch jobs) goes through :func:`compress_image` and :func:`decompress_image`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import accumulate
from typing import ClassVar

import numpy as np

from mriae import container, exact
from mriae.entropy_coder.stream import StreamError
from mriae.fidelity import DEFAULT_QUALITY, Fidelity
from mriae.header import (
    EXACT_INTEGER,
    MAX_AXES,
    MODEL_ID_DIGITS,
    ContextCode,
    Header,
    HeaderError,
    ImageInfo,
    Tiling,
    VolumeInfo,
    WaveletCode,
    grid_of,
    grid_record,
    header_record,
    parse_header,
    read,
)
from mriae.io import Image
from mriae.io.image import preview_source, region_source
from mriae.limits import LimitError, Limits
from mriae.models.weights import DEFAULT_WEIGHTS, Codec, load_codec
from mriae.parallel import ordered_map
from mriae.predictive import coder, symmetry
from mriae.predictive.quantize import BoundError, Quantizer, quantizer, stepped, whole_numbers, whole_numbers_only
from mriae.tiled import TileSymbols, encode_tile, network_voxels, reconstructed, symbols_checksum, tile_symbols
from mriae.transforms.geometry import GridPlan, plan
from mriae.transforms.intensity import IntensityRange, outlier_mask
from mriae.transforms.tiles import (
    TILE_SIZE,
    TILE_SIZES,
    Box,
    TileGrid,
    box_shape,
    box_slices,
    region_affine,
    region_of,
    whole,
)
from mriae.wavelet import coder as wavelet

Progress = Callable[[int, int], None]
"""Called with (volumes done, volumes in all) after each 3D volume."""


PSNR_STEP_TRIES = 100
"""Steps tried below the sampled search's answer before falling back to lossless."""
PSNR_STEP_HALVINGS = 16
"""Halvings of the (log) step interval in the sampled search: 2**-36…2 peaks to within 0.04 %."""
DEAD_ZONE_ROUNDINGS = (0.4, 0.3)
"""Rounding offsets of the context coder's dead zone (coder.encode_near) tried for a PSNR
target besides plain rounding (0.5): each costs DEAD_ZONE_TRIES encodes at most."""
DEAD_ZONE_TRIES = 3
"""Steps each dead zone tries."""
DEAD_ZONE_REACH = 1.5
"""Dead zones are tried only if plain rounding's file is under this many times the wavelet
coder's: they save at most ~25 % (docs/benchmarks.md), so beyond it they cannot win."""
WAVELET_TRIES = 4
"""Steps the wavelet coder tries for a PSNR target."""
CLOSE_ENOUGH_DB = 0.05
"""A step search stops at a file this close above its target."""
NETWORK_CEILING = 40.0
"""PSNR targets above this (dB) go to the context coder alone: the network's best level
reaches 30–37 dB (docs/benchmarks.md), so trying it would only cost time."""
LABEL_VALUES = 64
"""An image of whole numbers with at most this many distinct values is a label map or mask:
coded exactly, since any other value would be a wrong label."""


class CodecError(ValueError):
    """A container this installation cannot decode (missing or mismatched weights, a stream
    that does not decode to what its header says)."""


class UncodableError(ValueError):
    """An image the codec refuses because it cannot code it as promised; says why."""


@dataclass(frozen=True)
class Stats:
    """What a compression achieved."""

    original_bytes: int
    compressed_bytes: int
    voxels: int
    psnr: float  # dB, peak = max − min of the original; inf if lossless
    outliers: int = 0
    """Voxels stored exactly beside the network's code (they count in ``psnr``, with no error,
    and their values stretch its peak)."""
    max_error: float = 0.0
    """Largest absolute difference between an original voxel and its decoded value."""
    at_bound: float = 0.0
    """Fraction of voxels whose error equals the promised maximum error (0 without one)."""
    coder: str = "network"
    """What coded the image: "network", "context" (the bounded/lossless coder), "wavelet" or "exact"."""

    @property
    def ratio(self) -> float:
        """Original bytes over compressed bytes."""
        return self.original_bytes / self.compressed_bytes

    @property
    def bits_per_voxel(self) -> float:
        """Compressed bits (the whole file) per voxel of the image."""
        return self.compressed_bytes * 8 / self.voxels


def spatial_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The 3D volume shape of an array of ``shape``: 1D and 2D get unit trailing axes."""
    return tuple((tuple(int(n) for n in shape) + (1, 1, 1))[:3])  # type: ignore[return-value]


def volumes_of(array: np.ndarray) -> np.ndarray:
    """View an (X, Y, Z, ...) array as (X, Y, Z, N): the series of 3D volumes it holds."""
    return array.reshape(spatial_shape(array.shape) + (-1,), order="F")


def psnr(original: np.ndarray, reconstruction: np.ndarray, peak: float | None = None) -> float:
    """PSNR in dB with ``peak`` = max − min of ``original`` over all voxels unless given (e.g.
    the whole volume's, for a region of it); computed on a common scale, so that values near
    the float64 limits do not overflow."""
    original, reconstruction = np.asarray(original), np.asarray(reconstruction)
    tally = _Tally(_common_scale(original, reconstruction))
    tally.add(original, reconstruction)
    return tally.psnr(peak)


def check_codable(array: np.ndarray) -> None:
    """Raise UncodableError unless ``array``'s voxel type and values can be coded."""
    kind = array.dtype.kind
    if kind not in "biuf" or array.dtype.itemsize > 8:
        raise UncodableError(f"voxel type {array.dtype} cannot be coded (booleans, integers and floats can)")
    if not 1 <= array.ndim <= MAX_AXES:
        raise UncodableError(f"an image has 1 to {MAX_AXES} axes, this one has {array.ndim}")
    if array.size == 0:
        raise UncodableError(f"image has no voxels (shape {array.shape})")
    if kind == "f" and not np.isfinite(array).all():
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise UncodableError(f"image contains {bad} NaN or infinite voxel{'s' * (bad > 1)}, which cannot be coded")


def is_label_map(array: np.ndarray) -> bool:
    """True for a boolean image, or one of whole numbers (integer or float: MONAI loads
    labels as float32) with at most LABEL_VALUES distinct values."""
    if array.dtype.kind == "b":
        return True
    sample = array.ravel()[:: max(1, array.size // 65536)]
    if np.unique(sample).size > LABEL_VALUES or not whole_numbers(array):
        return False
    return np.unique(array).size <= LABEL_VALUES


def compress_image(
    image: Image,
    fidelity: Fidelity | int = DEFAULT_QUALITY,
    spacing: tuple[float, float, float] | None = None,
    weights: str = DEFAULT_WEIGHTS,
    original_bytes: int | None = None,
    progress: Progress | None = None,
    label_map: bool = False,
    tile_size: int = TILE_SIZE,
) -> tuple[bytes, Stats]:
    """Compress ``image`` into .mriae bytes at ``fidelity`` (a :class:`Fidelity`, or a
    quality level); also returns the achieved :class:`Stats`, measured on exactly what the
    decoder will produce.

    Label maps and masks (:func:`is_label_map`, or any image of whole numbers when the
    caller knows it holds labels: ``label_map``) are coded exactly. Otherwise a quality
    level codes through the network (outlier voxels stored exactly beside the code); a
    maximum error or lossless through the 3D context coder; a PSNR through whichever of the
    network, the context coder and the wavelet coder gives the smallest file. The network codes in tiles of ``tile_size`` voxels per axis
    (mriae.transforms.tiles; one of TILE_SIZES). Raises UncodableError for an image that
    cannot be coded as promised, or whose file its decoder would refuse (the header is
    parsed back, with the decoder's limits, before returning).
    """
    if not isinstance(fidelity, Fidelity):
        fidelity = Fidelity(quality=fidelity)
    if tile_size not in TILE_SIZES:
        raise ValueError(f"tile_size must be one of {', '.join(map(str, TILE_SIZES))} voxels (got {tile_size})")
    array = image.array
    check_codable(array)
    limits = Limits.from_environment()
    limits.check_image(array.shape, "image")
    limits.check_volume(spatial_shape(array.shape), "a volume")
    volumes = volumes_of(array)
    if (label_map and whole_numbers(array)) or is_label_map(array):
        return _compress_exactly(image, volumes, original_bytes, progress)
    if fidelity.lossless or fidelity.max_error is not None:
        error = fidelity.max_error or 0.0
        return _compress_bounded(image, volumes, lambda volume: quantizer(volume, error), error, original_bytes, progress)
    if fidelity.psnr is not None:
        return _compress_to_psnr(image, volumes, fidelity.psnr, spacing, weights, tile_size, original_bytes, progress)
    return _compress_learned(image, volumes, fidelity.level, spacing, weights, tile_size, original_bytes, progress)


def _compress_learned(image: Image, volumes: np.ndarray, quality: int, spacing: tuple[float, float, float] | None,
                      weights: str, tile_size: int, original_bytes: int | None,
                      progress: Progress | None) -> tuple[bytes, Stats]:
    """.mriae bytes of ``image`` coded through the network at ``quality``, in tiles of
    ``tile_size`` voxels; errors measured tile by tile on what the decoder will produce."""
    array = image.array
    if _beyond_float64(array):
        raise UncodableError(f"{array.dtype} values beyond ±2**53 cannot be coded lossily (only label maps can)")
    codec = load_codec(weights)
    codec.level(quality)  # checks the quality level before any work
    grid = plan(volumes.shape[:3], image.affine, codec.model.config.levels, spacing)
    try:
        tiles = TileGrid.of(grid, tile_size)
    except ValueError as error:
        raise UncodableError(str(error)) from error
    chunks, records = [], []
    tally = _Tally(_common_scale(array))
    for index in range(volumes.shape[3]):
        record, volume_chunks = _encode_lossy(codec, volumes[..., index], grid, tiles, quality, tally)
        records.append(record)
        chunks += volume_chunks
        if progress:
            progress(index + 1, volumes.shape[3])
    errors = tally.errors()
    header = Header(container.FORMAT_VERSION, _image_info(image), tuple(records), codec.name,
                    codec.sha256[:MODEL_ID_DIGITS], quality, _rounded(errors.psnr), grid_record(grid))
    return _packed(header, chunks, volumes.nbytes, errors, original_bytes, "network")


def _beyond_float64(array: np.ndarray) -> bool:
    """True for integers beyond ±2**53, which the network's float64 ranges cannot hold."""
    return array.dtype.kind in "iu" and max(abs(int(array.min())), abs(int(array.max()))) > EXACT_INTEGER


def _rounded(quality_db: float) -> float | None:
    return round(quality_db, 2) if np.isfinite(quality_db) else None


def _compress_exactly(image: Image, volumes: np.ndarray, original_bytes: int | None,
                      progress: Progress | None) -> tuple[bytes, Stats]:
    """.mriae bytes of ``image`` (its ``volumes`` as (X, Y, Z, N)) with every volume stored exactly."""
    chunks, records = [], []
    for index in range(volumes.shape[3]):
        chunks.append(exact.pack_voxels(volumes[..., index]))
        records.append(VolumeInfo(True, checksum=exact.checksum(volumes[..., index])))
        if progress:
            progress(index + 1, volumes.shape[3])
    header = Header(container.FORMAT_VERSION, _image_info(image), tuple(records), None, None, None, None, None)
    return _packed(header, chunks, volumes.nbytes, _Errors.NONE, original_bytes, "exact")


def _compress_bounded(image: Image, volumes: np.ndarray, quantizer_of: Callable[[np.ndarray], Quantizer],
                      error: float | None, original_bytes: int | None, progress: Progress | None,
                      rounding: float = 0.5) -> tuple[bytes, Stats]:
    """.mriae bytes of ``image`` through the context coder, each volume quantized by
    ``quantizer_of`` (within ``error`` when one is promised; 0: lossless). A volume the coder
    cannot take losslessly (integers beyond ±2**40, float64 that float32 does not hold) is
    stored exactly instead; one it cannot bound is refused. ``rounding`` below 0.5 (only
    when no ``error`` is promised): a real step's integers are chosen with that dead zone
    about their predictions (coder.encode_near), and each volume promises the larger of
    plain rounding's error and the one it then makes."""
    chunks, records = [], []
    reconstruction = np.empty(volumes.shape, dtype=volumes.dtype)
    for index in range(volumes.shape[3]):
        volume = volumes[..., index]
        try:
            quantizing = quantizer_of(volume)
        except BoundError as reason:
            if error != 0:
                raise UncodableError(str(reason)) from reason
            chunks.append(exact.pack_voxels(volume))
            records.append(VolumeInfo(True, checksum=exact.checksum(volume)))
            reconstruction[..., index] = volume
        else:
            integers = quantizing.integers(volume)
            mirror = symmetry.mirror_axis(integers)
            if rounding < 0.5 and quantizing.error > 0 and not quantizing.float_bits:
                chunk, integers = coder.encode_near(quantizing.scaled(volume if mirror is None else
                                                                      symmetry.first_half(volume, mirror)), rounding)
                integers = integers if mirror is None else symmetry.unfold(integers, mirror, volume.shape[mirror])
                chunks.append(chunk)
                decoded = quantizing.values(integers, volume.dtype)
                worst = float(np.max(np.abs(decoded.astype(np.float64) - volume.astype(np.float64))))
                quantizing = dataclasses.replace(quantizing, error=max(quantizing.error, worst))
            else:
                chunks.append(coder.encode(integers if mirror is None else symmetry.first_half(integers, mirror)))
                decoded = quantizing.values(integers, volume.dtype)
            records.append(VolumeInfo(False, quantizing.low, quantizing.high, checksum=exact.checksum(decoded),
                                      context=ContextCode(quantizing.error, quantizing.step, quantizing.origin,
                                                          quantizing.float_bits, quantizing.rounded, mirror)))
            reconstruction[..., index] = decoded
        if progress:
            progress(index + 1, volumes.shape[3])
    promised = max((r.context.error for r in records if r.context is not None), default=0.0)
    errors = _Errors.of(volumes, reconstruction, promised)
    if errors.worst > promised or (promised == 0 and errors.psnr != float("inf")):
        raise UncodableError(f"cannot be coded within {promised:g}: a voxel would be off by {errors.worst:g}")  # never expected
    header = Header(container.FORMAT_VERSION, _image_info(image), tuple(records), None, None, None,
                    _rounded(errors.psnr), None)
    coded_by = "exact" if all(record.exact for record in records) else "context"
    return _packed(header, chunks, volumes.nbytes, errors, original_bytes, coded_by)


def _compress_to_psnr(image: Image, volumes: np.ndarray, target: float, spacing: tuple[float, float, float] | None,
                      weights: str, tile_size: int, original_bytes: int | None,
                      progress: Progress | None) -> tuple[bytes, Stats]:
    """The smallest of the context coder's files that keep ``target`` dB (the largest step of
    plain rounding, and the dead zones), the wavelet coder's, and the lowest network quality
    level that reaches it (tried up to NETWORK_CEILING dB)."""
    step = _step_for_psnr(volumes, target)
    try:
        best = _compress_bounded(image, volumes, lambda volume: stepped(volume, step), None, original_bytes, progress)
    except UncodableError:  # beyond the context coder (integers past ±2**40): the network alone
        best = None
    if best is not None and best[1].psnr < target:  # never expected: the step was checked on every voxel
        best = None
    transformed = _wavelet_to_psnr(image, volumes, target, original_bytes) if step > 0 else None
    if best is not None and step > 0 and (transformed is None or len(best[0]) < DEAD_ZONE_REACH * len(transformed[0])):
        best = _with_dead_zone(image, volumes, step, target, best, original_bytes)
    if transformed is not None and (best is None or len(transformed[0]) < len(best[0])):
        best = transformed
    if target <= NETWORK_CEILING and not _beyond_float64(image.array):
        levels = list(load_codec(weights).qualities)
        candidates: dict[int, tuple[bytes, Stats]] = {}

        def reaches(level: int) -> bool:
            candidates[level] = _compress_learned(image, volumes, level, spacing, weights, tile_size, original_bytes,
                                                  None)
            return candidates[level][1].psnr >= target

        if reaches(levels[-1]):
            low, high = 0, len(levels) - 1
            while low < high:
                middle = (low + high) // 2
                low, high = (low, middle) if reaches(levels[middle]) else (middle + 1, high)
            learned = candidates[levels[high]]
            if best is None or len(learned[0]) < len(best[0]):
                best = learned
    if best is None:
        raise UncodableError(f"no coder reaches {target:g} dB on this image")
    return best


def _with_dead_zone(image: Image, volumes: np.ndarray, step: float, target: float, best: tuple[bytes, Stats],
                    original_bytes: int | None) -> tuple[bytes, Stats]:
    """The smallest of ``best`` (plain rounding at ``step``) and the context coder's files with
    each dead zone of DEAD_ZONE_ROUNDINGS that reach ``target`` dB. A dead zone adds error, so
    its search starts ~1 dB below ``step``."""
    for rounding in DEAD_ZONE_ROUNDINGS:
        def coded(trial: float, rounding: float = rounding) -> tuple[bytes, Stats]:
            return _compress_bounded(image, volumes, lambda volume: stepped(volume, trial), None, original_bytes,
                                     None, rounding)

        found = _smallest_reaching(coded, step * 10 ** (-1 / 20), target, DEAD_ZONE_TRIES)
        if found is not None and len(found[0]) < len(best[0]):
            best = found
    return best


def _smallest_reaching(coded: Callable[[float], tuple[bytes, Stats]], first: float, target: float,
                       tries: int) -> tuple[bytes, Stats] | None:
    """The smallest of the files ``coded`` makes at up to ``tries`` steps that reach ``target``
    dB (None if none does). The first step is ``first``; the next moves it by the PSNR missed
    or exceeded (PSNR falls about 20·log10 of the step), later ones along the secant of the
    last two tries. A step the coder cannot take, one as exact as lossless, or a file within
    CLOSE_ENOUGH_DB above the target ends the search."""
    best, tried = None, []  # (log10 step, PSNR reached)
    trial = first
    for _ in range(tries):
        try:
            candidate = coded(trial)
        except UncodableError:  # a step too fine for the range
            break
        reached = candidate[1].psnr
        if math.isinf(reached):
            break
        if reached >= target and (best is None or len(candidate[0]) < len(best[0])):
            best = candidate
        if target <= reached < target + CLOSE_ENOUGH_DB:
            break
        tried.append((math.log10(trial), reached))
        slope = -20.0
        if len(tried) > 1 and tried[-1][1] != tried[-2][1]:
            slope = min(-5.0, max(-80.0, (tried[-1][1] - tried[-2][1]) / (tried[-1][0] - tried[-2][0])))
        trial *= 10 ** ((target + 0.02 - reached) / slope)
    return best


def _wavelet_to_psnr(image: Image, volumes: np.ndarray, target: float,
                     original_bytes: int | None) -> tuple[bytes, Stats] | None:
    """The wavelet coder's smallest file that reaches ``target`` dB within WAVELET_TRIES steps
    (None if none does, or the values are beyond its range). The first step is the uniform
    quantizer's for that mean squared error, √(12·MSE)."""
    low, high = float(volumes.min()), float(volumes.max())
    if high == low or max(-low, high) > wavelet.MAGNITUDE_LIMIT:
        return None
    allowed = (high - low) ** 2 / 10 ** (target / 10)
    return _smallest_reaching(lambda step: _compress_wavelet(image, volumes, step, original_bytes),
                              math.sqrt(12 * allowed), target, WAVELET_TRIES)


def _compress_wavelet(image: Image, volumes: np.ndarray, step: float, original_bytes: int | None) -> tuple[bytes, Stats]:
    """.mriae bytes of ``image`` with every volume coded by the wavelet coder at ``step``; each
    volume promises the largest error its decoded voxels have."""
    chunks, records = [], []
    reconstruction = np.empty(volumes.shape, dtype=volumes.dtype)
    for index in range(volumes.shape[3]):
        volume = volumes[..., index]
        low, high = float(volume.min()), float(volume.max())
        try:
            chunk, values = wavelet.encode_and_decode(volume.astype(np.float64), step)
        except ValueError as reason:  # a step too fine for the values' magnitude
            raise UncodableError(str(reason)) from reason
        code = WaveletCode(0.0, step, whole_numbers_only(volume))
        decoded = wavelet_values(code, np.clip(values, low, high), volume.dtype)
        code = dataclasses.replace(code, error=float(np.max(np.abs(decoded.astype(np.float64) - volume))))
        chunks.append(chunk)
        records.append(VolumeInfo(False, low, high, checksum=exact.checksum(decoded), wavelet=code))
        reconstruction[..., index] = decoded
    errors = _Errors.of(volumes, reconstruction, max(record.wavelet.error for record in records))
    header = Header(container.FORMAT_VERSION, _image_info(image), tuple(records), None, None, None,
                    _rounded(errors.psnr), None)
    return _packed(header, chunks, volumes.nbytes, errors, original_bytes, "wavelet")


def wavelet_values(code: WaveletCode, values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A wavelet-coded volume's voxels in ``dtype`` from the coder's float64 ``values``."""
    return (np.rint(values) if code.rounded else values).astype(dtype)


def _step_for_psnr(volumes: np.ndarray, target: float) -> float:
    """The largest quantization step that keeps at least ``target`` dB over all ``volumes``
    (0 if only lossless does): searched on a sample, then checked on every voxel."""
    original = volumes.astype(np.float64)
    peak = float(original.max() - original.min())
    if peak == 0:
        return 0.0
    allowed = peak**2 / 10 ** (target / 10)  # largest mean squared error

    def reaches(step: float, sample: int) -> bool:
        total = 0.0
        for index in range(volumes.shape[3]):
            volume = volumes[..., index].ravel(order="F")[::sample]
            try:
                quantizing = stepped(volume, step)
            except BoundError:
                return False
            decoded = quantizing.values(quantizing.integers(volume), volume.dtype).astype(np.float64)
            total += float(np.sum((decoded - volume) ** 2))
        return total <= allowed * volumes.shape[3] * len(range(0, volumes[..., 0].size, sample))

    sample = max(1, volumes.size // (1 << 20))
    low, high = peak * 2.0**-36, 2 * peak  # low reaches the target (else: lossless), high does not
    if not reaches(low, 1):
        return 0.0
    for _ in range(PSNR_STEP_HALVINGS):
        middle = math.sqrt(low * high)
        low, high = (middle, high) if reaches(middle, sample) else (low, middle)
    step = low
    for _ in range(PSNR_STEP_TRIES):
        if reaches(step, 1):
            return step
        step *= 0.97
    return 0.0  # lossless: always reaches


SLAB_VOXELS = 1 << 22
"""Most voxels of a slab in which whole volumes are compared (bounded memory)."""


@dataclass(frozen=True)
class _Errors:
    """How a reconstruction differs from the original, measured once: PSNR, the largest
    absolute error, and the share of voxels at a promised bound."""

    psnr: float
    worst: float = 0.0
    at_bound: float = 0.0

    NONE: ClassVar[_Errors]

    @classmethod
    def of(cls, volumes: np.ndarray, reconstruction: np.ndarray, bound: float | None = None) -> _Errors:
        """The errors of ``reconstruction`` against ``volumes`` (both (X, Y, Z, N)), measured slab by slab."""
        tally = _Tally(_common_scale(volumes, reconstruction), bound)
        for index in range(volumes.shape[3]):
            for box in _slabs(volumes.shape[:3]):
                tally.add(volumes[..., index][box_slices(box)], reconstruction[..., index][box_slices(box)])
        return tally.errors()


_Errors.NONE = _Errors(float("inf"))


@dataclass
class _Tally:
    """Running sums of how a reconstruction differs from its original, added piece by piece
    (memory bounded by the piece): squared errors on a common ``scale`` (so that values near
    the float64 limits do not overflow), the largest absolute error, the voxels at a promised
    ``bound``, and the original's extremes (the PSNR's peak)."""

    scale: float
    bound: float | None = None
    squares: float = 0.0
    voxels: int = 0
    worst: float = 0.0
    at_bound: int = 0
    low: float = math.inf
    high: float = -math.inf

    def add(self, original: np.ndarray, reconstruction: np.ndarray) -> None:
        """Count the voxels of one piece: ``original`` and its ``reconstruction``."""
        whole_numbers = original.dtype.kind in "iub" and reconstruction.dtype.kind in "iub"  # exact in int64
        difference = original.astype(np.int64 if whole_numbers else np.float64)
        difference -= reconstruction.astype(difference.dtype, copy=False)
        np.abs(difference, out=difference)
        self.worst = max(self.worst, float(difference.max()))
        if self.bound:
            self.at_bound += int(np.count_nonzero(difference >= self.bound))
        error = original.astype(np.float64)  # scaled first: differences near the float64 limits could overflow
        error /= self.scale
        error -= reconstruction.astype(np.float64) / self.scale
        self.squares += float(np.sum(np.square(error, out=error)))  # numpy's own sum: the same on every machine
        self.voxels += original.size
        self.low = min(self.low, float(original.min()) / self.scale)
        self.high = max(self.high, float(original.max()) / self.scale)

    def psnr(self, peak: float | None = None) -> float:
        """PSNR in dB over every voxel counted, with ``peak`` (in the original's units) or
        the original's max − min."""
        mse = self.squares / self.voxels
        peak = self.high - self.low if peak is None else peak / self.scale
        if mse == 0:
            return float("inf")
        return float(20 * np.log10(peak) - 10 * np.log10(mse)) if peak > 0 else float("-inf")

    def errors(self) -> _Errors:
        """The errors counted so far."""
        return _Errors(self.psnr(), self.worst, self.at_bound / self.voxels if self.bound else 0.0)


def _common_scale(*arrays: np.ndarray) -> float:
    """The largest magnitude in ``arrays`` (at least 1): the scale errors are summed on."""
    return max([1.0] + [abs(float(value)) for array in arrays for value in (array.min(), array.max())])


def _slabs(shape: tuple[int, ...]) -> list[Box]:
    """Boxes of at most SLAB_VOXELS voxels (a slice at least) along the last axis of ``shape``."""
    step = max(1, SLAB_VOXELS // max(1, math.prod(shape[:-1])))
    return [whole(shape[:-1]) + ((start, min(start + step, shape[-1])),) for start in range(0, shape[-1], step)]


def _image_info(image: Image) -> ImageInfo:
    array = image.array
    return ImageInfo(image.suffix, array.dtype, tuple(int(n) for n in array.shape), image.affine, image.source)


def _packed(header: Header, chunks: list[bytes], nbytes: int, errors: _Errors, original_bytes: int | None,
            coder_name: str) -> tuple[bytes, Stats]:
    """The container of ``header`` and ``chunks``, once the header has passed the decoder's
    own parser (so that no file is written that its reader would refuse), with its Stats
    (``errors`` measured on what the decoder will produce; ``nbytes`` of raw voxels)."""
    record = header_record(header)
    try:
        parse_header(record, container.FORMAT_VERSION)
    except (HeaderError, LimitError) as error:
        raise UncodableError(f"cannot be stored as it is: {error}") from error
    data = container.pack(record, chunks)
    raw_size = original_bytes if original_bytes is not None else nbytes
    outliers = sum(volume.outliers for volume in header.volumes)
    return data, Stats(raw_size, len(data), math.prod(header.image.shape), errors.psnr, outliers, errors.worst,
                       errors.at_bound, coder_name)


def _encode_lossy(codec: Codec, volume: np.ndarray, grid: GridPlan, tiles: TileGrid, quality: int,
                  tally: _Tally) -> tuple[VolumeInfo, list[bytes]]:
    """(record, chunks) of one volume coded through the network tile by tile, its outliers
    stored exactly; its errors against what the decoder will produce go to ``tally``."""
    outliers = outlier_mask(volume)
    try:
        intensity = IntensityRange.of(volume, outliers)
    except ValueError as error:
        raise UncodableError(str(error)) from error
    if intensity.constant:
        chunks, tiling = [], None
        pieces: Iterable[tuple[Box, np.ndarray]] = ((box, np.zeros(box_shape(box), np.float32))
                                                    for box in _slabs(volume.shape))
    else:
        voxels = network_voxels(volume, grid, intensity)
        try:
            coded = list(ordered_map(lambda index: encode_tile(codec, quality, tiles, index, voxels), range(tiles.count)))
        except StreamError as error:
            raise UncodableError(str(error)) from error
        chunks = [chunk for chunk, _ in coded]
        tiling = Tiling(tiles.size, tiles.counts, tuple(symbols_checksum(symbols) for _, symbols in coded))
        symbols = TileSymbols(tiles, lambda index: coded[index][1])
        pieces = reconstructed(codec, quality, grid, symbols, whole(volume.shape))
    for box, scaled in pieces:
        original = volume[box_slices(box)]
        decoded = intensity.unscale(scaled, volume.dtype)
        if outliers is not None:
            decoded[outliers[box_slices(box)]] = original[outliers[box_slices(box)]]
        tally.add(original, decoded)
    count = 0 if outliers is None else int(np.count_nonzero(outliers))
    if count:
        chunks.append(exact.pack_outliers(volume, outliers))
    return VolumeInfo(False, intensity.low, intensity.high, count, tiling=tiling), chunks


PREVIEW_FACTORS = (2, 4)
"""The factors a preview (``downsample``) may shrink each spatial axis by."""


def check_downsample(factor: object) -> int:
    """``factor`` as a preview factor: 1 (none) or one of PREVIEW_FACTORS; ValueError (one line) otherwise."""
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or int(factor) not in (1, *PREVIEW_FACTORS):
        raise ValueError(f"downsample must be {' or '.join(map(str, PREVIEW_FACTORS))} (got {factor!r})")
    return int(factor)


def decompress_image(data: bytes, progress: Progress | None = None, limits: Limits | None = None,
                     roi: tuple[slice, slice, slice] | None = None, downsample: int = 1) -> Image:
    """Decode .mriae bytes back to an :class:`Image` on the original grid, dtype and header;
    or only the region ``roi`` of its 3D volumes (three slices of voxel indices x, y, z,
    half-open; ValueError unless within the image and non-empty), as an image of that region
    whose affine's origin is its first voxel. A region decodes, of a network-coded volume,
    only the tiles it meets (and the symbols of their halos); context-coded and exactly
    stored volumes are decoded whole and cropped.

    ``downsample`` (2 or 4; 1: none): a preview, each spatial axis shrunk by that factor
    (ceil(n / f) voxels), with its own affine (see :func:`preview_image`); it cannot be
    combined with ``roi``. Network-coded volumes give the **block average** of their full
    decode (outliers included; integers rounded): not faster than a full decode. Context-coded
    (bounded, lossless) volumes give a **subsample**, the voxels ``[::f, ::f, ::f]`` exactly,
    decoded from the stream's first levels alone (about 8× less work at f = 2, 64× at 4);
    the volume's stored checksum covers every voxel and so cannot be verified then (every part
    of the stream that is read is checked as in a full decode). Exactly stored volumes (label
    maps) are decoded whole, verified, and subsampled too (an average of labels is no label).

    Everything is verified before it is returned: the container's checksum, the header
    (typed, within ``limits``), every stream's length and end state, and the checksum of
    the decoded latents (per tile) or voxels; CodecError (or ContainerError) says what failed.
    """
    factor = check_downsample(downsample)
    if factor != 1 and roi is not None:
        raise ValueError("a region (roi) and a preview (downsample) cannot be combined")
    header, chunks = read(data, limits)
    if factor != 1:
        return _preview(header, chunks, factor, progress)
    image = header.image
    region = region_of(roi, image.volume_shape)
    codec, grid = decoder_of(header) if header.learned else (None, None)
    array = np.empty(box_shape(region) + (image.volume_count,), dtype=image.dtype)
    for index, (volume, parts) in enumerate(volume_chunks(header, chunks)):
        try:
            _decode_volume(codec, grid, header, volume, parts, region, array[..., index])
        except (StreamError, exact.ExactError, coder.CoderError, wavelet.WaveletError) as error:
            raise CodecError(f"volume {index + 1} is corrupt: {error}") from error
        if progress:
            progress(index + 1, len(header.volumes))
    return _region_image(image, array, region)


def _region_image(image: ImageInfo, array: np.ndarray, region: Box) -> Image:
    """The decoded (X, Y, Z, N) ``array`` of ``region`` as an :class:`Image`: the whole image
    as it was, or the region with its own affine and an original header that describes it."""
    if region == whole(image.volume_shape):
        return Image(array.reshape(image.shape, order="F"), image.affine, image.suffix, image.source)
    shape = box_shape(region)[: len(image.shape)] + image.shape[3:]
    affine = region_affine(image.affine, region)
    start = tuple(first for first, _ in region)
    return Image(array.reshape(shape, order="F"), affine, image.suffix, region_source(image.source, shape, start))


def _preview(header: Header, chunks: tuple[bytes, ...], factor: int, progress: Progress | None) -> Image:
    """The preview of every volume at ``factor`` (:func:`decompress_image`)."""
    image = header.image
    shape = image.volume_shape
    codec, grid = decoder_of(header) if header.learned else (None, None)
    array = np.empty(tuple(-(-n // factor) for n in shape) + (image.volume_count,), dtype=image.dtype)
    full = np.empty(shape, dtype=image.dtype) if header.learned else None
    for index, (volume, parts) in enumerate(volume_chunks(header, chunks)):
        try:
            if volume.learned:
                _decode_learned(codec, grid, header.quality, volume, parts, whole(shape), full)
                array[..., index] = block_average(full, factor)
            else:
                array[..., index] = _lattice(image, volume, parts[0], factor)
        except (StreamError, exact.ExactError, coder.CoderError, wavelet.WaveletError) as error:
            raise CodecError(f"volume {index + 1} is corrupt: {error}") from error
        if progress:
            progress(index + 1, len(header.volumes))
    return preview_image(image, array, factor, averaged=header.learned)


def preview_image(image: ImageInfo, array: np.ndarray, factor: int, averaged: bool) -> Image:
    """The preview (X', Y', Z', N) ``array`` of ``image`` at ``factor`` as an :class:`Image`.

    Its affine maps a preview voxel to the world position of what it holds. Each spatial
    axis of more than one voxel is scaled by ``factor``; the origin is the centre of the first
    block of input voxels when they are ``averaged`` (moved by (f − 1)/2 input voxels along
    each axis, (n − 1)/2 for an axis of n < f voxels), so that a preview voxel lies at the
    mean of the world positions of the voxels it averages; it stays on the first voxel for a
    subsample, whose voxels are input voxels. The last block of an axis whose length is not a
    multiple of f holds r < f voxels: its average lies (f − r)/2 input voxels before where
    the affine puts it."""
    voxels = np.eye(4)
    for axis, n in enumerate(image.volume_shape):
        if n > 1:
            voxels[axis, axis] = factor
            voxels[axis, 3] = (min(factor, n) - 1) / 2 if averaged else 0.0
    shape = array.shape[: min(len(image.shape), 3)] + image.shape[3:]
    affine = np.asarray(image.affine, dtype=np.float64) @ voxels
    return Image(array.reshape(shape, order="F"), affine, image.suffix, preview_source(image.source, shape, voxels))


def block_average(volume: np.ndarray, factor: int) -> np.ndarray:
    """The mean of each ``factor``³ block of a 3D ``volume`` (the last block of an axis not a
    multiple of ``factor`` averages the voxels it has), summed in float64, in ``volume``'s
    dtype (integers rounded to nearest)."""
    values = volume
    for axis in range(3):
        n = values.shape[axis]
        starts = np.arange(0, n, factor)
        counts = (np.minimum(starts + factor, n) - starts).reshape([-1 if a == axis else 1 for a in range(3)])
        values = np.add.reduceat(values, starts, axis=axis, dtype=np.float64) / counts
    if volume.dtype.kind in "iub":
        values = np.rint(values)
    return values.astype(volume.dtype)


def _lattice(image: ImageInfo, volume: VolumeInfo, chunk: bytes, factor: int) -> np.ndarray:
    """The voxels ``[::factor, ::factor, ::factor]`` of a volume stored exactly or coded by the
    wavelet coder (decoded whole, verified) or by the context coder (decoded only down to the
    pyramid level that holds them; the voxels' checksum cannot be verified then)."""
    code = volume.context
    shape = image.volume_shape
    sources = [np.arange(0, n, factor) for n in shape]
    coded_shape = shape
    if code is not None and code.mirror is not None:  # the lattice's mirrored half, in the coded half
        coded_shape = symmetry.half_shape(shape, code.mirror)
        n, kept, indices = shape[code.mirror], coded_shape[code.mirror], sources[code.mirror]
        sources[code.mirror] = np.where(indices < kept, indices, n - 1 - indices)
    level = max(level for level in range(factor.bit_length()) if all(not (s % (1 << level)).any() for s in sources))
    if volume.exact or volume.wavelet is not None or level == 0:  # a whole decode anyway: verified
        return _decode_whole(image, volume, chunk)[::factor, ::factor, ::factor]
    quantizing = Quantizer(code.error, code.step, code.origin, volume.low, volume.high, code.float_bits, code.rounded)
    integers = coder.decode(chunk, coded_shape, level)[np.ix_(*(s >> level for s in sources))]
    return quantizing.values(integers, image.dtype)


def volume_chunks(header: Header, chunks: tuple[bytes, ...]) -> list[tuple[VolumeInfo, tuple[bytes, ...]]]:
    """Each volume's record with its own chunks (its code, then its outliers if any)."""
    ends = accumulate(volume.chunks for volume in header.volumes)
    return [(volume, chunks[end - volume.chunks : end]) for volume, end in zip(header.volumes, ends)]


def decoder_of(header: Header) -> tuple[Codec, GridPlan]:
    """The installed weights a lossy file names (checked by SHA-256 prefix) and its grid."""
    try:
        codec = load_codec(header.model_name)
    except FileNotFoundError as error:
        raise CodecError(f"made with weights '{header.model_name}', which are not installed") from error
    if codec.sha256[:MODEL_ID_DIGITS] != header.model_sha256:
        raise CodecError(
            f"made with weights '{header.model_name}' sha256 {header.model_sha256[:12]}…, "
            f"but the installed ones are {codec.sha256[:12]}…"
        )
    if header.quality not in codec.qualities:
        raise CodecError(f"quality {header.quality} is not a level of weights '{codec.name}'")
    image = header.image
    return codec, grid_of(header.grid, image.volume_shape, image.affine, codec.model.config.levels)


def _decode_volume(codec: Codec | None, grid: GridPlan | None, header: Header, volume: VolumeInfo,
                   chunks: tuple[bytes, ...], region: Box, out: np.ndarray) -> None:
    """``region`` of one 3D volume, in the image's dtype, into ``out``, from its chunks, verified."""
    if volume.learned:
        _decode_learned(codec, grid, header.quality, volume, chunks, region, out)
    else:
        out[...] = _decode_whole(header.image, volume, chunks[0])[box_slices(region)]


def _decode_whole(image: ImageInfo, volume: VolumeInfo, chunk: bytes) -> np.ndarray:
    """A volume stored exactly or coded by the context or wavelet coder, whole, verified."""
    if volume.exact:
        voxels = exact.unpack_voxels(chunk, image.volume_shape, image.dtype)
    elif volume.wavelet is not None:
        values = np.clip(wavelet.decode(chunk, image.volume_shape), volume.low, volume.high)
        voxels = wavelet_values(volume.wavelet, values, image.dtype)
    else:
        code = volume.context
        quantizing = Quantizer(code.error, code.step, code.origin, volume.low, volume.high, code.float_bits,
                               code.rounded)
        shape = image.volume_shape
        if code.mirror is None:
            integers = coder.decode(chunk, shape)
        else:
            integers = symmetry.unfold(coder.decode(chunk, symmetry.half_shape(shape, code.mirror)), code.mirror,
                                       shape[code.mirror])
        voxels = quantizing.values(integers, image.dtype)
    if exact.checksum(voxels) != volume.checksum:
        raise exact.ExactError("the decoded voxels do not match their checksum")
    return voxels


def _decode_learned(codec: Codec, grid: GridPlan, quality: int, volume: VolumeInfo, chunks: tuple[bytes, ...],
                    region: Box, out: np.ndarray) -> None:
    """``region`` of one network-coded volume into ``out``: the tiles it meets, synthesized
    from their symbols and their halos', mapped back to the volume's range; then its outliers."""
    intensity = IntensityRange(volume.low, volume.high)
    tiling = volume.tiling
    code = chunks[: tiling.count if tiling else 0]
    if intensity.constant:
        if any(code):
            raise StreamError("a constant volume has a non-empty stream")
        out[...] = intensity.unscale(np.zeros(1, np.float32), out.dtype)
    else:
        try:
            tiles = TileGrid.of(grid, tiling.size)
        except ValueError as error:
            raise CodecError(f"{error} (the latents of weights '{codec.name}')") from error
        checksums = tiling.checksums or (None,) * tiling.count
        symbols = TileSymbols(tiles, lambda index: tile_symbols(codec, quality, tiles, index, code[index],
                                                                checksums[index]))
        for box, scaled in reconstructed(codec, quality, grid, symbols, region):
            out[box_slices(box, region)] = intensity.unscale(scaled, out.dtype)
    if volume.outliers:
        _put_outliers(chunks[len(code)], volume.outliers, grid.shape, region, out)


def _put_outliers(chunk: bytes, count: int, shape: tuple[int, int, int], region: Box, out: np.ndarray) -> None:
    """Put those of a volume's ``count`` outliers (stored in ``chunk``) that lie in ``region``
    of its ``shape`` into ``out``, which holds the region."""
    positions, values = exact.unpack_outliers(chunk, count, math.prod(shape), out.dtype)
    points = np.unravel_index(positions, shape, order="F")
    inside = np.logical_and.reduce([(p >= start) & (p < stop) for p, (start, stop) in zip(points, region)])
    out[tuple(p[inside] - start for p, (start, _) in zip(points, region))] = values[inside]
