"""Rate–distortion points: measuring mriae at each quality level, and the CSV they go to."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path

import numpy as np

from mriae import api
from mriae.evaluation.metrics import max_abs_error, psnr, ssim
from mriae.models.weights import load_codec


@dataclass(frozen=True)
class RDPoint:
    """One codec setting measured on one volume.

    ``bits_per_voxel`` is ``compressed_bytes`` × 8 / voxels: the whole .mriae file for
    mriae (header and checksum included), the bare codestream for classical codecs.
    """

    volume: str
    split: str  # "validation" or "train"
    codec: str
    setting: str
    voxels: int
    compressed_bytes: int
    bits_per_voxel: float
    psnr: float
    ssim: float
    max_abs_error: float
    encode_s: float
    decode_s: float


def measure(
    volume: str,
    split: str,
    codec: str,
    setting: str,
    original: np.ndarray,
    encode: Callable[[], bytes],
    decode: Callable[[bytes], np.ndarray],
) -> RDPoint:
    """Time ``encode`` and ``decode`` once and score the reconstruction against ``original``."""
    start = time.perf_counter()
    data = encode()
    encoded = time.perf_counter()
    reconstruction = decode(data)
    decoded = time.perf_counter()
    if reconstruction.shape != original.shape:
        raise ValueError(f"{codec} {setting}: reconstruction shape {reconstruction.shape} != {original.shape}")
    return RDPoint(
        volume, split, codec, setting, int(original.size), len(data), len(data) * 8 / original.size,
        psnr(original, reconstruction), ssim(original, reconstruction), max_abs_error(original, reconstruction),
        encoded - start, decoded - encoded,
    )


def evaluate_mriae(
    array: np.ndarray,
    affine: np.ndarray,
    *,
    volume: str = "scan",
    split: str = "validation",
    qualities: Iterable[int] | None = None,
    on_point: Callable[[RDPoint, np.ndarray], None] | None = None,
) -> list[RDPoint]:
    """Compress and decompress ``array`` at each quality level (all by default).

    ``on_point`` gets each point with its reconstruction (e.g. to draw slices).
    """
    points = []
    for quality in qualities or load_codec().qualities:
        restored: list[np.ndarray] = []
        point = measure(volume, split, "mriae", f"q{quality}", array,
                        partial(_mriae_encode, array, affine, quality), partial(_mriae_decode, restored))
        points.append(point)
        if on_point:
            on_point(point, restored[0])
    return points


def _mriae_encode(array: np.ndarray, affine: np.ndarray, quality: int) -> bytes:
    return api.compress(array, affine=affine, quality=quality)[0]


def _mriae_decode(restored: list[np.ndarray], data: bytes) -> np.ndarray:
    restored.append(api.decompress(data).array)
    return restored[-1]


def write_csv(points: Sequence[RDPoint], path: Path) -> None:
    """Write points as CSV, one row each, with a header row of the field names."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[f.name for f in fields(RDPoint)])
        writer.writeheader()
        for point in points:
            writer.writerow(asdict(point))


def read_csv(path: Path) -> list[RDPoint]:
    """Read points written by :func:`write_csv`."""
    types = {f.name: f.type for f in fields(RDPoint)}
    cast = {"str": str, "int": int, "float": float}
    with open(path, newline="") as handle:
        return [RDPoint(**{k: cast[types[k]](v) for k, v in row.items()}) for row in csv.DictReader(handle)]
