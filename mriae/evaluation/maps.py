"""Where a volume's bits and errors sit: the bits of each latent position, the regions of a
head, and the numbers per region (``mriae evaluate --map``).

**Bits.** A network-coded volume's latent symbols are decoded from its file, and each
symbol's ideal code length, −log2 p, is taken under exactly the tables and contexts the
coder used (:func:`mriae.entropy_coder.stream.code_lengths`); summed over the channels, they give
the bits of each latent position, which add up to the volume's chunk to within the coder's
final state (a few words). On the image grid, each voxel is shown the bits of the latent
position whose footprint covers it (2**levels voxels per axis of the network grid; the
network's receptive field is wider), cropped and resampled back like the decoded volume.
Volumes coded by the context coder or stored exactly have no latents, hence no such map.

**Regions.** ``background`` (the air around the head), ``head`` (inside the head, outside
the brain) and ``brain``. The head is found automatically (:func:`head_mask`). The brain
comes only from a mask the user gives (:func:`read_brain_mask`): no brain extraction is
attempted here, so without a mask there are two regions and ``head`` includes the brain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from mriae.codec import decoder_of, psnr, volume_chunks
from mriae.entropy_coder.stream import code_lengths
from mriae.evaluation.metrics import max_abs_error
from mriae.header import read
from mriae.io import read_image
from mriae.tiled import tile_symbols
from mriae.transforms.geometry import GridPlan, from_network_grid
from mriae.transforms.tiles import TileGrid, box_slices, latent_shape

HEAD_FRACTION = 0.1
"""A voxel is head when it is brighter than the background level by this fraction of the way
from the background level to the volume's 99th percentile..."""
NOISE_SIGMAS = 5.0
"""... or, in a noisier background, by this many times the background's noise, if that is more."""
CLOSING_STEPS = 2
"""Steps (face neighbours) of the closing that joins a head outline broken by dark skull or noise."""
AFFINE_TOLERANCE = 1e-3
"""Largest difference (mm) between the affine of a brain mask and the image's."""


@dataclass(frozen=True)
class LatentBits:
    """Ideal code length of each latent position of one network-coded volume."""

    bits: np.ndarray
    """(D, H, W) bits, summed over the latent channels."""
    grid: GridPlan
    """The grid the volume was coded on."""

    @property
    def total(self) -> float:
        """Bits of the whole latent code."""
        return float(self.bits.sum())

    def on_image_grid(self) -> np.ndarray:
        """The image grid, each voxel holding the bits of the latent position that covers it."""
        spread = self.bits
        for axis, level in enumerate(self.grid.levels):
            spread = np.repeat(spread, 2**level, axis=axis)
        return from_network_grid(torch.from_numpy(spread)[None, None], self.grid)


def latent_bits(data: bytes, volume: int = 0) -> LatentBits | None:
    """The bits per latent position of volume ``volume`` (0-based) of the .mriae ``data``,
    tile by tile (each tile's contexts see only the tile); None when that volume is not coded
    by the network (context coder, stored exactly)."""
    header, chunks = read(data)
    record, parts = volume_chunks(header, chunks)[volume]
    if not record.learned:
        return None
    codec, grid = decoder_of(header)
    bits = np.zeros(latent_shape(grid))
    if record.low == record.high:  # a constant volume: nothing coded
        return LatentBits(bits, grid)
    tiles = TileGrid.of(grid, record.tiling.size)
    tables = codec.level(header.quality).tables
    checksums = record.tiling.checksums or (None,) * tiles.count
    for index in range(tiles.count):
        symbols = tile_symbols(codec, header.quality, tiles, index, parts[index], checksums[index])
        bits[box_slices(tiles.latent_box(index))] = code_lengths(symbols, tables).sum(axis=0)
    return LatentBits(bits, grid)


def head_mask(volume: np.ndarray) -> np.ndarray:
    """Boolean mask of the head in a 3D ``volume``.

    The background level and its noise are the median and the median absolute deviation
    (× 1.4826) of the volume's six outer faces, which lie mostly in air. Voxels above the
    level by HEAD_FRACTION of the way to the 99th percentile (or NOISE_SIGMAS × the noise,
    if more) are kept; a closing of CLOSING_STEPS joins the outline, enclosed holes (dark
    ventricles, sinuses) are filled and the largest connected component is the head. Air
    cavities open to the outside (airways, ear canals) stay background.
    """
    values = np.asarray(volume, dtype=np.float64)
    faces = np.concatenate([np.moveaxis(values, axis, 0)[[0, -1]].ravel() for axis in range(3)])
    level = float(np.median(faces))
    noise = 1.4826 * float(np.median(np.abs(faces - level)))
    threshold = level + max(NOISE_SIGMAS * noise, HEAD_FRACTION * (float(np.percentile(values, 99)) - level))
    mask = values > threshold
    mask |= ndimage.binary_closing(mask, iterations=CLOSING_STEPS)  # which erodes at the border: keep what was there
    labels, count = ndimage.label(ndimage.binary_fill_holes(mask))
    if count == 0:
        return np.zeros(values.shape, dtype=bool)
    return labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))


def read_brain_mask(path: str | Path, shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """The boolean brain mask (nonzero voxels) in the image file ``path``, which must lie on
    the grid of ``shape`` and ``affine``; ValueError (ImageError if unreadable) naming the file."""
    image = read_image(path)
    if image.array.shape != tuple(shape):
        raise ValueError(f"{path}: a brain mask of shape {image.array.shape}, "
                         f"but the image's volumes are {tuple(shape)}")
    if not np.allclose(image.affine, affine, rtol=0, atol=AFFINE_TOLERANCE):
        raise ValueError(f"{path}: the brain mask is on another grid than the image (their affines differ)")
    return image.array != 0


def region_masks(volume: np.ndarray, brain: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``background``, ``head`` and (given a ``brain`` mask) ``brain`` voxels of a 3D
    ``volume``: they split its voxels. The brain mask wins where it reaches past the head."""
    head = head_mask(volume)
    if brain is None:
        return {"background": ~head, "head": head}
    return {"background": ~head & ~brain, "head": head & ~brain, "brain": brain}


@dataclass(frozen=True)
class RegionStats:
    """How one region of a volume is coded and how far its decoded voxels are off.

    Errors are in the image's units; ``psnr`` takes the whole volume's max − min as its peak,
    like mriae's PSNR, so the regions compare on one scale. Bits are the latent code's (header
    and outliers aside); NaN for a volume without latents, and for an empty region.
    """

    region: str
    voxel_share: float
    bit_share: float
    bits_per_voxel: float
    rmse: float
    psnr: float
    max_error: float


def region_stats(original: np.ndarray, decoded: np.ndarray, masks: dict[str, np.ndarray],
                 bits: LatentBits | None = None) -> list[RegionStats]:
    """Per region of ``masks``: its share of the voxels and of the latent ``bits``, and the
    error of the ``decoded`` 3D volume against the ``original`` there."""
    peak = float(np.max(original)) - float(np.min(original))
    spread = None if bits is None else bits.on_image_grid()
    total = math.nan if bits is None else bits.total
    stats = []
    for name, mask in masks.items():
        count = int(np.count_nonzero(mask))
        if count == 0:
            stats.append(RegionStats(name, 0.0, *[math.nan] * 5))
            continue
        share = math.nan if spread is None else _share(float(spread[mask].sum()), float(spread.sum()))
        inside, restored = original[mask], decoded[mask]
        rmse = float(np.sqrt(np.mean((inside.astype(np.float64) - restored.astype(np.float64)) ** 2)))
        stats.append(RegionStats(name, count / mask.size, share, share * total / count, rmse,
                                 psnr(inside, restored, peak), max_abs_error(inside, restored)))
    return stats


def _share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def region_table(stats: list[RegionStats]) -> list[str]:
    """The per-region table as aligned text lines, a header line first."""
    lines = [f"{'region':>10} {'voxels':>7} {'bits':>7} {'bits/voxel':>10} {'RMSE':>9} {'PSNR dB':>8} {'max err':>9}"]
    for s in stats:
        share = f"{s.bit_share:>7.1%}" if math.isfinite(s.bit_share) else f"{'-':>7}"
        density = f"{s.bits_per_voxel:>10.4f}" if math.isfinite(s.bits_per_voxel) else f"{'-':>10}"
        lines.append(f"{s.region:>10} {s.voxel_share:>7.1%} {share} {density} {s.rmse:>9.4g} {s.psnr:>8.2f} "
                     f"{s.max_error:>9.4g}")
    return lines
