"""The .mriae file layout: bytes in, bytes out; it knows nothing about networks or images.

::

    magic     4 bytes   b"\\x89MRI"
    version   u8        FORMAT_VERSION
    header    varint length, then UTF-8 JSON (sorted keys) as raw DEFLATE with the preset
              dictionary HEADER_DICTIONARIES[version]
    chunks    varint count, then per chunk: varint length, then the chunk's bytes
    checksum  u32 LE    CRC-32 of everything above

Varints are unsigned LEB128. Every byte of overhead counts on small volumes (a 33×41×25 scan
at 0.05 bits/voxel is ~200 bytes of payload), so the layout is as lean as the JPEG XL
codestream's. Each chunk decodes on its own (one per tile of a network-coded volume from
version 6 on, one per volume otherwise), so a region decodes from the chunks it needs. See
docs/format.md.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass

MAGIC = b"\x89MRI"
FORMAT_VERSION = 7
READABLE_VERSIONS = (3, 4, 5, 6, 7)
"""Every version that was ever on main is read (tests/golden holds a file of each)."""
_CHECKSUM = struct.Struct("<I")
_DEFLATE_WINDOW = -15  # raw DEFLATE: the CRC-32 already guards the bytes
HEADER_LIMIT = 64 << 20
"""Largest decompressed header a reader accepts (a crafted file cannot exhaust memory)."""
_DICTIONARY_V3 = (
    b'"grid":{"affine32":[1.0,0.0,0.0,,0.0,1.0,0.0,0.0,0.0,1.0,"shape":[1,,"image":{"affine":['
    b'"affine32":[-1.0,0.0,0.0,0.0,"dtype":"<i2","<f4","|u1","<u2","source":null,"suffix":".nii.gz"},'
    b'"model":{"name":"default","sha256":"},"psnr":,"quality":5,"volumes":[[0.0,'
)
_DICTIONARY_V4 = _DICTIONARY_V3 + b'"exact":true,"outliers":"volumes":[{"crc":,"range":[0.0,'
_DICTIONARY_V5 = (
    _DICTIONARY_V4 + b'"float_bits":true"rounded":true"volumes":[{"bound":{"error":0.0,"origin":0.0,"step":1.0},"crc":'
)
_DICTIONARY_V6 = _DICTIONARY_V5 + b'],"size":128}},{"range":[0.0,"tiles":{"crc":['
HEADER_DICTIONARIES = {
    3: _DICTIONARY_V3,
    4: _DICTIONARY_V4,
    5: _DICTIONARY_V5,
    6: _DICTIONARY_V6,
    7: _DICTIONARY_V6.replace(b'"volumes":[[0.0,', b'"wavelet":{"erro'),  # version 3's list form, gone since 4
}
"""Raw-DEFLATE preset dictionary of the header per format version: the keys and common
values of a typical header, so that a small file does not spell them out."""


class ContainerError(ValueError):
    """A byte string that is not a readable .mriae container; the message says why."""


@dataclass(frozen=True)
class Container:
    """A parsed .mriae file: its format version, JSON header and independently decodable chunks."""

    version: int
    header: dict
    chunks: tuple[bytes, ...]


def _varint(value: int) -> bytes:
    """Unsigned LEB128 encoding of ``value``."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def pack(header: dict, chunks: list[bytes] | tuple[bytes, ...]) -> bytes:
    """Serialize ``header`` and ``chunks`` into the container layout."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, _DEFLATE_WINDOW, zdict=HEADER_DICTIONARIES[FORMAT_VERSION])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    header_bytes = compressor.compress(text) + compressor.flush()
    parts = [MAGIC, bytes([FORMAT_VERSION]), _varint(len(header_bytes)), header_bytes, _varint(len(chunks))]
    for chunk in chunks:
        parts += [_varint(len(chunk)), bytes(chunk)]
    body = b"".join(parts)
    return body + _CHECKSUM.pack(zlib.crc32(body))


def unpack(data: bytes) -> Container:
    """Parse and verify a container; raises ContainerError on any defect."""
    if not data.startswith(MAGIC):
        raise ContainerError("not an .mriae file (bad magic bytes)")
    if len(data) < len(MAGIC) + 1:
        raise ContainerError("file is truncated")
    version = data[len(MAGIC)]
    if version not in READABLE_VERSIONS:
        readable = ", ".join(str(v) for v in READABLE_VERSIONS)
        raise ContainerError(f"format version {version} is not supported (this mriae reads versions {readable})")
    if len(data) < len(MAGIC) + 1 + _CHECKSUM.size:
        raise ContainerError("file is truncated")
    body, checksum = data[: -_CHECKSUM.size], data[-_CHECKSUM.size :]
    if _CHECKSUM.pack(zlib.crc32(body)) != checksum:
        raise ContainerError("checksum mismatch: the file is corrupt or truncated")
    reader = _Reader(body, len(MAGIC) + 1)
    header_bytes = reader.take(reader.varint())
    chunks = tuple(reader.take(reader.varint()) for _ in range(reader.varint()))
    if reader.position != len(body):
        raise ContainerError("unexpected bytes after the last chunk")
    return Container(version, _header(header_bytes, HEADER_DICTIONARIES[version]), chunks)


def _header(compressed: bytes, dictionary: bytes) -> dict:
    """The JSON object in a header's DEFLATE stream; ContainerError if it is anything else."""
    try:
        decompressor = zlib.decompressobj(_DEFLATE_WINDOW, zdict=dictionary)
        text = decompressor.decompress(compressed, HEADER_LIMIT)
        if decompressor.unconsumed_tail:
            raise ValueError(f"it is larger than {HEADER_LIMIT >> 20} MiB")
        if not decompressor.eof or decompressor.unused_data:
            raise ValueError("its stream ends early or has bytes after its end")
        header = json.loads(text.decode("utf-8"))
    except (ValueError, zlib.error) as error:
        raise ContainerError(f"header is unreadable ({error})") from error
    if not isinstance(header, dict):
        raise ContainerError(f"header is a JSON {type(header).__name__}, not an object")
    return header


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

    def varint(self) -> int:
        """An unsigned LEB128 integer of at most 10 bytes."""
        value = 0
        for shift in range(0, 64, 7):
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise ContainerError("length field is malformed")
