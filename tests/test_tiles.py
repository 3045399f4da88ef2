"""Issue 14, items 1–2: network-coded volumes in tiles (container version 6) and regions
decoded from the tiles they need (``--roi``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import anatomy, run_mriae

import mriae
from mriae import container, tiled
from mriae.codec import CodecError, compress_image, decompress_image
from mriae.evaluation.maps import latent_bits
from mriae.header import HeaderError, read, read_header
from mriae.io import Image, read_image
from mriae.models.weights import load_codec
from mriae.parallel import single_threaded
from mriae.tiled import TileSymbols, encode_tile, network_voxels, reconstructed
from mriae.transforms.geometry import plan, plan_on, to_network_grid
from mriae.transforms.intensity import IntensityRange
from mriae.transforms.tiles import TileGrid, box_slices, region_affine, region_of, tile_counts, whole

AFFINE = np.array([[0.96, -0.28, 0.0, -40.5], [0.28, 0.96, 0.0, -52.25], [0.0, 0.0, 1.5, -20.0], [0, 0, 0, 1.0]])


@pytest.fixture(scope="module")
def t1(mni_t1) -> np.ndarray:
    """An int16 MR-like head, 48×56×40: 3×4×3 tiles of 16 voxels."""
    return anatomy(mni_t1, (48, 56, 40), np.int16, 0, 1000)


@pytest.fixture(scope="module")
def tiled_file(t1) -> bytes:
    return compress_image(Image(t1, AFFINE), 5, tile_size=16)[0]


@pytest.fixture(scope="module")
def tiled_decoded(tiled_file) -> np.ndarray:
    return decompress_image(tiled_file).array


def test_the_tile_grid_of_a_volume():
    grid = plan_on((40, 33, 17), np.eye(4), 3)  # padded 40×40×24: 5×5×3 latents
    tiles = TileGrid.of(grid, 16)
    assert tiles.latents == (5, 5, 3) and tiles.tile == (2, 2, 2)
    assert tiles.counts == tile_counts((40, 33, 17), 16) == (3, 3, 2) and tiles.count == 18
    assert tiles.latent_box(0) == ((0, 2), (0, 2), (0, 2))
    assert tiles.latent_box(17) == ((4, 5), (4, 5), (2, 3))
    assert tiles.voxel_box(17) == ((32, 40), (32, 40), (16, 24))
    assert tiles.analysis_box(17) == ((3, 5), (3, 5), (1, 3))  # one latent before, none after
    assert tiles.analysis_box(0) == ((0, 2), (0, 2), (0, 2))  # none beyond the grid
    assert tiles.synthesis_box(0) == ((0, 3), (0, 3), (0, 3))  # one latent after, none before
    assert tiles.synthesis_box(17) == ((4, 5), (4, 5), (2, 3))
    assert tiles.meeting(tiles.synthesis_box(0)) == [0, 1, 2, 3, 6, 7, 8, 9]
    assert tiles.covering(((15, 17), (0, 1), (0, 1))) == [0, 6]
    assert TileGrid.of(grid, None).count == 1 and TileGrid.of(grid, None).latent_box(0) == whole((5, 5, 3))
    with pytest.raises(ValueError, match="a tile of 12 voxels is not a whole number of latents of 8 voxels"):
        TileGrid.of(grid, 12)


def test_tiles_are_the_whole_volumes_transforms_to_float_rounding(t1):
    """The halos are the receptive fields: a tile's latents are the whole volume's analysis
    (symbols differ only where rounding lands on a bin edge), and its voxels the whole
    volume's synthesis."""
    codec = load_codec()
    grid = plan(t1.shape, np.eye(4), 3)
    tiles = TileGrid.of(grid, 16)
    intensity = IntensityRange.of(t1)
    voxels = network_voxels(t1, grid, intensity)
    coded = [encode_tile(codec, 5, tiles, index, voxels) for index in range(tiles.count)]
    symbols = TileSymbols(tiles, lambda index: coded[index][1])
    in_tiles = symbols.box(whole(tiles.latents))
    with torch.no_grad(), single_threaded():
        latents = codec.model.encode(to_network_grid(intensity.scale(t1), grid), grid.levels)
        at_once = codec.model.entropy_bottleneck.quantize(latents, codec.level(5).channel_steps)[0].numpy()
        integers = torch.from_numpy(in_tiles.astype(np.float32))[None]
        synthesis = codec.model.decode(codec.model.entropy_bottleneck.dequantize(integers, codec.level(5).channel_steps),
                                       grid.levels)[0, 0].numpy()
    assert np.abs(in_tiles - at_once).max() <= 1 and np.mean(in_tiles == at_once) > 0.9999
    pieces = np.empty(t1.shape, np.float32)
    for box, values in reconstructed(codec, 5, grid, symbols, whole(t1.shape)):
        pieces[box_slices(box)] = values
    assert np.abs(pieces - synthesis[box_slices(whole(t1.shape))]).max() < 1e-5


def test_a_tiled_file_records_its_tiles_and_codes_like_one_tile(t1, tiled_file, tiled_decoded):
    header, chunks = read(tiled_file)
    tiling = header.volumes[0].tiling
    assert header.version == container.FORMAT_VERSION == 7
    assert (tiling.size, tiling.counts, len(tiling.checksums)) == (16, (3, 4, 3), 36) and len(chunks) == 36
    single = compress_image(Image(t1, AFFINE), 5)[0]
    assert read_header(single).volumes[0].tiling.counts == (1, 1, 1)
    assert mriae.codec.psnr(t1, tiled_decoded) == pytest.approx(mriae.codec.psnr(t1, mriae.decompress(single).array),
                                                                abs=0.05)


def test_a_constant_volume_codes_nothing():
    data, stats = compress_image(Image(np.full((9, 8, 7), 42.5, np.float32), np.eye(4)), 5)
    header, chunks = read(data)
    assert chunks == () and header.volumes[0].tiling is None and header.volumes[0].learned
    assert np.all(decompress_image(data).array == np.float32(42.5)) and stats.psnr == float("inf")


@pytest.mark.parametrize("roi", [
    (slice(18, 30), slice(18, 30), slice(18, 30)),  # inside one tile
    (slice(5, 41), slice(13, 50), slice(0, 40)),    # across tiles, a whole axis
    (slice(47, 48), slice(55, 56), slice(39, 40)),  # the last voxel, in a partial tile
    (slice(None), slice(None), slice(16, 17)),       # one slice
])
def test_a_region_is_the_full_decodes_region_bit_for_bit(tiled_file, tiled_decoded, roi):
    part = decompress_image(tiled_file, roi=roi)
    assert part.array.shape == tiled_decoded[roi].shape
    assert part.array.tobytes() == np.ascontiguousarray(tiled_decoded[roi]).tobytes()
    start = np.array([s.start or 0 for s in roi], dtype=float)
    assert np.array_equal(part.affine[:3, 3], AFFINE[:3, :3] @ start + AFFINE[:3, 3])
    assert np.array_equal(part.affine[:3, :3], AFFINE[:3, :3])


def test_a_region_of_a_series_with_outliers(t1):
    series = np.stack([t1, t1[::-1]], axis=-1)
    series[20, 30, 20, 1] = 32000  # a marker, stored exactly beside the code
    series[3, 4, 5, 0] = -32000
    data = compress_image(Image(series, AFFINE), 3, tile_size=16)[0]
    full = decompress_image(data).array
    roi = (slice(15, 33), slice(25, 40), slice(0, 21))
    part = decompress_image(data, roi=roi).array
    assert part.shape == (18, 15, 21, 2) and np.array_equal(part, full[roi])
    assert part[5, 5, 20, 1] == 32000 and full[3, 4, 5, 0] == -32000


def test_a_region_decodes_only_the_tiles_it_needs(tiled_file, monkeypatch):
    synthesized, decoded = [], []
    synthesize, decode = tiled.synthesize_tile, tiled.decode_symbols
    monkeypatch.setattr(tiled, "synthesize_tile", lambda codec, q, s, index: synthesized.append(index)
                        or synthesize(codec, q, s, index))
    monkeypatch.setattr(tiled, "decode_symbols", lambda *args: decoded.append(args[2]) or decode(*args))
    decompress_image(tiled_file, roi=(slice(18, 30), slice(18, 30), slice(18, 30)))
    assert synthesized == [1 * 12 + 1 * 3 + 1] and len(decoded) == 8  # its tile, and the symbols of its halo
    synthesized.clear(), decoded.clear()
    decompress_image(tiled_file, roi=(slice(40, 48), slice(50, 56), slice(35, 40)))
    assert synthesized == [35] and len(decoded) == 1  # the last tile has no halo
    synthesized.clear(), decoded.clear()
    decompress_image(tiled_file)
    assert synthesized == list(range(36)) and len(decoded) == 36


def test_a_region_of_a_resampled_grid_is_the_full_decodes_region_to_rounding(t1):
    volume = t1.astype(np.float32) * np.float32(0.731)
    data = compress_image(Image(volume, np.diag([0.9, 1.1, 2.5, 1.0])), 5, spacing=(1.4, 1.4, 1.4), tile_size=16)[0]
    assert read_header(data).grid is not None and read_header(data).volumes[0].tiling.count > 1
    full = decompress_image(data).array
    for roi in [(slice(10, 30), slice(20, 41), slice(7, 19)), (slice(0, 48), slice(50, 56), slice(0, 3))]:
        part = decompress_image(data, roi=roi).array
        assert part.shape == full[roi].shape
        assert np.abs(part - full[roi]).max() <= 1e-5 * float(volume.max())


def test_an_image_grid_that_misses_the_coding_grid_takes_its_edge_values(t1):
    """Found by fuzzing: a (forged) affine that puts the image far beyond its coding grid."""
    data = compress_image(Image(t1.astype(np.float32), np.diag([1.0, 1.0, 3.0, 1.0])), 5, spacing=(1.0, 1.0, 1.5),
                          tile_size=16)[0]
    parsed = container.unpack(data)
    parsed.header["image"]["affine32"][3] = 2**31  # the x origin, 2 147 km away
    decoded = decompress_image(container.pack(parsed.header, parsed.chunks)).array
    assert decoded.shape == t1.shape and np.array_equal(decoded, np.broadcast_to(decoded[:1], decoded.shape))


def test_regions_of_context_coded_and_exact_volumes_are_cropped(t1):
    roi = (slice(3, 20), slice(10, 11), slice(30, 40))
    for data in (mriae.compress(t1, lossless=True)[0], mriae.compress((t1 > 300).astype(np.uint8))[0]):
        full = mriae.decompress(data).array
        assert np.array_equal(mriae.decompress(data, roi=roi).array, full[roi])


@pytest.mark.parametrize(("roi", "message"), [
    ((slice(0, 10), slice(0, 10)), r"a region needs three ranges \(x, y, z\), got 2"),
    ((slice(0, 10), slice(0, 57), slice(0, 10)), "range 0:57 on axis y is outside the image's 0:56"),
    ((slice(-5, 10), slice(0, 5), slice(0, 10)), "range -5:10 on axis x is outside the image's 0:48"),
    ((slice(0, 10), slice(0, 5), slice(7, 7)), "range 7:7 on axis z is empty"),
    ((slice(0, 10, 2), slice(0, 5), slice(0, 10)), "range 0:10:2 on axis x is not whole voxel indices"),
])
def test_a_bad_region_is_refused_with_one_line(tiled_file, roi, message):
    with pytest.raises(ValueError, match=message):
        mriae.decompress(tiled_file, roi=roi)
    assert region_of(None, (4, 5, 6)) == ((0, 4), (0, 5), (0, 6))


def test_the_cli_writes_a_region_with_its_geometry(tmp_path, t1, monkeypatch, capsys):
    import nibabel as nib

    original = nib.Nifti1Image(t1, AFFINE)
    original.header["descrip"] = b"tiles test"
    original.set_qform(AFFINE, code=1)
    nib.save(original, tmp_path / "t1.nii.gz")
    packed = tmp_path / "t1.mriae"
    packed.write_bytes(compress_image(read_image(tmp_path / "t1.nii.gz"), 5, tile_size=16)[0])
    code, out, _ = run_mriae(monkeypatch, capsys, "decompress", str(packed), "--roi", "5:41,13:,0:40", "-o",
                             str(tmp_path / "roi.nii.gz"))
    assert code == 0 and "shape (36, 43, 40)" in out
    region = nib.load(tmp_path / "roi.nii.gz")
    expected = region_affine(AFFINE, ((5, 41), (13, 56), (0, 40)))
    assert region.shape == (36, 43, 40) and np.allclose(region.affine, expected, atol=1e-4)
    assert np.allclose(region.get_qform(), expected, atol=1e-4) and region.header["descrip"] == b"tiles test"
    assert np.array_equal(np.asarray(region.dataobj), decompress_image(packed.read_bytes()).array[5:41, 13:, :])


def test_a_region_of_an_itk_image_keeps_its_metadata_and_moves_its_origin(tmp_path, t1):
    import SimpleITK as sitk

    itk = sitk.GetImageFromArray(t1.transpose(2, 1, 0).copy())
    itk.SetOrigin((12.5, -30.0, 7.25))
    itk.SetSpacing((0.9, 1.1, 2.0))
    itk.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    itk.SetMetaData("mriae_note", "tiles")
    sitk.WriteImage(itk, str(tmp_path / "t1.mha"))
    data = compress_image(read_image(tmp_path / "t1.mha"), 5, tile_size=16)[0]
    mriae.decompress(data, tmp_path / "roi.mha", roi=(slice(4, 30), slice(17, 56), slice(9, 10)))
    region = read_image(tmp_path / "roi.mha")
    assert region.array.shape == (26, 39, 1) and region.source["metadata"]["mriae_note"] == "tiles"
    assert np.allclose(region.affine, region_affine(read_image(tmp_path / "t1.mha").affine, ((4, 30), (17, 56), (9, 10))))


@pytest.mark.parametrize(("text", "message"), [
    ("0:10,0:10", r"bad --roi '0:10,0:10': give x0:x1,y0:y1,z0:z1, voxel indices, half-open like Python slices"),
    ("0:10,0:a,0:5", "bad --roi '0:10,0:a,0:5': give x0:x1,y0:y1,z0:z1"),
    ("0:10,0:99,0:5", "bad --roi '0:10,0:99,0:5': the region's range 0:99 on axis y is outside the image's 0:56"),
])
def test_the_cli_refuses_a_bad_region_with_one_line(tmp_path, tiled_file, monkeypatch, capsys, text, message):
    packed = tmp_path / "t1.mriae"
    packed.write_bytes(tiled_file)
    code, _, err = run_mriae(monkeypatch, capsys, "decompress", str(packed), "--roi", text)
    assert code == 2 and err.count("\n") == 1 and message in err
    assert not (tmp_path / "t1.nii.gz").exists()


def test_forged_tiles_are_errors_naming_the_tile(tiled_file):
    parsed = container.unpack(tiled_file)
    chunks = list(parsed.chunks)
    swapped = container.pack(parsed.header, chunks[:4] + [chunks[5], chunks[4]] + chunks[6:])
    with pytest.raises(CodecError, match="volume 1 is corrupt: tile 5 of 36: "):
        decompress_image(swapped)
    with pytest.raises(HeaderError, match="describes 36 chunks but the file holds 35"):
        decompress_image(container.pack(parsed.header, chunks[:-1]))
    parsed.header["volumes"][0]["tiles"]["crc"][20] ^= 1
    with pytest.raises(CodecError, match="tile 21 of 36: the decoded latents do not match their checksum"):
        decompress_image(container.pack(parsed.header, chunks))
    with pytest.raises(CodecError, match="tile 21 of 36"):  # a region that needs the tile finds it too
        decompress_image(container.pack(parsed.header, chunks), roi=(slice(16, 20), slice(40, 44), slice(30, 34)))


def test_a_tile_size_must_be_one_a_file_may_record(t1):
    with pytest.raises(ValueError, match="tile_size must be one of 16, 32, 64, 128, 256, 512, 1024 voxels"):
        compress_image(Image(t1, AFFINE), 5, tile_size=24)


def test_bits_per_latent_position_add_up_to_the_tiles_chunks(tiled_file):
    bits = latent_bits(tiled_file)
    chunks = read(tiled_file)[1]
    assert bits.bits.shape == (6, 7, 5)
    assert 0 < 8 * sum(len(chunk) for chunk in chunks) - bits.total < 64 * len(chunks)  # each coder's final state
