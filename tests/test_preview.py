"""Issue 14, item 3: previews (``--downsample 2|4``): shapes, dtypes, affines, the rule of
each coder (block average of a full decode for the network, subsample for the context coder
and exactly stored volumes), the context coder's partial decode, and one-line refusals."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import anatomy, run_mriae

import mriae
from mriae.codec import block_average, compress_image, decompress_image
from mriae.fidelity import Fidelity
from mriae.io import Image, read_image
from mriae.models.weights import load_codec
from mriae.predictive import coder

AFFINE = np.array([[0.96, -0.28, 0.0, -40.5], [0.28, 0.96, 0.0, -52.25], [0.0, 0.0, 1.5, -20.0], [0, 0, 0, 1.0]])
SHAPE = (45, 53, 38)  # odd and even lengths: partial last blocks
FLOAT_TOLERANCE = 1e-5
"""A float32 network preview against the block average of the full decode: both sum in
float64, so they differ only by the final float32 rounding (relative 6e-8 of values ≤ 1000)."""


@pytest.fixture(scope="module")
def head(mni_t1) -> np.ndarray:
    return anatomy(mni_t1, SHAPE, np.int16, 0, 1000)


@pytest.fixture(scope="module")
def network_file(head) -> bytes:
    return compress_image(Image(head, AFFINE), 5, tile_size=16)[0]


@pytest.fixture(scope="module")
def lossless_file(head) -> bytes:
    return compress_image(Image(head, AFFINE), Fidelity(lossless=True))[0]


def world(affine: np.ndarray, voxels: np.ndarray) -> np.ndarray:
    return nib.affines.apply_affine(affine, voxels)


@pytest.mark.parametrize("factor", [2, 4])
def test_a_network_preview_is_the_block_average_of_the_full_decode(network_file, head, factor):
    full = decompress_image(network_file).array
    preview = decompress_image(network_file, downsample=factor)
    expected_shape = tuple(-(-n // factor) for n in SHAPE)
    assert preview.array.shape == expected_shape and preview.array.dtype == np.int16
    assert np.array_equal(preview.array, block_average(full, factor))
    # by hand, for one full and one partial block
    assert preview.array[1, 2, 3] == np.rint(full[factor:2 * factor, 2 * factor:3 * factor,
                                                   3 * factor:4 * factor].astype(np.float64).mean())
    assert preview.array[-1, -1, -1] == np.rint(full[(expected_shape[0] - 1) * factor:, (expected_shape[1] - 1) * factor:,
                                                     (expected_shape[2] - 1) * factor:].astype(np.float64).mean())


def test_a_float_network_preview_with_outliers_is_the_block_average_within_rounding(head):
    volume = head.astype(np.float32) / 7
    volume[3, 4, 5], volume[40, 50, 30] = 9000.0, -5000.0  # stored exactly beside the code
    data, stats = compress_image(Image(volume, AFFINE), 5, tile_size=16)
    assert stats.outliers == 2
    full = decompress_image(data).array
    assert full[3, 4, 5] == 9000.0
    preview = decompress_image(data, downsample=2).array
    assert preview.dtype == np.float32
    expected = full.astype(np.float64)[:-1, :-1].reshape(22, 2, 26, 2, 19, 2).mean(axis=(1, 3, 5))
    assert np.allclose(preview[:22, :26, :19], expected, rtol=FLOAT_TOLERANCE, atol=0)
    assert abs(preview[1, 2, 2] - full[2:4, 4:6, 4:6].astype(np.float64).mean()) < 9000 * FLOAT_TOLERANCE


@pytest.mark.parametrize("factor", [2, 4])
def test_a_context_coded_preview_is_the_full_decodes_subsample(lossless_file, head, factor):
    preview = decompress_image(lossless_file, downsample=factor)
    assert preview.array.dtype == np.int16
    assert np.array_equal(preview.array, head[::factor, ::factor, ::factor])


def test_a_bounded_float_preview_is_the_full_decodes_subsample(head):
    volume = head.astype(np.float32) / 3
    data = compress_image(Image(volume, AFFINE), Fidelity(max_error=0.5))[0]
    full = decompress_image(data).array
    for factor in (2, 4):
        preview = decompress_image(data, downsample=factor).array
        assert preview.dtype == np.float32 and np.array_equal(preview, full[::factor, ::factor, ::factor])


@pytest.mark.parametrize("length", [40, 41, 42])
def test_a_mirrored_volume_previews_from_its_coded_half(head, length):
    half = head[: -(-length // 2)]
    volume = np.concatenate([half, np.flip(half[: length // 2], 0)], axis=0)
    data = compress_image(Image(volume, AFFINE), Fidelity(lossless=True))[0]
    assert decompress_image(data).array.shape == volume.shape
    for factor in (2, 4):
        assert np.array_equal(decompress_image(data, downsample=factor).array, volume[::factor, ::factor, ::factor])


def test_labels_stored_exactly_are_subsampled(head):
    labels = (head // 250).astype(np.uint8)
    data, stats = compress_image(Image(labels, AFFINE), 5)
    assert stats.coder == "exact"
    assert np.array_equal(decompress_image(data, downsample=2).array, labels[::2, ::2, ::2])


def test_a_series_and_a_2d_image_preview_every_volume(mni_t1):
    series = anatomy(mni_t1, (20, 22, 18, 3), np.uint16, 0, 4000)
    data = compress_image(Image(series, AFFINE), Fidelity(lossless=True))[0]
    preview = decompress_image(data, downsample=4).array
    assert preview.shape == (5, 6, 5, 3) and np.array_equal(preview, series[::4, ::4, ::4])
    flat = anatomy(mni_t1, (30, 25), np.int16, 0, 1000)
    image = decompress_image(compress_image(Image(flat, np.eye(4)), Fidelity(lossless=True))[0], downsample=2)
    assert image.array.shape == (15, 13) and np.array_equal(image.array, flat[::2, ::2])
    assert np.allclose(image.affine, np.diag([2.0, 2.0, 1.0, 1.0]))  # the unit axis is neither scaled nor moved


def test_the_context_coder_decodes_only_the_levels_a_lattice_needs(monkeypatch, head):
    stream = coder.encode(head.astype(np.int64))
    for level in range(5):
        step = 1 << level
        assert np.array_equal(coder.decode(stream, SHAPE, level), head[::step, ::step, ::step])
    # the passes of the finest level are never predicted: decoding stops before them
    from mriae.predictive import passes

    seen = []
    original = passes.predictions
    monkeypatch.setattr(passes, "predictions", lambda windows, *rest: seen.append(rest[-2]) or original(windows, *rest))
    coder.decode(stream, SHAPE, 1)
    partial = sum(seen)
    seen.clear()
    coder.decode(stream, SHAPE)
    assert partial < sum(seen) / 6


def test_a_partial_decode_still_checks_what_it_reads(head):
    stream = coder.encode(head.astype(np.int64))
    damaged = bytearray(stream)
    damaged[5] ^= 0xFF  # in the zlib'd parameters, which every decode reads whole
    for level in (0, 1, 2, 6):
        with pytest.raises(coder.CoderError):
            coder.decode(bytes(damaged), SHAPE, level)
        with pytest.raises(coder.CoderError):
            coder.decode(stream[:-3], SHAPE, level)  # not whole 32-bit words


@pytest.mark.parametrize(("which", "averaged"), [("network", True), ("lossless", False)])
def test_the_affine_puts_each_preview_voxel_where_its_voxels_lie(tmp_path, head, which, averaged, monkeypatch, capsys):
    original = nib.Nifti1Image(head, AFFINE)
    original.set_qform(AFFINE, code=1)
    original.header["descrip"] = b"preview test"
    nib.save(original, tmp_path / "t1.nii.gz")
    packed = tmp_path / "t1.mriae"
    fidelity = 5 if which == "network" else Fidelity(lossless=True)
    packed.write_bytes(compress_image(read_image(tmp_path / "t1.nii.gz"), fidelity, tile_size=16)[0])
    for factor in (2, 4):
        target = tmp_path / f"preview{factor}.nii.gz"
        code, out, err = run_mriae(monkeypatch, capsys, "decompress", str(packed), "--downsample", str(factor),
                                   "-o", str(target))
        shape = tuple(-(-n // factor) for n in SHAPE)
        assert code == 0 and f"shape {shape}" in out, err
        preview = nib.load(target)
        assert preview.shape == shape and preview.get_data_dtype() == np.int16
        assert preview.header["descrip"] == b"preview test"
        assert np.allclose(preview.get_qform(), preview.affine, atol=1e-4)
        assert np.allclose(preview.header.get_zooms(), (1.0 * factor, 1.0 * factor, 1.5 * factor), atol=1e-5)
        for j in [(0, 0, 0), (1, 2, 3), (shape[0] - 2, 4, shape[2] - 2)]:  # full blocks
            block = np.stack(np.meshgrid(*(np.arange(i * factor, i * factor + factor) for i in j),
                                         indexing="ij"), axis=-1).reshape(-1, 3)
            covered = world(AFFINE, block).mean(axis=0) if averaged else world(AFFINE, np.array(j) * factor)
            assert np.allclose(world(preview.affine, np.array(j)), covered, atol=1e-4)
        assert np.array_equal(np.asarray(preview.dataobj), mriae.decompress(packed, downsample=factor).array)


def test_an_itk_preview_gets_its_spacing_and_origin(tmp_path, head):
    import SimpleITK as sitk

    itk = sitk.GetImageFromArray(head.transpose(2, 1, 0).copy())
    itk.SetOrigin((12.5, -30.0, 7.25))
    itk.SetSpacing((0.9, 1.1, 2.0))
    itk.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(itk, str(tmp_path / "t1.mha"))
    original = read_image(tmp_path / "t1.mha")
    data = compress_image(original, 5, tile_size=16)[0]
    returned = mriae.decompress(data, tmp_path / "preview.mha", downsample=2)
    written = read_image(tmp_path / "preview.mha")
    assert np.array_equal(written.array, returned.array) and np.allclose(written.affine, returned.affine)
    block = np.array([[x, y, z] for x in (4, 5) for y in (6, 7) for z in (0, 1)])
    assert np.allclose(world(written.affine, np.array([2, 3, 0])), world(original.affine, block).mean(axis=0))


def test_the_last_synthesis_stage_block_averaged_is_a_2x2x2_convolution():
    """Derivation (docs/benchmarks.md): the last stage is a stride-2 transposed convolution,
    kernel 3, padding 1, output padding 1, nothing after it. Along one axis its output is
    y[2j] = w1·x[j] and y[2j+1] = w2·x[j] + w0·x[j+1] (plus the bias), so the mean of a block
    of two is ((w1 + w2)·x[j] + w0·x[j+1]) / 2: a stride-1 convolution with taps at offsets 0
    and +1, the input zero beyond its end. In 3D the kernel's entry at offsets (a, b, c) ∈
    {0, 1}³ is the sum of the taps {1, 2} (offset 0) or {0} (offset 1) per axis, over 8.
    It equals the block average of the synthesis to float rounding — but not the block average
    of the decoded voxels, which are clipped to the volume's range (and rounded, and replaced
    by outliers) voxel by voxel first; so previews decode fully and average."""
    model = load_codec().model
    torch.manual_seed(0)
    latents = torch.randn(1, model.config.latent_channels, 3, 4, 2) * 4
    with torch.no_grad():
        full = model.decode(latents, (3, 3, 3))
        stage = model.synthesis[-1]
        hidden = latents
        for i, deconv in enumerate(model.synthesis[:-1]):
            hidden = model.synthesis_gdn[i](deconv(hidden, (2, 2, 2)))
        taps = stage.weight  # (in, out=1, 3, 3, 3)
        sets = ((1, 2), (0,))
        kernel = torch.zeros(1, taps.shape[0], 2, 2, 2)
        for a in (0, 1):
            for b in (0, 1):
                for c in (0, 1):
                    kernel[0, :, a, b, c] = taps[:, 0][:, sets[a]][:, :, sets[b]][:, :, :, sets[c]].sum(dim=(1, 2, 3)) / 8
        averaged = F.conv3d(F.pad(hidden, (0, 1, 0, 1, 0, 1)), kernel, stage.bias)
    expected = F.avg_pool3d(full, 2)
    assert averaged.shape == expected.shape
    assert torch.allclose(averaged, expected, rtol=0, atol=1e-6 * float(full.abs().max()))
    assert bool(((full < 0) | (full > 1)).any())  # the clip to [0, 1] that makes it unusable for previews


@pytest.mark.parametrize("factor", ["3", "0", "x", "-2", "2.0"])
def test_the_cli_refuses_a_bad_factor_with_one_line(tmp_path, network_file, monkeypatch, capsys, factor):
    packed = tmp_path / "t1.mriae"
    packed.write_bytes(network_file)
    code, _, err = run_mriae(monkeypatch, capsys, "decompress", str(packed), "--downsample", factor)
    assert code == 2 and err.strip().count("\n") == 0
    assert f"--downsample must be 2 or 4 (got '{factor}')" in err and not (tmp_path / "t1.nii.gz").exists()


def test_a_preview_and_a_region_are_refused_together(tmp_path, network_file, monkeypatch, capsys):
    packed = tmp_path / "t1.mriae"
    packed.write_bytes(network_file)
    code, _, err = run_mriae(monkeypatch, capsys, "decompress", str(packed), "--downsample", "2", "--roi", "0:4,0:4,0:4")
    assert code == 2 and "--downsample and --roi cannot be combined" in err and err.strip().count("\n") == 0
    with pytest.raises(ValueError, match="cannot be combined"):
        decompress_image(network_file, roi=(slice(0, 4),) * 3, downsample=2)


@pytest.mark.parametrize("factor", [3, 0, "x", True, 2.0])
def test_the_api_refuses_a_bad_factor(network_file, factor):
    with pytest.raises(ValueError, match="downsample must be 2 or 4"):
        mriae.decompress(network_file, downsample=factor)
