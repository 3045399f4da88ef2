"""The .mriae JSON header: one typed parser for everything read from it, and its geometry
records, exact and written as briefly as exactness allows.

Everything in a container is untrusted: :func:`parse_header` checks every field's type,
range and consistency (suffixes and dtypes from fixed lists, shapes bounded by
mriae.limits before anything is allocated, weights names plain identifiers) and gives a
:class:`Header`; codec, CLI and batch read headers only through it.

Affines lose their constant last row, and affines whose values are all float32 (every NIfTI
affine: qform/sform are stored as float32) are written with float32's shortest decimal
forms, about half the digits of float64's. A grid that was not resampled is not written at
all: the decoder plans it again from the image's shape and affine.
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass

import numpy as np

from mriae.container import ContainerError, unpack
from mriae.dicom_tags import AXIS_LIMIT, KEPT, PHOTOMETRIC, REQUIRED, RESCALE, check_value, in_float32, number
from mriae.formats import MGH_DTYPES, MGH_HEADER_BYTES, MODEL_NAME, SUFFIXES
from mriae.limits import MAX_HEADER_BYTES, LimitError, Limits
from mriae.predictive.coder import VALUE_LIMIT
from mriae.transforms.grid import GridPlan, plan_on
from mriae.transforms.tiles import TILE_SIZES, tile_counts

_LAST_ROW = (0.0, 0.0, 0.0, 1.0)


def affine_record(affine: np.ndarray) -> dict[str, list[float]]:
    """``{"affine32": [...]}`` or ``{"affine": [...]}``: the rows of ``affine`` that
    :func:`affine_of` needs to rebuild it bit for bit."""
    affine = np.asarray(affine, dtype=np.float64).reshape(4, 4)
    values = affine[:3] if affine[3].tobytes() == np.asarray(_LAST_ROW).tobytes() else affine
    flat = values.ravel()
    short = [float(str(np.float32(v))) for v in flat]
    if np.array_equal(np.asarray(short, dtype=np.float32).astype(np.float64), flat):
        return {"affine32": short}
    return {"affine": flat.tolist()}


def affine_of(record: dict) -> np.ndarray:
    """The 4×4 float64 affine written by :func:`affine_record` into ``record``."""
    if "affine32" in record:
        values = np.asarray(record["affine32"], dtype=np.float32).astype(np.float64)
    elif "affine" in record:
        values = np.asarray(record["affine"], dtype=np.float64)
    else:
        raise ValueError("the image record has no affine")
    if values.size == 12:
        values = np.concatenate([values, _LAST_ROW])
    if values.size != 16:
        raise ValueError(f"an affine has 12 or 16 values, got {values.size}")
    return values.reshape(4, 4)


def grid_record(grid: GridPlan) -> dict | None:
    """The coding grid of a resampled ``grid`` (shape and affine); None if not resampled."""
    if not grid.resampled:
        return None
    return {"shape": list(grid.coding_shape), **affine_record(np.asarray(grid.coding_affine).reshape(4, 4))}


def grid_of(record: dict | None, shape: tuple[int, int, int], affine: np.ndarray, levels: int) -> GridPlan:
    """Inverse of :func:`grid_record` for an image of spatial ``shape`` and ``affine``."""
    if record is None:
        return plan_on(shape, affine, levels)
    return plan_on(shape, affine, levels, tuple(record["shape"]), affine_of(record))


# --------------------------------------------------------------------------- the typed header

MODEL_ID_DIGITS = 16
"""Hex digits of the weights' SHA-256 a file records: 64 bits, ample to tell weights apart."""
DTYPES = frozenset(
    f"{order}{kind}{size}" for order in "<>" for kind in "iuf" for size in "248" if f"{kind}{size}" != "f2"
) | {"|u1", "|i1", "|b1", "<f2", ">f2"}
"""Voxel types a header may name: numpy dtype strings with byte order."""
MAX_AXES = 7
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SHA_PREFIX = re.compile(f"[0-9a-f]{{{MODEL_ID_DIGITS}}}")
CONTEXT_INTEGERS = 2 * VALUE_LIMIT
"""Most quantization steps a context-coded volume's range may span (the coder's integers)."""
EXACT_INTEGER = 2**53
"""Integer voxels coded through the network lie within ±EXACT_INTEGER: ranges are float64."""
ITK_RESERVED = frozenset({
    "objecttype", "ndims", "dimsize", "elementtype", "elementdatafile", "headersize", "binarydata",
    "binarydatabyteordermsb", "elementbyteordermsb", "compresseddata", "compresseddatasize", "elementspacing",
    "elementnumberofchannels", "offset", "position", "origin", "transformmatrix", "rotation", "orientation",
    "centerofrotation", "anatomicalorientation", "elementsize", "type", "dimension", "space", "sizes",
    "space directions", "space origin", "spacings", "encoding", "endian", "data file", "datafile",
    "byte skip", "byteskip", "line skip", "lineskip", "kinds", "content",
})
"""Metadata keys that the MetaImage and NRRD writers derive from the image itself: a stored
record may not set them (a forged ``ElementDataFile`` would point the output at any file)."""


class HeaderError(ContainerError):
    """A container header that is malformed, inconsistent or over the limits; says which field."""


@dataclass(frozen=True)
class ImageInfo:
    """The original image: file type, voxel type, array shape (spatial axes first), affine,
    and the record its writer needs to restore the original header (``source``)."""

    suffix: str
    dtype: np.dtype
    shape: tuple[int, ...]
    affine: np.ndarray
    source: dict

    @property
    def volume_shape(self) -> tuple[int, int, int]:
        """Shape of one 3D volume (1D and 2D images get unit trailing axes)."""
        return tuple((self.shape + (1, 1, 1))[:3])  # type: ignore[return-value]

    @property
    def volume_count(self) -> int:
        """Number of 3D volumes: the product of the axes after the third."""
        return math.prod(self.shape[3:])


@dataclass(frozen=True)
class ContextCode:
    """How a volume coded by the 3D context coder (mriae.predictive) maps to its integers:
    every decoded voxel is within ``error`` of the original (0: lossless); ``step`` and
    ``origin`` are the quantizer's, ``float_bits`` the lossless float32 bit mapping,
    ``rounded`` that decoded values are rounded to whole numbers (a real step on whole numbers),
    ``mirror`` the axis along which the volume is its own mirror image (only its first half is coded)."""

    error: float
    step: float
    origin: float
    float_bits: bool = False
    rounded: bool = False
    mirror: int | None = None


@dataclass(frozen=True)
class WaveletCode:
    """How a volume coded by the wavelet transform coder (mriae.wavelet, version 7 on) decodes:
    its quantizer's base ``step``; every decoded voxel is within ``error`` of the original;
    ``rounded``: decoded values are rounded to whole numbers (the image holds whole numbers)."""

    error: float
    step: float
    rounded: bool = False


@dataclass(frozen=True)
class Tiling:
    """How a network-coded volume's latents are cut into independently coded tiles
    (mriae.transforms.tiles): ``size`` voxels of the network grid per axis (None: one tile,
    the whole grid, as in files before version 6), ``counts`` tiles per axis, and the CRC-32
    of each tile's symbols, tiles in C order (None in version-3 files, which had none). Tile
    k's code is the volume's k-th chunk."""

    size: int | None
    counts: tuple[int, ...]
    checksums: tuple[int, ...] | None

    @property
    def count(self) -> int:
        """Tiles in all (each one chunk)."""
        return math.prod(self.counts)


@dataclass(frozen=True)
class VolumeInfo:
    """How one 3D volume is coded.

    ``exact``: its voxels are stored losslessly as they are (label maps, masks); ``context``:
    coded by the context coder within ``context.error`` of ``[low, high]``, the volume's
    range; ``wavelet``: coded by the wavelet coder, decoded values clipped to ``[low, high]``;
    otherwise its latents code the range [``low``, ``high``] in the tiles of
    ``tiling`` (None for a constant volume of version 6 on, which codes nothing) and
    ``outliers`` voxels outside it are stored exactly beside them. ``checksum`` is the CRC-32
    of the decoded voxels (exact, context and wavelet volumes; network volumes keep theirs per tile).
    """

    exact: bool
    low: float = 0.0
    high: float = 0.0
    outliers: int = 0
    checksum: int | None = None
    context: ContextCode | None = None
    tiling: Tiling | None = None
    wavelet: WaveletCode | None = None

    @property
    def learned(self) -> bool:
        """True when the volume is coded through the network (and needs its weights)."""
        return not self.exact and self.context is None and self.wavelet is None

    @property
    def error(self) -> float | None:
        """The largest error any voxel of the volume may have (0: exact); None for the network."""
        if self.exact:
            return 0.0
        code = self.context or self.wavelet
        return None if code is None else code.error

    @property
    def chunks(self) -> int:
        """Chunks this volume takes in the container: its code (one per tile for a network
        volume), then its outliers if any."""
        if not self.learned:
            return 1
        return (self.tiling.count if self.tiling else 0) + (self.outliers > 0)


@dataclass(frozen=True)
class Header:
    """A validated .mriae header: every field typed, bounded and consistent."""

    version: int
    image: ImageInfo
    volumes: tuple[VolumeInfo, ...]
    model_name: str | None
    model_sha256: str | None
    quality: int | None
    psnr: float | None
    grid: dict | None

    @property
    def learned(self) -> bool:
        """True when some volume is coded through the network (its weights are needed)."""
        return any(volume.learned for volume in self.volumes)

    @property
    def lossless(self) -> bool:
        """True when every voxel decodes exactly as it was."""
        return all(volume.exact or (volume.context is not None and volume.context.error == 0)
                   for volume in self.volumes)

    @property
    def max_error(self) -> float | None:
        """The largest error any voxel may have (0: lossless); None when the network codes some volume."""
        if self.learned:
            return None
        return max((volume.error for volume in self.volumes), default=0.0)


def parse_header(raw: dict, version: int, limits: Limits | None = None) -> Header:
    """Validate the JSON ``raw`` header of a container of format ``version``; HeaderError
    names the first field that is wrong. Shapes are checked against ``limits`` (from the
    environment by default) so that nothing is allocated for a forged size."""
    limits = limits or Limits.from_environment()
    try:
        image = _image_info(_field(raw, "image", dict))
        limits.check_image(image.shape, "header")
        limits.check_volume(image.volume_shape, "header: a volume")
        grid = raw.get("grid")
        if grid is not None:
            grid = _grid_record(_typed(grid, dict, "grid"), limits)
            limits.check_image(tuple(grid["shape"]) + (image.volume_count,), "header: the coding grid")
        coding_shape = tuple(grid["shape"]) if grid is not None else image.volume_shape
        volumes = tuple(_volume_info(v, version, image.volume_shape, coding_shape) for v in _field(raw, "volumes", list))
        if len(volumes) != image.volume_count:
            raise HeaderError(f"lists {len(volumes)} volumes for shape {list(image.shape)}")
        _check_ranges(volumes, image.dtype)
        lossy = any(v.learned for v in volumes)
        name = sha = None
        if lossy:
            model = _field(raw, "model", dict)
            name = _matching(_field(model, "name", str), MODEL_NAME, "model.name")
            sha = _matching(_field(model, "sha256", str), SHA_PREFIX, "model.sha256")
        quality = _field(raw, "quality", int) if lossy else None
        if quality is not None and not 1 <= quality <= 99:
            raise HeaderError(f"quality {quality} is out of range")
        psnr = raw.get("psnr")
        if psnr is not None:
            psnr = _finite(psnr, "psnr")
    except (TypeError, ValueError, OverflowError) as error:
        if isinstance(error, HeaderError):
            raise
        raise HeaderError(str(error)) from error
    return Header(version, image, volumes, name, sha, quality, None if psnr is None else float(psnr), grid)


def read(data: bytes, limits: Limits | None = None) -> tuple[Header, tuple[bytes, ...]]:
    """The validated header and the chunks of a container; ContainerError (HeaderError for
    the header) with a one-line reason if anything is wrong."""
    parsed = unpack(data)
    try:
        header = parse_header(parsed.header, parsed.version, limits)
    except LimitError as error:
        raise HeaderError(str(error)) from error
    except HeaderError as error:
        raise HeaderError(f"header is malformed: {error}") from error
    expected = sum(volume.chunks for volume in header.volumes)
    if expected != len(parsed.chunks):
        raise HeaderError(f"header is malformed: it describes {expected} chunks but the file holds {len(parsed.chunks)}")
    return header, parsed.chunks


def read_header(data: bytes, limits: Limits | None = None) -> Header:
    """The validated header of a container (see :func:`read`)."""
    return read(data, limits)[0]


def header_record(header: Header) -> dict:
    """The JSON form of ``header`` (inverse of :func:`parse_header` for the current version)."""
    image = header.image
    record: dict = {
        "image": {"suffix": image.suffix, **affine_record(image.affine), "dtype": image.dtype.str,
                  "shape": list(image.shape), "source": image.source},
        "volumes": [_volume_record(volume) for volume in header.volumes],
    }
    if header.model_name is not None:
        record["model"] = {"name": header.model_name, "sha256": header.model_sha256}
    if header.quality is not None:
        record["quality"] = header.quality
    record["psnr"] = header.psnr
    if header.grid is not None:
        record["grid"] = header.grid
    return record


def _volume_record(volume: VolumeInfo) -> dict:
    if volume.exact:
        return {"exact": True, "crc": volume.checksum}
    if volume.context is not None:
        code = volume.context
        bound = {"error": code.error, "step": code.step, "origin": code.origin}
        if code.float_bits:
            bound["float_bits"] = True
        if code.rounded:
            bound["rounded"] = True
        if code.mirror is not None:
            bound["mirror"] = code.mirror
        return {"bound": bound, "range": [volume.low, volume.high], "crc": volume.checksum}
    if volume.wavelet is not None:
        wavelet = {"error": volume.wavelet.error, "step": volume.wavelet.step}
        if volume.wavelet.rounded:
            wavelet["rounded"] = True
        return {"wavelet": wavelet, "range": [volume.low, volume.high], "crc": volume.checksum}
    record: dict = {"range": [volume.low, volume.high]}
    if volume.tiling is not None:
        record["tiles"] = {"size": volume.tiling.size, "crc": list(volume.tiling.checksums or ())}
    if volume.outliers:
        record["outliers"] = volume.outliers
    return record


def _typed(value, kind: type, name: str):
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise HeaderError(f"{name} is not {'an' if kind is int else 'a'} {kind.__name__}")
    return value


def _field(record: dict, key: str, kind: type):
    if key not in record:
        raise HeaderError(f"has no '{key}'")
    return _typed(record[key], kind, key)


def _matching(text: str, pattern: re.Pattern, name: str) -> str:
    if not pattern.fullmatch(text):
        raise HeaderError(f"{name} {text[:40]!r} is not valid")
    return text


def _finite(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise HeaderError(f"{name} is not a finite number")
    return float(value)


def _shape(value, name: str, axes: range) -> tuple[int, ...]:
    values = _typed(value, list, name)
    if len(values) not in axes or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in values):
        raise HeaderError(f"{name} {str(values)[:60]} is not a list of {axes.start}–{axes.stop - 1} positive integers")
    return tuple(values)


def _affine(record: dict, name: str) -> np.ndarray:
    for key in ("affine32", "affine"):
        if key in record:
            values = _typed(record[key], list, f"{name}.{key}")
            largest = float(np.finfo(np.float32).max) if key == "affine32" else math.inf
            if not all(abs(_finite(value, f"{name}.{key}")) <= largest for value in values):
                raise HeaderError(f"{name}.{key} holds a value out of range")
            break
    try:
        affine = affine_of(record)
    except ValueError as error:
        raise HeaderError(f"{name}: {error}") from error
    if not np.isfinite(affine).all():
        raise HeaderError(f"{name} affine is not finite")
    return affine


def _image_info(record: dict) -> ImageInfo:
    suffix = _field(record, "suffix", str)
    if suffix not in SUFFIXES:
        raise HeaderError(f"image.suffix {suffix[:40]!r} is not one of {', '.join(SUFFIXES)}")
    dtype_text = _field(record, "dtype", str)
    if dtype_text not in DTYPES:
        raise HeaderError(f"image.dtype {dtype_text[:40]!r} is not a supported voxel type")
    shape = _shape(record.get("shape"), "image.shape", range(1, MAX_AXES + 1))
    source = record.get("source") or {}
    _typed(source, dict, "image.source")
    _check_source(source, shape, np.dtype(dtype_text))
    return ImageInfo(suffix, np.dtype(dtype_text), shape, _affine(record, "image"), source)


def _check_nifti_header(raw: bytes, shape: tuple[int, ...], prefix: bytes | None = None) -> None:
    """The stored NIfTI-1/NIfTI-2 (or, for a pair, Analyze) header bytes must describe this
    image: its dimensions, and a data offset right after themselves (the writer puts the
    voxels there) or, for a pair (``prefix``: the .img's bytes before the voxels), after the prefix."""
    for order in ("<", ">"):
        size = int(np.frombuffer(raw[:4], f"{order}i4")[0]) if len(raw) >= 4 else 0
        if size in (348, 540):
            break
    else:
        raise HeaderError("image.source.header is not a NIfTI header")
    minimum = size + 4 * (prefix is None)
    if not minimum <= len(raw) <= MAX_HEADER_BYTES:
        raise HeaderError(f"image.source.header is {len(raw)} bytes, not {minimum}–{MAX_HEADER_BYTES}")
    if size == 348:
        dims = np.frombuffer(raw[40:56], f"{order}i2").astype(np.int64)
        offset = float(np.frombuffer(raw[108:112], f"{order}f4")[0])
    else:
        dims = np.frombuffer(raw[16:80], f"{order}i8")
        offset = float(np.frombuffer(raw[168:176], f"{order}i8")[0])
    count = int(dims[0])
    if not 1 <= count <= MAX_AXES or tuple(int(n) for n in dims[1 : count + 1]) != shape:
        raise HeaderError("image.source.header describes another shape than image.shape")
    if prefix is None and offset != len(raw):
        raise HeaderError("image.source.header's data offset is not its own length")
    if prefix is not None and offset != len(prefix):
        raise HeaderError("image.source.header's data offset is not the length of image.source.prefix")


def _check_mgh_header(raw: bytes, shape: tuple[int, ...], dtype: str) -> None:
    """The stored MGH header must describe this image: its dimensions and voxel type."""
    if len(raw) != MGH_HEADER_BYTES:
        raise HeaderError(f"image.source.header is {len(raw)} bytes, not the {MGH_HEADER_BYTES} of an MGH header")
    dims, code = np.frombuffer(raw[4:20], ">i4"), int(np.frombuffer(raw[20:24], ">i4")[0])
    if len(shape) not in (3, 4) or tuple(int(n) for n in dims) != shape + (1,) * (4 - len(shape)):
        raise HeaderError("image.source.header describes another shape than image.shape")
    if MGH_DTYPES.get(code) != dtype:
        raise HeaderError("image.source.header describes another voxel type than image.source.dtype")


def _decoded(source: dict, key: str) -> bytes:
    """The bytes of the base64 text ``source[key]``, at most MAX_HEADER_BYTES of them."""
    text = _field(source, key, str)
    if len(text) > (MAX_HEADER_BYTES + 2) // 3 * 4:
        raise HeaderError(f"image.source.{key} is over {MAX_HEADER_BYTES} bytes")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as error:
        raise HeaderError(f"image.source.{key} is not base64") from error


def _check_source(source: dict, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """The writer's record of the original header must describe this very image."""
    kind = source.get("kind")
    if kind is None:
        return
    if kind not in ("nifti", "itk", "mgh", "pair", "dicom"):
        raise HeaderError(f"image.source.kind {str(kind)[:20]!r} is unknown")
    if _shape(source.get("shape"), "image.source.shape", range(1, MAX_AXES + 1)) != shape:
        raise HeaderError("image.source.shape differs from image.shape")
    stored = _field(source, "dtype", str)
    if stored != dtype.str and not (dtype.kind == "b" and stored == "|u1"):  # booleans are stored as uint8
        raise HeaderError(f"image.source.dtype {stored[:10]!r} differs from image.dtype")
    if kind == "nifti":
        _check_nifti_header(_decoded(source, "header"), shape)
        return
    if kind == "pair":
        _check_nifti_header(_decoded(source, "header"), shape, _decoded(source, "prefix"))
        return
    if kind == "mgh":
        _check_mgh_header(_decoded(source, "header"), shape, stored)
        _decoded(source, "footer")
        return
    if kind == "dicom":
        _check_dicom_source(source, shape, dtype)
        return
    if len(shape) != 3:
        raise HeaderError("image.source of an ITK image needs a 3D shape")
    for key, count in (("origin", 3), ("spacing", 3), ("direction", 9)):
        values = _typed(source.get(key), list, f"image.source.{key}")
        if len(values) != count:
            raise HeaderError(f"image.source.{key} needs {count} numbers")
        for value in values:
            _finite(value, f"image.source.{key}")
    if not all(s > 0 for s in source["spacing"]):
        raise HeaderError("image.source.spacing must be positive")
    metadata = _field(source, "metadata", dict)
    for key, value in metadata.items():
        if not (isinstance(key, str) and isinstance(value, str)) or _CONTROL.search(key + value.removesuffix("\n")):
            raise HeaderError("image.source.metadata must map one-line text to one-line text")
        if key.strip().lower() in ITK_RESERVED:
            raise HeaderError(f"image.source.metadata sets {key[:30]!r}, which the writer derives from the image")


DICOM_DTYPES = frozenset({"|u1", "|i1", "<u2", "<i2", "<u4", "<i4"})
"""Stored voxel types of a DICOM series (8, 16 or 32 bits, little-endian as mriae writes them)."""


def _check_dicom_source(source: dict, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """A DICOM series' record: at most AXIS_LIMIT columns, rows and slices; kept attributes
    only (mriae.dicom_tags.KEPT), each a valid value of its VR (a string; None only for a
    slice without it); per-slice values one per slice; pixel attributes that describe the
    dtype; a rescale finite in float32, the slope not 0 there."""
    if len(shape) != 3:
        raise HeaderError("image.source of a DICOM series needs a 3D shape")
    if max(shape) > AXIS_LIMIT:
        raise HeaderError(f"image.source of a DICOM series has at most {AXIS_LIMIT} columns, rows and slices, "
                          f"not {list(shape)}")
    if dtype.str not in DICOM_DTYPES:
        raise HeaderError(f"image.source of a DICOM series needs 8-, 16- or 32-bit little-endian integers, "
                          f"not {dtype.str}")
    tags = _field(source, "tags", dict)
    slices = _typed(source.get("slices", {}), dict, "image.source.slices")
    for name, record in (("tags", tags), ("slices", slices)):
        for key, values in record.items():
            where = f"image.source.{name}[{key[:20]!r}]"
            if key not in KEPT:
                raise HeaderError(f"{where} is not a kept DICOM attribute")
            if name == "slices":
                if key in tags:
                    raise HeaderError(f"{where} is also in image.source.tags")
                if len(_typed(values, list, where)) != shape[2]:
                    raise HeaderError(f"{where} lists {len(values)} values for {shape[2]} slices")
            for value in values if name == "slices" else [values]:
                if value is None and name == "slices":
                    continue
                problem = check_value(key, _typed(value, str, where))
                if problem:
                    raise HeaderError(f"{where} {problem}")
    for key in REQUIRED:
        if key not in tags:
            raise HeaderError(f"image.source.tags has no {KEPT[key][1]} ({key})")
    bits, stored, high, signed = (tags[key] for key in REQUIRED[2:])
    if (bits, signed) != (str(dtype.itemsize * 8), "01"[dtype.kind == "i"]):
        raise HeaderError("image.source.tags' Bits Allocated and Pixel Representation do not describe image.dtype")
    if not (stored.isdigit() and high.isdigit() and 1 <= int(stored) <= int(bits) and int(high) == int(stored) - 1):
        raise HeaderError("image.source.tags' Bits Stored and High Bit do not fit Bits Allocated")
    if tags["0028|0004"] not in PHOTOMETRIC:
        raise HeaderError(f"image.source.tags' Photometric Interpretation is not one of {', '.join(PHOTOMETRIC)}")
    for key in RESCALE:
        for value in slices.get(key, [tags.get(key)]):
            value_of = in_float32(number(value, 1.0))
            if not math.isfinite(value_of) or (key == RESCALE[0] and value_of == 0):
                raise HeaderError(f"image.source's {KEPT[key][1]} {value[:20]!r} is not a usable number")


def _volume_info(record, version: int, volume_shape: tuple[int, int, int],
                 coding_shape: tuple[int, ...]) -> VolumeInfo:
    if version < 4:  # version 3: [low, high]
        pair = _typed(record, list, "volumes[]")
        if len(pair) != 2:
            raise HeaderError("volumes[] needs [low, high]")
        low, high = _range(pair, "volumes[] range")
        return VolumeInfo(False, low, high, tiling=Tiling(None, (1, 1, 1), None))
    record = _typed(record, dict, "volumes[]")
    if record.get("exact") is True:
        return VolumeInfo(True, checksum=_crc(record.get("crc"), "volumes[].crc"))
    pair = _field(record, "range", list)
    if len(pair) != 2:
        raise HeaderError("volumes[].range needs [low, high]")
    low, high = _range(pair, "volumes[].range")
    if version >= 5 and "bound" in record:
        return VolumeInfo(False, low, high, checksum=_crc(record.get("crc"), "volumes[].crc"),
                          context=_context_code(record["bound"], low, high, volume_shape))
    if version >= 7 and "wavelet" in record:
        return VolumeInfo(False, low, high, checksum=_crc(record.get("crc"), "volumes[].crc"),
                          wavelet=_wavelet_code(record["wavelet"], low, high))
    outliers = record.get("outliers", 0)
    if not isinstance(outliers, int) or isinstance(outliers, bool) or outliers < 0:
        raise HeaderError("volumes[].outliers is not a count")
    if version < 6:  # the whole latent grid in one chunk, its symbols' CRC-32 in the volume record
        checksum = _crc(record.get("crc"), "volumes[].crc")
        return VolumeInfo(False, low, high, outliers, tiling=Tiling(None, (1, 1, 1), (checksum,)))
    if low == high:  # constant: nothing coded
        if "tiles" in record:
            raise HeaderError("volumes[].tiles of a constant volume: it codes nothing")
        return VolumeInfo(False, low, high, outliers)
    return VolumeInfo(False, low, high, outliers, tiling=_tiling(_field(record, "tiles", dict), coding_shape))


def _range(pair: list, name: str) -> tuple[float, float]:
    low, high = (_finite(v, name) for v in pair)
    if high < low:
        raise HeaderError(f"{name} has high < low")
    return low, high


def _crc(value, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 32:
        raise HeaderError(f"{name} is not a CRC-32")
    return value


def _tiling(record: dict, coding_shape: tuple[int, ...]) -> Tiling:
    """A version-6 network volume's tiles: their size, and one CRC-32 per tile of the coding grid."""
    size = _field(record, "size", int)
    if size not in TILE_SIZES:
        raise HeaderError(f"volumes[].tiles.size {size} is not a power of two from {TILE_SIZES[0]} to {TILE_SIZES[-1]}")
    counts = tile_counts(coding_shape, size)
    checksums = _field(record, "crc", list)
    if len(checksums) != math.prod(counts):
        raise HeaderError(f"volumes[].tiles.crc lists {len(checksums)} tiles, but {'×'.join(map(str, counts))} "
                          f"tiles of {size} voxels cover the coding grid")
    return Tiling(size, counts, tuple(_crc(c, "volumes[].tiles.crc[]") for c in checksums))


def _context_code(record, low: float, high: float, shape: tuple[int, int, int]) -> ContextCode:
    """A context-coded volume's quantizer: integers for the integer path, within the coder's range."""
    record = _typed(record, dict, "volumes[].bound")
    error, step, origin = (_finite(record.get(key), f"volumes[].bound.{key}") for key in ("error", "step", "origin"))
    float_bits, rounded = (_typed(record.get(key, False), bool, f"volumes[].bound.{key}")
                           for key in ("float_bits", "rounded"))
    mirror = record.get("mirror")
    if mirror is not None and (not isinstance(mirror, int) or isinstance(mirror, bool) or mirror not in range(3)
                               or shape[mirror] < 2):
        raise HeaderError("volumes[].bound.mirror is not an axis of length ≥ 2")
    if error < 0 or step <= 0:
        raise HeaderError("volumes[].bound has an invalid error or step")
    if error == 0 and (step != 1 or origin != 0) or float_bits and error != 0:
        raise HeaderError("volumes[].bound of a lossless volume must have step 1 and origin 0")
    if not float_bits and ((high - low) / step > CONTEXT_INTEGERS or error > 0 and abs(origin - low) > step):
        raise HeaderError("volumes[].bound does not fit its range")
    return ContextCode(error, step, origin, float_bits, rounded, mirror)


def _wavelet_code(record, low: float, high: float) -> WaveletCode:
    """A wavelet-coded volume's quantizer: a positive step and an error within its range."""
    record = _typed(record, dict, "volumes[].wavelet")
    error, step = (_finite(record.get(key), f"volumes[].wavelet.{key}") for key in ("error", "step"))
    rounded = _typed(record.get("rounded", False), bool, "volumes[].wavelet.rounded")
    if step <= 0 or not 0 <= error <= high - low:
        raise HeaderError("volumes[].wavelet has an invalid error or step")
    return WaveletCode(error, step, rounded)


def _check_ranges(volumes: tuple[VolumeInfo, ...], dtype: np.dtype) -> None:
    """Coded ranges must lie within the voxel type (a decoder casts into it)."""
    if dtype.kind == "b":
        if not all(volume.exact for volume in volumes):
            raise HeaderError("a boolean image must be coded exactly")
        return
    info = np.iinfo(dtype) if dtype.kind in "iu" else np.finfo(dtype)
    low, high = float(info.min), float(info.max)
    if dtype.kind in "iu":
        low, high = max(low, -EXACT_INTEGER), min(high, EXACT_INTEGER)
    for volume in volumes:
        code = volume.context
        if code is not None and code.float_bits and dtype.kind != "f":
            raise HeaderError("volumes[].bound maps float bits of a non-float image")
        if code is not None and dtype.kind in "iu" and not code.rounded and not all(
                float(v).is_integer() and abs(v) <= EXACT_INTEGER for v in (code.step, code.origin)):
            raise HeaderError("volumes[].bound of an integer image needs a whole step and origin within ±2**53")
        if volume.wavelet is not None and dtype.kind in "iu" and not volume.wavelet.rounded:
            raise HeaderError("volumes[].wavelet of an integer image must be rounded")
        if not volume.exact and not low <= volume.low <= volume.high <= high:
            raise HeaderError(f"volumes[] range [{volume.low:g}, {volume.high:g}] does not fit {dtype}")


def _grid_record(record: dict, limits: Limits) -> dict:
    shape = _shape(record.get("shape"), "grid.shape", range(3, 4))
    limits.check_volume(shape, "header: the coding grid")
    affine = _affine(record, "grid")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise HeaderError("grid affine is singular")
    return record
