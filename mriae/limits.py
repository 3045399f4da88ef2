"""Size limits on what an input may make mriae allocate: every file is untrusted.

A forged .mriae header or image header can claim any shape; nothing is allocated for it
before its voxel counts pass these limits. Raise them for genuinely large scans with the
environment variables ``MRIAE_MAX_VOXELS`` (all volumes of an image together) and
``MRIAE_MAX_VOLUME_VOXELS`` (one 3D volume on the network's grid), or per call.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

DEFAULT_MAX_VOXELS = 1 << 31
"""2 G voxels in all (e.g. 96×96×60 over 3,700 time points, or 1290³)."""
DEFAULT_MAX_VOLUME_VOXELS = 1 << 28
"""268 M voxels in one 3D volume (e.g. 640³; a 0.5 mm whole head is ~105 M)."""

MAX_HEADER_BYTES = 32 << 20
"""Largest original header (a NIfTI header with its extensions, an Analyze/NIfTI .hdr file, an
MGH footer) kept in a .mriae file: as base64 in its JSON header it stays under the
container's 64 MiB header limit."""


class LimitError(ValueError):
    """An input that claims more voxels than the configured limits allow."""


@dataclass(frozen=True)
class Limits:
    """Largest image (all volumes) and largest single 3D volume a call will allocate."""

    max_voxels: int = DEFAULT_MAX_VOXELS
    max_volume_voxels: int = DEFAULT_MAX_VOLUME_VOXELS

    @classmethod
    def from_environment(cls) -> Limits:
        """Limits from ``MRIAE_MAX_VOXELS`` / ``MRIAE_MAX_VOLUME_VOXELS`` (defaults if unset)."""
        return cls(_positive_env("MRIAE_MAX_VOXELS", DEFAULT_MAX_VOXELS),
                   _positive_env("MRIAE_MAX_VOLUME_VOXELS", DEFAULT_MAX_VOLUME_VOXELS))

    def check_image(self, shape: tuple[int, ...], what: str = "image") -> None:
        """Raise LimitError unless an image of ``shape`` (any number of axes) fits."""
        voxels = math.prod(int(n) for n in shape)
        if voxels > self.max_voxels:
            raise LimitError(
                f"{what} claims {_shape_text(shape)} = {voxels:,} voxels, over the limit of {self.max_voxels:,} "
                "(set MRIAE_MAX_VOXELS to allow more)"
            )

    def check_volume(self, shape: tuple[int, ...], what: str = "volume") -> None:
        """Raise LimitError unless one 3D volume of ``shape`` fits."""
        voxels = math.prod(int(n) for n in shape)
        if voxels > self.max_volume_voxels:
            raise LimitError(
                f"{what} of {_shape_text(shape)} = {voxels:,} voxels is over the limit of "
                f"{self.max_volume_voxels:,} for one 3D volume (set MRIAE_MAX_VOLUME_VOXELS to allow more)"
            )


def _shape_text(shape: tuple[int, ...]) -> str:
    return "×".join(str(int(n)) for n in shape)


def _positive_env(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise LimitError(f"{name} must be a positive whole number of voxels (got '{text}')")
    return value
