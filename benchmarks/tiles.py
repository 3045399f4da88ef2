"""Tiles (container version 6): what they cost in rate, whether they leave seams, the error at
tile borders against the interior, and how a region's decoding time grows with the region.

    python benchmarks/tiles.py [--quality 5] [--repeat 3]

On the 1 mm MNI152 T1 template (and the 2 mm sample for the rate), in one warm process:

- **rate**: the file in tiles of TILE_SIZE voxels against one tile (tiles of 1024 voxels);
- **seams**: the tile-by-tile reconstruction against a synthesis of the whole latent grid at
  once from the same symbols, in [0, 1] units (zero up to float rounding if the halos are
  right);
- **borders**: PSNR (the whole volume's peak) of the voxels within one latent (8 voxels) of
  an inner tile border against the other voxels, in the head (mriae.evaluation.maps), for
  the tiled file and for the one-tile file;
- **regions**: best-of-``repeat`` CPU time of decoding the whole volume, of a 64³ region inside
  one tile, and of a 64³ region across the corner where 8 tiles meet, on the template
  (2×2×2 tiles) and on the template resampled to 384×384×256 (3×3×2 tiles).

Prints Markdown tables for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import zoom

from mriae.codec import compress_image, decoder_of, decompress_image, psnr, volume_chunks
from mriae.evaluation.maps import head_mask
from mriae.header import read
from mriae.io import Image, read_image
from mriae.parallel import single_threaded
from mriae.tiled import TileSymbols, reconstructed, tile_symbols
from mriae.transforms.geometry import from_network_grid, plan_on
from mriae.transforms.tiles import TILE_SIZE, TileGrid, box_slices, whole

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "mni152_t1_2mm.nii.gz"
ONE_TILE = 1024
REGION = 64
LARGE = (384, 384, 256)
"""A volume of 3×3×2 tiles: the 1 mm template resampled."""


def rate_rows(paths: dict[str, Path], quality: int) -> list[str]:
    """Markdown rows: bytes in tiles of TILE_SIZE against one tile, per volume."""
    rows = []
    for name, path in paths.items():
        image = read_image(path)
        tiled = len(compress_image(image, quality, tile_size=TILE_SIZE)[0])
        single = len(compress_image(image, quality, tile_size=ONE_TILE)[0])
        rows.append(f"| {name} | {single:,} | {tiled:,} | {100 * (tiled / single - 1):+.2f} % |")
    return rows


def seam(data: bytes) -> float:
    """Largest difference, in [0, 1] units, between the tile-by-tile reconstruction of a
    one-volume network file and a synthesis of all its latents at once."""
    header, chunks = read(data)
    volume, parts = volume_chunks(header, chunks)[0]
    codec, grid = decoder_of(header)
    tiles = TileGrid.of(grid, volume.tiling.size)
    symbols = TileSymbols(tiles, lambda k: tile_symbols(codec, header.quality, tiles, k, parts[k],
                                                        volume.tiling.checksums[k]))
    tiled = np.empty(grid.shape, dtype=np.float32)
    for box, voxels in reconstructed(codec, header.quality, grid, symbols, whole(grid.shape)):
        tiled[box_slices(box)] = voxels
    with torch.no_grad(), single_threaded():
        integers = torch.from_numpy(symbols.box(whole(tiles.latents)).astype(np.float32))[None]
        latents = codec.model.entropy_bottleneck.dequantize(integers, codec.level(header.quality).channel_steps)
        at_once = from_network_grid(codec.model.decode(latents, grid.levels), grid)
    return float(np.abs(tiled - at_once).max())


def border_mask(shape: tuple[int, ...], size: int, width: int) -> np.ndarray:
    """Voxels within ``width`` of an inner border between tiles of ``size`` voxels."""
    mask = np.zeros(shape, dtype=bool)
    for axis, n in enumerate(shape):
        for border in range(size, n, size):
            index = [slice(None)] * len(shape)
            index[axis] = slice(max(border - width, 0), border + width)
            mask[tuple(index)] = True
    return mask


def best_time(decode, repeat: int) -> float:
    """Least CPU time of ``repeat`` calls of ``decode``: decoding runs on one thread, and CPU
    time does not count what other processes on a shared machine take."""
    times = []
    for _ in range(repeat):
        started = time.process_time()
        decode()
        times.append(time.process_time() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from mriae.training.synthetic import TEMPLATES, template_dir

    template = template_dir() / TEMPLATES["t1"]
    print("| volume | one tile (bytes) | tiles of 128 (bytes) | change |\n|---|---|---|---|")
    print("\n".join(rate_rows({"MNI152 2 mm": SAMPLE, "MNI152 1 mm": template}, args.quality)))

    image = read_image(template)
    original = image.array
    tiled = compress_image(image, args.quality, tile_size=TILE_SIZE)[0]
    single = compress_image(image, args.quality, tile_size=ONE_TILE)[0]
    decoded = {name: decompress_image(data).array for name, data in (("tiles", tiled), ("one tile", single))}
    print(f"\nseams: max |tile by tile − all latents at once| = {seam(tiled):.2e} of the [0, 1] range")

    head = head_mask(original)
    border = border_mask(original.shape, TILE_SIZE, 2 ** max(decoder_of(read(tiled)[0])[1].levels))
    peak = float(original.max()) - float(original.min())
    print("\n| file | PSNR at tile borders (dB) | PSNR inside tiles (dB) | borders − inside |\n|---|---|---|---|")
    for name, values in decoded.items():
        at, inside = (psnr(original[head & part], values[head & part], peak) for part in (border, ~border))
        print(f"| {name} | {at:.2f} | {inside:.2f} | {at - inside:+.2f} dB |")

    print(f"\n| volume | decode | tiles synthesized | CPU time, best of {args.repeat} (s) | share of the full decode |")
    print("|---|---|---|---|---|")
    print("\n".join(region_rows("MNI152 1 mm", tiled, original.shape, args.repeat)))
    large = Image(zoom(original.astype(np.float32), [n / m for n, m in zip(LARGE, original.shape)], order=1),
                  np.diag([197 / 384, 233 / 384, 189 / 256, 1.0]))
    print("\n".join(region_rows("MNI152 at 384×384×256", compress_image(large, args.quality)[0], LARGE, args.repeat)))


def region_rows(name: str, data: bytes, shape: tuple[int, ...], repeat: int) -> list[str]:
    """Markdown rows: decoding time of the whole volume and of 64³ regions inside one tile and
    across the corner of 8 tiles."""
    tiles = TileGrid.of(plan_on(shape, np.eye(4), 3), TILE_SIZE)
    full = best_time(lambda: decompress_image(data), repeat)
    rows = [f"| {name} | whole volume, {math.prod(shape):,} voxels | {tiles.count} | {full:.2f} | 100 % |"]
    inner = tuple(slice(TILE_SIZE // 2 - REGION // 2, TILE_SIZE // 2 + REGION // 2) for _ in range(3))
    corner = tuple(slice(TILE_SIZE - REGION // 2, TILE_SIZE + REGION // 2) for _ in range(3))
    for where, roi, count in (("inside one tile", inner, 1), ("across 8 tiles", corner, 8)):
        seconds = best_time(lambda roi=roi: decompress_image(data, roi=roi), repeat)
        rows.append(f"| {name} | {REGION}³ {where} | {count} | {seconds:.2f} | {100 * seconds / full:.0f} % |")
    return rows


if __name__ == "__main__":
    main()
