"""Review finding 1, 11, 12: a scaled image (NIfTI scl_slope/scl_inter, a pair's scale, MINC's
global scale in its NIfTI header, a DICOM rescale) decoded to another format keeps its
physical values as that format's readers see them, and the command says what it wrote."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from conftest import NIBABEL_DATA, run_mriae
from test_dicom import write_series

import mriae
import mriae.codec
from mriae.io import ImageError
from mriae.io.scale import written_as

AFFINE = np.array([[-2.0, 0, 0, 30], [0, 2.5, 0, -20], [0, 0, 3, -10], [0, 0, 0, 1]])
STORED = np.random.default_rng(0).integers(-300, 1500, (12, 10, 6)).astype(np.int16)
PHYSICAL = " (physical values: stored × slope + intercept)"
MGH_REFUSAL = ("MGH holds float32 voxels at most, and not every physical value of this image (stored {} × slope + "
               "intercept) is a float32: write NIfTI (.nii.gz), NRRD or MetaImage")
PER_SLICE = [(1.0 + index % 3, -1024.0) for index in range(STORED.shape[2])]

SOURCES = {
    # kind: stored type, whether a NIfTI/pair header can carry the scale, the float type of the physical values
    "nifti": ("int16", True, "float32"),
    "pair": ("int16", True, "float32"),
    "spm2": ("int16", True, "float32"),
    "minc": ("uint8", True, "float64"),  # stored uint8 × a float32 slope: not all float32 numbers
    "dicom": ("int16", True, "float32"),
    "dicom-0.3": ("int16", False, "float64"),  # slope 0.3 is no float32
    "dicom-per-slice": ("int16", False, "float32"),
}
OUTPUTS = [".nii.gz", ".hdr", ".mgz", ".nrrd", ".mha"]


def make_source(kind: str, folder):
    """A scaled source of ``kind`` in ``folder``: (its path, its physical values as float64)."""
    if kind in ("nifti", "pair", "spm2"):
        image = {"nifti": nib.Nifti1Image, "pair": nib.Nifti1Pair, "spm2": nib.Spm2AnalyzeImage}[kind](STORED, AFFINE)
        image.header.set_slope_inter(0.5, 0.0 if kind == "spm2" else 10.0)  # SPM2 has no intercept
        path = folder / ("scan.nii" if kind == "nifti" else "scan.hdr")
        image.to_filename(path)
        path.with_suffix(".mat").unlink(missing_ok=True)
        physical = nib.load(path).get_fdata()
        assert not np.array_equal(physical, STORED)  # truly scaled
        return path, physical
    if kind == "minc":
        path = folder / "scan.mnc"
        shutil.copy(NIBABEL_DATA / "minc1_1_scale.mnc", path)
        default = mriae.decompress(mriae.compress(path, lossless=True)[0], folder / "default.nii.gz")
        physical = nib.load(folder / "default.nii.gz").get_fdata()  # the stored integers × its float32 scale
        assert default.array.dtype == np.uint8
        np.testing.assert_allclose(physical, nib.load(path).get_fdata(), rtol=2**-23)  # nibabel's reading of MINC
        return path, physical
    rescale = {"dicom": (2.0, -1024.0), "dicom-0.3": (0.3, 12.7), "dicom-per-slice": PER_SLICE}[kind]
    path = write_series(folder / "CT", STORED, rescale=rescale)
    slopes, intercepts = np.asarray(rescale if isinstance(rescale, list) else [rescale] * STORED.shape[2]).T
    return path, STORED.astype(np.float64) * slopes + intercepts


@pytest.fixture(scope="module", params=list(SOURCES))
def coded(request, tmp_path_factory):
    """(kind, .mriae file of a lossless compress, physical values of the source)."""
    folder = tmp_path_factory.mktemp(request.param)
    source, physical = make_source(request.param, folder)
    archive = folder / "scan.mriae"
    mriae.compress(source, archive, lossless=True)
    return request.param, archive, physical


def file_values(path) -> tuple[np.ndarray, str]:
    """(the values its readers see, as float64; its voxel type): nibabel's get_fdata() for
    NIfTI, pairs and MGH, SimpleITK's array for NRRD and MetaImage."""
    if path.suffix in (".nrrd", ".mha"):
        array = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).transpose(2, 1, 0)
        return array.astype(np.float64), array.dtype.name
    loaded = nib.load(path)
    return loaded.get_fdata(), loaded.get_data_dtype().name


@pytest.mark.parametrize("suffix", OUTPUTS)
def test_another_format_keeps_the_physical_values(coded, suffix, tmp_path, monkeypatch, capsys):
    kind, archive, physical = coded
    stored, carried, float_type = SOURCES[kind]
    target = tmp_path / f"out{suffix}"
    if suffix == ".mgz" and float_type == "float64":  # refused before anything is decoded, whatever the output
        monkeypatch.setattr(mriae.codec, "decompress_image", lambda *args, **kwargs: pytest.fail("decoded"))
        for output in (["-o", str(target)], ["-o", "-", "--format", "mgz"]):
            code, out, err = run_mriae(monkeypatch, capsys, "decompress", str(archive), *output)
            assert (code, out) == (1, "") and err == f"error: {archive}: {MGH_REFUSAL.format(stored)}\n"
        with pytest.raises(ImageError, match="MGH holds float32 voxels at most"):
            mriae.decompress(archive, target)
        assert list(tmp_path.iterdir()) == []
        return
    code, out, err = run_mriae(monkeypatch, capsys, "decompress", str(archive), "-o", str(target))
    assert code == 0, err
    values, dtype = file_values(target)
    np.testing.assert_array_equal(values, physical)  # exactly: lossless, and the format holds them
    scaled_header = suffix in (".nii.gz", ".hdr") and carried
    assert dtype == (stored if scaled_header else float_type)
    note = PHYSICAL if not scaled_header else " (written as NIfTI: nibabel cannot write MINC)" * (
        kind == "minc" and suffix == ".nii.gz")
    assert out == f"{archive} → {target}: shape {STORED.shape if kind != 'minc' else values.shape}, {dtype}{note}\n"


def test_a_nifti_2_slope_that_float32_cannot_hold_gives_physical_values_in_a_pair(tmp_path):
    image = nib.Nifti2Image(STORED, AFFINE)
    image.header.set_slope_inter(0.1, 0.0)  # NIfTI-2 stores float64: 0.1 exactly as Python's
    image.to_filename(tmp_path / "n2.nii")
    data, _ = mriae.compress(tmp_path / "n2.nii", lossless=True)
    mriae.decompress(data, tmp_path / "same.nii")  # its own format: the header as it was
    assert nib.load(tmp_path / "same.nii").dataobj.slope == 0.1
    mriae.decompress(data, tmp_path / "pair.hdr")  # a NIfTI-1 pair stores float32 scales: the values instead
    pair = nib.load(tmp_path / "pair.hdr")
    assert pair.get_data_dtype() == np.float64
    np.testing.assert_array_equal(pair.get_fdata(), nib.load(tmp_path / "n2.nii").get_fdata())


def test_float32_is_chosen_only_when_every_stored_value_maps_to_one(tmp_path):
    def source(slope: float, inter: float) -> dict:
        image = nib.Nifti1Image(STORED, AFFINE)
        image.header.set_slope_inter(slope, inter)
        image.to_filename(tmp_path / f"{slope}_{inter}.nii")
        return mriae.io.read_image(tmp_path / f"{slope}_{inter}.nii").source

    half = source(1.0, 0.5)
    assert written_as(half, np.dtype(np.int16), ".nrrd") == (np.dtype(np.float32), None, True)  # v + 0.5: 17 bits
    assert written_as(half, np.dtype(np.int32), ".nrrd").dtype == np.float64  # v + 0.5: 33 bits
    assert written_as(half, np.dtype(np.float32), ".nrrd").dtype == np.float64  # floats: no such guarantee
    assert written_as(half, np.dtype(np.int16), ".nii") == (np.dtype(np.int16), None, False)  # its own header
    assert written_as(half, np.dtype(np.int16), ".hdr") == (np.dtype(np.int16), (1.0, 0.5), False)
    assert written_as(source(2.0**20, 0.0), np.dtype(np.int16), ".mgz").dtype == np.float32  # 16 bits × 2**20
    with pytest.raises(ImageError, match="MGH holds float32 voxels at most"):
        written_as(source(1.0, 0.5), np.dtype(np.int32), ".mgz")
    unscaled = source(1.0, 0.0)
    assert written_as(unscaled, np.dtype(np.int32), ".mgz") == (np.dtype(np.int32), None, False)


def test_physical_values_beyond_float64_are_refused_without_a_warning(tmp_path, recwarn):
    image = nib.Nifti2Image(STORED, AFFINE)
    image.header.set_slope_inter(1e306, 0.0)  # NIfTI-2 stores a float64 slope: 1499 × 1e306 is beyond float64
    image.to_filename(tmp_path / "huge.nii")
    data, _ = mriae.compress(tmp_path / "huge.nii", lossless=True)
    recwarn.clear()
    with pytest.raises(ImageError, match=r"the physical values \(stored × slope \+ intercept\) are beyond float64"):
        mriae.decompress(data, tmp_path / "huge.nrrd")
    assert not (tmp_path / "huge.nrrd").exists() and [str(warning.message) for warning in recwarn] == []
