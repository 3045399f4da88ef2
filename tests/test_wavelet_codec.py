"""Issue 13: the wavelet coder in the container (version 7) — chosen for a PSNR target when its
file is the smallest, recorded by the typed header, decoded and verified by its checksum,
refused when forged or damaged, and shown in words by the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mriae import codec, container
from mriae.cli import mode_of, volume_words
from mriae.codec import CodecError, compress_image, decompress_image
from mriae.fidelity import Fidelity
from mriae.header import HeaderError, parse_header, read_header
from mriae.io import Image


def _smooth(shape=(40, 36, 30), dtype=np.float32, seed=2) -> np.ndarray:
    """A smooth head-like field with mild noise: what a transform coder is for."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    field = 900 * np.exp(-2 * (x**2 + y**2 + z**2)) + 120 * np.sin(3 * x) * np.cos(2 * y) + rng.normal(0, 2, shape)
    return (np.rint(field) if np.dtype(dtype).kind in "iu" else field).astype(dtype)


def _image(array: np.ndarray) -> Image:
    return Image(array, np.diag([2.0, 2.0, 2.0, 1.0]), ".nii.gz", {})


@pytest.fixture(scope="module")
def wavelet_file() -> tuple[np.ndarray, bytes, codec.Stats]:
    array = _smooth()
    data, stats = compress_image(_image(array), Fidelity.of(psnr=38.0))
    return array, data, stats


def test_a_psnr_target_on_a_smooth_volume_is_coded_by_the_wavelet_coder(wavelet_file):
    array, data, stats = wavelet_file
    assert stats.coder == "wavelet" and 38.0 <= stats.psnr < 39.0
    decoded = decompress_image(data).array
    assert decoded.shape == array.shape and decoded.dtype == array.dtype
    assert codec.psnr(array, decoded) == pytest.approx(stats.psnr, abs=1e-9)
    assert stats.max_error == float(np.abs(decoded.astype(np.float64) - array).max())


def test_the_wavelet_file_is_smaller_than_the_other_coders_at_that_target(wavelet_file, monkeypatch):
    array, data, _ = wavelet_file
    monkeypatch.setattr(codec, "WAVELET_TRIES", 0)
    others, stats = compress_image(_image(array), Fidelity.of(psnr=38.0))
    assert stats.coder in ("context", "network") and len(data) < len(others)


def test_the_header_records_the_wavelet_volume(wavelet_file):
    array, data, stats = wavelet_file
    header = read_header(data)
    assert header.version == container.FORMAT_VERSION == 7 and not header.learned and not header.lossless
    volume = header.volumes[0]
    assert volume.wavelet is not None and volume.context is None and volume.wavelet.rounded is False
    assert header.max_error == volume.wavelet.error == stats.max_error
    assert (volume.low, volume.high) == (float(array.min()), float(array.max()))
    record = container.unpack(data).header["volumes"][0]
    assert sorted(record) == ["crc", "range", "wavelet"] and sorted(record["wavelet"]) == ["error", "step"]
    assert mode_of(header) == "wavelet"
    assert volume_words(volume) == f"wavelet coder, every voxel within {volume.wavelet.error:g}"


def test_whole_numbers_decode_rounded_in_their_own_type():
    array = _smooth(dtype=np.int16)
    data, stats = compress_image(_image(array), Fidelity.of(psnr=40.0))
    assert stats.coder == "wavelet" and read_header(data).volumes[0].wavelet.rounded
    decoded = decompress_image(data).array
    assert decoded.dtype == np.int16 and codec.psnr(array, decoded) >= 40.0


def test_a_series_codes_every_volume_and_regions_and_previews_decode(wavelet_file):
    array = np.stack([_smooth(), _smooth(seed=3) * 0.9], axis=-1).astype(np.float32)
    data, stats = compress_image(_image(array), Fidelity.of(psnr=38.0))
    assert stats.coder == "wavelet" and [v.wavelet is not None for v in read_header(data).volumes] == [True, True]
    whole = decompress_image(data).array
    region = decompress_image(data, roi=(slice(3, 20), slice(5, 30), slice(0, 30))).array
    assert np.array_equal(region, whole[3:20, 5:30, 0:30])
    preview = decompress_image(data, downsample=2).array
    assert np.array_equal(preview, whole[::2, ::2, ::2])


def test_a_checksum_mismatch_or_damage_is_an_error_not_an_output(wavelet_file):
    _, data, _ = wavelet_file
    parsed = container.unpack(data)
    parsed.header["volumes"][0]["crc"] ^= 1
    with pytest.raises(CodecError, match="volume 1 is corrupt: the decoded voxels do not match their checksum"):
        decompress_image(container.pack(parsed.header, parsed.chunks))
    parsed = container.unpack(data)
    chunk = parsed.chunks[0]
    right = decompress_image(data).array
    rng = np.random.default_rng(11)
    errors = 0
    for _ in range(40):  # a damaged stream is an error, or (a bit the decode never reads) the same voxels
        damaged = bytearray(chunk)
        damaged[int(rng.integers(len(damaged)))] ^= 1 << int(rng.integers(8))
        try:
            decoded = decompress_image(container.pack(parsed.header, (bytes(damaged),))).array
        except CodecError as error:
            assert str(error).startswith("volume 1 is corrupt")
            errors += 1
        else:
            assert decoded.tobytes() == right.tobytes()
    assert errors >= 30
    for cut in (chunk[:-4], chunk[: len(chunk) // 2], chunk + b"\0\0\0\0", b""):
        with pytest.raises(CodecError, match="volume 1 is corrupt"):
            decompress_image(container.pack(parsed.header, (cut,)))


@pytest.mark.parametrize(("wavelet", "message"), [
    ({"error": 1.0, "step": 0.0}, "wavelet has an invalid error or step"),
    ({"error": -1.0, "step": 3.0}, "wavelet has an invalid error or step"),
    ({"error": 1e9, "step": 3.0}, "wavelet has an invalid error or step"),
    ({"error": "1", "step": 3.0}, "wavelet.error is not a finite number"),
    ({"error": 1.0, "step": 3.0, "rounded": 1}, "wavelet.rounded is not a bool"),
    ([1.0, 3.0], "wavelet is not a dict"),
])
def test_forged_wavelet_records_are_refused(wavelet_file, wavelet, message):
    parsed = container.unpack(wavelet_file[1])
    parsed.header["volumes"][0]["wavelet"] = wavelet
    with pytest.raises(HeaderError, match=message):
        decompress_image(container.pack(parsed.header, parsed.chunks))


def test_an_integer_image_must_round_its_wavelet_values():
    array = _smooth(dtype=np.int16)
    parsed = container.unpack(compress_image(_image(array), Fidelity.of(psnr=40.0))[0])
    del parsed.header["volumes"][0]["wavelet"]["rounded"]
    with pytest.raises(HeaderError, match="wavelet of an integer image must be rounded"):
        decompress_image(container.pack(parsed.header, parsed.chunks))


def test_a_version_6_header_has_no_wavelet_volumes(wavelet_file):
    """Versions before 7 never had wavelet volumes: in a version-6 header the record is not one."""
    header = json.loads(json.dumps(container.unpack(wavelet_file[1]).header))
    with pytest.raises(HeaderError):
        parse_header(header, 6)


def test_the_golden_files_of_version_7_hold_wavelet_volumes():
    from conftest import REPO

    for name in ("v7_wavelet_float32.mriae", "v7_wavelet_int16.mriae"):
        header = read_header((REPO / "tests" / "golden" / name).read_bytes())
        assert header.version == 7 and all(volume.wavelet is not None for volume in header.volumes)
