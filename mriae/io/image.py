"""Read and write medical images, keeping their original header.

NIfTI-1/NIfTI-2 single files (.nii, .nii.gz) are read with nibabel; the original header
bytes (with extensions) are kept verbatim and written back in front of the reconstructed
voxels, so qform/sform, pixdim, units, intent, scl_slope/inter, descrip and extensions come
back unchanged. NRRD and MetaImage (.nrrd, .nhdr, .mha, .mhd) go through SimpleITK, whose
geometry and metadata dictionary are kept; so do folders of DICOM files (:mod:`mriae.io.dicom`).
The other formats nibabel reads (MGH, NIfTI and Analyze pairs; MINC, PAR/REC, AFNI, ECAT read
only) are in :mod:`mriae.io.nibabel_formats`. The libraries load on first use: the suffix and
header helpers here serve ``mriae info``,
which must start fast.
"""

from __future__ import annotations

import base64
import gzip
import math
import os
import re
import struct
import sys
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mriae.extras import require
from mriae.formats import (
    ANALYZE_SUFFIXES,
    CIFTI_REFUSAL,
    ITK_SUFFIXES,
    MGH_SUFFIXES,
    NIFTI_SUFFIXES,
    READ_ONLY,
    SUFFIXES,
    cannot_write,
    image_suffix,
    refusal,
)
from mriae.io.atomic import check_targets, staging_folder
from mriae.limits import LimitError, Limits

if TYPE_CHECKING:
    import SimpleITK as sitk

DATA_FILE_SUFFIXES = {".mhd": ".raw", ".nhdr": ".raw", ".hdr": ".img"}
"""Header files whose voxels a writer puts in a data file beside them, and its suffix."""
READ_DATA_FILES = {".hdr": (".img", ".IMG"), ".head": (".BRIK", ".BRIK.gz", ".brik", ".brik.gz"),
                   ".par": (".REC", ".rec")}
"""Image files whose voxels nibabel reads from a file beside them: NAME + one of these (those
in the header suffix's case first)."""
CIFTI_EXTENSION = 32
"""NIfTI extension code of CIFTI XML."""
_GZIP = zlib.MAX_WBITS | 16  # zlib window bits that read a gzip stream
_READ_CHUNK = 1 << 20


class ImageError(ValueError):
    """A file that cannot be read or written as an image; the message names file and problem."""


@dataclass
class Image:
    """Voxels as stored on disk (raw dtype, NIfTI axis order) and how to write them back.

    ``array`` has the spatial axes first (x, y, z), then any further axes (time, ...).
    ``source`` is the JSON-able record of the original header the writer needs.
    """

    array: np.ndarray
    affine: np.ndarray
    suffix: str = ".nii.gz"
    source: dict = field(default_factory=dict)

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size of the first three axes, from the affine."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))


LABEL_WORDS = frozenset({"mask", "dseg", "aseg", "aparc", "wmparc", "seg", "labels", "parc"})
"""Words of a file name (split at _ . - +) that mark a label map or mask: BIDS ``_mask``,
``_dseg``, FreeSurfer ``aseg``, ``aparc+aseg``, ``wmparc``, and the common ``seg``/``labels``."""


def names_a_label_map(path: str | os.PathLike) -> bool:
    """True if ``path``'s file name says it holds labels or a mask (see LABEL_WORDS)."""
    return not LABEL_WORDS.isdisjoint(re.split(r"[_.\-+]", file_stem(path).lower()))


def output_suffix(path: Path) -> str:
    """The recognised image suffix of ``path`` ('' if none): :func:`mriae.formats.image_suffix`."""
    return image_suffix(path)


def file_stem(path: str | os.PathLike) -> str:
    """``path``'s file name without its image suffix (``.nii.gz`` whole), or else without its
    last suffix (``.mriae``): the name its outputs are given."""
    path = Path(path)
    suffix = output_suffix(path) or path.suffix
    return path.name[: len(path.name) - len(suffix)]


def image_files(path: str | os.PathLike) -> list[Path]:
    """The files :func:`write_image` makes for ``path``: ``path``, and for a MetaImage,
    detached NRRD or Analyze/NIfTI pair header (.mhd, .nhdr, .hdr) first the data file beside
    it (NAME.raw, NAME.img); ImageError if ``path`` is not of a type a decode writes,
    MissingExtra if it needs SimpleITK and that is not installed.

    Those pairs are written uncompressed; SimpleITK names their data files NAME.raw
    (compressed it would write NAME.zraw for .mhd and NAME.raw.gz for .nhdr).
    """
    path = Path(path)
    reason = cannot_write(path)
    if reason:
        raise ImageError(f"{path}: {reason}")
    _require_itk(path, output_suffix(path))
    data_suffix = DATA_FILE_SUFFIXES.get(output_suffix(path))
    if data_suffix is None:
        return [path]
    if output_suffix(path) in ANALYZE_SUFFIXES and path.name[len(file_stem(path)):].isupper():
        data_suffix = data_suffix.upper()  # x.HDR goes with x.IMG, as nibabel pairs them
    return [path.with_name(file_stem(path) + data_suffix), path]


def voxel_file(path: Path) -> Path | None:
    """The voxel file beside the header ``path`` of an Analyze/NIfTI pair (NAME.img), an AFNI
    dataset (NAME.BRIK, NAME.BRIK.gz) or a PAR/REC pair (NAME.REC): the one there is, in
    either case (the header's first), else the name it should have; None for other types."""
    suffix = output_suffix(path)
    if suffix not in READ_DATA_FILES:
        return None
    upper = path.name[len(file_stem(path)):].isupper()
    names = sorted(READ_DATA_FILES[suffix], key=lambda data_suffix: data_suffix[1:4].isupper() != upper)
    files = [path.with_name(file_stem(path) + data_suffix) for data_suffix in names]
    return next((file for file in files if file.is_file()), files[0])


def source_files(path: str | os.PathLike) -> list[Path]:
    """The files an image is read from: ``path``, and its :func:`voxel_file` or the data file
    its detached NRRD/MetaImage header names, if there is one."""
    path = Path(path)
    data = voxel_file(path) or _itk_data_file(path)
    return [path, data] if data is not None and data.is_file() else [path]


_ITK_DATA_FILE = {".mhd": re.compile(rb"^\s*ElementDataFile\s*=\s*(\S[^\r\n]*?)\s*$", re.MULTILINE),
                  ".nhdr": re.compile(rb"^\s*data ?file\s*:\s*(\S[^\r\n]*?)\s*$", re.MULTILINE)}


def _itk_data_file(path: Path) -> Path | None:
    """The data file beside the detached header ``path`` (.mhd, .nhdr) that it names (None
    if it names none there: LIST, a pattern, another folder, LOCAL)."""
    pattern = _ITK_DATA_FILE.get(output_suffix(path))
    if pattern is None or not path.is_file():
        return None
    with open(path, "rb") as stream:
        found = pattern.search(stream.read(1 << 16))
    name = found.group(1).decode("utf-8", "replace") if found else ""
    if not name or "/" in name or "\\" in name or " " in name or name in ("LIST", "LOCAL"):
        return None
    return path.with_name(name)


def check_voxel_file(path: Path) -> None:
    """ImageError unless the voxel file that goes with the header ``path`` (if any) is there."""
    data = voxel_file(path)
    if data is not None and not data.is_file():
        raise ImageError(f"{path}: its voxel file {data.name} is missing")


def _sizeof_hdr(head: bytes) -> bool:
    """True if ``head`` starts with the header size of Analyze/NIfTI-1 (348) or NIfTI-2 (540), in either byte order."""
    return len(head) >= 4 and not {int.from_bytes(head[:4], order) for order in ("little", "big")}.isdisjoint({348, 540})


_AFNI_ATTRIBUTE = re.compile(rb"type\s*=\s*(string|integer|float)-attribute")
CONTENT_CHECKS: dict[str, tuple[Callable[[bytes], bool], str]] = {
    ".hdr": (_sizeof_hdr, "not an Analyze/NIfTI header (its first 4 bytes, sizeof_hdr, are not 348 or 540)"),
    ".par": (lambda head: b"DATA DESCRIPTION FILE" in head,
             "not a PAR/REC header (no '# === DATA DESCRIPTION FILE' line at its top)"),
    ".head": (lambda head: _AFNI_ATTRIBUTE.search(head) is not None,
              "not an AFNI header (no 'type = ...-attribute' line at its top)"),
    ".v": (lambda head: head.startswith(b"MATRIX"), "not an ECAT 7 image (it does not start with 'MATRIX')"),
}
"""Image types whose suffix other files have too (FSL motion parameters .par, ENVI .hdr, a
text .head or .v): how the first kilobyte of one looks, and what a file that does not look
like it is not."""
_SNIFF_BYTES = 1024


def content_mismatch(path: str | os.PathLike) -> str | None:
    """Why the regular file ``path``, whose suffix other files have too
    (:data:`CONTENT_CHECKS`), does not hold that image type, by its first kilobyte; None for
    one that looks like it, a file of another type, or one that cannot be read (its reader
    says why). Such a file is no image: ``mriae batch`` copies it as any other file."""
    path = Path(path)
    check = CONTENT_CHECKS.get(output_suffix(path))
    if check is None or not path.is_file():
        return None
    try:
        with open(path, "rb") as stream:
            head = stream.read(_SNIFF_BYTES)
    except OSError:
        return None
    return None if check[0](head) else check[1]


def read_image(path: str | os.PathLike) -> Image:
    """Read an image file, or the one DICOM series in a folder (whose name has no image
    suffix: :func:`mriae.io.dicom.read_series`); raises ImageError with a one-line reason on
    any failure (MissingExtra for an NRRD/MetaImage file or a DICOM series without SimpleITK
    installed).

    A header that claims more voxels than :class:`~mriae.limits.Limits` allow, or more bytes
    than the file holds, is refused before its voxels are allocated; so is a file whose first
    bytes are not of its type (:func:`content_mismatch`: FSL motion parameters named .par).
    """
    path = Path(path)
    suffix = output_suffix(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir() and not suffix:
        from mriae.io.dicom import read_series

        return read_series(path)[0]
    if not path.is_file():
        raise ImageError(f"{path}: not a regular file")
    if not suffix:
        reason = refusal(path) or f"unsupported file type (expected one of {', '.join(SUFFIXES)})"
        raise ImageError(f"{path}: {reason}")
    _require_itk(path, suffix)
    mismatch = content_mismatch(path)
    if mismatch:
        raise ImageError(f"{path}: {mismatch}")
    try:
        check_voxel_file(path)
        image = _reader(suffix)(path, suffix)
    except ImageError:
        raise
    except LimitError as error:
        raise ImageError(f"{path}: {error}") from error
    except Exception as error:  # nibabel/SimpleITK raise many types for damaged files
        raise ImageError(f"{path}: cannot read image ({one_line(error)})") from error
    if image.array.size == 0:
        raise ImageError(f"{path}: image has no voxels (shape {image.array.shape})")
    if image.array.dtype.kind == "f" and not np.isfinite(image.array).all():
        raise ImageError(f"{path}: image contains NaN or infinite voxels")
    if image.array.dtype.kind not in "iuf":
        raise ImageError(f"{path}: unsupported voxel type {image.array.dtype}")
    return image


def _require_itk(path: Path, suffix: str) -> None:
    """MissingExtra, naming ``path``, if its type needs SimpleITK and that is not installed."""
    if suffix in ITK_SUFFIXES:
        require("itk", f"{path}: NRRD/MetaImage support")


def _reader(suffix: str) -> Callable[[Path, str], Image]:
    """The function that reads files of ``suffix``."""
    from mriae.io import nibabel_formats

    if suffix in NIFTI_SUFFIXES:
        return _read_nifti
    if suffix in MGH_SUFFIXES:
        return nibabel_formats.read_mgh
    if suffix in ANALYZE_SUFFIXES:
        return nibabel_formats.read_pair
    if suffix in READ_ONLY:
        return nibabel_formats.read_converted
    return _read_itk


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line (its type's name if it has none)."""
    return " ".join(str(error).split()) or type(error).__name__


def _read_nifti(path: Path, suffix: str) -> Image:
    import nibabel as nib

    loaded = nib.load(path)
    if isinstance(loaded, nib.Cifti2Image) or any(
            extension.get_code() == CIFTI_EXTENSION for extension in getattr(loaded.header, "extensions", ())):
        raise ImageError(f"{path}: {CIFTI_REFUSAL}")
    if not isinstance(loaded, (nib.Nifti1Image, nib.Nifti2Image)) or loaded.header["magic"] not in (b"n+1", b"n+2"):
        raise ImageError(f"{path}: not a single-file NIfTI-1/NIfTI-2 image")
    proxy = loaded.dataobj
    Limits.from_environment().check_image(proxy.shape, "header")
    offset = int(proxy.offset)
    needed = offset + math.prod(proxy.shape) * proxy.dtype.itemsize
    if suffix == ".nii":
        _check_length(path, path.stat().st_size, needed, "")
        with open(path, "rb") as stream:
            header_bytes = stream.read(offset)
        array = np.asarray(proxy.get_unscaled())
    else:
        content = _gunzip_start(path, needed)
        _check_length(path, len(content), needed, " after decompression")
        header_bytes = bytes(content[:offset])
        array = np.frombuffer(content, proxy.dtype, math.prod(proxy.shape), offset).reshape(proxy.shape, order="F")
    source = {
        "kind": "nifti",
        "header": base64.b64encode(header_bytes).decode("ascii"),
        "shape": list(loaded.shape),
        "dtype": proxy.dtype.str,
    }
    return Image(array, np.asarray(loaded.affine, dtype=np.float64), suffix, source)


def _check_length(path: Path, available: int, needed: int, where: str) -> None:
    if available < needed:
        raise ImageError(f"{path}: file is truncated: header needs {needed} bytes, file has {available}{where}")


def _gunzip_start(path: Path, size: int) -> bytearray:
    """The first ``size`` bytes of the gzip file ``path`` (all of it if shorter), inflated
    piece by piece: memory grows with what the file holds, not with what its header claims.
    Concatenated gzip members (bgzip writes them) are read in turn."""
    content = bytearray()
    inflater = zlib.decompressobj(_GZIP)
    pending = b""
    with open(path, "rb") as stream:
        while len(content) < size:
            pending = pending or stream.read(_READ_CHUNK)
            if not pending:
                break
            content += inflater.decompress(pending, size - len(content))
            pending = inflater.unconsumed_tail
            if inflater.eof:
                pending, inflater = inflater.unused_data, zlib.decompressobj(_GZIP)
    return content


def _itk_affine(image: sitk.Image) -> np.ndarray:
    """RAS affine of an ITK (LPS) image whose array is indexed (x, y, z)."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(image.GetSpacing(), dtype=np.float64)
    affine[:3, 3] = image.GetOrigin()
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Keep SimpleITK's C++ code from printing on stderr (MetaIO writes "data not read
    completely" there, besides raising the exception that carries the reason). The whole
    process's stderr goes to /dev/null meanwhile, other threads' included."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _read_itk(path: Path, suffix: str) -> Image:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    with _native_stderr_silenced():
        reader.ReadImageInformation()
        Limits.from_environment().check_image(reader.GetSize(), "header")
        image = reader.Execute()
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageError(f"{path}: multi-component (vector/RGB) images are not supported")
    if image.GetDimension() != 3:
        raise ImageError(f"{path}: only 3D NRRD/MetaImage files are supported (got {image.GetDimension()}D)")
    array = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    source = {
        "kind": "itk",
        "origin": list(image.GetOrigin()),
        "spacing": list(image.GetSpacing()),
        "direction": list(image.GetDirection()),
        "metadata": {key: image.GetMetaData(key) for key in image.GetMetaDataKeys()},
        "dtype": array.dtype.str,
        "shape": list(array.shape),
    }
    return Image(array, _itk_affine(image), suffix, source)


def write_image(image: Image, path: str | os.PathLike, overwrite: bool = False) -> None:
    """Write ``image`` in the format of ``path``'s suffix, whole or not at all
    (:mod:`mriae.io.atomic`); FileExistsError if any of its :func:`image_files` exists
    (unless ``overwrite``).

    Written in its own format, an image gets its original header back (NIfTI header bytes,
    ITK geometry and metadata); written in another format, or made from a bare array, it
    gets a fresh header carrying its affine, and a scaled image its scale or its physical
    values (:mod:`mriae.io.scale`). A boolean array is written as uint8 0/1.
    """
    path = Path(path)
    from mriae.io.scale import as_written

    files = image_files(path)
    image = as_written(image, output_suffix(path))
    if image.array.dtype == np.bool_:  # no image format stores booleans: a mask is written as 0/1 uint8
        image = Image(image.array.view(np.uint8), image.affine, image.suffix, image.source)
    if image.array.dtype.kind not in "iuf":
        raise ImageError(f"{path}: cannot write voxels of type {image.array.dtype}")
    check_targets(files, overwrite)
    suffix = output_suffix(path)
    with staging_folder(path.parent, overwrite) as scratch:
        staged = scratch / path.name
        if suffix in NIFTI_SUFFIXES:
            _write_nifti(image, staged)
        elif suffix in MGH_SUFFIXES:
            from mriae.io.nibabel_formats import mgh_bytes

            _write_payload(staged, [mgh_bytes(image)], compressed=suffix == ".mgz")
        elif suffix in ANALYZE_SUFFIXES:
            from mriae.io.nibabel_formats import pair_bytes

            header, voxels = pair_bytes(image)
            staged.write_bytes(header)
            (scratch / files[0].name).write_bytes(voxels)
        else:
            # SimpleITK recognises (and, for .mhd, writes) suffixes in lower case only
            lower = staged.with_name(file_stem(staged) + suffix)
            _write_itk(image, lower)
            lower.rename(staged)


def _write_nifti(image: Image, path: Path) -> None:
    source = image.source if image.source.get("kind") == "nifti" else fresh_nifti_source(image)
    header = base64.b64decode(source["header"])
    voxels = np.asarray(image.array, dtype=np.dtype(source["dtype"])).reshape(source["shape"], order="A")
    # the voxels in F order, as NIfTI stores them: a view, no copy, when the array lies so already
    _write_payload(path, [header, np.ravel(voxels, order="F").view(np.uint8)], compressed=path.name.lower().endswith(".gz"))


GZIP_LEVEL = 6
"""zlib level of the .nii.gz and .mgz files written: gzip's own default. Python's (9) takes
4× as long for 1 % smaller files (a 1 mm head in uint8: 0.80 s against 0.18 s; in float32:
1.8 s against 0.74 s, 2 % smaller)."""


_WRITE_CHUNK = 1 << 24
"""Bytes handed to the file (or its gzip stream) at a time."""


def _write_payload(path: Path, parts: Sequence[bytes | np.ndarray], compressed: bool) -> None:
    """Write ``parts`` (bytes, or uint8 arrays) one after another to ``path``, as a gzip stream
    (:data:`GZIP_LEVEL`) without a name or time stamp if ``compressed`` (the same bytes on
    every run)."""
    with (open(path, "wb") as raw,
          gzip.GzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=raw, mtime=0) if compressed
          else nullcontext(raw) as out):
        for part in parts:
            view = memoryview(part)
            for start in range(0, len(view), _WRITE_CHUNK):  # a bounded gzip output per write
                out.write(view[start : start + _WRITE_CHUNK])


def fresh_nifti_source(image: Image, scaling: tuple[float, float] | None = None) -> dict:
    """NIfTI-1 header record for an image without one (an array, or an ITK file); booleans
    are stored as uint8 (NIfTI has no boolean type). ``scaling``: (scl_slope, scl_inter)."""
    array = np.asarray(image.array)
    array = array.astype(np.uint8) if array.dtype == np.bool_ else array
    header = fresh_nifti_header(array, image.affine)
    if scaling is not None:
        header.set_slope_inter(*scaling)
    return nifti_source(header, array)


def fresh_nifti_header(array: np.ndarray, affine: np.ndarray):
    """A nibabel NIfTI-1 header for ``array`` (its shape and voxel type) with ``affine`` as
    sform (and its voxel sizes), units mm."""
    import nibabel as nib

    nifti = nib.Nifti1Image(array, affine)
    nifti.header.set_data_dtype(array.dtype)
    nifti.header.set_xyzt_units("mm")
    return nifti.header.copy()


def nifti_source(header, array: np.ndarray) -> dict:
    """The ``nifti`` record of a single-file NIfTI-1 with nibabel ``header`` (no extensions)
    and ``array``'s shape; its voxel type is the header's."""
    header["vox_offset"] = 352
    return {
        "kind": "nifti",
        "header": base64.b64encode(header.binaryblock + b"\x00" * 4).decode("ascii"),
        "shape": list(array.shape),
        "dtype": header.get_data_dtype().str,
    }


def preview_source(source: dict, shape: tuple[int, ...], voxels: np.ndarray) -> dict:
    """The writer's record (``Image.source``) of a lower-resolution preview of ``shape``
    (spatial axes first) whose voxel ``j`` lies at voxel ``voxels @ [j, 1]`` of the image
    that ``source`` describes (``voxels``: a 4×4 matrix, diagonal scales and a translation):
    a NIfTI header with the preview's dimensions, voxel sizes, qform and sform; ITK geometry
    with its size, spacing and origin."""
    voxels = np.asarray(voxels, dtype=np.float64)
    kind = source.get("kind")
    if kind == "nifti":
        return {**source, "shape": list(shape), "header": _nifti_preview(source["header"], shape, voxels)}
    if kind in ("mgh", "pair"):
        from mriae.io.nibabel_formats import mgh_resized, pair_resized

        return (mgh_resized if kind == "mgh" else pair_resized)(source, shape, voxels)
    if kind == "itk":
        axes = np.reshape(np.asarray(source["direction"], dtype=np.float64), (3, 3)) * np.asarray(source["spacing"])
        origin = np.asarray(source["origin"], dtype=np.float64) + axes @ voxels[:3, 3]
        spacing = (np.asarray(source["spacing"], dtype=np.float64) * np.diag(voxels)[:3]).tolist()
        return {**source, "shape": list(shape), "origin": origin.tolist(), "spacing": spacing}
    if kind == "dicom":
        from mriae.io.dicom import preview_record

        return preview_record(source, shape, voxels)
    return source


def _nifti_header(header_text: str) -> tuple[object, bytes, int]:
    """(nibabel header, raw bytes, header size) of a base64 NIfTI header."""
    import nibabel as nib

    raw = base64.b64decode(header_text)
    order = next(order for order in "<>" if struct.unpack_from(order + "i", raw, 0)[0] in (348, 540))
    size = struct.unpack_from(order + "i", raw, 0)[0]
    return (nib.Nifti1Header if size == 348 else nib.Nifti2Header)(raw[:size], endianness=order, check=False), raw, size


def _nifti_preview(header_text: str, shape: tuple[int, ...], voxels: np.ndarray) -> str:
    """The base64 NIfTI header (extensions kept) of a preview: ``shape``, and every matrix
    (qform, sform, pixdim) composed with the voxel map ``voxels``."""
    header, raw, size = _nifti_header(header_text)
    qform, sform = header.get_qform() @ voxels, header.get_sform() @ voxels  # the qform is made of the zooms
    header.set_data_shape(shape)
    zooms = list(header.get_zooms())
    zooms[:3] = [zoom * scale for zoom, scale in zip(zooms[:3], np.diag(voxels)[:3])]
    header.set_zooms(zooms)
    if header["qform_code"] > 0:
        header.set_qform(qform, int(header["qform_code"]))
    if header["sform_code"] > 0:
        for axis, row in enumerate(("srow_x", "srow_y", "srow_z")):
            header[row] = sform[axis]
    return base64.b64encode(header.binaryblock + raw[size:]).decode("ascii")


def region_source(source: dict, shape: tuple[int, ...], start: tuple[int, ...]) -> dict:
    """The writer's record (``Image.source``) of the region of ``shape`` (spatial axes first)
    from voxel ``start`` of the image that ``source`` describes: its header otherwise
    unchanged — a NIfTI header with the region's dimensions and qform/sform offsets moved to
    its first voxel (each by its own matrix; a header with neither has no origin to move),
    ITK geometry with the region's size and origin."""
    kind = source.get("kind")
    if kind == "nifti":
        return {**source, "shape": list(shape), "header": _nifti_region(source["header"], shape, start)}
    if kind in ("mgh", "pair"):
        voxels = np.eye(4)
        voxels[:3, 3] = start[:3]
        return preview_source(source, shape, voxels)
    if kind == "itk":
        axes = np.reshape(np.asarray(source["direction"], dtype=np.float64), (3, 3)) * np.asarray(source["spacing"])
        origin = np.asarray(source["origin"], dtype=np.float64) + axes @ np.asarray(start, dtype=np.float64)
        return {**source, "shape": list(shape), "origin": origin.tolist()}
    if kind == "dicom":
        from mriae.io.dicom import region_record

        return region_record(source, shape, start)
    return source


def _nifti_region(header_text: str, shape: tuple[int, ...], start: tuple[int, ...]) -> str:
    """The base64 NIfTI header (extensions kept) of a region: ``shape``, origins moved to ``start``."""
    header, raw, size = _nifti_header(header_text)
    header.set_data_shape(shape)
    offset = np.asarray(start, dtype=np.float64)
    if header["qform_code"] > 0:
        qform = header.get_qform()
        header["qoffset_x"], header["qoffset_y"], header["qoffset_z"] = qform[:3, :3] @ offset + qform[:3, 3]
    if header["sform_code"] > 0:
        for row in ("srow_x", "srow_y", "srow_z"):
            values = np.asarray(header[row], dtype=np.float64)
            values[3] += values[:3] @ offset
            header[row] = values
    return base64.b64encode(header.binaryblock + raw[size:]).decode("ascii")


def stored_scale(source: dict) -> float | None:
    """``|scl_slope|`` of the original NIfTI (or NIfTI/SPM pair) header kept in ``source``
    when it scales the stored voxels (a finite slope other than 0 and 1), else None. mriae
    codes the stored values, so an error bound in stored units is this many times larger in
    physical units."""
    if source.get("kind") not in ("nifti", "pair"):
        return None
    try:
        raw = base64.b64decode(source["header"])
        for order in ("<", ">"):
            size = struct.unpack_from(order + "i", raw, 0)[0]
            if size in (348, 540):
                kind, offset = ("f", 112) if size == 348 else ("d", 176)
                slope = abs(struct.unpack_from(order + kind, raw, offset)[0])
                return slope if math.isfinite(slope) and slope not in (0.0, 1.0) else None
    except (KeyError, ValueError, TypeError, struct.error):
        pass
    return None


def _fresh_itk_source(image: Image) -> dict:
    """ITK geometry (LPS) for an image without one, from its RAS affine."""
    if image.array.ndim != 3:
        raise ImageError(f"only 3D images can be written as NRRD/MetaImage (shape {image.array.shape})")
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(image.affine, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    return {
        "kind": "itk",
        "origin": lps[:3, 3].tolist(),
        "spacing": spacing.tolist(),
        "direction": (lps[:3, :3] / spacing).ravel().tolist(),
        "metadata": {},
        "dtype": image.array.dtype.str,
        "shape": list(image.array.shape),
    }


def _write_itk(image: Image, path: Path) -> None:
    import SimpleITK as sitk

    source = image.source if image.source.get("kind") == "itk" else _fresh_itk_source(image)
    array = np.asarray(image.array, dtype=np.dtype(source["dtype"]).newbyteorder("=")).reshape(source["shape"])
    itk_image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    itk_image.SetOrigin(source["origin"])
    itk_image.SetSpacing(source["spacing"])
    itk_image.SetDirection(source["direction"])
    for key, value in source["metadata"].items():
        itk_image.SetMetaData(key, value)
    sitk.WriteImage(itk_image, str(path), useCompression=path.suffix.lower() in (".nrrd", ".mha"))
