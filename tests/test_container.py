import json
import struct
import zlib

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
        (lambda d: d[:8] + struct.pack("<H", FORMAT_VERSION + 1) + d[10:], f"format version {FORMAT_VERSION + 1} is not supported"),
        (lambda d: d[: len(d) // 2], "truncated|checksum mismatch"),
        (lambda d: d[:12], "truncated"),
        (lambda d: d[:-40] + bytes([d[-40] ^ 0xFF]) + d[-39:], "checksum mismatch"),  # a flipped payload byte
    ],
)
def test_damaged_containers_are_rejected_with_a_reason(mutate, message):
    data = pack({"k": 1}, [b"payload" * 20])
    with pytest.raises(ContainerError, match=message):
        unpack(mutate(data))


def test_a_typical_header_costs_well_under_200_bytes():
    affine = [-2.0, 0.0, 0.0, 32.0, 0.0, 2.0, 0.0, -40.0, 0.0, 0.0, 2.0, -16.0, 0.0, 0.0, 0.0, 1.0]
    header = {
        "grid": {"affine": affine, "coding_affine": affine, "coding_shape": [33, 41, 25], "levels": [3, 3, 3],
                 "padded_shape": [40, 48, 32], "shape": [33, 41, 25]},
        "image": {"affine": affine, "dtype": "<i2", "shape": [33, 41, 25], "source": None, "suffix": ".nii.gz"},
        "model": {"name": "default", "sha256": "784a7d2fa3457d504412d729fc589a2508f70f3bd0d900e6174d48174ccd197b"},
        "psnr": 28.731745948534254, "quality": 5, "step": 0.866, "volumes": [{"high": 30393.0, "low": -610.0}],
    }
    data = pack(header, [b""])
    without_dictionary = len(zlib.compress(json.dumps(header, sort_keys=True, separators=(",", ":")).encode(), 9))
    header_bytes = struct.unpack_from("<I", data, len(MAGIC) + 2)[0]
    assert header_bytes < 175 < without_dictionary - 100
    assert unpack(data).header == header
