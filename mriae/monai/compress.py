"""``Compress`` / ``Compressd``: an image (MetaTensor, array or image file path) → .mriae bytes
at one fidelity, through :func:`mriae.codec.compress_image`."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import ensure_tuple_rep

from mriae.codec import Stats, compress_image
from mriae.fidelity import Fidelity
from mriae.io.image import Image, fresh_nifti_source, names_a_label_map, read_image
from mriae.models.weights import DEFAULT_WEIGHTS
from mriae.monai.meta import MONAI_META, affine_of, jsonable_meta

_NOT_STORED = ("affine", "original_affine", "applied_operations", "pending_operations")


class Compress(Transform):
    """Compress an image to .mriae bytes.

    The input is a channel-first MetaTensor/tensor/array (every channel one 3D volume; its
    affine and JSON-able metadata travel in the file) or the path of an image file (read
    with :func:`mriae.io.read_image`, so its original header, dtype and format come back on
    decompression exactly as with ``mriae compress``).

    The fidelity is one of ``quality``, ``max_error``, ``lossless`` and ``psnr`` (at most one
    set, else ``ValueError`` here, when the transform is made; none: quality 5), as in
    :func:`mriae.compress`.

    Args:
        quality: network level, 1 (smallest) … 8 (best).
        spacing: voxel size (mm) to code on (undone on decode), ``None`` for the image's own.
        weights: weights to code with: the name of installed weights or a weights file's path.
        channel_dim: channel axis of array inputs (MONAI's convention: 0), ``None`` when the
            array is spatial-first (X, Y, Z[, N]) already.
        max_error: every voxel within this absolute error, in stored units (for a NIfTI
            path with ``scl_slope``, the raw stored values; a MetaTensor as loaded by
            ``LoadImage`` is already scaled), through the 3D context coder.
        lossless: bit-exact voxels through the context coder.
        psnr: the smallest file reaching at least this many dB (context coder or network).
    """

    def __init__(self, quality: int | None = None, spacing: Sequence[float] | None = None,
                 weights: str | os.PathLike = DEFAULT_WEIGHTS, channel_dim: int | None = 0, max_error: float | None = None,
                 lossless: bool = False, psnr: float | None = None) -> None:
        self.fidelity = Fidelity.of(quality, max_error, lossless, psnr)
        self.quality = self.fidelity.quality
        self.spacing = None if spacing is None else tuple(float(s) for s in ensure_tuple_rep(spacing, 3))
        self.weights = os.fspath(weights)
        self.channel_dim = channel_dim

    def image_of(self, img) -> tuple[Image, int | None]:
        """(core :class:`Image`, size of its file or ``None``) for any accepted input."""
        if isinstance(img, (str, os.PathLike)):
            return read_image(img), Path(img).stat().st_size
        array = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        if self.channel_dim is not None:
            array = np.moveaxis(array, self.channel_dim, -1)
            array = array[..., 0] if array.shape[-1] == 1 else array
        image = Image(np.ascontiguousarray(array), affine_of(img))
        image.source = fresh_nifti_source(image)
        if isinstance(img, MetaTensor):
            image.source[MONAI_META] = jsonable_meta(img.meta, skip=_NOT_STORED)
        return image, None

    def compress(self, img) -> tuple[bytes, Stats]:
        """(.mriae bytes, :class:`~mriae.codec.Stats`). An integer image whose file name marks
        a label map or mask (a path, or a MetaTensor's ``filename_or_obj``) is coded exactly."""
        image, file_size = self.image_of(img)
        name = img.meta.get("filename_or_obj") if isinstance(img, MetaTensor) else img
        label_map = isinstance(name, (str, os.PathLike)) and names_a_label_map(name)
        return compress_image(image, self.fidelity, self.spacing, self.weights, original_bytes=file_size,
                              label_map=label_map)

    def __call__(self, img) -> bytes:
        return self.compress(img)[0]


class Compressd(MapTransform):
    """Dictionary version of :class:`Compress`: ``d[key]`` (image or path) → .mriae bytes.

    Args:
        keys: keys of the images to compress.
        quality, max_error, lossless, psnr: the fidelity, at most one set (see :class:`Compress`).
        output_keys: where to put the bytes (default: replace ``keys``), one per key.
        stats_key_postfix: the compression statistics (bits/voxel, PSNR, bytes, coder,
            measured maximum error, fraction of voxels at the bound) go to
            ``d[f"{output_key}_{stats_key_postfix}"]``; ``None`` to leave them out.
    """

    def __init__(self, keys: KeysCollection, quality: int | None = None, spacing: Sequence[float] | None = None,
                 weights: str | os.PathLike = DEFAULT_WEIGHTS, channel_dim: int | None = 0,
                 output_keys: KeysCollection | None = None, stats_key_postfix: str | None = "stats",
                 allow_missing_keys: bool = False, max_error: float | None = None, lossless: bool = False,
                 psnr: float | None = None) -> None:
        super().__init__(keys, allow_missing_keys)
        self.compressor = Compress(quality, spacing, weights, channel_dim, max_error=max_error, lossless=lossless,
                                   psnr=psnr)
        self.output_keys = ensure_tuple_rep(output_keys, len(self.keys)) if output_keys else self.keys
        self.stats_key_postfix = stats_key_postfix

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key, out_key in self.key_iterator(d, self.output_keys):
            data_bytes, stats = self.compressor.compress(d[key])
            d[out_key] = data_bytes
            if self.stats_key_postfix:
                d[f"{out_key}_{self.stats_key_postfix}"] = {
                    "original_bytes": stats.original_bytes, "compressed_bytes": stats.compressed_bytes,
                    "voxels": stats.voxels, "bits_per_voxel": stats.bits_per_voxel, "ratio": stats.ratio,
                    "psnr": float(stats.psnr), "quality": self.compressor.quality,
                    "fidelity": str(self.compressor.fidelity), "coder": stats.coder,
                    "max_error": stats.max_error, "at_bound": stats.at_bound,
                }
        return d
