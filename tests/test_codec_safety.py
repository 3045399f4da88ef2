"""Issue 12, the codec's part: untrusted headers and streams, arrays that cannot be coded
as promised, outliers, and numbers that must be true."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from conftest import anatomy

import mriae
from mriae import container
from mriae.codec import CodecError, UncodableError, psnr
from mriae.entropy_coder.stream import ESCAPE_LIMIT, StreamError, encode_symbols
from mriae.header import HeaderError, read_header
from mriae.limits import LimitError
from mriae.models.weights import load_codec


@pytest.fixture(scope="module")
def t1(mni_t1) -> np.ndarray:
    """An int16 MR-like head, 48×56×40."""
    return anatomy(mni_t1, (48, 56, 40), np.int16, 0, 1000)


@pytest.fixture(scope="module")
def coded(t1) -> bytes:
    return mriae.compress(t1, affine=np.diag([2.0, 2.0, 2.0, 1.0]))[0]


def forged(data: bytes, change=None, chunks=None) -> bytes:
    """``data`` with its header changed by ``change`` (a function of the header dict) or its
    chunks replaced, and a freshly computed, valid CRC-32."""
    parsed = container.unpack(data)
    header = parsed.header
    if change:
        change(header)
    return container.pack(header, parsed.chunks if chunks is None else chunks)


def set_in(path: str, value):
    def change(header: dict) -> None:
        *parents, key = path.split(".")
        record = header
        for parent in parents:
            record = record[int(parent)] if isinstance(record, list) else record[parent]
        record[key] = value
    return change


@pytest.mark.parametrize(("path", "value", "message"), [
    ("image.suffix", "/../../x.nii", "image.suffix '/../../x.nii' is not one of"),
    ("image.suffix", 7, "suffix is not a str"),
    ("image.dtype", "O", "image.dtype 'O' is not a supported voxel type"),
    ("image.dtype", "V16", "not a supported voxel type"),
    ("image.shape", [48, 56, -40], "image.shape .* positive integers"),
    ("image.shape", [48, 56, 40, 2], "lists 1 volumes for shape"),
    ("image.shape", [True, 56, 40], "positive integers"),
    ("image.source", 5, "image.source is not a dict"),
    ("image.source", {"kind": "nifti", "shape": [48, 56, 40], "dtype": "<i2", "header": "AAAA"}, "not a NIfTI header"),
    ("image.source", {"kind": "pickle"}, "image.source.kind 'pickle' is unknown"),
    ("image.affine32", [0.0] * 11, "an affine has 12 or 16 values"),
    ("image.affine32", ["1"] * 12, "not a finite number"),
    ("model.name", "../../../tmp/evil", "model.name '../../../tmp/evil' is not valid"),
    ("model.sha256", "zz", "model.sha256 'zz' is not valid"),
    ("quality", True, "quality is not an int"),
    ("quality", 1000, "quality 1000 is out of range"),
    ("psnr", "high", "psnr is not a finite number"),
    ("volumes.0.range", [5.0, 1.0], "high < low"),
    ("volumes.0.range", [0.0, 1e300], r"range \[0, 1e\+300\] does not fit int16"),
    ("volumes.0.tiles.crc", [-1], r"volumes\[\].tiles.crc\[\] is not a CRC-32"),
    ("volumes.0.tiles.crc", [1, 2], r"volumes\[\].tiles.crc lists 2 tiles, but 1×1×1 tiles of 128 voxels cover"),
    ("volumes.0.tiles.size", 16, r"lists 1 tiles, but 3×4×3 tiles of 16 voxels cover the coding grid"),
    ("volumes.0.tiles.size", 100, r"volumes\[\].tiles.size 100 is not a power of two from 16 to 1024"),
    ("volumes.0.tiles.size", 2**20, "is not a power of two from 16 to 1024"),
    ("volumes.0.tiles", [128], "tiles is not a dict"),
    ("volumes.0.range", [7.0, 7.0], r"volumes\[\].tiles of a constant volume: it codes nothing"),
    ("volumes.0.outliers", 3, "describes 2 chunks but the file holds 1"),
    ("grid", {"shape": [10, 10], "affine32": [1.0] * 12}, "grid.shape"),
])
def test_a_forged_header_is_refused_naming_its_field(coded, path, value, message):
    data = forged(coded, set_in(path, value))
    with pytest.raises(HeaderError, match=message):
        read_header(data)
    with pytest.raises(HeaderError, match=message):
        mriae.decompress(data)


def test_a_header_claiming_a_huge_volume_is_refused_before_anything_is_allocated(coded, monkeypatch):
    bomb = forged(coded, set_in("image.shape", [1024, 1024, 1024]))
    started = time.perf_counter()
    with pytest.raises(HeaderError, match=r"1024×1024×1024 = 1,073,741,824 voxels is over the limit of 268,435,456"):
        mriae.decompress(bomb)
    assert time.perf_counter() - started < 1.0
    many = forged(coded, set_in("image.shape", [48, 56, 40, 100_000]))
    with pytest.raises(HeaderError, match="header claims 48×56×40×100000 = 10,752,000,000 voxels"):
        mriae.decompress(many)
    monkeypatch.setenv("MRIAE_MAX_VOLUME_VOXELS", "1000")
    with pytest.raises(HeaderError, match="over the limit of 1,000 .*MRIAE_MAX_VOLUME_VOXELS"):
        mriae.decompress(coded)


def test_forged_streams_with_valid_checksums_never_decode(coded, t1):
    """Chunks replaced by random words, by another file's chunk, cut or extended — each
    with a recomputed CRC — are errors, never a volume."""
    rng = np.random.default_rng(12)
    chunk = container.unpack(coded).chunks[0]
    other = container.unpack(mriae.compress(t1[::-1].copy(), quality=3)[0]).chunks[0]
    candidates = [other, chunk[:-4], chunk + chunk[-4:], chunk[4:], chunk[:-1], b""]
    candidates += [rng.integers(0, 256, len(chunk), dtype=np.uint8).tobytes() for _ in range(40)]
    for index in range(40):  # one word changed
        position = 4 * int(rng.integers(0, len(chunk) // 4))
        candidates.append(chunk[:position] + rng.integers(0, 256, 4, dtype=np.uint8).tobytes() + chunk[position + 4:])
    for candidate in candidates:
        with pytest.raises(CodecError, match="volume 1 is corrupt"):
            mriae.decompress(forged(coded, chunks=[candidate]))


def test_latents_that_do_not_match_their_stored_checksum_are_an_error(coded):
    crc = container.unpack(coded).header["volumes"][0]["tiles"]["crc"][0]
    with pytest.raises(CodecError, match="volume 1 is corrupt: the decoded latents do not match their checksum"):
        mriae.decompress(forged(coded, set_in("volumes.0.tiles.crc", [crc ^ 1])))


def test_a_symbol_beyond_the_escape_range_is_an_error_at_encode_time_not_a_clipped_value():
    tables = load_codec().level(5).tables
    symbols = np.zeros((len(tables), 2, 2, 2), dtype=np.int32)
    symbols[3, 1, 0, 1] = ESCAPE_LIMIT + 10_000
    with pytest.raises(StreamError, match="beyond the coder's range of ±1048576"):
        encode_symbols(symbols, tables)
    symbols[3, 1, 0, 1] = ESCAPE_LIMIT // 2  # escaped, within range: exact
    from mriae.entropy_coder.stream import decode_symbols
    assert np.array_equal(decode_symbols(encode_symbols(symbols, tables), tables, (2, 2, 2)), symbols)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_arrays_are_refused_by_the_api(t1, bad):
    array = t1.astype(np.float32)
    array[3, 4, 5] = bad
    array[6, 7, 8] = bad
    with pytest.raises(UncodableError, match="image contains 2 NaN or infinite voxels, which cannot be coded"):
        mriae.compress(array)


@pytest.mark.parametrize("dtype", [np.complex64, np.dtype("datetime64[s]"), np.dtype("U3")])
def test_voxel_types_that_cannot_be_coded_are_refused(dtype):
    with pytest.raises(UncodableError, match="cannot be coded"):
        mriae.compress(np.zeros((4, 4, 4), dtype=dtype))


def test_a_boolean_mask_comes_back_exactly(t1):
    mask = t1 > 300
    data, stats = mriae.compress(mask)
    restored = mriae.decompress(data).array
    assert restored.dtype == np.bool_ and restored.shape == mask.shape
    assert np.array_equal(restored, mask)
    assert math.isinf(stats.psnr)
    assert read_header(data).lossless and read_header(data).model_name is None


@pytest.mark.parametrize(("dtype", "labels"), [
    (np.uint8, [0, 1]),                        # a brain mask
    (np.uint8, list(range(0, 120, 3))),        # a _dseg with 40 classes
    (np.int32, [0, 2, 4, 41, 43, 1035, 2035]),  # FreeSurfer aparc+aseg-like values
    (np.int64, [0, 2**40, -7]),                 # wide integers: still exact
])
def test_label_maps_come_back_with_every_label_exact(t1, dtype, labels):
    bins = np.linspace(t1.min(), t1.max(), len(labels) + 1)[1:-1]
    label_map = np.asarray(labels, dtype=dtype)[np.digitize(t1, bins)]
    series = np.stack([label_map, label_map[::-1]], axis=-1)
    restored = mriae.decompress(mriae.compress(series, quality=1)[0]).array
    assert restored.dtype == np.dtype(dtype) and np.array_equal(restored, series)


def test_integers_beyond_float64_exactness_are_refused_unless_they_are_labels(t1):
    wide = t1.astype(np.int64) * 2**45
    with pytest.raises(UncodableError, match=r"int64 values beyond ±2\*\*53 cannot be coded lossily"):
        mriae.compress(wide)
    fine = t1.astype(np.int64) * 2**40  # within ±2**53: codes like the int16 volume it was made from
    same = psnr(t1, mriae.decompress(mriae.compress(t1)[0]).array)
    assert psnr(fine, mriae.decompress(mriae.compress(fine)[0]).array) == pytest.approx(same, abs=0.01)


def test_a_hot_voxel_does_not_wreck_the_volume_and_comes_back_exactly(t1):
    clean_data, clean_stats = mriae.compress(t1)
    clean = mriae.decompress(clean_data).array
    hot = t1.copy()
    hot[20, 30, 20] = 32767
    data, stats = mriae.compress(hot)
    restored = mriae.decompress(data).array
    assert restored[20, 30, 20] == 32767
    others = np.ones(hot.shape, bool)
    others[20, 30, 20] = False
    assert psnr(t1[others], restored[others]) >= psnr(t1[others], clean[others]) - 0.1
    assert stats.psnr == pytest.approx(psnr(hot, restored), abs=1e-9)  # the reported number is the decoder's
    assert read_header(data).volumes[0].outliers == stats.outliers == 1 and clean_stats.outliers == 0


def test_float_extremes_are_kept_exactly_and_the_rest_still_codes(t1):
    values = t1.astype(np.float32)
    clean = mriae.decompress(mriae.compress(values)[0]).array
    values[0, 0, 0], values[1, 1, 1] = 3e38, -3e38
    restored = mriae.decompress(mriae.compress(values)[0]).array
    assert restored[0, 0, 0] == np.float32(3e38) and restored[1, 1, 1] == np.float32(-3e38)
    body = np.ones(values.shape, bool)
    body[0, 0, 0] = body[1, 1, 1] = False
    assert psnr(values[body], restored[body]) >= psnr(values[body], clean[body]) - 0.1


def test_psnr_does_not_overflow_near_the_float64_limits(t1):
    values = t1.astype(np.float64) * 1e297
    values[0, 0, 0] = -1e300
    data, stats = mriae.compress(values)
    assert math.isfinite(stats.psnr) and stats.psnr > 25
    assert stats.psnr == pytest.approx(psnr(values, mriae.decompress(data).array), abs=1e-9)
    everywhere = np.linspace(-1.0, 1.0, 512).reshape(8, 8, 8) * 1.7e308  # 512 values over ±1.7e308
    with pytest.raises(UncodableError, match="too wide a range to code"):
        mriae.compress(everywhere)


def test_a_tiny_voxel_size_is_refused_before_resampling_allocates(t1):
    started = time.perf_counter()
    with pytest.raises(LimitError, match=r"resampling to 0.05×0.05×0.05 mm gives a grid of 1920×2240×1600"):
        mriae.compress(t1, affine=np.diag([2.0, 2.0, 2.0, 1.0]), spacing=(0.05, 0.05, 0.05))
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize(("name", "exact"), [
    ("aparc+aseg.nii.gz", True), ("sub-01_dseg.nii.gz", True), ("sub-01_desc-brain_mask.nii", True),
    ("sub-01_T1w.nii.gz", False),
])
def test_a_file_named_as_a_label_map_is_coded_exactly_whatever_its_label_count(t1, tmp_path, name, exact):
    """FreeSurfer's aparc+aseg has ~110 labels, more than the value-count rule takes."""
    import nibabel as nib

    labels = (np.digitize(t1, np.linspace(1, 999, 120)) * 17).astype(np.int16)  # 120 labels, up to 2040
    path = tmp_path / name
    nib.save(nib.Nifti1Image(labels, np.eye(4)), path)
    data, stats = mriae.compress(path)
    restored = mriae.decompress(data).array
    assert np.array_equal(restored, labels) is exact
    assert read_header(data).lossless is exact and math.isinf(stats.psnr) is exact


@pytest.mark.parametrize(("array", "message"), [
    (np.array(5.0, np.float32), "an image has 1 to 7 axes, this one has 0"),
    (np.zeros((2,) * 8, np.float32), "an image has 1 to 7 axes, this one has 8"),
])
def test_arrays_a_file_cannot_describe_are_refused_before_coding(array, message):
    with pytest.raises(UncodableError, match=message):
        mriae.compress(array)


def test_the_encoder_refuses_what_its_decoder_would_refuse(t1, monkeypatch):
    """No file is written that cannot be read back: the same limits on both sides."""
    monkeypatch.setenv("MRIAE_MAX_VOLUME_VOXELS", "1000")
    with pytest.raises(LimitError, match="a volume of 48×56×40 = 107,520 voxels is over the limit of 1,000"):
        mriae.compress(t1)


def test_forged_original_headers_are_refused(tmp_path, t1):
    import nibabel as nib

    path = tmp_path / "t1.nii"
    nib.save(nib.Nifti1Image(t1, np.eye(4)), path)
    data = mriae.compress(path)[0]
    with pytest.raises(HeaderError, match="image.source.dtype '<f8' differs from image.dtype"):
        read_header(forged(data, set_in("image.source.dtype", "<f8")))
    source = container.unpack(data).header["image"]["source"]
    raw = bytearray(__import__("base64").b64decode(source["header"]))
    raw[42:44] = (200).to_bytes(2, "little")  # dim[1]
    with pytest.raises(HeaderError, match="describes another shape than image.shape"):
        read_header(forged(data, set_in("image.source.header", __import__("base64").b64encode(raw).decode())))


@pytest.mark.parametrize(("key", "value", "message"), [
    ("ElementDataFile", "/etc/hostname", "sets 'ElementDataFile', which the writer derives from the image"),
    ("data file", "../x.raw", "sets 'data file'"),
    ("Comment", "two\nlines", "one-line text"),
])
def test_forged_itk_metadata_cannot_steer_the_writer(tmp_path, t1, key, value, message):
    import SimpleITK as sitk

    path = tmp_path / "t1.mha"
    sitk.WriteImage(sitk.GetImageFromArray(t1.transpose(2, 1, 0).copy()), str(path))
    data = mriae.compress(path)[0]
    with pytest.raises(HeaderError, match=message):
        read_header(forged(data, set_in(f"image.source.metadata.{key}", value)))


def test_a_coding_grid_is_bounded_over_all_volumes(coded, monkeypatch):
    series = forged(coded, lambda h: h["image"].update(shape=[48, 56, 40, 3]) or h.update(volumes=h["volumes"] * 3))
    series = forged(series, set_in("grid", {"shape": [400, 400, 400], "affine32": [1.0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]}))
    monkeypatch.setenv("MRIAE_MAX_VOXELS", str(400**3 * 2))
    with pytest.raises(HeaderError, match="the coding grid claims 400×400×400×3"):
        read_header(series)


def test_float_label_maps_as_monai_loads_them_come_back_exactly(t1):
    labels = np.digitize(t1, [100, 300, 600, 900]).astype(np.float32) * 2
    restored = mriae.decompress(mriae.compress(labels, quality=1)[0]).array
    assert restored.dtype == np.float32 and np.array_equal(restored, labels)


def test_a_marker_of_many_voxels_is_stored_exactly_too(t1):
    marked = t1.copy()
    marked[10:14, 10:14, 10:14] = 30000  # 64 voxels, 0.06 % of the volume
    clean = mriae.decompress(mriae.compress(t1)[0]).array
    data = mriae.compress(marked)[0]
    restored = mriae.decompress(data).array
    assert read_header(data).volumes[0].outliers == 64
    assert np.all(restored[10:14, 10:14, 10:14] == 30000)
    rest = np.ones(t1.shape, bool)
    rest[10:14, 10:14, 10:14] = False
    assert psnr(t1[rest], restored[rest]) >= psnr(t1[rest], clean[rest]) - 0.1


def test_the_api_never_replaces_its_input_even_with_force(tmp_path, t1):
    import nibabel as nib

    path = tmp_path / "t1.nii"
    nib.save(nib.Nifti1Image(t1, np.eye(4)), path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="would replace the input"):
        mriae.compress(path, path, force=True)
    assert path.read_bytes() == before


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64])
def test_psnr_is_the_same_whatever_the_arrays_layout_or_type(dtype):
    rng = np.random.default_rng(3)
    original = (rng.random((20, 30, 40)) * 200).astype(dtype)
    noise = rng.integers(-3, 4, original.shape) if original.dtype.kind in "iu" else rng.normal(0, 1.5, original.shape)
    reconstruction = np.clip(original + noise, 0, 255).astype(dtype)

    def expected(first: np.ndarray, second: np.ndarray) -> float:
        error = first.astype(np.float64) - second.astype(np.float64)
        return 20 * math.log10(float(first.max()) - float(first.min())) - 10 * math.log10(float(np.mean(error**2)))

    pairs = [(np.asfortranarray(original), reconstruction), (original, np.asfortranarray(reconstruction)),
             (original[:, ::2], np.asfortranarray(reconstruction[:, ::2])), (original[3:, 5:], reconstruction[3:, 5:]),
             (original, reconstruction.astype(np.float64) + 0.25)]
    for first, second in pairs:
        assert psnr(first, second) == pytest.approx(expected(first, second), abs=1e-9)


def test_uint64_images_code_in_every_mode():
    rng = np.random.default_rng(1)
    values = (rng.random((24, 20, 16)) * 300).astype(np.uint64)
    for fidelity in ({}, {"max_error": 2.0}, {"psnr": 45.0}, {"lossless": True}):
        data, stats = mriae.compress(values, **fidelity)
        restored = mriae.decompress(data).array
        assert restored.dtype == np.uint64 and restored.shape == values.shape
        assert stats.psnr == pytest.approx(psnr(values, restored), abs=1e-9)
    assert np.array_equal(restored, values)
