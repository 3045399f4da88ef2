"""Exact side coding: voxels stored bit for bit (label maps, masks, and outliers).

A volume coded exactly is its voxels (little-endian, Fortran order) as a raw LZMA2 stream;
outliers are their positions (gaps between ascending Fortran-order indices, u64 LE) then
their values (the volume's dtype, little-endian), as one raw LZMA2 stream. Decoders never
produce more bytes than the header's shapes allow, and check every length.
"""

from __future__ import annotations

import lzma
import zlib

import numpy as np

_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 6}]
"""Part of the format: raw LZMA2 streams with these settings."""


class ExactError(ValueError):
    """An exact chunk that does not decode to what its header says (damaged or forged)."""


def checksum(array: np.ndarray) -> int:
    """CRC-32 of ``array``'s values (little-endian, Fortran order)."""
    return zlib.crc32(_le(array).tobytes(order="F"))


def _le(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=array.dtype.newbyteorder("<"))


def _compress(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_RAW, filters=_FILTERS)


def _decompress(data: bytes, size: int) -> bytes:
    """Exactly ``size`` bytes from ``data``; ExactError otherwise (never more are made)."""
    try:
        decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_FILTERS)
        out = decompressor.decompress(data, max_length=size)
        whole = len(out) == size and (decompressor.eof or not decompressor.decompress(b"", max_length=1))
    except lzma.LZMAError as error:
        raise ExactError(f"an exact chunk is invalid ({error})") from error
    if not whole:
        raise ExactError(f"an exact chunk holds {'less' if len(out) < size else 'more'} than its {size} bytes")
    return out


def pack_voxels(volume: np.ndarray) -> bytes:
    """A volume's voxels, losslessly."""
    return _compress(_le(volume).tobytes(order="F"))


def unpack_voxels(data: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Inverse of :func:`pack_voxels`."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    voxels = np.frombuffer(_decompress(data, size), dtype=dtype.newbyteorder("<"))
    return voxels.reshape(shape, order="F").astype(dtype)


def pack_outliers(volume: np.ndarray, mask: np.ndarray) -> bytes:
    """The voxels of ``volume`` where ``mask`` is set, with their positions, losslessly."""
    positions = np.flatnonzero(mask.ravel(order="F"))
    gaps = np.diff(positions, prepend=-1) - 1
    values = volume.ravel(order="F")[positions]
    return _compress(gaps.astype("<u8").tobytes() + _le(values).tobytes())


def unpack_outliers(data: bytes, count: int, voxels: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """(Fortran-order positions, values) of the ``count`` outliers of a volume of ``voxels``."""
    dtype = np.dtype(dtype)
    if count > voxels:
        raise ExactError(f"{count} outliers in a volume of {voxels} voxels")
    raw = _decompress(data, count * (8 + dtype.itemsize))
    gaps = np.frombuffer(raw[: 8 * count], dtype="<u8")
    if count and int(gaps.max()) >= voxels:
        raise ExactError("an outlier lies outside its volume")
    positions = np.cumsum(gaps.astype(np.int64) + 1) - 1
    if count and positions[-1] >= voxels:
        raise ExactError("an outlier lies outside its volume")
    values = np.frombuffer(raw[8 * count :], dtype=dtype.newbyteorder("<")).astype(dtype)
    return positions, values
