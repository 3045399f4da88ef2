"""MONAI ``ImageReader``s: :class:`MriaeReader` for .mriae files, known to ``LoadImage`` by the
name ``MriaeReader``, and :class:`ImageFileReader` for the image files ``mriae compress`` reads.

``import mriae.monai`` registers it in MONAI's ``SUPPORTED_READERS`` (the table from which
``LoadImage`` builds its default readers and resolves reader names), so plain ``LoadImage()``
picks it for ``.mriae`` paths and ``LoadImage(reader="MriaeReader")`` finds it by name;
``reader=MriaeReader()`` or the class work as well.

The reader decodes through :func:`mriae.codec.decompress_image` (the one pipeline) and gives
the metadata of :func:`mriae.monai.meta.image_meta`. It decodes in :meth:`MriaeReader.get_data`,
not in :meth:`MriaeReader.read`: ``LoadImage`` with a named reader catches what ``read`` raises
and tries its other readers, which would turn a damaged .mriae file into "cannot find a
suitable reader". So ``read`` refuses only files that are not .mriae files (neither the suffix
nor the magic bytes; MONAI then tries its other readers), and a damaged .mriae file raises
:class:`MriaeReadError` naming the file and the problem (``checksum mismatch: ...``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from monai.data.image_reader import ImageReader, _copy_compatible_dict, _stack_images
from monai.transforms.io.array import SUPPORTED_READERS
from monai.utils import ensure_tuple

from mriae.codec import decompress_image
from mriae.container import MAGIC
from mriae.formats import MRIAE_SUFFIX
from mriae.io.dicom import holds_dicom_files
from mriae.io.image import Image, output_suffix, read_image
from mriae.monai.meta import image_meta, spatial_first

READER_NAME = "mriaereader"
"""Key of :class:`MriaeReader` in MONAI's ``SUPPORTED_READERS`` (names are looked up lower-cased)."""


class MriaeReadError(ValueError):
    """A .mriae file that cannot be read; the message names the file."""


def decode_file(path: str | os.PathLike) -> Image:
    """Decode one .mriae file; failures raise :class:`MriaeReadError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise MriaeReadError(f"{path}: no such file")
    try:
        return decompress_image(path.read_bytes())
    except (ValueError, KeyError) as error:
        raise MriaeReadError(f"{path}: cannot decode ({error})") from error


class _FileReader(ImageReader):
    """An ``ImageReader`` of files mriae reads into :class:`~mriae.io.image.Image`: ``read``
    claims the files, ``get_data`` reads them (so that ``LoadImage`` does not swallow their
    errors) into spatial-first arrays with the metadata of :func:`~mriae.monai.meta.image_meta`.

    Args:
        dtype: cast the voxels to this dtype (``None`` keeps the file's dtype; ``LoadImage``
            applies its own ``dtype`` afterwards anyway).
        kwargs: ignored (``LoadImage`` passes its extra arguments to every reader).
    """

    def __init__(self, dtype: np.dtype | str | None = None, **kwargs) -> None:
        super().__init__()
        self.dtype = dtype

    def claims(self, path: Path) -> bool:
        """True when ``path`` is for this reader (``read`` refuses the others)."""
        return self.verify_suffix(path)

    def load(self, path: Path) -> Image:
        """Read one file; errors name it."""
        raise NotImplementedError

    def read(self, data: Sequence[os.PathLike] | os.PathLike, **kwargs) -> list[Path] | Path:
        """The paths in ``data``, to read in :meth:`get_data`; MriaeReadError for a file that is
        not for this reader (``LoadImage`` answers it by trying its other readers)."""
        paths = [Path(name) for name in ensure_tuple(data)]
        for path in paths:
            if not self.claims(path):
                raise MriaeReadError(f"{path}: not a file {type(self).__name__} reads")
        return paths if len(paths) > 1 else paths[0]

    def get_data(self, img: Sequence[Path] | Path) -> tuple[np.ndarray, dict]:
        """Read the files :meth:`read` returned: (spatial-first array, several files stacked
        along a first axis, and their MONAI metadata)."""
        arrays: list[np.ndarray] = []
        compatible: dict = {}
        for path in ensure_tuple(img):
            image = self.load(path)
            array = spatial_first(image.array)
            if self.dtype is not None:
                array = array.astype(self.dtype)
            arrays.append(array)
            _copy_compatible_dict(image_meta(Image(array, image.affine, image.suffix, image.source), str(path)),
                                  compatible)
        return _stack_images(arrays, compatible), compatible


class MriaeReader(_FileReader):
    """Read .mriae files for ``LoadImage``/``LoadImaged`` (``reader="MriaeReader"``, the class or an
    instance; ``dtype`` as in :class:`_FileReader`). Files named ``*.mriae`` or starting with the
    magic bytes are claimed; a damaged one raises :class:`MriaeReadError` naming it."""

    def verify_suffix(self, filename: Sequence[os.PathLike] | os.PathLike) -> bool:
        """True when every name ends with ``.mriae`` (any case)."""
        return all(str(name).lower().endswith(MRIAE_SUFFIX) for name in ensure_tuple(filename))

    def claims(self, path: Path) -> bool:
        """Named like a .mriae file, missing (to be named as such), or starting with the magic bytes."""
        if self.verify_suffix(path) or not path.is_file():
            return True
        with path.open("rb") as stream:
            return stream.read(len(MAGIC)) == MAGIC

    def load(self, path: Path) -> Image:
        return decode_file(path)


class ImageFileReader(_FileReader):
    """Read image files as ``mriae compress`` does (:func:`mriae.io.read_image`: every input
    format the README lists, with the original header), into the same array layout and
    metadata as :class:`MriaeReader`, so that an original and its .mriae file load alike.
    Not registered with MONAI (its own readers keep those suffixes): pass ``reader=ImageFileReader()``."""

    def verify_suffix(self, filename: Sequence[os.PathLike] | os.PathLike) -> bool:
        """True when every name has a suffix mriae reads or is a folder of DICOM files."""
        return all(output_suffix(Path(name)) or holds_dicom_files(name) for name in ensure_tuple(filename))

    def load(self, path: Path) -> Image:
        return read_image(path)


def register_reader() -> None:
    """Make ``LoadImage()`` read .mriae files and ``LoadImage(reader="MriaeReader")`` find this reader."""
    SUPPORTED_READERS[READER_NAME] = MriaeReader
