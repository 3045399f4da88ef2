"""``ToNetworkGrid`` / ``ToNetworkGridd``: the stride-compatible (optional) resample + edge-pad
step of the codec as an invertible MONAI transform (``Invertd`` crops and resamples back).

It wraps :mod:`mriae.transforms.geometry`; nothing here pads or resamples on its own.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform
from monai.utils import TraceKeys, ensure_tuple_rep

from mriae.models.weights import DEFAULT_WEIGHTS, load_codec
from mriae.monai.meta import affine_of
from mriae.transforms.geometry import GridPlan, from_network_grid, plan, to_network_grid


class ToNetworkGrid(InvertibleTransform):
    """Resample (optional) and edge-pad a channel-first image to the grid the network's strides divide.

    Every channel is one 3D volume; the :class:`~mriae.transforms.geometry.GridPlan` is
    recorded in the MetaTensor's applied operations, so :meth:`inverse` (and ``Invertd``)
    crops the padding and resamples back onto the original grid and affine.

    Args:
        spacing: voxel size (mm) to code on, or ``None`` to keep the image's grid.
        levels: stride-2 stages of the network; ``None`` reads them from ``weights``.
        weights: weights (installed name or file path) whose network the grid is planned for.
    """

    def __init__(self, spacing: Sequence[float] | None = None, levels: int | None = None,
                 weights: str | os.PathLike = DEFAULT_WEIGHTS) -> None:
        self.spacing = None if spacing is None else tuple(float(s) for s in ensure_tuple_rep(spacing, 3))
        self.levels = levels
        self.weights = weights

    def _levels(self) -> int:
        return self.levels if self.levels is not None else load_codec(self.weights).model.config.levels

    def plan(self, img: torch.Tensor) -> GridPlan:
        return plan(tuple(int(n) for n in img.shape[1:]), affine_of(img), self._levels(), self.spacing)

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
                 weights: str | os.PathLike = DEFAULT_WEIGHTS, allow_missing_keys: bool = False) -> None:
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
