"""Rate–distortion points: measuring mriae at each quality level or fidelity, and the CSV they go to."""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from functools import partial
from pathlib import Path

import numpy as np

from mriae.codec import Stats, compress_image, decompress_image
from mriae.evaluation.metrics import max_abs_error, psnr, ssim
from mriae.fidelity import Fidelity
from mriae.header import read_header
from mriae.io import Image
from mriae.models.weights import DEFAULT_WEIGHTS, load_codec


@dataclass(frozen=True)
class RDPoint:
    """One codec setting measured on one volume.

    ``bits_per_voxel`` is ``compressed_bytes`` × 8 / voxels: the whole .mriae file for
    mriae (header and checksum included), the bare codestream for classical codecs.
    ``bound`` is the largest error the file promises (its header's maximum error; 0 for
    lossless, inf when none: the network, classical codecs) and ``at_bound`` the fraction of
    voxels whose error reaches it (0 without a positive bound); ``coder`` what coded an
    mriae file (``network``, ``context``, ``exact``).
    """

    volume: str
    split: str  # "train", "validation" or "unknown" (mriae.evaluation.splits)
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
    coder: str = ""
    bound: float = math.inf
    at_bound: float = 0.0


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


MRIAE_CODECS = {"quality": "mriae", "max_error": "mriae-max-error", "psnr": "mriae-psnr", "lossless": "mriae-lossless"}
"""The ``codec`` of mriae's points by fidelity mode: each mode is its own curve (quality
levels keep the name ``mriae``; lossless is a lossless codec, a single point)."""


def mode_of(fidelity: Fidelity) -> str:
    """``quality``, ``max_error``, ``psnr`` or ``lossless``."""
    if fidelity.lossless:
        return "lossless"
    return "max_error" if fidelity.max_error is not None else "psnr" if fidelity.psnr is not None else "quality"


def evaluate_mriae(
    array: np.ndarray,
    affine: np.ndarray,
    *,
    volume: str = "scan",
    split: str = "unknown",
    qualities: Iterable[int] | None = None,
    fidelities: Iterable[Fidelity] = (),
    on_point: Callable[[RDPoint, np.ndarray, bytes], None] | None = None,
    weights: str = DEFAULT_WEIGHTS,
) -> list[RDPoint]:
    """Compress and decompress ``array`` at each quality level, then at each of ``fidelities``
    (maximum errors, PSNR targets, lossless). Without either, at every quality level (of
    ``weights``); with ``fidelities`` only, at those alone. ``weights``: the installed weights
    the network codes with (:func:`mriae.models.weights.load_codec`); the decoder reads them
    from each file's header.

    Points are named by :attr:`mriae.fidelity.Fidelity.name` (``q5``, ``e2``, ``40dB``,
    ``lossless``), their codec by mode (:data:`MRIAE_CODECS`); ``split`` is the volume's
    (:func:`mriae.evaluation.splits.split_of`). ``on_point`` gets each point
    with its reconstruction and the .mriae bytes (e.g. to draw slices).
    """
    fidelities = list(fidelities)
    levels = list(qualities or ([] if fidelities else load_codec(weights).qualities))
    points = []
    for fidelity in [Fidelity.of(quality=q) for q in levels] + fidelities:
        restored: list[np.ndarray] = []
        coded: list[tuple[bytes, Stats]] = []
        point = measure(volume, split, MRIAE_CODECS[mode_of(fidelity)], fidelity.name, array,
                        partial(_mriae_encode, array, affine, fidelity, weights, coded), partial(_mriae_decode, restored))
        data, stats = coded[0]
        bound = read_header(data).max_error
        point = replace(point, coder=stats.coder, bound=math.inf if bound is None else bound,
                        at_bound=stats.at_bound if bound else 0.0)
        points.append(point)
        if on_point:
            on_point(point, restored[0], data)
    return points


def _mriae_encode(array: np.ndarray, affine: np.ndarray, fidelity: Fidelity, weights: str, coded: list) -> bytes:
    coded.append(compress_image(Image(array, np.asarray(affine, dtype=np.float64)), fidelity, weights=weights))
    return coded[-1][0]


def _mriae_decode(restored: list[np.ndarray], data: bytes) -> np.ndarray:
    restored.append(decompress_image(data).array)
    return restored[-1]


def write_csv(records: Sequence, path: Path, kind: type = RDPoint) -> None:
    """Write dataclass records of ``kind`` as CSV, one row each, with a header row of the field names."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[f.name for f in fields(kind)])
        writer.writeheader()
        for record in records:
            writer.writerow(asdict(record))


def read_csv(path: Path, kind: type = RDPoint) -> list:
    """Read records of ``kind`` written by :func:`write_csv` (columns an older file lacks keep
    their defaults)."""
    types = {f.name: f.type for f in fields(kind)}
    cast = {"str": str, "int": int, "float": float, "bool": lambda value: value == "True"}
    with open(path, newline="") as handle:
        return [kind(**{k: cast[types[k]](v) for k, v in row.items()}) for row in csv.DictReader(handle)]
