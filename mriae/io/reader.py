"""A MONAI ``ImageReader`` for .mriae files, so ``LoadImage(reader=MriaeReader())`` and
``LoadImaged`` read compressed volumes into MetaTensors with their original affine.

The reader decodes through :func:`mriae.codec.decompress_image` (the one pipeline) and
fills the metadata the way MONAI's ``NibabelReader`` does: the array is spatial-first
(X, Y, Z[, N]), ``affine``/``original_affine`` are the file's RAS affine unchanged,
``spatial_shape`` the first three axes, ``original_channel_dim`` ``-1`` for a series of
volumes and "no channel" for one volume. When the original was a NIfTI file, its header
fields (``pixdim``, ``dim``, ``qform_code``, ...) are in the metadata too.
"""

from __future__ import annotations

import base64
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.data.image_reader import ImageReader, _copy_compatible_dict, _stack_images
from monai.utils import ensure_tuple

from mriae.codec import decompress_image
from mriae.container import ContainerError
from mriae.formats import MRIAE_SUFFIX
from mriae.io.image import Image

MONAI_META = "monai_meta"
"""Key of ``Image.source`` holding the JSON-able MONAI metadata a MetaTensor was compressed with."""


class MriaeReadError(ValueError):
    """A .mriae file that cannot be read; the message names the file."""


def decode_file(path: str | os.PathLike) -> Image:
    """Decode one .mriae file; failures raise :class:`MriaeReadError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise MriaeReadError(f"{path}: no such file")
    try:
        return decompress_image(path.read_bytes())
    except (ContainerError, ValueError, KeyError) as error:
        raise MriaeReadError(f"{path}: cannot decode ({error})") from error


def _nifti_header_meta(source: dict) -> dict:
    """NibabelReader-style metadata from the original NIfTI header bytes kept in ``source``."""
    try:
        raw = base64.b64decode(source["header"])
        header_class = nib.Nifti2Header if raw[:4] == (540).to_bytes(4, "little") else nib.Nifti1Header
        header = header_class.from_fileobj(io.BytesIO(raw))
        try:
            header = header.as_byteswapped("<")
        except ValueError:
            pass
        return {key: value for key, value in dict(header).items() if not isinstance(value, np.ndarray)
                or value.dtype.kind in "iufb"}
    except Exception:  # noqa: BLE001 - a damaged header only costs the extra fields
        return {}


def restore_meta(record: dict) -> dict:
    """Inverse of :func:`jsonable_meta`: lists of numbers become numpy arrays again."""
    meta = {}
    for key, value in record.items():
        if isinstance(value, list) and value and all(isinstance(v, (int, float, list)) for v in value):
            try:
                value = np.asarray(value)
            except ValueError:
                pass
        meta[key] = value
    return meta


def jsonable_meta(meta: dict, skip: Sequence[str] = ()) -> dict:
    """The entries of a MONAI meta dict that survive JSON (arrays and tensors as lists)."""
    out: dict = {}
    for key, value in meta.items():
        if key in skip or not isinstance(key, str):
            continue
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "iufb":
                continue
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        elif isinstance(value, (list, tuple)):
            value = [v.item() if isinstance(v, np.generic) else v for v in value]
            if not all(isinstance(v, (int, float, str, bool)) for v in value):
                continue
        elif isinstance(value, os.PathLike):
            value = str(value)
        elif value is not None and not isinstance(value, (int, float, str, bool)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        out[key] = value
    return out


def image_meta(image: Image, filename: str | None = None) -> dict:
    """MONAI metadata of a decoded image whose array is spatial-first."""
    meta: dict = {}
    if image.source.get("kind") == "nifti":
        meta.update(_nifti_header_meta(image.source))
    meta.update(restore_meta(image.source.get(MONAI_META, {})))
    affine = np.asarray(image.affine, dtype=np.float64)
    meta["affine"] = affine.copy()
    meta["original_affine"] = affine.copy()
    meta["spatial_shape"] = np.asarray((tuple(image.array.shape) + (1, 1, 1))[:3])
    meta["original_channel_dim"] = -1 if image.array.ndim > 3 else float("nan")
    meta["space"] = "RAS"
    if filename is not None:
        meta["filename_or_obj"] = str(filename)
    return meta


def spatial_first(array: np.ndarray) -> np.ndarray:
    """(X, Y, Z) for one volume, (X, Y, Z, N) for a series (further axes folded into N), in
    native byte order (a big-endian original decodes to big-endian voxels, which torch refuses)."""
    array = (array.reshape(tuple(array.shape) + (1,) * (3 - array.ndim)) if array.ndim < 3 else array)
    if array.ndim > 4:
        array = array.reshape(array.shape[:3] + (-1,), order="F")
    return array.astype(array.dtype.newbyteorder("="), copy=False)


class MriaeReader(ImageReader):
    """Read .mriae files for ``LoadImage``/``LoadImaged``: ``reader=MriaeReader()`` (or the class).

    Args:
        dtype: cast the decoded voxels to this dtype (``None`` keeps the dtype stored in the file;
            ``LoadImage`` applies its own ``dtype`` afterwards anyway).
    """

    def __init__(self, dtype: np.dtype | str | None = None, **kwargs) -> None:
        super().__init__()
        self.dtype = dtype
        self.kwargs = kwargs

    def verify_suffix(self, filename: Sequence[os.PathLike] | os.PathLike) -> bool:
        return all(str(name).lower().endswith(MRIAE_SUFFIX) for name in ensure_tuple(filename))

    def read(self, data: Sequence[os.PathLike] | os.PathLike, **kwargs) -> list[tuple[Image, str]] | tuple[Image, str]:
        images = [(decode_file(name), str(name)) for name in ensure_tuple(data)]
        return images if len(images) > 1 else images[0]

    def get_data(self, img) -> tuple[np.ndarray, dict]:
        arrays: list[np.ndarray] = []
        compatible: dict = {}
        items = [img] if isinstance(img, tuple) else list(img)
        for image, name in items:
            array = spatial_first(image.array)
            if self.dtype is not None:
                array = array.astype(self.dtype)
            arrays.append(array)
            meta = image_meta(Image(array, image.affine, image.suffix, image.source), name)
            _copy_compatible_dict(meta, compatible)
        return _stack_images(arrays, compatible), compatible
