import json
import zlib

import pytest

from mriae.container import FORMAT_VERSION, HEADER_DICTIONARIES, MAGIC, READABLE_VERSIONS, ContainerError, pack, unpack


def test_pack_unpack_round_trip():
    header = {"b": [1, 2.5, None], "a": "é"}
    chunks = [b"", b"\x00\x01" * 100, b"xyz"]
    data = pack(header, chunks)
    assert data.startswith(MAGIC)
    parsed = unpack(data)
    assert parsed.header == header
    assert parsed.chunks == tuple(chunks)
    assert parsed.version == FORMAT_VERSION == 7
    assert pack(header, chunks) == data  # deterministic


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"NOTMRIAE" + d[8:], "not an .mriae file"),
        (lambda d: d[:4] + bytes([FORMAT_VERSION + 1]) + d[5:], f"format version {FORMAT_VERSION + 1} is not supported"),
        (lambda d: d[:4] + bytes([2]) + d[5:], "format version 2 is not supported .*reads versions 3, 4, 5, 6"),
        (lambda d: d[: len(d) // 2], "truncated|checksum mismatch"),
        (lambda d: d[:7], "truncated"),
        (lambda d: d[:-40] + bytes([d[-40] ^ 0xFF]) + d[-39:], "checksum mismatch"),  # a flipped payload byte
        (lambda d: d[:-1] + bytes([d[-1] ^ 0x01]), "checksum mismatch"),  # a flipped checksum bit
        (lambda d: d + b"\x00", "checksum mismatch|unexpected bytes"),
    ],
)
def test_damaged_containers_are_rejected_with_a_reason(mutate, message):
    data = pack({"k": 1}, [b"payload" * 20])
    with pytest.raises(ContainerError, match=message):
        unpack(mutate(data))


def test_a_small_file_costs_about_100_bytes_more_than_its_chunk():
    header = {
        "image": {"affine32": [-2.0, 0.0, 0.0, 32.0, 0.0, 2.0, 0.0, -40.0, 0.0, 0.0, 2.0, -16.0], "dtype": "<i2",
                  "shape": [33, 41, 25], "source": None, "suffix": ".nii.gz"},
        "model": {"name": "default", "sha256": "072d5ba7b742ef71"},
        "psnr": 28.73, "quality": 5,
        "volumes": [{"range": [-610.0, 30393.0], "tiles": {"crc": [3141592653], "size": 128}}],
    }
    chunk = bytes(range(256)) * 2
    data = pack(header, [chunk])
    without_dictionary = len(zlib.compress(json.dumps(header, sort_keys=True, separators=(",", ":")).encode(), 9))
    header_bytes = data[len(MAGIC) + 1]  # a one-byte varint: < 128
    assert header_bytes < 0.6 * without_dictionary
    assert len(data) - len(chunk) < 112  # version 3, without the volume's checksum: < 110
    assert unpack(data).header == header


def test_each_further_tile_costs_about_six_bytes():
    def overhead(tiles: int) -> int:
        checksums = [(2654435761 * (k + 1)) % 2**32 for k in range(tiles)]  # as random as CRCs
        header = {"volumes": [{"range": [-610.0, 30393.0], "tiles": {"crc": checksums, "size": 128}}]}
        return len(pack(header, [b"word" * 25] * tiles)) - 100 * tiles

    assert 5 * 63 <= overhead(64) - overhead(1) < 7 * 63  # a 1-byte chunk length, its CRC-32 in the header


def with_header_stream(stream: bytes, version: int = FORMAT_VERSION) -> bytes:
    """A container whose header is the raw bytes ``stream``, with a valid checksum."""
    body = MAGIC + bytes([version, len(stream)]) + stream + b"\x00"
    return body + zlib.crc32(body).to_bytes(4, "little")


def deflated(text: bytes, version: int = FORMAT_VERSION) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=HEADER_DICTIONARIES[version])
    return compressor.compress(text) + compressor.flush()


@pytest.mark.parametrize("version", READABLE_VERSIONS)
def test_each_readable_version_inflates_its_header_with_its_own_dictionary(version):
    text = b'{"volumes":[{"crc":1,"range":[0.0,1.0]}],"v3":{"volumes":[[0.0,1.0]]}}'  # early and late entries
    assert unpack(with_header_stream(deflated(text, version), version)).header == json.loads(text)
    other = READABLE_VERSIONS[(READABLE_VERSIONS.index(version) + 1) % len(READABLE_VERSIONS)]
    with pytest.raises(ContainerError, match="header is unreadable"):
        unpack(with_header_stream(deflated(text, version), other))


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (deflated(b'{"a":1}') + b"xx", "header is unreadable .*bytes after its end"),
        (deflated(b'{"a":1}')[:-2], "header is unreadable"),
        (deflated(b"[1,2]"), "header is a JSON list, not an object"),
        (deflated(b"{nope"), "header is unreadable"),
    ],
)
def test_malformed_headers_are_rejected_even_with_a_valid_checksum(stream, message):
    with pytest.raises(ContainerError, match=message):
        unpack(with_header_stream(stream))


def test_a_flipped_bit_anywhere_after_the_version_is_a_checksum_mismatch():
    data = pack({"k": 1}, [b"abc", b""])
    for position in range(len(MAGIC) + 1, len(data)):  # lengths and counts included
        damaged = data[:position] + bytes([data[position] ^ 0x40]) + data[position + 1 :]
        with pytest.raises(ContainerError, match="checksum mismatch"):
            unpack(damaged)


@pytest.mark.parametrize("length", [0, 1, 127, 128, 300, 16384, 2**21 + 5])
def test_chunk_lengths_of_any_size_round_trip(length):
    chunk = bytes(i % 251 for i in range(length))
    assert unpack(pack({}, [chunk, b"x"])).chunks == (chunk, b"x")
