"""Classical baselines through imagecodecs: SPERR 3D, JPEG 2000 and JPEG XL slice by
slice, and lossless gzip / zstd / JPEG XL.

Each codec is a list of :class:`Setting` (name, encode → bytes, decode → array). Sizes are
the bare codestreams; the few bytes of side information a real file would add (shape,
dtype, the min/max used to stretch the intensities) are not counted. Lossy reconstructions
are rounded and clipped back to the original dtype, as a user would store them.

imagecodecs pitfalls handled here: SPERR wants C-contiguous float64 3D (it silently
returns garbage for Fortran order); JPEG 2000's ``level`` is a target PSNR against the
nominal bit depth, so volumes are stretched to the full uint16 range (native byte order;
8-bit volumes to the full uint8 range);
JPEG XL lossy is perceptual and also needs that stretch, and ``lossless=True`` (not
``distance=0``) for lossless.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import imagecodecs
import numpy as np

SPERR_RATES = (0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)
JPEG2K_PSNRS = (26, 30, 34, 38, 42, 46, 50, 56)
JPEGXL_DISTANCES = (12.0, 8.0, 5.0, 3.0, 2.0, 1.4, 1.0, 0.6, 0.3)


@dataclass(frozen=True)
class Setting:
    """One operating point of a codec."""

    codec: str
    setting: str
    encode: Callable[[], bytes]
    decode: Callable[[bytes], np.ndarray]


def to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round and clip a float reconstruction back into ``dtype`` (floats pass through)."""
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    return values.astype(dtype)


class Stretch:
    """Affine map of a volume's [min, max] onto the full range of uint8 (8-bit data, which
    the codecs then code natively) or uint16 (everything else), and back."""

    def __init__(self, volume: np.ndarray) -> None:
        self.coded = np.uint8 if volume.dtype.itemsize == 1 else np.uint16
        self.low = float(volume.min())
        self.scale = (float(volume.max()) - self.low) / np.iinfo(self.coded).max or 1.0
        self.dtype = volume.dtype

    def forward(self, volume: np.ndarray) -> np.ndarray:
        return np.rint((volume.astype(np.float64) - self.low) / self.scale).astype(self.coded)

    def inverse(self, coded: np.ndarray) -> np.ndarray:
        return to_dtype(coded.astype(np.float64) * self.scale + self.low, self.dtype)


def join_slices(volume: np.ndarray, encode_slice: Callable[[np.ndarray], bytes]) -> bytes:
    """The codestream of each axial (last-axis) slice of ``volume``, each prefixed by its
    4-byte length (counted)."""
    parts = []
    for k in range(volume.shape[2]):
        data = encode_slice(np.ascontiguousarray(volume[:, :, k]))
        parts += [len(data).to_bytes(4, "little"), data]
    return b"".join(parts)


def split_slices(data: bytes, decode_slice: Callable[[bytes], np.ndarray]) -> np.ndarray:
    """Inverse of :func:`join_slices`: the slices decoded and stacked on the last axis."""
    slices, position = [], 0
    while position < len(data):
        length = int.from_bytes(data[position:position + 4], "little")
        slices.append(decode_slice(data[position + 4:position + 4 + length]))
        position += 4 + length
    return np.stack(slices, axis=2)


def slicewise(volume: np.ndarray, encode_slice: Callable[[np.ndarray], bytes],
              decode_slice: Callable[[bytes], np.ndarray], stretch: Stretch) -> tuple[Callable, Callable]:
    """Encode/decode functions coding each axial slice of the stretched volume separately
    (:func:`join_slices`)."""
    coded = stretch.forward(volume)
    return (lambda: join_slices(coded, encode_slice)), (lambda data: stretch.inverse(split_slices(data, decode_slice)))


def sperr(volume: np.ndarray, rates=SPERR_RATES) -> list[Setting]:
    """SPERR 3D at fixed rates (bits/voxel) on the whole volume."""
    data = np.ascontiguousarray(volume, dtype=np.float64)
    return [Setting("sperr-3d", f"{rate:g}bpv",
                    lambda rate=rate: imagecodecs.sperr_encode(data, level=rate, mode="bpp"),
                    lambda coded: to_dtype(imagecodecs.sperr_decode(coded), volume.dtype))
            for rate in rates]


def jpeg2000(volume: np.ndarray, psnrs=JPEG2K_PSNRS) -> list[Setting]:
    """JPEG 2000 (irreversible wavelet) per axial slice at target PSNRs on the stretched volume."""
    stretch = Stretch(volume)
    settings = []
    for target in psnrs:
        encode, decode = slicewise(volume, lambda s, t=target: imagecodecs.jpeg2k_encode(s, level=t, reversible=False),
                                   imagecodecs.jpeg2k_decode, stretch)
        settings.append(Setting("jpeg2000-2d", f"{target}dB", encode, decode))
    return settings


def jpegxl(volume: np.ndarray, distances=JPEGXL_DISTANCES) -> list[Setting]:
    """JPEG XL lossy per axial slice at Butteraugli distances on the stretched volume."""
    stretch = Stretch(volume)
    settings = []
    for distance in distances:
        encode, decode = slicewise(volume, lambda s, d=distance: imagecodecs.jpegxl_encode(s, distance=d),
                                   imagecodecs.jpegxl_decode, stretch)
        settings.append(Setting("jpegxl-2d", f"d{distance:g}", encode, decode))
    return settings


def lossless(volume: np.ndarray) -> list[Setting]:
    """gzip -9 and zstd -19 of the raw voxels, and JPEG XL lossless per slice (on the
    volume shifted to start at 0, which is exact for ranges up to 16 bits)."""
    raw = np.ascontiguousarray(volume)

    def unpack(data: bytes) -> np.ndarray:
        return np.frombuffer(data, dtype=raw.dtype).reshape(raw.shape)

    settings = [
        Setting("gzip", "9", lambda: imagecodecs.gzip_encode(raw.tobytes(), level=9),
                lambda coded: unpack(imagecodecs.gzip_decode(coded))),
        Setting("zstd", "19", lambda: imagecodecs.zstd_encode(raw.tobytes(), level=19),
                lambda coded: unpack(imagecodecs.zstd_decode(coded))),
    ]
    low, high = float(volume.min()), float(volume.max())
    if volume.dtype.kind in "iu" and high - low < 65536:
        shift = Stretch(volume)
        shift.scale = 1.0  # a shift only: exact
        encode, decode = slicewise(volume, lambda s: imagecodecs.jpegxl_encode(s, lossless=True),
                                   imagecodecs.jpegxl_decode, shift)
        settings.append(Setting("jpegxl-lossless", "lossless", encode, decode))
    return settings


def all_settings(volume: np.ndarray, codecs: tuple[str, ...] = ("sperr", "jpeg2000", "jpegxl", "lossless")) -> list[Setting]:
    """Every operating point of the named baselines for one 3D volume."""
    makers = {"sperr": sperr, "jpeg2000": jpeg2000, "jpegxl": jpegxl, "lossless": lossless}
    return [setting for name in codecs for setting in makers[name](volume)]
