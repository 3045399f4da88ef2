import gzip

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from conftest import NIBABEL_DATA

from mriae.io import Image, ImageError, read_image, write_image
from mriae.io.image import GZIP_LEVEL


@pytest.mark.parametrize("name", ["example4d.nii.gz", "anatomical.nii", "example_nifti2.nii.gz", "standard.nii.gz"])
def test_nifti_header_bytes_and_voxels_survive_read_write(tmp_path, name):
    source = NIBABEL_DATA / name
    image = read_image(source)
    target = tmp_path / name
    write_image(image, target)
    original, restored = nib.load(source), nib.load(target)
    assert type(restored) is type(original)
    assert restored.header.binaryblock == original.header.binaryblock
    assert np.array_equal(np.asarray(restored.dataobj), np.asarray(original.dataobj))
    assert [e.get_code() for e in restored.header.extensions] == [e.get_code() for e in original.header.extensions]


def test_gzip_output_is_deterministic(tmp_path):
    image = read_image(NIBABEL_DATA / "example4d.nii.gz")
    write_image(image, tmp_path / "a.nii.gz")
    write_image(image, tmp_path / "b.nii.gz")
    assert (tmp_path / "a.nii.gz").read_bytes() == (tmp_path / "b.nii.gz").read_bytes()
    payload = gzip.decompress((tmp_path / "a.nii.gz").read_bytes())
    assert payload[:4] == (348).to_bytes(4, "little")
    # the deflate stream of GZIP_LEVEL (the 10-byte headers differ in their OS byte only)
    assert (tmp_path / "a.nii.gz").read_bytes()[10:] == gzip.compress(payload, compresslevel=GZIP_LEVEL, mtime=0)[10:]


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".mhd"])
def test_itk_formats_keep_geometry_and_metadata(tmp_path, suffix):
    array = np.arange(6 * 7 * 8, dtype=np.int16).reshape(8, 7, 6)
    itk_image = sitk.GetImageFromArray(array)
    itk_image.SetSpacing((0.5, 0.75, 2.0))
    itk_image.SetOrigin((10.0, -20.0, 5.0))
    itk_image.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    source = tmp_path / f"in{suffix}"
    sitk.WriteImage(itk_image, str(source))
    image = read_image(source)
    assert image.array.shape == (6, 7, 8)
    assert np.allclose(image.spacing, (0.5, 0.75, 2.0))
    target = tmp_path / f"out{suffix}"
    write_image(image, target)
    back = sitk.ReadImage(str(target))
    assert back.GetSpacing() == itk_image.GetSpacing()
    assert back.GetOrigin() == itk_image.GetOrigin()
    assert back.GetDirection() == itk_image.GetDirection()
    assert np.array_equal(sitk.GetArrayFromImage(back), array)


def test_unreadable_inputs_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "missing.nii.gz")
    (tmp_path / "scan.png").write_bytes(b"x")
    with pytest.raises(ImageError, match=r"scan.png: unsupported file type"):
        read_image(tmp_path / "scan.png")
    (tmp_path / "broken.nii.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ImageError, match=r"broken.nii.gz: cannot read image"):
        read_image(tmp_path / "broken.nii.gz")
    nan = tmp_path / "nan.nii"
    nib.save(nib.Nifti1Image(np.full((2, 2, 2), np.nan, np.float32), np.eye(4)), nan)
    with pytest.raises(ImageError, match="NaN"):
        read_image(nan)


def test_array_without_a_file_is_written_as_nifti(tmp_path):
    affine = np.diag([0.8, 0.8, 3.0, 1.0])
    image = Image(np.arange(24, dtype=np.uint16).reshape(2, 3, 4), affine)
    write_image(image, tmp_path / "fresh.nii.gz")
    restored = nib.load(tmp_path / "fresh.nii.gz")
    assert np.allclose(restored.affine, affine)
    assert np.array_equal(np.asarray(restored.dataobj), image.array)
    assert restored.get_data_dtype() == np.uint16


def test_writing_in_another_format_keeps_the_geometry(tmp_path):
    nifti = read_image(NIBABEL_DATA / "anatomical.nii")
    write_image(nifti, tmp_path / "as.nrrd")
    as_nrrd = read_image(tmp_path / "as.nrrd")
    assert np.allclose(as_nrrd.affine, nifti.affine, atol=1e-5)
    assert np.array_equal(as_nrrd.array, nifti.array)
    write_image(as_nrrd, tmp_path / "back.nii.gz")
    assert np.allclose(nib.load(tmp_path / "back.nii.gz").affine, nifti.affine, atol=1e-5)
    with pytest.raises(ImageError, match=r"out.png: unsupported output type"):
        write_image(nifti, tmp_path / "out.png")
