"""The one compression pipeline: image → scale → grid → network + entropy coder → container.

Everything that compresses or decompresses (CLI, Python API, MONAI transforms, bundle,
batch jobs) goes through :func:`compress_image` and :func:`decompress_image`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from mriae import container
from mriae.header import affine_of, affine_record, grid_of, grid_record
from mriae.io import Image
from mriae.models.entropy import decode_symbols, encode_symbols
from mriae.models.weights import DEFAULT_WEIGHTS, Codec, load_codec
from mriae.transforms.geometry import GridPlan, from_network_grid, plan, to_network_grid
from mriae.transforms.intensity import IntensityRange

DEFAULT_QUALITY = 5
MODEL_ID_DIGITS = 16
"""Hex digits of the weights' SHA-256 a file records: 64 bits, ample to tell weights apart."""
Progress = Callable[[int, int], None]
"""Called with (volumes done, volumes in all) after each 3D volume."""


class CodecError(ValueError):
    """A container this installation cannot decode (missing or mismatched weights, bad header)."""


@dataclass(frozen=True)
class Stats:
    """What a compression achieved."""

    original_bytes: int
    compressed_bytes: int
    voxels: int
    psnr: float  # dB, peak = max − min of the original; inf if lossless

    @property
    def ratio(self) -> float:
        return self.original_bytes / self.compressed_bytes

    @property
    def bits_per_voxel(self) -> float:
        return self.compressed_bytes * 8 / self.voxels


def spatial_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The 3D volume shape of an array of ``shape``: 1D and 2D get unit trailing axes."""
    return tuple((tuple(int(n) for n in shape) + (1, 1, 1))[:3])  # type: ignore[return-value]


def volumes_of(array: np.ndarray) -> np.ndarray:
    """View an (X, Y, Z, ...) array as (X, Y, Z, N): the series of 3D volumes it holds."""
    return array.reshape(spatial_shape(array.shape) + (-1,), order="F")


def psnr(original: np.ndarray, reconstruction: np.ndarray) -> float:
    """PSNR in dB with peak = max − min of ``original`` over all voxels."""
    original = np.asarray(original, dtype=np.float64)
    mse = float(np.mean((original - np.asarray(reconstruction, dtype=np.float64)) ** 2))
    peak = float(original.max() - original.min())
    if mse == 0:
        return float("inf")
    return 10 * np.log10(peak**2 / mse) if peak > 0 else float("-inf")


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch on one intra-op thread: conv results (in the last bits) depend on the
    thread count, so fixing it makes encoding and decoding independent of the machine's
    thread settings. Parallelism comes from coding several volumes/files at once."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def latent_shape(grid: GridPlan) -> tuple[int, int, int]:
    """Spatial shape of the latents of a volume on ``grid``."""
    return tuple(n >> k for n, k in zip(grid.padded_shape, grid.levels))  # type: ignore[return-value]


def synthesize(codec: Codec, symbols: torch.Tensor, grid: GridPlan, quality: int) -> np.ndarray:
    """Reconstruction in [0, 1] on the original grid from quantized latent ``symbols``."""
    model = codec.model
    latents = model.entropy_bottleneck.dequantize(symbols, codec.latent_steps(quality))
    reconstruction = model.decode(latents, grid.levels)
    return from_network_grid(reconstruction, grid)


@torch.no_grad()
@single_threaded()
def encode_volume(codec: Codec, volume: np.ndarray, grid: GridPlan, quality: int) -> tuple[bytes, np.ndarray]:
    """(chunk, reconstruction in [0, 1]) of one volume scaled to [0, 1]."""
    latents = codec.model.encode(to_network_grid(volume, grid), grid.levels)
    symbols = codec.model.entropy_bottleneck.quantize(latents, codec.latent_steps(quality))
    chunk = encode_symbols(symbols[0].numpy().astype(np.int32), codec.tables[quality - 1])
    return chunk, synthesize(codec, symbols, grid, quality)


@torch.no_grad()
@single_threaded()
def decode_volume(codec: Codec, chunk: bytes, grid: GridPlan, quality: int) -> np.ndarray:
    """Reconstruction in [0, 1] of one volume from its chunk."""
    symbols = decode_symbols(chunk, codec.tables[quality - 1], latent_shape(grid))
    latents = torch.from_numpy(symbols.astype(np.float32))[None]
    return synthesize(codec, latents, grid, quality)


def compress_image(
    image: Image,
    quality: int = DEFAULT_QUALITY,
    spacing: tuple[float, float, float] | None = None,
    weights: str = DEFAULT_WEIGHTS,
    original_bytes: int | None = None,
    progress: Progress | None = None,
) -> tuple[bytes, Stats]:
    """Compress ``image`` into .mriae bytes; also returns the achieved :class:`Stats`."""
    codec = load_codec(weights)
    codec.step(quality)  # checks the quality level before any work
    volumes = volumes_of(image.array)
    grid = plan(volumes.shape[:3], image.affine, codec.model.config.levels, spacing)
    chunks, ranges = [], []
    reconstruction = np.empty(volumes.shape, dtype=image.array.dtype)
    for index in range(volumes.shape[3]):
        volume = volumes[..., index]
        intensity = IntensityRange.of(volume)
        ranges.append([intensity.low, intensity.high])
        if intensity.constant:
            chunk, scaled = b"", np.zeros(volume.shape, dtype=np.float32)
        else:
            chunk, scaled = encode_volume(codec, intensity.scale(volume), grid, quality)
        chunks.append(chunk)
        reconstruction[..., index] = intensity.unscale(scaled, image.array.dtype)
        if progress:
            progress(index + 1, volumes.shape[3])
    quality_db = psnr(volumes, reconstruction)
    header = {
        "image": {"suffix": image.suffix, **affine_record(image.affine), "dtype": image.array.dtype.str,
                  "shape": list(image.array.shape), "source": image.source},
        "volumes": ranges,
        "model": {"name": codec.name, "sha256": codec.sha256[:MODEL_ID_DIGITS]},
        "quality": quality,
        "psnr": round(quality_db, 2) if np.isfinite(quality_db) else None,
    }
    if grid.resampled:
        header["grid"] = grid_record(grid)
    data = container.pack(header, chunks)
    raw_size = original_bytes if original_bytes is not None else image.array.nbytes
    return data, Stats(raw_size, len(data), int(image.array.size), quality_db)


def decompress_image(data: bytes, progress: Progress | None = None) -> Image:
    """Decode .mriae bytes back to an :class:`Image` on the original grid, dtype and header."""
    parsed = container.unpack(data)
    header = parsed.header
    try:
        model_record, image_record = header["model"], header["image"]
        ranges = [IntensityRange(float(low), float(high)) for low, high in header["volumes"]]
        quality = int(header["quality"])
        dtype = np.dtype(image_record["dtype"])
        shape = tuple(image_record["shape"])
        affine = affine_of(image_record)
    except (KeyError, TypeError, ValueError) as error:
        raise CodecError(f"header is incomplete or malformed ({error})") from error
    if len(ranges) != len(parsed.chunks):
        raise CodecError(f"header lists {len(ranges)} volumes but the file holds {len(parsed.chunks)} chunks")
    try:
        codec = load_codec(model_record["name"])
    except FileNotFoundError as error:
        raise CodecError(f"made with weights '{model_record['name']}', which are not installed") from error
    if codec.sha256[:MODEL_ID_DIGITS] != model_record["sha256"]:
        raise CodecError(
            f"made with weights '{model_record['name']}' sha256 {model_record['sha256'][:12]}…, "
            f"but the installed ones are {codec.sha256[:12]}…"
        )
    try:
        grid = grid_of(header.get("grid"), spatial_shape(shape), affine, codec.model.config.levels)
    except (KeyError, TypeError, ValueError) as error:
        raise CodecError(f"header grid is malformed ({error})") from error
    if quality not in codec.qualities:
        raise CodecError(f"quality {quality} is not a level of weights '{codec.name}'")
    array = np.empty(grid.shape + (len(ranges),), dtype=dtype)
    for index, (intensity, chunk) in enumerate(zip(ranges, parsed.chunks)):
        scaled = np.zeros(grid.shape, np.float32) if intensity.constant else decode_volume(codec, chunk, grid, quality)
        array[..., index] = intensity.unscale(scaled, dtype)
        if progress:
            progress(index + 1, len(ranges))
    array = array.reshape(shape, order="F")
    return Image(array, affine, image_record["suffix"], image_record["source"])
