"""MONAI metadata of decoded images: the affine and header fields ``LoadImage`` users expect,
and the MetaTensor metadata that travels inside a .mriae file.

The array is spatial-first (X, Y, Z[, N]) as MONAI's ``NibabelReader`` gives it;
``affine``/``original_affine`` are the file's RAS affine unchanged, ``spatial_shape`` the first
three axes, ``original_channel_dim`` ``-1`` for a series of volumes and "no channel" for one
volume. When the original was a NIfTI file, its header fields (``pixdim``, ``dim``,
``qform_code``, ...) are in the metadata too.
"""

from __future__ import annotations

import base64
import io
import math
import os
from collections.abc import Sequence

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.utils import to_affine_nd

from mriae.io.image import Image

MONAI_META = "monai_meta"
"""Key of ``Image.source`` holding the JSON-able MONAI metadata a MetaTensor was compressed with."""


def affine_of(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """4×4 float64 affine of a MetaTensor (identity for plain arrays and tensors)."""
    if isinstance(img, MetaTensor):
        affine = img.affine.detach().cpu().numpy().astype(np.float64)
        return np.asarray(to_affine_nd(3, affine)) if affine.shape != (4, 4) else affine
    return np.eye(4)


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
