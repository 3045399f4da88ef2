"""The volume formats nibabel reads besides single-file NIfTI.

Written back in their own format, their header bytes kept verbatim:

* FreeSurfer MGH/MGZ (.mgh, .mgz): the 284-byte header and everything after the voxels (the
  footer: TR, flip angle, TE, TI, FoV, tags) — source kind ``mgh``;
* NIfTI-1/NIfTI-2 pairs and Analyze 7.5/SPM images (.hdr + .img): the whole .hdr file and the
  bytes of the .img before the voxels — source kind ``pair``. An SPM image whose affine
  comes from a .mat file beside it gets a NIfTI-1 pair header carrying that affine instead.

Read only (nibabel cannot write them): MINC 1/2 (.mnc), Philips PAR/REC (.PAR + .REC), AFNI
(.HEAD + .BRIK[.gz]) and ECAT 7 (.v) get a fresh NIfTI-1 header carrying the affine, the
voxel sizes, the time step and its unit where the format records one, and PAR's description
(source kind ``nifti``), and decode to NIfTI. Their values: when one (slope, intercept) maps
every stored integer to nibabel's value (none, or one for the whole file), the stored integers
are coded and the NIfTI header gets that scale (``scl_slope``/``scl_inter``, float32 as NIfTI
stores them); when the scale varies (per slice, volume or frame), nibabel's scaled values
(``get_fdata``) are coded as float32. Either way the NIfTI's ``get_fdata()`` equals nibabel's
reading of the original to float32 precision (relative 2⁻²⁴), exactly when it is unscaled.
MINC axes come spatial first (a 4D MINC stores time first).
"""

from __future__ import annotations

import base64
import math
from pathlib import Path

import numpy as np

from mriae.dicom_tags import usable_rescale
from mriae.extras import require
from mriae.formats import MGH_DTYPES, MGH_HEADER_BYTES, READ_ONLY
from mriae.io.image import (
    Image,
    ImageError,
    _check_length,
    _gunzip_start,
    _nifti_preview,
    fresh_nifti_header,
    nifti_source,
    voxel_file,
)
from mriae.limits import MAX_HEADER_BYTES, Limits

MGH_FIELD_BYTES = 90
PAIR_MAGIC = (b"ni1\x00", b"ni2\x00")
AFNI_TIME_UNITS = {77001: "msec", 77002: "sec", 77003: "hz"}
MINC_TIME_UNITS = {"s": "sec", "sec": "sec", "seconds": "sec", "ms": "msec", "msec": "msec"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _native(array: np.ndarray) -> np.ndarray:
    return array.astype(array.dtype.newbyteorder("="), copy=False)


# --------------------------------------------------------------------------- FreeSurfer MGH/MGZ


def read_mgh(path: Path, suffix: str) -> Image:
    """An MGH/MGZ image, its header and footer kept verbatim (source kind ``mgh``)."""
    import nibabel as nib

    loaded = nib.load(path)
    if not isinstance(loaded, nib.MGHImage):
        raise ImageError(f"{path}: not an MGH image")
    shape = tuple(int(n) for n in loaded.header.get_data_shape())
    Limits.from_environment().check_image(shape, "header")
    dtype = np.dtype(MGH_DTYPES[int(loaded.header["type"])])
    needed = MGH_HEADER_BYTES + math.prod(shape) * dtype.itemsize
    if suffix == ".mgz":
        content = bytes(_gunzip_start(path, needed + MAX_HEADER_BYTES + 1))
        where = " after decompression"
    else:
        with open(path, "rb") as stream:
            content = stream.read(needed + MAX_HEADER_BYTES + 1)
        where = ""
    _check_length(path, len(content), needed, where)
    if len(content) - needed > MAX_HEADER_BYTES:
        raise ImageError(f"{path}: the MGH footer is over {MAX_HEADER_BYTES:,} bytes")
    array = np.frombuffer(content, dtype, math.prod(shape), MGH_HEADER_BYTES).reshape(shape, order="F")
    source = {"kind": "mgh", "header": _b64(content[:MGH_HEADER_BYTES]), "footer": _b64(content[needed:]),
              "shape": list(shape), "dtype": dtype.str}
    return Image(array, np.asarray(loaded.affine, dtype=np.float64), suffix, source)


def mgh_bytes(image: Image) -> bytes:
    """The MGH file of ``image``: its own header and footer, or fresh ones carrying its affine."""
    source = image.source if image.source.get("kind") == "mgh" else _fresh_mgh_source(image)
    voxels = np.asarray(image.array, dtype=np.dtype(source["dtype"])).reshape(source["shape"], order="A")
    return base64.b64decode(source["header"]) + voxels.tobytes(order="F") + base64.b64decode(source["footer"])


def _fresh_mgh_source(image: Image) -> dict:
    import nibabel as nib

    array = np.asarray(image.array)
    stored = {np.dtype(code).newbyteorder("="): code for code in MGH_DTYPES.values()}
    if array.dtype.newbyteorder("=") not in stored or array.ndim > 4:
        raise ImageError(f"MGH stores 3D/4D uint8, int16, uint16, int32 or float32 voxels, not {array.ndim}D "
                         f"{array.dtype.name}: write another format")
    data = nib.MGHImage(_native(array), image.affine).to_bytes()
    size = MGH_HEADER_BYTES + array.nbytes
    return {"kind": "mgh", "header": _b64(data[:MGH_HEADER_BYTES]), "footer": _b64(data[size:]),
            "shape": list(array.shape), "dtype": stored[array.dtype.newbyteorder("=")]}


def mgh_resized(source: dict, shape: tuple[int, ...], voxels: np.ndarray) -> dict:
    """The ``mgh`` record of the image of ``shape`` whose voxel j lies at voxel
    ``voxels @ [j, 1]`` of the image ``source`` describes (a region or a preview): its
    dimensions, voxel sizes and centre; the rest of header and footer as they were."""
    from nibabel.freesurfer.mghformat import MGHHeader

    raw = base64.b64decode(source["header"])
    header = MGHHeader(raw, check=False)
    affine = header.get_affine() @ voxels
    header["dims"] = list(shape[:3]) + [shape[3] if len(shape) > 3 else 1]
    header["delta"] = header["delta"] * np.diag(voxels)[:3]
    header["Pxyz_c"] = affine[:3] @ np.append(np.asarray(shape[:3], dtype=np.float64) / 2, 1)
    header_bytes = header.binaryblock[:MGH_FIELD_BYTES] + raw[MGH_FIELD_BYTES:]
    return {**source, "shape": list(shape), "header": _b64(header_bytes)}


# --------------------------------------------------------------------------- NIfTI/Analyze pairs


def read_pair(path: Path, suffix: str) -> Image:
    """A NIfTI/Analyze pair named by its .hdr: the .hdr file verbatim and the .img's bytes
    before the voxels (source kind ``pair``)."""
    import nibabel as nib

    loaded = nib.load(path)
    if not isinstance(loaded, nib.AnalyzeImage) or isinstance(loaded, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ImageError(f"{path}: not the header of an Analyze/NIfTI pair")
    proxy = loaded.dataobj
    Limits.from_environment().check_image(proxy.shape, "header")
    if path.stat().st_size > MAX_HEADER_BYTES:
        raise ImageError(f"{path}: the header file is over {MAX_HEADER_BYTES:,} bytes")
    data_file = voxel_file(path)
    offset, count = int(proxy.offset), math.prod(proxy.shape)
    _check_length(data_file, data_file.stat().st_size, offset + count * proxy.dtype.itemsize, "")
    with open(data_file, "rb") as stream:
        prefix = stream.read(offset)
        array = np.fromfile(stream, proxy.dtype, count).reshape(proxy.shape, order="F")
    affine = np.asarray(loaded.affine, dtype=np.float64)
    if np.array_equal(loaded.header.get_best_affine(), affine):
        source = {"kind": "pair", "header": _b64(path.read_bytes()), "prefix": _b64(prefix),
                  "shape": list(proxy.shape), "dtype": proxy.dtype.str}
    else:  # an SPM .mat file sets the affine, which a NIfTI-1 pair header can carry
        array = _native(array)
        header = _nifti_pair_header(loaded.header, affine, (proxy.slope, proxy.inter))
        source = _pair_source(header, array.shape)
    return Image(array, affine, suffix, source)


def pair_bytes(image: Image) -> tuple[bytes, bytes]:
    """The .hdr and .img files of ``image``: its own pair header, or a fresh NIfTI-1 pair
    header carrying its affine."""
    source = image.source if image.source.get("kind") == "pair" else fresh_pair_source(image)
    voxels = np.asarray(image.array, dtype=np.dtype(source["dtype"])).reshape(source["shape"], order="A")
    return base64.b64decode(source["header"]), base64.b64decode(source["prefix"]) + voxels.tobytes(order="F")


def fresh_pair_source(image: Image, scaling: tuple[float, float] | None = None) -> dict:
    """NIfTI-1 pair header record for an image without one, carrying its affine and the
    (scl_slope, scl_inter) ``scaling`` (None: unscaled)."""
    array = np.asarray(image.array)
    header = _nifti_pair_header(fresh_nifti_header(array, image.affine), image.affine, scaling or (None, None))
    return _pair_source(header, array.shape)


def _nifti_pair_header(header, affine: np.ndarray, scaling: tuple[float | None, float | None]):
    """A NIfTI-1 pair header with the shape, voxel type and voxel sizes of the nibabel
    ``header`` (Analyze or NIfTI), ``affine`` as qform and sform, units mm, and the
    (slope, intercept) ``scaling`` (None: unscaled)."""
    import nibabel as nib

    pair = nib.nifti1.Nifti1PairHeader.from_header(header)
    slope, inter = scaling
    if slope is not None and (slope, inter or 0.0) != (1.0, 0.0):
        pair.set_slope_inter(slope, inter or 0.0)
    pair.set_qform(affine, "aligned")
    pair.set_sform(affine, "aligned")
    pair.set_xyzt_units("mm", pair.get_xyzt_units()[1])
    return pair


def _pair_source(header, shape: tuple[int, ...]) -> dict:
    """The ``pair`` record of a nibabel NIfTI-1 pair ``header`` (no extensions) for an image of ``shape``."""
    header["vox_offset"] = 0
    return {"kind": "pair", "header": _b64(header.binaryblock + b"\x00" * 4), "prefix": "",
            "shape": list(shape), "dtype": header.get_data_dtype().str}


def pair_resized(source: dict, shape: tuple[int, ...], voxels: np.ndarray) -> dict:
    """The ``pair`` record of a region or preview (see :func:`mgh_resized`): a NIfTI pair's
    header with the new dimensions, voxel sizes, qform and sform; for an Analyze image, whose
    header cannot hold an arbitrary origin, a NIfTI-1 pair header carrying the new affine."""
    from nibabel.spm2analyze import Spm2AnalyzeHeader

    raw = base64.b64decode(source["header"])
    if 540 in (int.from_bytes(raw[:4], "little"), int.from_bytes(raw[:4], "big")) or raw[344:348] in PAIR_MAGIC:
        return {**source, "shape": list(shape), "header": _nifti_preview(source["header"], shape, voxels)}
    order = "<" if int.from_bytes(raw[:4], "little") == 348 else ">"
    analyze = Spm2AnalyzeHeader(raw[:348], endianness=order, check=False)
    affine = analyze.get_best_affine() @ voxels
    analyze.set_data_shape(shape)
    return _pair_source(_nifti_pair_header(analyze, affine, analyze.get_slope_inter()), shape)


# --------------------------------------------------------------------------- read only: MINC, PAR/REC, AFNI, ECAT


def _is_hdf5(path: Path) -> bool:
    """True if ``path`` starts like an HDF5 file (MINC 2; MINC 1 is netCDF)."""
    with open(path, "rb") as stream:
        return stream.read(8) == b"\x89HDF\r\n\x1a\n"


def read_converted(path: Path, suffix: str) -> Image:
    """A MINC, PAR/REC, AFNI or ECAT image with a fresh NIfTI-1 header (see the module)."""
    import nibabel as nib

    if suffix == ".mnc" and _is_hdf5(path):
        require("minc", f"{path}: MINC 2")
    loaded = nib.ecat.load(path) if suffix == ".v" else nib.load(path)
    expected = {".mnc": nib.minc1.Minc1Image, ".par": nib.parrec.PARRECImage, ".head": nib.brikhead.AFNIImage,
                ".v": nib.ecat.EcatImage}[suffix]
    if not isinstance(loaded, expected):
        raise ImageError(f"{path}: not a {READ_ONLY[suffix]} image")
    Limits.from_environment().check_image(loaded.shape, "header")
    stored = _stored_values(loaded)
    if stored is None:
        scaled = np.asarray(loaded.dataobj, dtype=np.float64)
        array, slope, inter = scaled.astype(np.float32), 1.0, 0.0
        if not np.isfinite(array).all() and np.isfinite(scaled).all():  # beyond float32's range
            array = scaled
    else:
        array, slope, inter = stored
    axes = _spatial_first(loaded)
    array = _native(np.asarray(array).transpose(axes))
    affine = np.asarray(loaded.affine, dtype=np.float64)
    header = fresh_nifti_header(array, affine)
    time = _time_step(loaded)
    if array.ndim > 3 and time is not None:
        zooms = list(header.get_zooms())
        zooms[3] = time[0]
        header.set_zooms(zooms)
        header.set_xyzt_units("mm", time[1])
    if (slope, inter) != (1.0, 0.0):
        header.set_slope_inter(slope, inter)
    if isinstance(loaded, nib.parrec.PARRECImage):
        header["descrip"] = loaded.header.as_analyze_map().get("descr", "").encode("ascii", "replace")[:79]
    return Image(array, affine, suffix, nifti_source(header, array))


def _stored_values(loaded) -> tuple[np.ndarray, float, float] | None:
    """The integers a file stores and the one (slope, intercept) that maps every one of them
    to nibabel's value ((1, 0): unscaled); None when the scale varies or there are no
    integers to scale (float voxels: nibabel's values are coded)."""
    import nibabel as nib

    proxy = loaded.dataobj
    if isinstance(loaded, nib.minc1.Minc1Image):
        return _minc_values(proxy.minc_file)
    if isinstance(loaded, nib.parrec.PARRECImage):
        raw, (slopes, inters) = proxy.get_unscaled(), loaded.header.get_data_scaling("dv")
    elif isinstance(loaded, nib.brikhead.AFNIImage):
        raw, slopes, inters = proxy.get_unscaled(), proxy.scaling, 0.0
        slopes = 1.0 if slopes is None else slopes
    else:  # ECAT: one scale factor per frame, times the calibration factor
        frames = loaded.get_subheaders()
        mapping = nib.ecat.get_frame_order(loaded.get_mlist())
        order = [mapping[index][0] for index in sorted(mapping)]
        raws = [frames.raw_data_from_fileobj(number) for number in order]
        if len({raw.dtype for raw in raws}) > 1:
            return None
        raw = np.stack(raws, axis=-1)
        slopes = [float(loaded.header["ecat_calibration_factor"]) * float(frames.subheaders[number]["scale_factor"])
                  for number in order]
        inters = 0.0
    return _one_scale(raw, slopes, inters)


def _one_scale(raw: np.ndarray, slopes, inters) -> tuple[np.ndarray, float, float] | None:
    """``raw`` with its one (slope, intercept) if ``slopes`` and ``inters`` each hold a single
    value NIfTI can store (a nonzero float32 slope), else None."""
    slopes, inters = np.unique(np.asarray(slopes, np.float64)), np.unique(np.asarray(inters, np.float64))
    if raw.dtype.kind not in "iu" or slopes.size != 1 or inters.size != 1:
        return None
    slope, inter = float(slopes[0]), float(inters[0])
    if not usable_rescale(slope, inter):
        return None
    return np.asarray(raw), slope, inter


def _minc_values(minc) -> tuple[np.ndarray, float, float] | None:
    """MINC's stored integers (clipped to the valid range, as nibabel does) and its scale:
    ``image-min`` … ``image-max`` over the valid range, one pair for the whole file, or per
    slice (then None). nibabel has no public access to these; its MINC reader's own."""
    from nibabel.minc2 import Minc2File

    if np.dtype(minc.get_data_dtype()).kind not in "iu":
        return None
    low, high = minc._get_valid_range()
    image_max = np.unique(np.asarray(minc._get_array(minc._image_max), np.float64))
    image_min = np.unique(np.asarray(minc._get_array(minc._image_min), np.float64))
    if image_max.size != 1 or image_min.size != 1:
        return None
    slope = (image_max[0] - image_min[0]) / (high - low)
    raw = np.asarray(minc._image if isinstance(minc, Minc2File) else minc._image.data).view(minc.get_data_dtype())
    return _one_scale(np.clip(raw, low, high).astype(raw.dtype), slope, image_min[0] - low * slope)


def _spatial_first(loaded) -> tuple[int, ...]:
    """The order that puts the spatial axes first (MINC stores time, or vector components, before them)."""
    import nibabel as nib

    if not isinstance(loaded, nib.minc1.Minc1Image):
        return tuple(range(len(loaded.shape)))
    names = list(loaded.dataobj.minc_file._dim_names)
    spatial = [names.index(name) for name in loaded.dataobj.minc_file._spatial_dims]
    return tuple(spatial + [axis for axis in range(len(names)) if axis not in spatial])


def _time_step(loaded) -> tuple[float, str] | None:
    """(time between volumes, its NIfTI unit) where the format records them."""
    import nibabel as nib

    if isinstance(loaded, nib.parrec.PARRECImage) and len(loaded.shape) > 3:
        return float(loaded.header.get_zooms()[3]), "sec"
    if isinstance(loaded, nib.brikhead.AFNIImage):
        steps, numbers = loaded.header.info.get("TAXIS_FLOATS"), loaded.header.info.get("TAXIS_NUMS")
        unit = AFNI_TIME_UNITS.get(int(numbers[2])) if numbers is not None and len(numbers) > 2 else None
        return (float(steps[1]), unit) if steps is not None and len(steps) > 1 and unit else None
    if isinstance(loaded, nib.minc1.Minc1Image):
        minc = loaded.dataobj.minc_file
        for name, dim in zip(minc._dim_names, minc._dims):
            units = getattr(dim, "units", b"")
            units = units.decode("ascii", "replace") if isinstance(units, bytes) else str(units)
            if name == "time" and units.strip().lower() in MINC_TIME_UNITS:
                return float(dim.step), MINC_TIME_UNITS[units.strip().lower()]
    return None
