"""Was a volume used to train the weights? The training set list kept beside them.

Weights ``NAME.pt`` come with ``NAME.volumes.json`` (pipelines/training/volume_list.py writes
it): the SHA-256 of the weights it belongs to, and the :func:`voxel_checksum` of every 3D
volume the weights were trained or calibrated on or that was made from those (``training``:
the MNI152 2009a templates of nilearn, every image of the 2009c whole-head templates, the MNI
sample), and of the volumes held out to validate them (``validation``: the benchmarks'). A
volume (every 3D volume of a 4D file) is

- ``train`` when any of its 3D volumes is on the training list,
- ``validation`` when every one of them is on the validation list,
- ``unknown`` otherwise: another scan, but also a crop or a resampled copy of a training
  volume, so nothing is claimed about it.

A volume is thus never called validation unless it is known to be held out. The checksum is
of the shape and the voxel values, so the same voxels match in any file type and dtype.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mriae.models.weights import DEFAULT_WEIGHTS, WEIGHTS_SUFFIX, weights_path

TRAIN, VALIDATION, UNKNOWN = "train", "validation", "unknown"
"""The splits, as metrics.csv writes them."""
SPLIT_WORDS = {TRAIN: "training", VALIDATION: "validation", UNKNOWN: "unknown (not in the training set list)"}
LIST_SUFFIX = ".volumes.json"
LIST_FORMAT = 1


def voxel_checksum(volume: np.ndarray) -> str:
    """SHA-256 of a 3D volume's shape and voxel values (as little-endian float64, C order,
    −0 as 0): the same for the same voxels in any dtype that holds them exactly."""
    volume = np.asarray(volume)
    digest = hashlib.sha256(repr(tuple(int(n) for n in volume.shape)).encode())
    for plane in volume:  # a plane at a time: a float64 copy of a large volume would be big
        digest.update(_float64_bits(plane).tobytes())
    return digest.hexdigest()


def _float64_bits(values: np.ndarray) -> np.ndarray:
    """``values`` as little-endian float64 bit patterns (−0 as 0), the same whatever the
    processor's denormal mode: with denormals flushed to zero (torch.set_flush_denormal, set
    by some libraries), converting a float32 denormal gives 0, so those are rebuilt from their
    bits (mantissa × 2⁻¹⁴⁹, a normal float64, exactly)."""
    widened = np.asarray(values, dtype="<f8")
    if values.dtype.kind == "f" and values.dtype.itemsize == 4:
        bits = np.asarray(values, dtype="<f4").view("<u4")
        tiny = (bits & 0x7F800000 == 0) & (bits & 0x007FFFFF != 0)
        if tiny.any():
            magnitude = (bits[tiny] & 0x007FFFFF).astype("<f8") * 2.0 ** -149
            widened[tiny] = np.where(bits[tiny] >> 31 == 1, -magnitude, magnitude)
    patterns = widened.view("<u8").copy()
    patterns[patterns == 0x8000000000000000] = 0
    return patterns


@dataclass(frozen=True)
class VolumeList:
    """The training set list of one weights file: description of each listed volume by checksum."""

    weights_sha256: str
    training: dict[str, str]
    validation: dict[str, str]

    @classmethod
    def read(cls, path: Path) -> VolumeList:
        """Parse ``path``; ValueError naming it when it is not a volume list."""
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
            if raw["format"] != LIST_FORMAT:
                raise ValueError(f"format {raw['format']!r}, expected {LIST_FORMAT}")
            sha = raw["weights_sha256"]
            if not isinstance(sha, str) or len(sha) != 64:
                raise ValueError("weights_sha256 is not a SHA-256")
            listed = {key: _entries(raw[key]) for key in ("training", "validation")}
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: not a training set list ({type(error).__name__}: {error})") from None
        both = listed["training"].keys() & listed["validation"].keys()
        if both:
            raise ValueError(f"{path}: {len(both)} volume(s) on both the training and the validation list")
        return cls(sha, listed["training"], listed["validation"])


def _entries(entries: list) -> dict[str, str]:
    if not isinstance(entries, list):
        raise TypeError("a list of volumes is not a list")
    named = {}
    for entry in entries:
        checksum, name = entry["sha256"], entry["name"]
        if not (isinstance(checksum, str) and len(checksum) == 64 and isinstance(name, str)):
            raise ValueError(f"bad entry {entry!r}")
        named[checksum] = name
    return named


def list_path(weights: str | os.PathLike = DEFAULT_WEIGHTS) -> Path:
    """Where the training set list of ``weights`` is: beside the weights file."""
    path = weights_path(weights)
    return path.with_name(path.name.removesuffix(WEIGHTS_SUFFIX) + LIST_SUFFIX)


@dataclass(frozen=True)
class Split:
    """Where a volume stands to the weights: ``split`` (:data:`TRAIN`, :data:`VALIDATION` or
    :data:`UNKNOWN`) and ``reason``, which listed volumes it matches or why nothing is known."""

    split: str
    reason: str

    def __str__(self) -> str:
        return SPLIT_WORDS[self.split]


def split_of(volumes: np.ndarray, weights: str | os.PathLike = DEFAULT_WEIGHTS,
             weights_sha256: str | None = None) -> Split:
    """The :class:`Split` of ``volumes`` (x, y, z, n: every 3D volume of an image, as
    :func:`mriae.codec.volumes_of` gives them) for ``weights`` (whose SHA-256 a caller that
    has loaded them passes as ``weights_sha256``: ``Codec.sha256``, not read again)."""
    path = list_path(weights)
    if not path.is_file():
        return Split(UNKNOWN, f"the weights have no training set list ({path.name})")
    listed = VolumeList.read(path)
    sha = weights_sha256 or hashlib.sha256(weights_path(weights).read_bytes()).hexdigest()
    if listed.weights_sha256 != sha:
        return Split(UNKNOWN, f"{path.name} lists the volumes of other weights (sha256 {listed.weights_sha256[:12]}…)")
    checksums = [voxel_checksum(volumes[..., index]) for index in range(volumes.shape[3])]
    trained = [listed.training[c] for c in checksums if c in listed.training]
    if trained:
        return Split(TRAIN, f"its voxels are those of {_names(trained)}, in the training set list {path.name}")
    held_out = [listed.validation.get(c) for c in checksums]
    if all(held_out):
        return Split(VALIDATION, f"its voxels are those of {_names(held_out)}, held out from training in {path.name}")
    return Split(UNKNOWN, f"its voxels are not those of any volume listed in {path.name}")


def _names(names: list[str]) -> str:
    """The listed volumes ``names`` in a few words."""
    unique = list(dict.fromkeys(names))
    files = list(dict.fromkeys(name.rsplit(" volume ", 1)[0] for name in unique))
    if len(unique) == 1:
        return unique[0]
    return f"{len(unique)} volumes of {files[0]}" if len(files) == 1 else f"{unique[0]} and {len(unique) - 1} more"
