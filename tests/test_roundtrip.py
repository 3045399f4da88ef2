"""Acceptance: every shape comes back with its exact geometry and header, voxels close."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from conftest import NIBABEL_DATA, anatomy

import mriae
from mriae.codec import psnr

CASES = {
    # name: (shape, dtype, low, high, PSNR floor in dB at the default quality).
    # The arrays are the MNI head shrunk onto each shape (dense, aliased detail: harder
    # than real scans of that size); floors sit 1–3 dB under what the shipped weights reach.
    "mni-sized": ((197, 233, 189), np.int16, -200, 1800, 36.0),
    "small": ((33, 41, 25), np.uint16, 0, 4000, 20.0),
    "few-slices": ((128, 128, 10), np.float32, -1.5, 2.5, 21.0),
    "single-slice": ((1, 64, 64), np.uint8, 0, 255, 25.0),
    "2d": ((64, 64), np.int8, -100, 100, 24.0),
    "primes": ((31, 37, 29), np.int32, -1000, 50000, 20.0),
    "tiny-primes": ((2, 3, 5), np.float64, 0, 1, 18.0),
    "4d": ((40, 48, 36, 3), np.int16, 0, 1200, 21.0),
    "5d": ((24, 28, 20, 2, 2), np.uint16, 0, 800, 18.5),
}
REAL_FLOORS = {"example4d.nii.gz": 30.0, "anatomical.nii": 27.0}


def nifti_with_header(array: np.ndarray, path) -> nib.Nifti1Image:
    affine = np.array([[-0.9, 0.05, 0.0, 90.0], [0.04, 1.1, -0.2, -126.0], [0.0, 0.15, 2.5, -72.0], [0, 0, 0, 1]])
    image = nib.Nifti1Image(array, affine)
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=4)
    image.header.set_xyzt_units("mm", "msec")
    image.header["descrip"] = b"mriae round-trip test"
    image.header["intent_code"] = 1001
    nib.save(image, path)
    return nib.load(path)


def assert_same_geometry(restored: nib.Nifti1Image, original: nib.Nifti1Image) -> None:
    assert restored.shape == original.shape
    assert restored.get_data_dtype() == original.get_data_dtype()
    assert np.array_equal(restored.affine, original.affine)
    assert np.array_equal(restored.header["pixdim"], original.header["pixdim"])
    assert int(restored.header["qform_code"]) == int(original.header["qform_code"])
    assert int(restored.header["sform_code"]) == int(original.header["sform_code"])
    assert restored.header.get_xyzt_units() == original.header.get_xyzt_units()
    assert restored.header.binaryblock == original.header.binaryblock


def round_trip(source, tmp_path):
    compressed = tmp_path / "volume.mriae"
    _, stats = mriae.compress(source, compressed)
    restored_path = tmp_path / ("restored" + "".join(source.suffixes))
    mriae.decompress(compressed, restored_path)
    return nib.load(restored_path), stats


@pytest.mark.parametrize("name", CASES)
def test_round_trip_restores_geometry_and_fidelity(name, tmp_path, mni_t1):
    shape, dtype, low, high, floor = CASES[name]
    original = nifti_with_header(anatomy(mni_t1, shape, dtype, low, high), tmp_path / f"{name}.nii.gz")
    restored, stats = round_trip(tmp_path / f"{name}.nii.gz", tmp_path)
    assert_same_geometry(restored, original)
    quality = psnr(np.asarray(original.dataobj), np.asarray(restored.dataobj))
    print(f"{name}: {quality:.2f} dB at {stats.bits_per_voxel:.3f} bits/voxel")
    assert quality >= floor
    assert quality == pytest.approx(stats.psnr, abs=1e-6)


@pytest.mark.parametrize("name", REAL_FLOORS)
def test_real_nibabel_volumes_round_trip(name, tmp_path):
    source = NIBABEL_DATA / name
    original = nib.load(source)
    restored, stats = round_trip(source, tmp_path)
    assert_same_geometry(restored, original)
    assert [e.get_code() for e in restored.header.extensions] == [e.get_code() for e in original.header.extensions]
    quality = psnr(np.asarray(original.dataobj), np.asarray(restored.dataobj))
    print(f"{name}: {quality:.2f} dB at {stats.bits_per_voxel:.3f} bits/voxel")
    assert quality >= REAL_FLOORS[name]


def test_constant_volume_is_exact_and_tiny(tmp_path):
    source = tmp_path / "constant.nii"
    nifti_with_header(np.full((20, 30, 40), -7, dtype=np.int16), source)
    restored, stats = round_trip(source, tmp_path)
    assert np.all(np.asarray(restored.dataobj) == -7)
    assert stats.compressed_bytes < 1200


def test_resampled_coding_comes_back_on_the_original_grid(tmp_path, mni_t1):
    source = tmp_path / "aniso.nii.gz"
    original = nifti_with_header(anatomy(mni_t1, (60, 70, 24), np.int16, 0, 1000), source)
    compressed = tmp_path / "aniso.mriae"
    mriae.compress(source, compressed, spacing=(1.5, 1.5, 1.5))
    restored = mriae.decompress(compressed, tmp_path / "back.nii.gz")
    reloaded = nib.load(tmp_path / "back.nii.gz")
    assert_same_geometry(reloaded, original)
    assert restored.array.shape == original.shape
    assert psnr(np.asarray(original.dataobj), restored.array) >= 20.0


def test_arrays_round_trip_through_the_python_api(mni_t1):
    array = anatomy(mni_t1, (48, 56, 40), np.float32, 0.0, 1.0)
    affine = np.diag([1.2, 1.2, 2.0, 1.0])
    data, stats = mriae.compress(array, affine=affine)
    image = mriae.decompress(data)
    assert image.array.shape == array.shape and image.array.dtype == np.float32
    assert np.array_equal(image.affine, affine)
    assert psnr(array, image.array) == pytest.approx(stats.psnr, abs=1e-6)
    assert stats.bits_per_voxel == pytest.approx(len(data) * 8 / array.size)


def test_single_slices_do_not_pay_for_padding(mni_t1):
    """A 2D image is coded on its own grid (its thin axis is not strided), and edge padding
    codes to almost nothing: one slice costs far less than 8 distinct slices, and about the
    same as itself replicated 8 times (what padding it to a stride of 8 would give)."""
    distinct = anatomy(mni_t1, (8, 96, 96), np.uint8, 0, 255)
    alone, _ = mriae.compress(distinct[3:4])
    replicated, _ = mriae.compress(np.repeat(distinct[3:4], 8, axis=0))
    eight, _ = mriae.compress(distinct)
    print(f"one slice {len(alone)} B, replicated ×8 {len(replicated)} B, 8 distinct slices {len(eight)} B")
    assert len(alone) < 0.6 * len(eight)  # neighbouring 1 mm slices are alike: 8 cost ~2× one
    assert len(replicated) < 1.25 * len(alone)
