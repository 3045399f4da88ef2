"""``Decompress`` / ``Decompressd``: .mriae bytes or file → channel-first MetaTensor with the
original affine, through :func:`mriae.codec.decompress_image`."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import ensure_tuple_rep, get_equivalent_dtype

from mriae.codec import decompress_image
from mriae.io.image import Image
from mriae.monai.meta import image_meta, spatial_first
from mriae.monai.reader import MriaeReadError, decode_file


class Decompress(Transform):
    """Decode .mriae bytes or a .mriae file to a channel-first MetaTensor (C, X, Y, Z).

    The affine is the original's, unchanged; the metadata is what ``LoadImage`` with
    :class:`~mriae.monai.reader.MriaeReader` gives (plus the MetaTensor's own metadata when it
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

    def __call__(self, data: bytes | bytearray | str | os.PathLike) -> MetaTensor:
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
