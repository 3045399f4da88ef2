"""DICOM series: a folder of single-frame DICOM files read as one image, and written back.

Reading goes through SimpleITK/GDCM (every transfer syntax GDCM decodes), one file at a
time: each file's header gives its slice's position, orientation and pixel spacing, its
voxels are GDCM's, turned back into the **stored** integers when GDCM applied a rescale
(checked to be exact), and the slices are stacked in order along their normal. A series whose
slices are not one regular grid is refused, never given a wrong geometry. The attributes of
:data:`mriae.dicom_tags.KEPT` are kept in ``Image.source`` (kind ``dicom``).

Writing is done here, one Part 10 file per slice (explicit VR little endian, uncompressed):
GDCM's writer rescales the voxels it is given and (unless a file was read before) turns an
MR image with a rescale into an Enhanced MR one, so it cannot write the stored values back
as they were.
"""

from __future__ import annotations

import hashlib
import locale
import math
import os
import re
import struct
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mriae import __version__
from mriae.dicom_tags import AXIS_LIMIT, KEPT, REQUIRED, RESCALE, check_value, number, usable_rescale
from mriae.extras import require
from mriae.io.atomic import check_writable, staging_folder
from mriae.io.image import Image, ImageError, _native_stderr_silenced, one_line, output_suffix
from mriae.limits import LimitError, Limits

if TYPE_CHECKING:
    import SimpleITK as sitk

SPACING_TOLERANCE = 0.01
"""How far (a fraction of the slice spacing) a slice may lie from where an evenly spaced
stack along the normal puts it; further, and the series is refused."""
ORIENTATION_TOLERANCE = 1e-4
"""Largest difference between two slices' direction cosines (or relative pixel spacings)."""
_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
_UID_ROOT = uuid.uuid5(uuid.NAMESPACE_OID, "mriae")
IMPLEMENTATION_UID = f"2.25.{_UID_ROOT.int}"
"""Implementation Class UID of the files mriae writes."""
EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
_LONG_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "SQ", "UT", "UN", "UC", "UR"})
_WRITTEN = {"0008|0018": "UI", "0020|0032": "DS", "0020|0037": "DS", "0028|0030": "DS", "0028|0002": "US",
            "0028|0010": "US", "0028|0011": "US"}
"""Attributes written from the image itself (SOP Instance UID, geometry, size), with their VRs."""
_READ = frozenset(KEPT) | {"0020|0032", "0020|0037", "0028|0030", "0028|0008"}
"""Attributes read from each file: the kept ones, its geometry and Number of Frames."""
_NATIVE = {"1.2.840.10008.1.2": ("<", False), "1.2.840.10008.1.2.1": ("<", True), "1.2.840.10008.1.2.2": (">", True)}
"""Transfer syntaxes whose Pixel Data is stored as it is: (byte order, explicit VR)."""
_PIXEL_DATA, _ITEM, _ITEM_END, _SEQUENCE_END = (0x7FE00010, 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD)
_UNDEFINED = 0xFFFFFFFF


@dataclass(frozen=True)
class _Slice:
    """One file's header: what the series needs of it."""

    path: Path
    tags: dict[str, str]
    position: np.ndarray
    orientation: np.ndarray
    spacing: np.ndarray  # Pixel Spacing: (between rows, between columns)
    size: tuple[int, int]  # (columns, rows)


# ----------------------------------------------------------------------------------- reading


@contextmanager
def _locale_kept() -> Iterator[None]:
    """Undo what GDCM does to the process's C locale (it sets LC_ALL to "C" while it parses
    files, which would leave Python's preferred encoding ASCII for every later open())."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def read_series(folder: str | os.PathLike, series: str | None = None) -> tuple[Image, int]:
    """The DICOM series in ``folder`` as an :class:`Image`, and the bytes its files take.

    ``series``: its Series Instance UID, needed when the folder holds several. The array
    holds the stored values, axes (column, row, slice), slices in order along their normal;
    the affine is RAS (nibabel's), the same as SimpleITK's series reader gives. ImageError
    (one line, naming the folder or file) for anything that cannot be read exactly. GDCM's
    change of the process's locale is undone.
    """
    with _locale_kept():
        return _read_series(folder, series)


def _read_series(folder: str | os.PathLike, series: str | None = None) -> tuple[Image, int]:
    """The work of :func:`read_series`."""
    require("itk", f"{folder}: DICOM series support")
    import SimpleITK as sitk

    folder = Path(folder)
    files = _series_files(sitk, folder, series)
    reader = sitk.ImageFileReader()
    slices, affine = _geometry(folder, [_read_header(reader, file) for file in files])
    columns, rows = slices[0].size
    if len(slices) > AXIS_LIMIT:
        raise ImageError(f"{folder}: a series of {len(slices)} slices, over the {AXIS_LIMIT} mriae reads")
    try:
        limits = Limits.from_environment()
        limits.check_image((columns, rows, len(slices)), "the series")
        limits.check_volume((columns, rows, len(slices)), "the series")
    except LimitError as error:
        raise ImageError(f"{folder}: {error}") from error
    dtype = _stored_dtype(folder, slices)
    array = np.empty((columns, rows, len(slices)), dtype)
    for index, item in enumerate(slices):
        array[:, :, index] = _stored_values(sitk, reader, item, dtype)
    source = {"kind": "dicom", "shape": list(array.shape), "dtype": array.dtype.str, **_kept(slices)}
    return Image(array, affine, ".nii.gz", source), sum(file.stat().st_size for file in files)


def holds_dicom_files(folder: str | os.PathLike) -> bool:
    """True if ``folder`` (a folder without an image suffix) directly holds a DICOM Part 10
    file: what a caller listing inputs takes for a series folder, before reading it
    (:func:`read_series` says what is wrong with it)."""
    folder = Path(folder)
    return folder.is_dir() and not output_suffix(folder) and any(map(_is_part10, folder.iterdir()))


def _is_part10(path: Path) -> bool:
    """True if ``path`` is a file with "DICM" after the 128-byte preamble (a DICOM Part 10 file)."""
    if not path.is_file():
        return False
    with open(path, "rb") as stream:
        return stream.read(132)[128:] == b"DICM"


def _series_files(sitk, folder: Path, series: str | None) -> list[Path]:
    """The files of the one series in ``folder`` (or of ``series``); ImageError for a DICOM
    Part 10 file that GDCM leaves out of every series (a damaged file: a series without it
    would be silently shorter)."""
    with _native_stderr_silenced():
        uids = sorted(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    if not uids:
        raise ImageError(f"{folder}: no DICOM series in this folder")
    if series is None and len(uids) > 1:
        listing = "; ".join(_series_words(sitk, folder, uid) for uid in uids)
        raise ImageError(f"{folder}: holds {len(uids)} DICOM series, choose one with --series UID: {listing}")
    if series is not None and series not in uids:
        raise ImageError(f"{folder}: no series {series} in this folder (it holds {', '.join(uids)})")
    with _native_stderr_silenced():
        files = {uid: [Path(name) for name in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)]
                 for uid in uids}
    listed = {path.name for paths in files.values() for path in paths}
    left_out = sorted(path for path in folder.iterdir()
                      if path.name not in listed and path.name != "DICOMDIR" and _is_part10(path))
    if left_out:
        raise ImageError(f"{left_out[0]}: cannot read DICOM (GDCM leaves it out of the folder's series)")
    return files[series or uids[0]]


def _series_words(sitk, folder: Path, uid: str) -> str:
    """``UID ("description", N files)``: a series, for a choice."""
    with _native_stderr_silenced():
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
    reader = sitk.ImageFileReader()
    reader.SetFileName(files[0])
    try:
        with _native_stderr_silenced():
            reader.ReadImageInformation()
        description = reader.GetMetaData("0008|103e").strip() if reader.HasMetaDataKey("0008|103e") else ""
    except RuntimeError:
        description = ""
    count = f"{len(files)} file{'s' * (len(files) > 1)}"
    return f"{uid} ({f'{description!r}, ' if description else ''}{count})"


def _read_header(reader: sitk.ImageFileReader, path: Path) -> _Slice:
    reader.SetFileName(str(path))
    try:
        with _native_stderr_silenced():
            reader.ReadImageInformation()
    except RuntimeError as error:
        raise ImageError(f"{path}: cannot read DICOM ({one_line(error)})") from error
    tags = {key: reader.GetMetaData(key).rstrip(" \x00") for key in reader.GetMetaDataKeys() if key in _READ}
    if reader.GetNumberOfComponents() != 1:
        raise ImageError(f"{path}: colour DICOM images are not supported")
    size = reader.GetSize()
    if (len(size) > 2 and size[2] != 1) or number(tags.get("0028|0008"), 1.0) != 1:
        raise ImageError(f"{path}: multi-frame DICOM files are not supported")
    position = _numbers(path, tags, "0020|0032", 3, "Image Position (Patient)")
    orientation = _numbers(path, tags, "0020|0037", 6, "Image Orientation (Patient)")
    spacing = _numbers(path, tags, "0028|0030", 2, "Pixel Spacing")
    if not (spacing > 0).all():
        raise ImageError(f"{path}: Pixel Spacing {tags['0028|0030']!r} is not positive")
    columns, rows = int(size[0]), int(size[1])
    bits = tags.get("0028|0100")
    if bits in ("8", "16", "32"):  # others are refused (_stored_dtype) before any pixels are read
        needed = columns * rows * int(bits) // 8
        held = _pixel_data_length(path)
        if held is not None and held < needed:
            raise ImageError(f"{path}: its Pixel Data holds {held:,} bytes, not the {needed:,} of {columns}×{rows} "
                             f"{bits}-bit pixels")
    return _Slice(path, tags, position, orientation, spacing, (columns, rows))


def _pixel_data_length(path: Path) -> int | None:
    """The bytes the Pixel Data (7fe0,0010) of the file ``path`` holds (its length, or what
    the file has after its header if less), found by walking its top-level elements
    (sequences skipped); None where it is not stored as it is (a compressed or deflated
    transfer syntax: the limits of mriae.limits bound what GDCM makes of it). ImageError if
    there is none."""
    size = path.stat().st_size
    with open(path, "rb") as stream:
        if stream.read(132)[128:] == b"DICM":
            syntax = _transfer_syntax(stream)
            if syntax not in _NATIVE:
                return None
            order, explicit = _NATIVE[syntax]
        else:  # a data set without the Part 10 header: implicit VR little endian
            stream.seek(0)
            order, explicit = "<", False
        open_levels = 0  # sequences and items of undefined length the walk is inside
        while (element := _element_header(stream, order, explicit)) is not None:
            tag, length = element
            if tag == _PIXEL_DATA and open_levels == 0:
                return None if length == _UNDEFINED else min(length, size - stream.tell())
            if tag in (_ITEM_END, _SEQUENCE_END):
                open_levels = max(open_levels - 1, 0)
            elif length == _UNDEFINED:
                open_levels += 1
            else:
                stream.seek(length, os.SEEK_CUR)
    raise ImageError(f"{path}: has no Pixel Data (7fe0,0010)")


def _transfer_syntax(stream) -> str:
    """The Transfer Syntax UID of the file meta information (group 0002, explicit VR little
    endian) that ``stream`` is at; leaves ``stream`` at the data set after it."""
    syntax = ""
    while True:
        start = stream.tell()
        element = _element_header(stream, "<", True)
        if element is None or element[0] >> 16 != 0x0002:
            stream.seek(start)
            return syntax
        tag, length = element
        if tag == 0x00020010 and length <= 64:  # a UID
            syntax = stream.read(length).rstrip(b"\x00 ").decode("ascii", "replace")
        else:
            stream.seek(length, os.SEEK_CUR)


def _element_header(stream, order: str, explicit: bool) -> tuple[int, int] | None:
    """(tag, value length) of the element at ``stream``, which is left at its value; None at
    the end of the file."""
    head = stream.read(8)
    if len(head) < 8:
        return None
    group, element = struct.unpack(f"{order}HH", head[:4])
    if group == 0xFFFE or not explicit:  # items and delimiters have no VR
        return group << 16 | element, struct.unpack(f"{order}I", head[4:])[0]
    if head[4:6].decode("latin-1") in _LONG_VRS:
        extra = stream.read(4)
        return (group << 16 | element, struct.unpack(f"{order}I", extra)[0]) if len(extra) == 4 else None
    return group << 16 | element, struct.unpack(f"{order}H", head[6:])[0]


def _numbers(path: Path, tags: dict[str, str], key: str, count: int, name: str) -> np.ndarray:
    text = tags.get(key)
    if not text:
        raise ImageError(f"{path}: has no {name} ({key}); enhanced (multi-frame) DICOM is not supported")
    values = np.asarray([number(part) for part in text.split("\\")])
    if values.size != count or not np.isfinite(values).all():
        raise ImageError(f"{path}: {name} {text[:60]!r} is not {count} numbers")
    return values


def _geometry(folder: Path, slices: list[_Slice]) -> tuple[list[_Slice], np.ndarray]:
    """The slices in order along their normal and the RAS affine of their stack; ImageError
    unless they are one evenly spaced stack of equal slices along the normal."""
    first = slices[0]
    for item in slices[1:]:
        if item.size != first.size:
            raise ImageError(f"{folder}: slices of different sizes ({'×'.join(map(str, first.size))} in "
                             f"{first.path.name}, {'×'.join(map(str, item.size))} in {item.path.name})")
        if np.abs(item.orientation - first.orientation).max() > ORIENTATION_TOLERANCE:
            raise ImageError(f"{folder}: slices of different orientations ({first.path.name}, {item.path.name})")
        if np.abs(item.spacing / first.spacing - 1).max() > ORIENTATION_TOLERANCE:
            raise ImageError(f"{folder}: slices of different pixel spacings ({first.path.name}, {item.path.name})")
    row, column = first.orientation[:3], first.orientation[3:]
    if max(abs(np.linalg.norm(row) - 1), abs(np.linalg.norm(column) - 1), abs(row @ column)) > 1e-3:
        raise ImageError(f"{first.path}: Image Orientation (Patient) is not two orthogonal unit vectors")
    normal = np.cross(row, column)  # orthonormalized as ITK does
    normal /= np.linalg.norm(normal)
    row = np.cross(column, normal)
    row /= np.linalg.norm(row)
    column = np.cross(normal, row)
    slices = sorted(slices, key=lambda item: float(item.position @ normal))
    positions = np.asarray([item.position for item in slices])
    if len(slices) > 1:
        step = (positions[-1] - positions[0]) / (len(slices) - 1)
        gap = float(step @ normal)
        gaps = np.diff(positions @ normal)
        if gaps.min() <= SPACING_TOLERANCE * gap:
            shared = int(np.count_nonzero(gaps <= SPACING_TOLERANCE * gap)) + 1
            raise ImageError(f"{folder}: {shared} slices share a position (several echoes, phases or repeats in "
                             "one series?)")
        offsets = positions - (positions[0] + np.arange(len(slices))[:, None] * step)
        if np.linalg.norm(offsets, axis=1).max() > SPACING_TOLERANCE * gap:
            raise ImageError(f"{folder}: slices are not evenly spaced (gaps from {gaps.min():.4g} to {gaps.max():.4g} "
                             "mm: a missing slice or variable gaps)")
        if np.linalg.norm(step - gap * normal) > SPACING_TOLERANCE * gap:
            raise ImageError(f"{folder}: slices are not stacked along their normal (a gantry tilt?)")
    else:
        gap = next((value for key in ("0018|0088", "0018|0050")
                    if (value := abs(number(first.tags.get(key)))) > 0 and math.isfinite(value)), 1.0)
    axes = np.eye(4)
    axes[:3, 0] = row * first.spacing[1]
    axes[:3, 1] = column * first.spacing[0]
    axes[:3, 2] = normal * gap
    axes[:3, 3] = positions[0]
    return slices, _LPS @ axes


def _stored_dtype(folder: Path, slices: list[_Slice]) -> np.dtype:
    """The stored voxel type (Bits Allocated, Pixel Representation), one for all slices."""
    first = slices[0]
    for key in REQUIRED:
        if key not in first.tags:
            raise ImageError(f"{first.path}: has no {KEPT[key][1]} ({key})")
        odd = next((item for item in slices if item.tags.get(key) != first.tags[key]), None)
        if odd is not None:
            raise ImageError(f"{folder}: slices of different {KEPT[key][1]} ({first.path.name}, {odd.path.name})")
    bits, signed = first.tags["0028|0100"], first.tags["0028|0103"]
    if bits not in ("8", "16", "32") or signed not in ("0", "1"):
        raise ImageError(f"{first.path}: {bits}-bit pixels of representation {signed} are not supported "
                         "(8, 16 or 32 bits)")
    return np.dtype(f"<{'iu'[signed == '0']}{int(bits) // 8}")


def _rescale(tags: dict[str, str | None]) -> tuple[float, float]:
    """(Rescale Slope, Rescale Intercept) of a slice: (1, 0) without them."""
    return number(tags.get(RESCALE[0]), 1.0), number(tags.get(RESCALE[1]), 0.0)


def _stored_values(sitk, reader: sitk.ImageFileReader, item: _Slice, dtype: np.dtype) -> np.ndarray:
    """A slice's stored values (columns, rows): GDCM's voxels, un-rescaled exactly."""
    reader.SetFileName(str(item.path))
    try:
        with _native_stderr_silenced():
            values = sitk.GetArrayFromImage(reader.Execute())
    except RuntimeError as error:
        raise ImageError(f"{item.path}: cannot read DICOM ({one_line(error)})") from error
    values = values.reshape(item.size[::-1]).T
    slope, intercept = _rescale(item.tags)
    if (slope, intercept) == (1.0, 0.0):
        if values.dtype.kind != dtype.kind or values.dtype.itemsize != dtype.itemsize:
            raise ImageError(f"{item.path}: GDCM gives {values.dtype} voxels, not the stored {dtype.name}")
        return values
    if not usable_rescale(slope, intercept):
        raise ImageError(f"{item.path}: Rescale Slope {item.tags.get(RESCALE[0])!r} and Intercept "
                         f"{item.tags.get(RESCALE[1])!r} are not usable numbers (finite in float32, a nonzero slope)")
    stored = stored_from_rescaled(values, slope, intercept, dtype)
    if stored is None:
        raise ImageError(f"{item.path}: the stored values cannot be recovered exactly from GDCM's rescaled ones "
                         f"(slope {slope:g}, intercept {intercept:g})")
    return stored


def stored_from_rescaled(values: np.ndarray, slope: float, intercept: float, dtype: np.dtype) -> np.ndarray | None:
    """The stored integers (as ``dtype``) that GDCM's ``values`` = stored × ``slope`` +
    ``intercept`` (computed in float64, then cast to ``values``' type) were made from;
    None unless that is certain: the rounding error that arithmetic can make, seen from the
    stored scale, is under 0.25, every ``(v − intercept) / slope`` lies within it of a whole
    number, and those whole numbers fit ``dtype``."""
    real = values.astype(np.float64)
    exact = (real - intercept) / slope
    stored = np.rint(exact)
    eps = np.finfo(values.dtype if values.dtype.kind == "f" else np.float64).eps
    bound = 8 * eps * (float(np.abs(real).max()) + abs(intercept)) / abs(slope)
    limits = np.iinfo(dtype)
    if not (bound < 0.25 and float(np.abs(exact - stored).max()) <= bound
            and limits.min <= stored.min() and stored.max() <= limits.max):
        return None
    return stored.astype(dtype)


def _kept(slices: list[_Slice]) -> dict:
    """The kept attributes: ``tags``, those equal in every slice; ``slices``, per slice
    (None where a slice lacks it), those that differ."""
    tags: dict[str, str] = {}
    per_slice: dict[str, list[str | None]] = {}
    for key in KEPT:
        values = [item.tags.get(key) for item in slices]
        for item, value in zip(slices, values):
            problem = None if value is None else check_value(key, value)
            if problem:
                raise ImageError(f"{item.path}: {KEPT[key][1]} ({key}) {problem}")
        if all(value == values[0] for value in values):
            if values[0] is not None:
                tags[key] = values[0]
        else:
            per_slice[key] = values
    return {"tags": tags, "slices": per_slice} if per_slice else {"tags": tags}


# ------------------------------------------------------------------------ other views of a series


def rescales(source: dict) -> np.ndarray:
    """(slope, intercept) per slice of a ``dicom`` record, shape (slices, 2)."""
    per_slice = source.get("slices", {})
    slopes, intercepts = (per_slice.get(key, [source["tags"].get(key)] * source["shape"][2]) for key in RESCALE)
    return np.asarray([_rescale(dict(zip(RESCALE, pair))) for pair in zip(slopes, intercepts)])


def region_record(source: dict, shape: tuple[int, ...], start: tuple[int, ...]) -> dict:
    """The ``dicom`` record of the region of ``shape`` from voxel ``start``: its slices'
    attributes (the geometry is written from the region's affine)."""
    return _picked(source, shape, range(start[2], start[2] + shape[2]))


def preview_record(source: dict, shape: tuple[int, ...], voxels: np.ndarray) -> dict:
    """The ``dicom`` record of a preview (see mriae.io.image.preview_source): the attributes
    of each preview slice's first source slice. ImageError for a preview that averages
    slices whose rescale differs (stored values of different scales)."""
    factor, offset = float(voxels[2, 2]), float(voxels[2, 3])
    if offset != 0 and len(np.unique(rescales(source), axis=0)) > 1:
        raise ImageError("a preview that averages slices of different rescales cannot be made; decode it whole")
    return _picked(source, shape, [int(j * factor) for j in range(shape[2])])


def _picked(source: dict, shape: tuple[int, ...], picks) -> dict:
    record = {**source, "shape": list(shape)}
    if "slices" in source:
        record["slices"] = {key: [values[k] for k in picks] for key, values in source["slices"].items()}
    return record


# ----------------------------------------------------------------------------------- writing


WRITTEN_NAME = re.compile(r"IM[0-9]{4,5}\.dcm")
"""The names :func:`series_file_names` gives (up to AXIS_LIMIT slices)."""


def check_series_folder(folder: str | os.PathLike, overwrite: bool = False) -> None:
    """Before any work: refuse a file in place of ``folder``, a folder that cannot be
    written, one that holds DICOM files not named as :func:`write_series` names its own
    (another series: a series written there would mix with it, so not even with
    ``overwrite``), and one that holds anything else (unless ``overwrite``)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder")
    if folder.is_dir():
        others = sorted(path.name for path in folder.iterdir()
                        if not WRITTEN_NAME.fullmatch(path.name) and _is_part10(path))
        if others:
            more = f" and {len(others) - 1} more" if len(others) > 1 else ""
            raise FileExistsError(f"{folder} holds DICOM files of another series ({others[0]}{more}): a series "
                                  "written there would mix with it; write into an empty folder")
        if not overwrite and any(folder.iterdir()):
            raise FileExistsError(f"{folder} is not empty (use --force to write into it)")
    check_writable(folder)


def series_file_names(count: int) -> list[str]:
    """The names of a written series' files, in slice order: IM0001.dcm, … (IM00001.dcm, …
    from 10,000 slices)."""
    width = max(4, len(str(count)))
    return [f"IM{index:0{width}d}.dcm" for index in range(1, count + 1)]


def write_series(image: Image, folder: str | os.PathLike, overwrite: bool = False, lossy: bool = False) -> list[Path]:
    """Write ``image`` (of a ``dicom`` record) as a series, one file per slice, into
    ``folder``, whole or not at all (:mod:`mriae.io.atomic`); returns the files' paths.

    Every kept attribute as it was; new Series and SOP Instance UIDs (derived from the
    original Series UID and the pixels, so the same image gives the same files); the geometry
    from the affine; the stored values in their stored type; Lossy Image Compression "01"
    when ``lossy``. FileExistsError if the folder holds anything, unless ``overwrite``, or
    DICOM files named otherwise than IM0001.dcm… (:func:`check_series_folder`); with
    ``overwrite``, the files of those names that this series does not replace are removed
    (a series written before), other files kept.
    """
    folder = Path(folder)
    source = image.source
    if source.get("kind") != "dicom":
        raise ImageError(f"{folder}: only an image read from a DICOM series can be written as one")
    if max(source["shape"]) > AXIS_LIMIT:
        raise ImageError(f"{folder}: a DICOM series has at most {AXIS_LIMIT} columns, rows and slices, not "
                         f"{list(source['shape'])}")
    check_series_folder(folder, overwrite)
    array = np.asarray(image.array, dtype=np.dtype(source["dtype"])).reshape(source["shape"])
    affine = np.asarray(image.affine, dtype=np.float64)
    digest = hashlib.sha256(array.tobytes() + affine.tobytes()).hexdigest()
    series_uid = _uid(f"series {source['tags'].get('0020|000e', '')} {digest}")
    names = series_file_names(array.shape[2])
    with staging_folder(folder, overwrite) as scratch:
        for index, name in enumerate(names):
            attributes = _slice_attributes(source, array.shape, affine, index, series_uid, lossy)
            (scratch / name).write_bytes(_part10(attributes, array[:, :, index]))
    if overwrite:  # an earlier series' files beyond this one's: it would mix with them
        written = set(names)
        for path in folder.iterdir():
            if WRITTEN_NAME.fullmatch(path.name) and path.name not in written and not path.is_dir():
                path.unlink()
    return [folder / name for name in names]


def _uid(text: str) -> str:
    """A UID made from ``text`` (a name-based UUID under the 2.25 root)."""
    return f"2.25.{uuid.uuid5(_UID_ROOT, text).int}"


def decimal(value: float) -> str:
    """``value`` as a DICOM decimal string (at most 16 characters, as many digits as fit)."""
    for digits in range(15, 0, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    raise ValueError(f"{value} does not fit a decimal string")  # never: 1 digit always fits


def _slice_attributes(source: dict, shape: tuple[int, ...], affine: np.ndarray, index: int, series_uid: str,
                      lossy: bool) -> dict[str, str]:
    """Every attribute of slice ``index`` but its pixels: the kept ones, then those written
    from the image (geometry, size, UIDs)."""
    lps = _LPS @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    position = lps[:3, 3] + index * lps[:3, 2]
    cosines = np.concatenate([lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]])
    attributes = {key: value[index] for key, value in source.get("slices", {}).items() if value[index] is not None}
    attributes.update(source["tags"])
    attributes.update({
        "0008|0018": _uid(f"{series_uid} {index}"),
        "0020|000e": series_uid,
        "0020|0032": "\\".join(map(decimal, position)),
        "0020|0037": "\\".join(map(decimal, cosines)),
        "0028|0030": f"{decimal(spacing[1])}\\{decimal(spacing[0])}",
        "0028|0002": "1",
        "0028|0010": str(shape[1]),
        "0028|0011": str(shape[0]),
    })
    if "0018|0088" in attributes:
        attributes["0018|0088"] = decimal(spacing[2])
    if lossy:
        attributes["0028|2110"] = "01"
    return attributes


def _part10(attributes: dict[str, str], voxels: np.ndarray) -> bytes:
    """A DICOM Part 10 file: ``attributes`` and the slice's ``voxels`` (columns, rows)."""
    meta = (_element("0002|0001", "OB", b"\x00\x01")
            + _text_element("0002|0002", "UI", attributes["0008|0016"])
            + _text_element("0002|0003", "UI", attributes["0008|0018"])
            + _text_element("0002|0010", "UI", EXPLICIT_LITTLE)
            + _text_element("0002|0012", "UI", IMPLEMENTATION_UID)
            + _text_element("0002|0013", "SH", f"MRIAE_{__version__}"))
    dataset = b"".join(_text_element(key, KEPT[key][0] if key in KEPT else _WRITTEN[key], value)
                       for key, value in sorted(attributes.items()))
    pixels = np.ascontiguousarray(voxels.T, dtype=voxels.dtype.newbyteorder("<")).tobytes()
    pixel_data = _element("7fe0|0010", "OB" if voxels.dtype.itemsize == 1 else "OW", pixels)
    return (b"\x00" * 128 + b"DICM" + _element("0002|0000", "UL", struct.pack("<I", len(meta))) + meta
            + dataset + pixel_data)


def _text_element(key: str, vr: str, value: str) -> bytes:
    if vr == "US":
        return _element(key, vr, b"".join(struct.pack("<H", int(part)) for part in value.split("\\") if part))
    return _element(key, vr, value.encode("utf-8", "surrogateescape"), b"\x00" if vr == "UI" else b" ")


def _element(key: str, vr: str, data: bytes, pad: bytes = b"\x00") -> bytes:
    """One data element, explicit VR little endian, its value padded to an even length."""
    group, element = (int(part, 16) for part in key.split("|"))
    data += pad * (len(data) % 2)
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", group, element, vr.encode("ascii"), 0, len(data)) + data
    return struct.pack("<HH2sH", group, element, vr.encode("ascii"), len(data)) + data
