"""mriae as MONAI transforms: array transforms and their dictionary (``...d``) versions.

* :class:`ToNetworkGrid` / :class:`ToNetworkGridd` — the stride-compatible (optional)
  resample + edge-pad step, invertible: ``Invertd`` crops and resamples back.
* :class:`Compress` / :class:`Compressd` — image (MetaTensor, array or image file path) →
  .mriae bytes.
* :class:`Decompress` / :class:`Decompressd` — .mriae bytes or path → channel-first
  MetaTensor with the original affine and metadata.
* :class:`SaveMriae` / :class:`SaveMriaed` — write .mriae bytes to a folder.

They follow MONAI's conventions (channel-first MetaTensors, ``keys``,
``allow_missing_keys``) and wrap the core: :mod:`mriae.transforms.geometry` for grids,
:mod:`mriae.codec` for coding. Nothing here pads, resamples or codes on its own.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.utils import to_affine_nd
from monai.transforms import InvertibleTransform, MapTransform, Transform
from monai.utils import TraceKeys, ensure_tuple_rep, get_equivalent_dtype

from mriae.codec import Stats, compress_image, decompress_image
from mriae.fidelity import Fidelity
from mriae.formats import MRIAE_SUFFIX
from mriae.io.atomic import check_targets, write_bytes_atomic
from mriae.io.image import Image, file_stem, fresh_nifti_source, names_a_label_map, read_image
from mriae.io.reader import (
    MONAI_META,
    MriaeReadError,
    decode_file,
    image_meta,
    jsonable_meta,
    spatial_first,
)
from mriae.models.weights import DEFAULT_WEIGHTS, load_codec
from mriae.transforms.geometry import GridPlan, from_network_grid, plan, to_network_grid

__all__ = [
    "Compress", "Compressd", "Decompress", "Decompressd", "SaveMriae", "SaveMriaed", "ToNetworkGrid", "ToNetworkGridd",
]

PathLike = str | os.PathLike
_NOT_STORED = ("affine", "original_affine", "applied_operations", "pending_operations")

OVERWRITE = "overwrite=True replaces it"
"""How the MONAI transforms and the bundle let an existing output be replaced."""


def _affine_of(img) -> np.ndarray:
    """4×4 float64 affine of a MetaTensor (identity for plain arrays)."""
    if isinstance(img, MetaTensor):
        affine = img.affine.detach().cpu().numpy().astype(np.float64)
        return np.asarray(to_affine_nd(3, affine)) if affine.shape != (4, 4) else affine
    return np.eye(4)


def _spatial(img: torch.Tensor | np.ndarray) -> tuple[int, ...]:
    return tuple(int(n) for n in img.shape[1:])


# --------------------------------------------------------------------------- network grid


class ToNetworkGrid(InvertibleTransform):
    """Resample (optional) and edge-pad a channel-first image to the grid the network's strides divide.

    Every channel is one 3D volume; the :class:`~mriae.transforms.geometry.GridPlan` is
    recorded in the MetaTensor's applied operations, so :meth:`inverse` (and ``Invertd``)
    crops the padding and resamples back onto the original grid and affine.

    Args:
        spacing: voxel size (mm) to code on, or ``None`` to keep the image's grid.
        levels: stride-2 stages of the network; ``None`` reads them from ``weights``.
        weights: installed weights whose network the grid is planned for.
    """

    def __init__(self, spacing: Sequence[float] | None = None, levels: int | None = None,
                 weights: str = DEFAULT_WEIGHTS) -> None:
        self.spacing = None if spacing is None else tuple(float(s) for s in ensure_tuple_rep(spacing, 3))
        self.levels = levels
        self.weights = weights

    def _levels(self) -> int:
        return self.levels if self.levels is not None else load_codec(self.weights).model.config.levels

    def plan(self, img: torch.Tensor) -> GridPlan:
        return plan(_spatial(img), _affine_of(img), self._levels(), self.spacing)

    def __call__(self, img: torch.Tensor | np.ndarray) -> MetaTensor:
        img = img if isinstance(img, MetaTensor) else MetaTensor(torch.as_tensor(img))
        if img.ndim != 4:
            raise ValueError(f"ToNetworkGrid expects a channel-first 3D image (C, X, Y, Z), got shape {tuple(img.shape)}")
        grid = self.plan(img)
        volumes = img.detach().cpu().numpy()
        padded = torch.cat([to_network_grid(volume, grid)[0] for volume in volumes])
        out = MetaTensor(padded, meta=img.meta, applied_operations=list(img.applied_operations))
        out.affine = torch.as_tensor(np.asarray(grid.coding_affine).reshape(4, 4), dtype=torch.float64)
        self.push_transform(out, orig_size=grid.shape, extra_info={"grid": grid.to_dict()})
        return out

    def inverse(self, data: torch.Tensor) -> MetaTensor:
        transform = self.pop_transform(data)
        grid = GridPlan.from_dict(transform[TraceKeys.EXTRA_INFO]["grid"])
        return self.from_grid(data, grid)

    @staticmethod
    def from_grid(data: torch.Tensor, grid: GridPlan) -> MetaTensor:
        """Crop and resample ``data`` (C, *padded_shape) back onto ``grid``'s original grid."""
        if tuple(data.shape[1:]) != grid.padded_shape:
            raise ValueError(f"cannot invert ToNetworkGrid: expected spatial shape {grid.padded_shape}, "
                             f"got {tuple(data.shape[1:])}")
        channels = [from_network_grid(channel[None, None].float(), grid) for channel in data.detach().cpu()]
        back = torch.as_tensor(np.stack(channels))
        out = MetaTensor(back, meta=data.meta if isinstance(data, MetaTensor) else None,
                         applied_operations=list(getattr(data, "applied_operations", [])))
        out.affine = torch.as_tensor(np.asarray(grid.affine).reshape(4, 4), dtype=torch.float64)
        return out


class ToNetworkGridd(MapTransform, InvertibleTransform):
    """Dictionary version of :class:`ToNetworkGrid`."""

    def __init__(self, keys: KeysCollection, spacing: Sequence[float] | None = None, levels: int | None = None,
                 weights: str = DEFAULT_WEIGHTS, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = ToNetworkGrid(spacing, levels, weights)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform.inverse(d[key])
        return d


# --------------------------------------------------------------------------- compress


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
        weights: installed weights to code with.
        channel_dim: channel axis of array inputs (MONAI's convention: 0), ``None`` when the
            array is spatial-first (X, Y, Z[, N]) already.
        max_error: every voxel within this absolute error, in stored units (for a NIfTI
            path with ``scl_slope``, the raw stored values; a MetaTensor as loaded by
            ``LoadImage`` is already scaled), through the 3D context coder.
        lossless: bit-exact voxels through the context coder.
        psnr: the smallest file reaching at least this many dB (context coder or network).
    """

    def __init__(self, quality: int | None = None, spacing: Sequence[float] | None = None,
                 weights: str = DEFAULT_WEIGHTS, channel_dim: int | None = 0, max_error: float | None = None,
                 lossless: bool = False, psnr: float | None = None) -> None:
        self.fidelity = Fidelity.of(quality, max_error, lossless, psnr)
        self.quality = self.fidelity.quality
        self.spacing = None if spacing is None else tuple(float(s) for s in ensure_tuple_rep(spacing, 3))
        self.weights = weights
        self.channel_dim = channel_dim

    def image_of(self, img) -> tuple[Image, int | None]:
        """(core :class:`Image`, size of its file or ``None``) for any accepted input."""
        if isinstance(img, (str, os.PathLike)):
            return read_image(img), Path(img).stat().st_size
        array = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        if self.channel_dim is not None:
            array = np.moveaxis(array, self.channel_dim, -1)
            array = array[..., 0] if array.shape[-1] == 1 else array
        image = Image(np.ascontiguousarray(array), _affine_of(img))
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
                 weights: str = DEFAULT_WEIGHTS, channel_dim: int | None = 0,
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


# --------------------------------------------------------------------------- decompress


class Decompress(Transform):
    """Decode .mriae bytes or a .mriae file to a channel-first MetaTensor (C, X, Y, Z).

    The affine is the original's, unchanged; the metadata is what ``LoadImage`` with
    :class:`~mriae.io.reader.MriaeReader` gives (plus the MetaTensor's own metadata when it
    was compressed with :class:`Compress`). One volume gives one channel; a series of N
    volumes gives N channels.

    Args:
        dtype: dtype of the output (``None`` keeps the stored dtype).
        ensure_channel_first: add/move the channel axis first (MONAI's convention); ``False``
            gives the spatial-first array like ``LoadImage`` without ``ensure_channel_first``.
    """

    def __init__(self, dtype: torch.dtype | np.dtype | str | None = None, ensure_channel_first: bool = True) -> None:
        self.dtype = dtype
        self.ensure_channel_first = ensure_channel_first

    def __call__(self, data: bytes | bytearray | PathLike) -> MetaTensor:
        if isinstance(data, (bytes, bytearray)):
            try:
                image, name = decompress_image(bytes(data)), None
            except (ValueError, KeyError) as error:
                raise MriaeReadError(f"<bytes>: cannot decode ({error})") from error
        elif isinstance(data, (str, os.PathLike)):
            image, name = decode_file(data), str(data)
        else:
            raise TypeError(f"Decompress expects .mriae bytes or a path, got {type(data).__name__}")
        array = spatial_first(image.array)
        meta = image_meta(Image(array, image.affine, image.suffix, image.source), name)
        if self.ensure_channel_first:
            array = np.moveaxis(array, -1, 0) if array.ndim == 4 else array[None]
            meta["original_channel_dim"] = -1 if image.array.ndim > 3 else float("nan")
        tensor = torch.as_tensor(np.ascontiguousarray(array))
        if self.dtype is not None:
            tensor = tensor.to(get_equivalent_dtype(self.dtype, torch.Tensor))
        meta["affine"] = torch.as_tensor(meta["affine"], dtype=torch.float64)
        return MetaTensor(tensor, meta=meta)


class Decompressd(MapTransform):
    """Dictionary version of :class:`Decompress`: ``d[key]`` (bytes or path) → MetaTensor."""

    def __init__(self, keys: KeysCollection, dtype: torch.dtype | np.dtype | str | None = None,
                 ensure_channel_first: bool = True, output_keys: KeysCollection | None = None,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.decompressor = Decompress(dtype, ensure_channel_first)
        self.output_keys = ensure_tuple_rep(output_keys, len(self.keys)) if output_keys else self.keys

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key, out_key in self.key_iterator(d, self.output_keys):
            d[out_key] = self.decompressor(d[key])
        return d


# --------------------------------------------------------------------------- save


class SaveMriae(Transform):
    """Write .mriae bytes atomically to ``output_dir/<name>.mriae``; returns the path written.

    Args:
        output_dir: folder to write to (created if missing).
        overwrite: replace an existing file; by default ``FileExistsError`` (never replaced
            unless asked, like the command line without ``--force``).
    """

    def __init__(self, output_dir: PathLike, overwrite: bool = False) -> None:
        self.output_dir = Path(output_dir)
        self.overwrite = overwrite

    def __call__(self, data: bytes, name: str) -> str:
        target = self.output_dir / (name if name.endswith(MRIAE_SUFFIX) else name + MRIAE_SUFFIX)
        check_targets([target], self.overwrite, OVERWRITE)
        write_bytes_atomic(target, data, overwrite=self.overwrite)
        return str(target)


class SaveMriaed(MapTransform):
    """Dictionary version of :class:`SaveMriae`: writes ``d[key]`` and puts the path in ``d[f"{key}_{path_key_postfix}"]``.

    The file is named after ``d[name_key]`` (a file path or name: its image suffix is dropped);
    an existing file is kept (``FileExistsError``) unless ``overwrite``.
    """

    def __init__(self, keys: KeysCollection, output_dir: PathLike, name_key: str = "image",
                 path_key_postfix: str = "path", overwrite: bool = False, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.saver = SaveMriae(output_dir, overwrite)
        self.name_key = name_key
        self.path_key_postfix = path_key_postfix

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[f"{key}_{self.path_key_postfix}"] = self.saver(d[key], stem_of(d[self.name_key]))
        return d


def stem_of(source) -> str:
    """File name without its image suffix, from a path or a MetaTensor's ``filename_or_obj``."""
    if isinstance(source, MetaTensor):
        source = source.meta.get("filename_or_obj", "image")
    return file_stem(str(source))
