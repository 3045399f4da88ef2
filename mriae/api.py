"""Python API: compress and decompress files, arrays and bytes.

Outputs follow :mod:`mriae.io.atomic`: checked before any work, written whole or not at
all, and an existing file (or the data file of a .mhd/.nhdr pair) is never replaced unless
``force=True``. Importing this module does not import torch: the codec loads when something
is compressed or decompressed, so that reading a file's header (``mriae info``) starts fast.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from mriae.container import MAGIC, ContainerError
from mriae.fidelity import Fidelity
from mriae.header import read_header
from mriae.io import Image, image_files, read_image, write_bytes_atomic, write_image
from mriae.io.atomic import check_targets
from mriae.io.image import names_a_label_map, output_suffix, source_files
from mriae.io.scale import written_as
from mriae.io.stream import STDIN_NAME
from mriae.parallel import checked_device, using

if TYPE_CHECKING:
    from mriae.codec import Progress, Stats

PathLike = str | os.PathLike
MAX_FILE_BYTES = 4 << 30
"""Largest .mriae file read: far above any real one (a 2 G voxel image, the most the
default limits allow, at 16 bits/voxel), yet an endless stream is refused."""
_READ_CHUNK = 1 << 20


def compress(
    source: PathLike | np.ndarray,
    output: PathLike | None = None,
    *,
    affine: np.ndarray | None = None,
    quality: int | None = None,
    max_error: float | None = None,
    lossless: bool = False,
    psnr: float | None = None,
    spacing: tuple[float, float, float] | None = None,
    progress: Progress | None = None,
    force: bool = False,
    threads: int | None = None,
    device: str = "cpu",
    series: str | None = None,
) -> tuple[bytes, Stats]:
    """Compress an image file, a folder holding a DICOM series, or an array (with its 4×4
    ``affine``; identity if omitted).

    Fidelity — give at most one (ValueError otherwise, before any work; none: quality 5):

    * ``quality``: a level of the network, 1 (smallest) … 8 (best);
    * ``max_error``: every voxel decodes within this absolute error, in the image's stored
      units (for a NIfTI with ``scl_slope``, the raw stored values: the physical error is
      ``max_error`` × abs(scl_slope)), through the 3D context coder; 0 means lossless;
    * ``lossless``: bit-exact voxels (context coder);
    * ``psnr``: the smallest file reaching at least this PSNR in dB (peak = max − min),
      from the network, the context coder or the wavelet coder, whichever is smallest.

    Returns the .mriae bytes and their :class:`~mriae.codec.Stats` (``coder``, ``psnr``,
    measured ``max_error``, ``at_bound``); also writes them to ``output`` if given
    (FileExistsError if it exists, unless ``force``). An integer file whose name marks a
    label map or mask (``*_mask``, ``*_dseg``, ``aseg``, …) is coded exactly.

    ``threads``: tiles coded at once (None: every core); the bytes do not depend on it.
    ``device``: where the network runs: "cpu", "cuda", "cuda:N", or "auto" (a CUDA GPU when
    torch sees one); a GPU's floats may give other bytes than the CPU's, decodable anywhere
    (:mod:`mriae.parallel`); ValueError for a CUDA device torch does not see.

    ``series``: the Series Instance UID to read from a DICOM folder that holds several
    (:func:`mriae.io.dicom.read_series`: stored values, key attributes kept).
    """
    compress_image = _pipeline().compress_image

    fidelity = Fidelity.of(quality, max_error, lossless, psnr)
    _check_device(device)
    if output is not None:
        refuse_replacing_the_input(source, output)
        check_targets([output], force)
    if isinstance(source, np.ndarray):
        image = Image(source, checked_affine(affine))
        file_size, label_map = None, False
    elif Path(source).is_dir() and not output_suffix(Path(source)):
        from mriae.io.dicom import read_series  # only for DICOM: `mriae info` starts without it

        image, file_size = read_series(source, series)
        label_map = False
    else:
        if series is not None:
            raise ValueError(f"{source}: series= (--series) applies to a folder of DICOM files")
        image = read_image(source)
        file_size = sum(file.stat().st_size for file in source_files(source))  # a pair's .hdr and .img
        label_map = names_a_label_map(source)
    with using(threads, device):
        data, stats = compress_image(image, fidelity, spacing, original_bytes=file_size, progress=progress,
                                     label_map=label_map)
    if output is not None:
        write_bytes_atomic(output, data, overwrite=force)
    return data, stats


def _check_device(device: str) -> None:
    """ValueError (one line), before any work, unless ``device`` is a device word
    (mriae.parallel.checked_device) that torch can run the network on."""
    from mriae.tiled import resolve_device

    resolve_device(checked_device(device))


def _pipeline() -> ModuleType:
    """mriae.codec, imported (with torch) while Ctrl-C is held back: an interrupt inside
    torch's native start-up can abort the process ("terminate called…", SIGABRT) instead of
    raising KeyboardInterrupt; held back, it arrives as one as soon as the import is done."""
    main = threading.current_thread() is threading.main_thread() and hasattr(signal, "pthread_sigmask")
    if main:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        import mriae.codec
    finally:
        if main:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    return mriae.codec


def refuse_replacing_the_input(source: PathLike | np.ndarray | bytes, output: PathLike) -> None:
    """ValueError if ``output`` is the ``source`` file itself: never replaced, even with ``force``."""
    if isinstance(source, (str, os.PathLike)) and Path(output).resolve() == Path(source).resolve():
        raise ValueError(f"output {output} would replace the input")


def checked_affine(affine: np.ndarray | None) -> np.ndarray:
    """``affine`` as a 4×4 float64 array (identity if None); ValueError unless it is a 4×4
    matrix of finite numbers."""
    if affine is None:
        return np.eye(4)
    matrix = np.asarray(affine, dtype=np.float64)
    if matrix.shape != (4, 4):
        raise ValueError(f"affine must be a 4×4 matrix of finite numbers (got shape {matrix.shape})")
    if not np.isfinite(matrix).all():
        raise ValueError("affine must be a 4×4 matrix of finite numbers (got non-finite values)")
    return matrix


def decompress(
    source: PathLike | bytes,
    output: PathLike | None = None,
    *,
    roi: tuple[slice, slice, slice] | None = None,
    downsample: int = 1,
    progress: Progress | None = None,
    force: bool = False,
    threads: int | None = None,
    device: str = "cpu",
    format: str | None = None,
) -> Image:
    """Decode .mriae bytes or a .mriae file to an :class:`~mriae.io.Image` (array + affine).

    ``roi``: only this region of every 3D volume, three slices of voxel indices (x, y, z),
    half-open like Python's, e.g. ``(slice(10, 74), slice(20, 84), slice(0, 64))``
    (ValueError unless within the image and non-empty). It comes back as an image of the
    region, its affine's origin moved to the region's first voxel, its header otherwise that
    of a full decode. Network-coded volumes decode only the tiles the region needs;
    bounded, lossless and exactly stored volumes are decoded whole and cropped.

    ``downsample`` (2 or 4; 1: none): a lower-resolution preview, ceil(n / f) voxels per
    spatial axis, with an affine that places each of its voxels where what it holds lies
    (not with ``roi``; ValueError for another factor). Network-coded volumes give the block
    average of their full decode (no faster than one); bounded and lossless volumes a
    subsample, ``full[::f, ::f, ::f]`` exactly, decoded from the coarse levels of their
    stream only (several times faster; the voxels' checksum, which covers the whole volume,
    cannot be verified then); exactly stored ones (label maps) a subsample of a full decode.
    See :func:`mriae.codec.decompress_image`.

    Also writes it to ``output`` (NIfTI/NRRD/MetaImage/MGH/Analyze pair by its suffix) if given
    (FileExistsError if it or its data file exists, unless ``force``). ``threads``: tiles
    decoded at once (None: every core); the voxels do not depend on it. ``device``: where the
    network runs, as for :func:`compress` (a GPU's voxels equal the CPU's to float rounding).

    ``format="dicom"``: ``output`` is a folder, and a file made from a DICOM series is
    written back as one (:func:`mriae.io.dicom.write_series`: one file per slice, key
    attributes as they were, new UIDs); FileExistsError if the folder holds anything,
    unless ``force``, or DICOM files of another series, even with ``force``
    (:func:`mriae.io.dicom.check_series_folder`). Written to another format than its own, a
    scaled image (NIfTI ``scl_slope``/``scl_inter``, a pair's scale, a DICOM rescale) keeps its
    physical values: the scale in a NIfTI/pair header when one float32 scale serves the whole
    image, else the physical values as float32 or float64 (:mod:`mriae.io.scale`); ImageError
    before decoding when the format cannot hold them (MGH, float32 at most).
    """
    pipeline = _pipeline()
    check_downsample, decompress_image = pipeline.check_downsample, pipeline.decompress_image

    check_downsample(downsample)
    _check_device(device)
    if format not in (None, "dicom"):
        raise ValueError(f"format must be 'dicom' or None (got {format!r})")
    if format == "dicom" and output is None:
        raise ValueError("format='dicom' writes a series into a folder: give output")
    if output is not None:
        refuse_replacing_the_input(source, output)
        if format == "dicom":
            from mriae.io.dicom import check_series_folder

            check_series_folder(output, force)
        else:
            check_targets(image_files(output), force)
    data = bytes(source) if isinstance(source, (bytes, bytearray)) else read_mriae(source)
    header = read_header(data)
    if format == "dicom" and header.image.source.get("kind") != "dicom":
        raise ValueError(f"made from a {header.image.suffix} file, not a DICOM series: only those can be "
                         "written as DICOM")
    if output is not None and format is None:
        written_as(header.image.source, header.image.dtype, output_suffix(Path(output)))  # refused before decoding
    with using(threads, device):
        image = decompress_image(data, progress=progress, roi=roi, downsample=downsample)
    if format == "dicom":
        from mriae.io.dicom import write_series

        write_series(image, output, overwrite=force, lossy=not header.lossless)
    elif output is not None:
        write_image(image, output, overwrite=force)
    return image


def read_mriae(path: PathLike) -> bytes:
    """The bytes of the .mriae file ``path``, read only as far as one can reach: something
    that does not start like one (``/dev/zero``) is refused after 4 bytes, and a stream is
    read up to :data:`MAX_FILE_BYTES`. ContainerError names the file and the problem."""
    path = Path(path)
    if path.is_dir():
        raise ContainerError(f"{path}: is a folder, not an .mriae file")
    with open(path, "rb") as stream:
        return read_mriae_stream(stream, str(path))


def read_mriae_stream(stream: BinaryIO, name: str = STDIN_NAME) -> bytes:
    """The bytes of the .mriae file ``stream`` holds (stdin), read as :func:`read_mriae` reads
    a file; ContainerError names ``name`` and the problem."""
    if stream.read(len(MAGIC)) != MAGIC:
        raise ContainerError(f"{name}: not an .mriae file (bad magic bytes)")
    pieces, size = [MAGIC], len(MAGIC)
    while piece := stream.read(_READ_CHUNK):
        size += len(piece)
        if size > MAX_FILE_BYTES:
            raise ContainerError(f"{name}: larger than {MAX_FILE_BYTES:,} bytes, which no .mriae file is")
        pieces.append(piece)
    return b"".join(pieces)
