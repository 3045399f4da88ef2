"""Python API: compress and decompress files, arrays and bytes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mriae.codec import DEFAULT_QUALITY, Progress, Stats, compress_image, decompress_image
from mriae.io import Image, read_image, write_bytes_atomic, write_image

PathLike = str | os.PathLike


def compress(
    source: PathLike | np.ndarray,
    output: PathLike | None = None,
    *,
    affine: np.ndarray | None = None,
    quality: int = DEFAULT_QUALITY,
    spacing: tuple[float, float, float] | None = None,
    progress: Progress | None = None,
) -> tuple[bytes, Stats]:
    """Compress an image file or an array (with its 4×4 ``affine``; identity if omitted).

    Returns the .mriae bytes and their :class:`~mriae.codec.Stats`; also writes them
    atomically to ``output`` if given.
    """
    if isinstance(source, np.ndarray):
        image = Image(source, np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64))
        file_size = None
    else:
        image = read_image(source)
        file_size = Path(source).stat().st_size
    data, stats = compress_image(image, quality, spacing, original_bytes=file_size, progress=progress)
    if output is not None:
        write_bytes_atomic(output, data)
    return data, stats


def decompress(source: PathLike | bytes, output: PathLike | None = None, *, progress: Progress | None = None) -> Image:
    """Decode .mriae bytes or a .mriae file to an :class:`~mriae.io.Image` (array + affine).

    Also writes it atomically to ``output`` (NIfTI/NRRD/MetaImage by its suffix) if given.
    """
    data = bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
    image = decompress_image(data, progress=progress)
    if output is not None:
        write_image(image, output)
    return image
