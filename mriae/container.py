"""The .mriae file layout: bytes in, bytes out; it knows nothing about networks or images.

::

    magic     8 bytes   b"\\x89MRIAE\\r\\n"
    version   u16 LE    FORMAT_VERSION
    header    u32 LE length, then UTF-8 JSON (sorted keys) compressed by zlib with the
              preset dictionary HEADER_DICTIONARY
    chunks    u32 LE count, then per chunk: u64 LE length, then the chunk's bytes
    checksum  32 bytes  SHA-256 of everything above

Each chunk decodes on its own (one per 3D volume today, one per tile later), so random
access needs no format change. See docs/format.md.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass

MAGIC = b"\x89MRIAE\r\n"
FORMAT_VERSION = 2
_CHECKSUM_BYTES = 32
HEADER_DICTIONARY = (
    b'{"grid":{"affine":[1.0,0.0,0.0,0.0,0.0,1.0,0.0,0.0,0.0,0.0,1.0,0.0,0.0,0.0,0.0,1.0],"coding_affine":[,'
    b'"coding_shape":[,"levels":[3,3,3],"padded_shape":[,"shape":[},"image":{"affine":[,"dtype":"<i2","<f4",'
    b'"|u1","shape":[,"source":null,"suffix":".nii.gz"},"model":{"name":"default","sha256":"},"psnr":,'
    b'"quality":,"step":,"volumes":[{"high":,"low":'
)
"""zlib preset dictionary of the header: the keys and common values of a typical header, so
that a small file does not pay ~120 bytes to spell them out (part of format version 2)."""


class ContainerError(ValueError):
    """A byte string that is not a readable .mriae container; the message says why."""


@dataclass(frozen=True)
class Container:
    """A parsed .mriae file: its JSON header and its independently decodable chunks."""

    header: dict
    chunks: tuple[bytes, ...]


def pack(header: dict, chunks: list[bytes] | tuple[bytes, ...]) -> bytes:
    """Serialize ``header`` and ``chunks`` into the container layout."""
    compressor = zlib.compressobj(9, zdict=HEADER_DICTIONARY)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    header_bytes = compressor.compress(text) + compressor.flush()
    parts = [MAGIC, struct.pack("<HI", FORMAT_VERSION, len(header_bytes)), header_bytes]
    parts.append(struct.pack("<I", len(chunks)))
    for chunk in chunks:
        parts += [struct.pack("<Q", len(chunk)), bytes(chunk)]
    body = b"".join(parts)
    return body + hashlib.sha256(body).digest()


def unpack(data: bytes) -> Container:
    """Parse and verify a container; raises ContainerError on any defect."""
    if not data.startswith(MAGIC):
        raise ContainerError("not an .mriae file (bad magic bytes)")
    if len(data) < len(MAGIC) + 6:
        raise ContainerError("file is truncated")
    (version,) = struct.unpack_from("<H", data, len(MAGIC))
    if version != FORMAT_VERSION:
        raise ContainerError(f"format version {version} is not supported (this mriae reads version {FORMAT_VERSION})")
    if len(data) < len(MAGIC) + 6 + _CHECKSUM_BYTES:
        raise ContainerError("file is truncated")
    body, checksum = data[:-_CHECKSUM_BYTES], data[-_CHECKSUM_BYTES:]
    reader = _Reader(body, len(MAGIC) + 2)
    header_bytes = reader.take(reader.unsigned("<I"))
    chunks = tuple(reader.take(reader.unsigned("<Q")) for _ in range(reader.unsigned("<I")))
    if hashlib.sha256(body).digest() != checksum:
        raise ContainerError("checksum mismatch: the file is corrupt")
    if reader.position != len(body):
        raise ContainerError("unexpected bytes after the last chunk")
    try:
        decompressor = zlib.decompressobj(zdict=HEADER_DICTIONARY)
        text = decompressor.decompress(header_bytes) + decompressor.flush()
        if not decompressor.eof:
            raise ValueError("the compressed header ends early")
        header = json.loads(text.decode("utf-8"))
    except (ValueError, zlib.error) as error:
        raise ContainerError(f"header is not valid JSON ({error})") from error
    return Container(header, chunks)


class _Reader:
    """Bounds-checked cursor over a byte string; running off the end means truncation."""

    def __init__(self, data: bytes, position: int) -> None:
        self.data = data
        self.position = position

    def take(self, count: int) -> bytes:
        end = self.position + count
        if end > len(self.data):
            raise ContainerError("file is truncated")
        piece = self.data[self.position : end]
        self.position = end
        return piece

    def unsigned(self, fmt: str) -> int:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]
