"""Read and write medical images, keeping their original header.

NIfTI-1/NIfTI-2 single files (.nii, .nii.gz) are read with nibabel; the original header
bytes (with extensions) are kept verbatim and written back in front of the reconstructed
voxels, so qform/sform, pixdim, units, intent, scl_slope/inter, descrip and extensions come
back unchanged. NRRD and MetaImage (.nrrd, .nhdr, .mha, .mhd) go through SimpleITK, whose
geometry and metadata dictionary are kept. Both libraries load on first use: the suffix and
header helpers here serve ``mriae info``, which must start fast.
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mriae.extras import require
from mriae.formats import ITK_SUFFIXES, NIFTI_SUFFIXES, SUFFIXES
from mriae.io.atomic import check_targets, staging_folder
from mriae.limits import LimitError, Limits

if TYPE_CHECKING:
    import SimpleITK as sitk

PAIR_SUFFIXES = (".mhd", ".nhdr")
"""Header files whose voxels go to a data file beside them."""
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
    """The recognised image suffix of ``path`` ('' if none)."""
    name = path.name.lower()
    return next((s for s in SUFFIXES if name.endswith(s)), "")


def file_stem(path: str | os.PathLike) -> str:
    """``path``'s file name without its image suffix (``.nii.gz`` whole), or else without its
    last suffix (``.mriae``): the name its outputs are given."""
    path = Path(path)
    suffix = output_suffix(path) or path.suffix
    return path.name[: len(path.name) - len(suffix)]


def image_files(path: str | os.PathLike) -> list[Path]:
    """The files :func:`write_image` makes for ``path``: ``path``, and for a MetaImage or
    detached NRRD header (.mhd, .nhdr) first the data file NAME.raw beside it; ImageError if
    ``path`` is not of an image type, MissingExtra if it needs SimpleITK and that is not installed.

    Those pairs are written uncompressed; SimpleITK names their data files NAME.raw
    (compressed it would write NAME.zraw for .mhd and NAME.raw.gz for .nhdr).
    """
    path = Path(path)
    suffix = output_suffix(path)
    if not suffix:
        raise ImageError(f"{path}: unsupported output type (expected one of {', '.join(SUFFIXES)})")
    _require_itk(path, suffix)
    if suffix not in PAIR_SUFFIXES:
        return [path]
    return [path.with_name(file_stem(path) + ".raw"), path]


def read_image(path: str | os.PathLike) -> Image:
    """Read an image file; raises ImageError with a one-line reason on any failure
    (MissingExtra for an NRRD/MetaImage file without SimpleITK installed).

    A header that claims more voxels than :class:`~mriae.limits.Limits` allow, or more bytes
    than the file holds, is refused before its voxels are allocated.
    """
    path = Path(path)
    suffix = output_suffix(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if not path.is_file():
        raise ImageError(f"{path}: not a regular file")
    if not suffix:
        raise ImageError(f"{path}: unsupported file type (expected one of {', '.join(SUFFIXES)})")
    _require_itk(path, suffix)
    try:
        image = _read_nifti(path, suffix) if suffix in NIFTI_SUFFIXES else _read_itk(path, suffix)
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


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line (its type's name if it has none)."""
    return " ".join(str(error).split()) or type(error).__name__


def _read_nifti(path: Path, suffix: str) -> Image:
    import nibabel as nib

    loaded = nib.load(path)
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
    gets a fresh header carrying its affine. A boolean array is written as uint8 0/1.
    """
    path = Path(path)
    files = image_files(path)
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
        else:
            # SimpleITK recognises (and, for .mhd, writes) suffixes in lower case only
            lower = staged.with_name(file_stem(staged) + suffix)
            _write_itk(image, lower)
            lower.rename(staged)


def _write_nifti(image: Image, path: Path) -> None:
    source = image.source if image.source.get("kind") == "nifti" else fresh_nifti_source(image)
    header = base64.b64decode(source["header"])
    voxels = np.asarray(image.array, dtype=np.dtype(source["dtype"])).reshape(source["shape"], order="A")
    payload = header + voxels.tobytes(order="F")
    if path.name.lower().endswith(".gz"):
        with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as stream:
            stream.write(payload)
    else:
        path.write_bytes(payload)


def fresh_nifti_source(image: Image) -> dict:
    """NIfTI-1 header record for an image without one (an array, or an ITK file); booleans
    are stored as uint8 (NIfTI has no boolean type)."""
    import nibabel as nib

    array = np.asarray(image.array)
    array = array.astype(np.uint8) if array.dtype == np.bool_ else array
    nifti = nib.Nifti1Image(array, image.affine)
    nifti.header.set_data_dtype(array.dtype)
    nifti.header.set_xyzt_units("mm")
    header = nifti.header.copy()
    header["vox_offset"] = 352
    header_bytes = header.binaryblock + b"\x00" * 4  # no extensions
    return {
        "kind": "nifti",
        "header": base64.b64encode(header_bytes).decode("ascii"),
        "shape": list(array.shape),
        "dtype": array.dtype.str,
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
    if kind == "itk":
        axes = np.reshape(np.asarray(source["direction"], dtype=np.float64), (3, 3)) * np.asarray(source["spacing"])
        origin = np.asarray(source["origin"], dtype=np.float64) + axes @ voxels[:3, 3]
        spacing = (np.asarray(source["spacing"], dtype=np.float64) * np.diag(voxels)[:3]).tolist()
        return {**source, "shape": list(shape), "origin": origin.tolist(), "spacing": spacing}
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
    if kind == "itk":
        axes = np.reshape(np.asarray(source["direction"], dtype=np.float64), (3, 3)) * np.asarray(source["spacing"])
        origin = np.asarray(source["origin"], dtype=np.float64) + axes @ np.asarray(start, dtype=np.float64)
        return {**source, "shape": list(shape), "origin": origin.tolist()}
    return source


def _nifti_region(header_text: str, shape: tuple[int, ...], start: tuple[int, ...]) -> str:
    """The base64 NIfTI header (extensions kept) of a region: ``shape``, origins moved to ``start``."""
    import nibabel as nib

    raw = base64.b64decode(header_text)
    order = next(order for order in "<>" if struct.unpack_from(order + "i", raw, 0)[0] in (348, 540))
    size = struct.unpack_from(order + "i", raw, 0)[0]
    header = (nib.Nifti1Header if size == 348 else nib.Nifti2Header)(raw[:size], endianness=order, check=False)
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
    """``|scl_slope|`` of the original NIfTI header kept in ``source`` when it scales the
    stored voxels (a finite slope other than 0 and 1), else None. mriae codes the stored
    values, so an error bound in stored units is this many times larger in physical units."""
    if source.get("kind") != "nifti":
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
