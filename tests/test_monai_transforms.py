"""mriae inside MONAI: transforms in a Compose, Invertd back to the original grid, and the
MriaeReader behind LoadImaged with the affine checked against the original file."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import REPO, anatomy
from monai.data import Dataset, MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, Invertd, LoadImage, LoadImaged

from mriae.codec import psnr
from mriae.container import MAGIC
from mriae.models.weights import load_codec
from mriae.monai import (
    Compress,
    Compressd,
    Decompress,
    Decompressd,
    MriaeReader,
    MriaeReadError,
    SaveMriae,
    SaveMriaed,
    ToNetworkGrid,
    ToNetworkGridd,
)
from mriae.transforms.geometry import plan

MNI = REPO / "sample_data" / "mni152_t1_2mm.nii.gz"
FMRI = REPO / "sample_data" / "example4d.nii.gz"
OBLIQUE = np.array([[-0.9, 0.05, 0.0, 90.0], [0.04, 1.1, -0.2, -126.0], [0.0, 0.15, 2.5, -72.0], [0, 0, 0, 1]])


@pytest.fixture
def oblique_nifti(tmp_path, mni_t1):
    """A small int16 volume with an oblique, anisotropic affine and a prime-sized grid."""
    path = tmp_path / "oblique.nii.gz"
    nib.save(nib.Nifti1Image(anatomy(mni_t1, (37, 43, 29), np.int16, -100, 1500), OBLIQUE), path)
    return path


def levels() -> int:
    return load_codec().model.config.levels


def test_network_grid_pads_to_strides_and_inverts_exactly(oblique_nifti):
    image = LoadImage(image_only=True, ensure_channel_first=True)(oblique_nifti)
    affine = nib.load(oblique_nifti).affine  # OBLIQUE as NIfTI stores it (float32)
    to_grid = ToNetworkGrid()
    padded = to_grid(image)
    grid = plan((37, 43, 29), affine, levels())
    assert tuple(padded.shape) == (1, *grid.padded_shape)
    assert all(n % 2**k == 0 for n, k in zip(padded.shape[1:], grid.levels))
    assert np.array_equal(padded.affine.numpy(), affine)  # padding at the far end keeps the affine
    assert len(padded.applied_operations) == 1
    back = to_grid.inverse(padded)
    assert tuple(back.shape) == (1, 37, 43, 29)
    assert np.array_equal(back.affine.numpy(), affine)
    assert np.array_equal(back.numpy(), image.numpy())  # crop of an edge pad is lossless
    assert back.applied_operations == []


def test_compose_invertd_resampled_grid_returns_original_shape_and_affine(oblique_nifti):
    keys = "image"
    preprocessing = Compose([LoadImaged(keys), EnsureChannelFirstd(keys), ToNetworkGridd(keys, spacing=1.5)])
    data = preprocessing({"image": str(oblique_nifti)})
    coded = data["image"]
    spacing = np.linalg.norm(coded.affine.numpy()[:3, :3], axis=0)
    assert np.allclose(spacing, 1.5)
    assert tuple(coded.shape[1:]) != (37, 43, 29)
    data["pred"] = coded.clone()  # stands in for a network output on the coding grid
    restored = Invertd(keys="pred", transform=preprocessing, orig_keys="image", nearest_interp=False)(data)["pred"]
    original = nib.load(oblique_nifti)
    assert tuple(restored.shape) == (1, *original.shape)
    assert np.allclose(restored.affine.numpy(), original.affine, atol=1e-6)
    assert psnr(np.asarray(original.dataobj), restored[0].numpy()) >= 20.0  # resampled there and back


def test_compress_decompress_metatensor_keeps_affine_meta_and_shape():
    image = LoadImage(image_only=True, ensure_channel_first=True)(MNI)
    image.meta["study"] = "mriae-test"
    data = Compress()(image)
    assert isinstance(data, bytes) and data.startswith(MAGIC)
    restored = Decompress()(data)
    assert isinstance(restored, MetaTensor)
    assert tuple(restored.shape) == (1, 99, 117, 95)
    assert restored.dtype == torch.float32  # LoadImage's float32 is what was coded
    assert np.array_equal(restored.affine.numpy(), nib.load(MNI).affine)
    assert restored.meta["study"] == "mriae-test"
    assert restored.meta["filename_or_obj"] == str(MNI)
    assert np.array_equal(restored.meta["spatial_shape"], [99, 117, 95])
    assert psnr(image.numpy(), restored.numpy()) >= 18.0


def test_compress_oblique_metatensor_geometry(oblique_nifti):
    image = LoadImage(image_only=True, ensure_channel_first=True)(oblique_nifti)
    restored = Decompress(ensure_channel_first=False)(Compress()(image))
    assert tuple(restored.shape) == (37, 43, 29)
    assert np.array_equal(restored.affine.numpy(), nib.load(oblique_nifti).affine)
    assert float(restored.min()) >= -100 and float(restored.max()) <= 1500  # clipped to the coded range


def test_dictionary_transforms_on_a_4d_series(tmp_path):
    pipeline = Compose([
        Compressd("image", output_keys="mriae"),
        SaveMriaed("mriae", output_dir=tmp_path, name_key="image"),
        Decompressd("mriae_path", output_keys="reconstruction", dtype=np.int16),
    ])
    data = pipeline({"image": str(FMRI), "other": 1})
    original = nib.load(FMRI)
    assert (tmp_path / "example4d.mriae").is_file()
    assert data["mriae_path"] == str(tmp_path / "example4d.mriae")
    stats = data["mriae_stats"]
    assert stats["original_bytes"] == FMRI.stat().st_size
    assert stats["compressed_bytes"] == (tmp_path / "example4d.mriae").stat().st_size
    assert stats["bits_per_voxel"] == pytest.approx(stats["compressed_bytes"] * 8 / np.prod(original.shape))
    reconstruction = data["reconstruction"]
    assert tuple(reconstruction.shape) == (2, 128, 96, 24)  # channel-first: one channel per volume
    assert reconstruction.dtype == torch.int16
    assert np.array_equal(reconstruction.affine.numpy(), original.affine)
    assert data["other"] == 1
    series = np.moveaxis(reconstruction.numpy(), 0, -1)
    assert psnr(np.asarray(original.dataobj), series) == pytest.approx(stats["psnr"], abs=1e-6)


def test_allow_missing_keys_and_clear_errors(tmp_path):
    assert Compressd(["image", "label"], allow_missing_keys=True)({"other": 3}) == {"other": 3}
    with pytest.raises(KeyError):
        Compressd("image")({"other": 3})
    broken = tmp_path / "broken.mriae"
    broken.write_bytes(b"not an mriae file")
    with pytest.raises(MriaeReadError, match="broken.mriae"):
        Decompress()(broken)
    with pytest.raises(MriaeReadError, match="missing.mriae: no such file"):
        Decompressd("x")({"x": str(tmp_path / "missing.mriae")})


def test_loadimaged_reads_mriae_with_original_affine_and_spacing(tmp_path):
    for source in (MNI, FMRI):
        target = tmp_path / (source.name.split(".")[0] + ".mriae")
        target.write_bytes(Compress()(str(source)))
        original = nib.load(source)
        loaded = LoadImaged("image", reader=MriaeReader())({"image": str(target)})["image"]
        assert isinstance(loaded, MetaTensor)
        assert tuple(loaded.shape) == original.shape  # spatial-first like NibabelReader, series last
        assert np.array_equal(loaded.affine.numpy(), original.affine)
        assert np.array_equal(loaded.meta["original_affine"], original.affine)
        assert np.allclose(loaded.pixdim.numpy(), original.header.get_zooms()[:3])
        assert loaded.meta["filename_or_obj"] == str(target)
        assert int(loaded.meta["qform_code"]) == int(original.header["qform_code"])
    channel_first = LoadImaged("image", reader=MriaeReader, ensure_channel_first=True)({"image": str(target)})
    assert tuple(channel_first["image"].shape) == (2, 128, 96, 24)


def test_monai_dataset_stored_as_mriae(tmp_path):
    nifti = LoadImage(image_only=True)(MNI)
    (tmp_path / "mni.mriae").write_bytes(Compress()(str(MNI)))
    dataset = Dataset([{"image": str(tmp_path / "mni.mriae")}], transform=Compose([
        LoadImaged("image", reader=MriaeReader()), EnsureChannelFirstd("image"),
    ]))
    item = dataset[0]["image"]
    assert tuple(item.shape) == (1, 99, 117, 95)
    assert np.array_equal(item.affine.numpy(), nifti.affine.numpy())
    assert psnr(nifti.numpy(), item[0].numpy()) >= 18.0


def test_reader_suffix_check():
    reader = MriaeReader()
    assert reader.verify_suffix("a/b.mriae") and reader.verify_suffix(["a.MRIAE", "b.mriae"])
    assert not reader.verify_suffix("a.nii.gz")


def test_save_mriae_never_replaces_a_file_unless_asked(tmp_path):
    (tmp_path / "scan.mriae").write_bytes(b"an archive")
    with pytest.raises(FileExistsError) as refused:
        SaveMriaed("mriae", output_dir=tmp_path)({"mriae": b"new bytes", "image": "/data/scan.nii.gz"})
    assert str(refused.value) == f"{tmp_path / 'scan.mriae'} already exists (overwrite=True replaces it)"
    assert (tmp_path / "scan.mriae").read_bytes() == b"an archive"
    assert SaveMriae(tmp_path, overwrite=True)(b"new bytes", "scan") == str(tmp_path / "scan.mriae")
    assert (tmp_path / "scan.mriae").read_bytes() == b"new bytes"


def test_big_endian_volumes_decode_to_native_tensors(tmp_path, mni_t1):
    source = tmp_path / "big.nii.gz"
    image = nib.Nifti1Image(anatomy(mni_t1, (20, 22, 16), np.int16, 0, 900), np.eye(4),
                            nib.Nifti1Header().as_byteswapped(">"))
    image.set_data_dtype(">i2")
    nib.save(image, source)
    target = tmp_path / "big.mriae"
    target.write_bytes(Compress()(str(source)))
    restored = Decompress()(target)
    assert restored.dtype == torch.int16 and tuple(restored.shape) == (1, 20, 22, 16)
    loaded = LoadImage(reader=MriaeReader(), image_only=True, dtype=None)(target)
    assert loaded.dtype == torch.int16
    assert np.array_equal(loaded.numpy(), restored[0].numpy())
    assert psnr(np.asarray(image.dataobj), restored[0].numpy()) >= 15.0  # byte-swapped voxels would be far off


def test_compress_refuses_nan_voxels_with_a_clear_error():
    volume = torch.rand(1, 16, 16, 8)
    volume[0, 3, 4, 5] = float("nan")
    with pytest.raises(ValueError, match="1 NaN or infinite voxel"):
        Compress()(MetaTensor(volume))
    with pytest.raises(ValueError, match="1 NaN or infinite voxel"):
        Compressd("image")({"image": volume})


def test_compress_codes_a_file_named_as_a_label_map_exactly(tmp_path):
    labels = (np.arange(24 * 20 * 16).reshape(24, 20, 16) % 100 * 3).astype(np.int16)  # 100 labels
    path = tmp_path / "sub-01_dseg.nii.gz"
    nib.save(nib.Nifti1Image(labels, np.eye(4)), path)
    for source in (str(path), LoadImage(image_only=True, ensure_channel_first=True, dtype=None)(str(path))):
        restored = Decompress()(Compress()(source))
        assert np.array_equal(restored[0].numpy(), labels)


def test_compress_codes_a_boolean_mask_tensor_exactly():
    mask = torch.from_numpy(np.indices((20, 18, 12)).sum(axis=0) % 7 == 0)[None]
    restored = Decompress()(Compress()(MetaTensor(mask, affine=torch.eye(4))))
    assert np.array_equal(restored[0].numpy().astype(bool), mask[0].numpy())
