import struct

import pytest

from mriae.container import FORMAT_VERSION, MAGIC, ContainerError, pack, unpack


def test_pack_unpack_round_trip():
    header = {"b": [1, 2.5, None], "a": "é"}
    chunks = [b"", b"\x00\x01" * 100, b"xyz"]
    data = pack(header, chunks)
    assert data.startswith(MAGIC)
    parsed = unpack(data)
    assert parsed.header == header
    assert parsed.chunks == tuple(chunks)
    assert pack(header, chunks) == data  # deterministic


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"NOTMRIAE" + d[8:], "not an .mriae file"),
        (lambda d: d[:8] + struct.pack("<H", FORMAT_VERSION + 1) + d[10:], "format version 2 is not supported"),
        (lambda d: d[: len(d) // 2], "truncated|checksum mismatch"),
        (lambda d: d[:12], "truncated"),
        (lambda d: d[:-40] + bytes([d[-40] ^ 0xFF]) + d[-39:], "checksum mismatch"),  # a flipped payload byte
    ],
)
def test_damaged_containers_are_rejected_with_a_reason(mutate, message):
    data = pack({"k": 1}, [b"payload" * 20])
    with pytest.raises(ContainerError, match=message):
        unpack(mutate(data))
