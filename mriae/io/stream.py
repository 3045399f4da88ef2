"""Images through pipes: an image read from a stream (stdin) and an image written to one (stdout).

A stream has no name, so its format is sniffed from its first bytes: gzip holding a NIfTI
header (.nii.gz), a NIfTI-1/NIfTI-2 single file (.nii), NRRD (.nrrd) and MetaImage with its
voxels inline (.mha). The readers need a file, so the stream is copied into a private
temporary folder (mode 0700), removed whatever happens, and the copy stops at
:func:`image_byte_limit` bytes: an endless stream is refused, not spooled until the disk is
full. An image written to a stream is made whole in such a folder first, so that every error
comes before its first byte reaches the stream.
"""

from __future__ import annotations

import re
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from mriae.io.image import _GZIP, Image, ImageError, write_image
from mriae.io.image import _READ_CHUNK as _CHUNK
from mriae.limits import Limits

STDIN_NAME = "<stdin>"
"""What messages call an image read from stdin."""
SNIFF_BYTES = 1 << 16
"""Bytes read before the format is decided: a NIfTI header (540 bytes at most), or the text
header of a NRRD or MetaImage file."""
STREAM_FORMATS = ".nii, .nii.gz, .nrrd or .mha"
"""The formats a stream may hold, for messages."""
_NIFTI_MAGIC = {348: (344, b"n+1\0"), 540: (4, b"n+2\0")}
"""sizeof_hdr of NIfTI-1 and NIfTI-2 → where their single-file magic is, and what it is."""
_NRRD_DATA_FILE = re.compile(rb"^data ?file\s*:", re.IGNORECASE | re.MULTILINE)
_META_KEY = re.compile(rb"\A\s*[A-Za-z][A-Za-z0-9_]*\s*=")
_META_DATA_FILE = re.compile(rb"^\s*ElementDataFile\s*=\s*(\S[^\r\n]*)", re.MULTILINE)


def image_byte_limit(limits: Limits | None = None) -> int:
    """The most bytes read from a stream as an image: 9 per voxel the voxel limits allow (8 of a
    float64 voxel, and room for gzip's framing of data that does not compress) and 1 MiB of
    header. ``MRIAE_MAX_VOXELS`` raises it with the voxel limit."""
    return 9 * (limits or Limits.from_environment()).max_voxels + (1 << 20)


def sniff_suffix(head: bytes, name: str = STDIN_NAME) -> str:
    """The image suffix of a file that starts with ``head``; ImageError naming ``name`` for
    data of another kind, and for a header whose voxels are in another file (.mhd, .nhdr)."""
    if not head:
        raise ImageError(f"{name}: empty (no image data)")
    if head[:2] == b"\x1f\x8b":
        try:
            inner = zlib.decompressobj(_GZIP).decompress(head, 544)
        except zlib.error:
            inner = b""
        if _is_nifti(inner):
            return ".nii.gz"
        raise ImageError(f"{name}: gzip data, but not a NIfTI image inside (a stream may hold {STREAM_FORMATS} data)")
    if _is_nifti(head):
        return ".nii"
    if head.startswith(b"NRRD"):
        if _NRRD_DATA_FILE.search(head.split(b"\n\n", 1)[0]):
            raise ImageError(f"{name}: a detached NRRD header (its voxels are in another file) cannot be read from a "
                             "stream; give the .nhdr file's path")
        return ".nrrd"
    data_file = _META_DATA_FILE.search(head) if _META_KEY.match(head) else None
    if data_file:
        if data_file.group(1).strip().upper() != b"LOCAL":
            raise ImageError(f"{name}: a MetaImage header whose voxels are in another file cannot be read from a "
                             "stream; give the .mhd file's path")
        return ".mha"
    raise ImageError(f"{name}: not a NIfTI, NRRD or MetaImage image (a stream may hold {STREAM_FORMATS} data)")


def _is_nifti(head: bytes) -> bool:
    """True if ``head`` starts a single-file NIfTI-1 or NIfTI-2 image (either byte order)."""
    for order in "<>":
        if len(head) >= 4:
            place = _NIFTI_MAGIC.get(struct.unpack_from(order + "i", head)[0])
            if place and head[place[0]:place[0] + 4] == place[1]:
                return True
    return False


@contextmanager
def spooled_image(stream: BinaryIO, name: str = STDIN_NAME, limit: int | None = None) -> Iterator[Path]:
    """A private file holding what ``stream`` holds, named by its sniffed format (see
    :func:`sniff_suffix`), removed on the way out whatever happens. ImageError naming ``name``
    for data of another kind or a stream over ``limit`` bytes (default :func:`image_byte_limit`);
    an ImageError raised inside that names the private file is re-raised naming ``name``."""
    limit = image_byte_limit() if limit is None else limit
    head = _read_up_to(stream, min(SNIFF_BYTES, limit + 1))
    suffix = sniff_suffix(head, name)
    with tempfile.TemporaryDirectory(prefix="mriae-stream-") as folder:
        path = Path(folder) / f"stream{suffix}"
        with open(path, "wb") as spool:
            size = len(head)
            spool.write(head)
            while size <= limit and (piece := stream.read(_CHUNK)):
                size += len(piece)
                spool.write(piece)
        if size > limit:
            raise ImageError(f"{name}: more than {limit:,} bytes, more than an image within the voxel limits can "
                             "hold (set MRIAE_MAX_VOXELS to allow more)")
        try:
            yield path
        except ImageError as error:
            if str(path) not in str(error):
                raise
            raise ImageError(str(error).replace(str(path), name)) from error


def _read_up_to(stream: BinaryIO, size: int) -> bytes:
    """The first ``size`` bytes of ``stream`` (fewer if it ends first): a pipe's reads may
    return less than asked."""
    pieces, count = [], 0
    while count < size and (piece := stream.read(size - count)):
        pieces.append(piece)
        count += len(piece)
    return b"".join(pieces)


def write_image_to(image: Image, stream: BinaryIO, suffix: str) -> None:
    """Write ``image`` to ``stream`` as a file of the single-file format ``suffix`` (.nii,
    .nii.gz, .nrrd, .mha, .mgz, .mgh: those of :data:`mriae.formats.OUTPUT_FORMATS` that are
    one file). The file is made whole in a private folder first, so that every error comes
    before the first byte is written."""
    with tempfile.TemporaryDirectory(prefix="mriae-stream-") as folder:
        path = Path(folder) / f"stream{suffix}"
        write_image(image, path)
        with open(path, "rb") as made:
            shutil.copyfileobj(made, stream, _CHUNK)
