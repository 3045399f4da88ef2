"""Files are never lost or corrupted: existing outputs are kept unless asked, writes are
all-or-nothing, and forged image headers are refused before anything is allocated."""

from __future__ import annotations

import errno
import gzip
import os
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from conftest import NIBABEL_DATA

import mriae
from mriae import api, codec
from mriae.container import ContainerError
from mriae.io import Image, ImageError, atomic, image_files, read_image, write_bytes_atomic, write_image


def leftovers(folder: Path) -> list[str]:
    """Staging folders left behind in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".mriae-"))


def small_image() -> Image:
    return Image(np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6), np.diag([0.5, 0.75, 2.0, 1.0]))


# ----------------------------------------------------------------------------- overwrites


@pytest.mark.parametrize("name", ["vol.nii.gz", "vol.nii", "vol.nrrd", "vol.mha", "vol.mhd", "vol.nhdr",
                                  "sub-01.T1w.mhd", "VOL.MHD", "VOL.NHDR", "vol.mgz", "vol.mgh", "vol.hdr", "VOL.HDR"])
def test_image_files_are_exactly_what_the_writer_creates(tmp_path: Path, name: str):
    target = tmp_path / name
    write_image(small_image(), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in image_files(target))


@pytest.mark.parametrize("name, existing", [("vol.mhd", "vol.raw"), ("vol.nhdr", "vol.raw"), ("vol.mhd", "vol.mhd"),
                                            ("vol.nii.gz", "vol.nii.gz")])
def test_an_existing_output_or_its_data_file_is_never_replaced(tmp_path: Path, name: str, existing: str):
    (tmp_path / existing).write_bytes(b"someone else's file")
    with pytest.raises(FileExistsError) as error:
        write_image(small_image(), tmp_path / name)
    assert str(error.value) == f"{tmp_path / existing} already exists (use --force to replace)"
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]
    assert (tmp_path / existing).read_bytes() == b"someone else's file"

    write_image(small_image(), tmp_path / name, overwrite=True)
    assert np.array_equal(read_image(tmp_path / name).array, small_image().array)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_a_boolean_mask_is_written_as_uint8(tmp_path: Path, suffix: str):
    mask = np.zeros((4, 5, 6), bool)
    mask[1:3, 2:4, 3:5] = True
    write_image(Image(mask, np.eye(4)), tmp_path / f"mask{suffix}")
    restored = read_image(tmp_path / f"mask{suffix}").array
    assert restored.dtype == np.uint8 and np.array_equal(restored, mask)


def test_write_bytes_refuses_an_existing_file_unless_told(tmp_path: Path):
    target = tmp_path / "out.mriae"
    target.write_bytes(b"old")
    with pytest.raises(FileExistsError, match="out.mriae already exists"):
        write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    write_bytes_atomic(target, b"new", overwrite=True)
    assert target.read_bytes() == b"new"
    assert leftovers(tmp_path) == []


def test_a_file_that_appears_during_the_work_is_not_replaced(tmp_path: Path):
    target = tmp_path / "out.mriae"
    with pytest.raises(FileExistsError, match="out.mriae already exists"), atomic.staging_folder(tmp_path) as scratch:
        (scratch / "out.mriae").write_bytes(b"ours")
        target.write_bytes(b"theirs")  # another process, between the check and the move
    assert target.read_bytes() == b"theirs"
    assert leftovers(tmp_path) == []


def test_all_files_of_a_pair_are_checked_before_any_is_moved(tmp_path: Path):
    with pytest.raises(FileExistsError, match="vol.raw already exists"), atomic.staging_folder(tmp_path) as scratch:
        (scratch / "vol.mhd").write_bytes(b"header")
        (scratch / "vol.raw").write_bytes(b"voxels")
        (tmp_path / "vol.raw").write_bytes(b"theirs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol.raw"]
    assert (tmp_path / "vol.raw").read_bytes() == b"theirs"


def test_a_pair_whose_second_file_loses_a_race_is_taken_back(tmp_path: Path, monkeypatch):
    real_link = os.link

    def link_then_race(source, target):
        if Path(target).name == "vol.raw":
            Path(target).write_bytes(b"theirs")  # appears after the check, before our move
        real_link(source, target)

    monkeypatch.setattr(atomic.os, "link", link_then_race)
    with pytest.raises(FileExistsError, match="vol.raw already exists"), atomic.staging_folder(tmp_path) as scratch:
        (scratch / "vol.mhd").write_bytes(b"header")
        (scratch / "vol.raw").write_bytes(b"voxels")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol.raw"]
    assert (tmp_path / "vol.raw").read_bytes() == b"theirs"


def test_without_hard_links_an_exclusive_copy_still_never_replaces(tmp_path: Path, monkeypatch):
    def no_links(source, target):
        if Path(target).name == "late.mriae":
            Path(target).write_bytes(b"theirs")  # appears after the check, before our copy
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(atomic.os, "link", no_links)
    write_bytes_atomic(tmp_path / "out.mriae", b"ours")
    assert (tmp_path / "out.mriae").read_bytes() == b"ours"
    with pytest.raises(FileExistsError, match="late.mriae already exists"):
        write_bytes_atomic(tmp_path / "late.mriae", b"ours")
    assert (tmp_path / "late.mriae").read_bytes() == b"theirs"
    assert leftovers(tmp_path) == []


def test_an_interrupted_move_leaves_no_partial_file(tmp_path: Path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "link", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_bytes_atomic(tmp_path / "out.mriae", b"x" * 1000)
    assert list(tmp_path.iterdir()) == []


def unwritable_folders(tmp_path: Path) -> list[Path]:
    """Folders this process cannot create files in: a read-only one (not for root, whom
    permissions do not stop), /proc, and a folder that would have to be made under a file."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    folders = [Path("/proc"), tmp_path / "a-file" / "sub"]
    (tmp_path / "a-file").write_bytes(b"")
    try:
        (locked / "probe").touch()
        (locked / "probe").unlink()
    except PermissionError:
        folders.append(locked)
    return folders


def test_an_unwritable_output_folder_is_reported_before_any_work(tmp_path: Path, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("compression started before the output folder was checked")

    monkeypatch.setattr(codec, "compress_image", no_work)
    monkeypatch.setattr(codec, "decompress_image", no_work)
    for folder in unwritable_folders(tmp_path):
        with pytest.raises(OSError, match=r"cannot write to "):
            mriae.compress(np.zeros((4, 4, 4), np.uint8), folder / "out.mriae")
        with pytest.raises(OSError, match=r"cannot write to "):
            mriae.decompress(b"not decoded", folder / "out.nii.gz")


# ----------------------------------------------------------------------------- the API


def test_api_keeps_existing_outputs_unless_forced(tmp_path: Path, monkeypatch):
    data, _ = mriae.compress(np.full((4, 4, 4), 7, np.uint8))
    output, image_output = tmp_path / "out.mriae", tmp_path / "rec.nii.gz"
    output.write_bytes(b"old")
    image_output.write_bytes(b"old")

    calls = []
    real_compress, real_decompress = codec.compress_image, codec.decompress_image
    monkeypatch.setattr(codec, "compress_image", lambda *a, **k: calls.append("c") or real_compress(*a, **k))
    monkeypatch.setattr(codec, "decompress_image", lambda *a, **k: calls.append("d") or real_decompress(*a, **k))
    with pytest.raises(FileExistsError, match="out.mriae already exists"):
        mriae.compress(np.full((4, 4, 4), 7, np.uint8), output)
    with pytest.raises(FileExistsError, match="rec.nii.gz already exists"):
        mriae.decompress(data, image_output)
    assert calls == []  # refused before any work
    assert output.read_bytes() == b"old" and image_output.read_bytes() == b"old"

    mriae.compress(np.full((4, 4, 4), 7, np.uint8), output, force=True)
    mriae.decompress(data, image_output, force=True)
    assert output.read_bytes() == data
    assert np.array_equal(read_image(image_output).array, np.full((4, 4, 4), 7, np.uint8))


@pytest.mark.parametrize("affine, problem", [
    (np.eye(3), "shape (3, 3)"),
    (np.ones(16), "shape (16,)"),
    (np.diag([1.0, np.nan, 1.0, 1.0]), "non-finite values"),
    (np.diag([1.0, 1.0, np.inf, 1.0]), "non-finite values"),
])
def test_api_rejects_an_affine_that_is_not_a_finite_4x4_matrix(affine, problem):
    with pytest.raises(ValueError) as error:
        mriae.compress(np.zeros((4, 4, 4), np.uint8), affine=affine)
    assert str(error.value) == f"affine must be a 4×4 matrix of finite numbers (got {problem})"


def test_reading_an_mriae_file_stops_at_the_size_limit(tmp_path: Path, monkeypatch):
    data, _ = mriae.compress(np.full((4, 4, 4), 7, np.uint8))
    path = tmp_path / "big.mriae"
    path.write_bytes(data)
    assert api.read_mriae(path) == data
    monkeypatch.setattr(api, "MAX_FILE_BYTES", len(data) - 1)
    with pytest.raises(ContainerError) as error:
        api.read_mriae(path)
    assert str(error.value) == f"{path}: larger than {len(data) - 1:,} bytes, which no .mriae file is"


def test_an_image_path_that_is_not_a_regular_file_is_named_as_such(tmp_path: Path):
    (tmp_path / "folder.nii").mkdir()
    with pytest.raises(ImageError) as error:
        read_image(tmp_path / "folder.nii")
    assert str(error.value) == f"{tmp_path / 'folder.nii'}: not a regular file"


def test_files_of_unsupported_kinds_are_named_as_such(tmp_path: Path):
    sitk.WriteImage(sitk.Image([4, 5, 6], sitk.sitkVectorUInt8, 3), str(tmp_path / "rgb.nrrd"))
    sitk.WriteImage(sitk.Image([4, 5], sitk.sitkInt16), str(tmp_path / "flat.nrrd"))
    for name, problem in [("rgb.nrrd", "multi-component (vector/RGB) images are not supported"),
                          ("flat.nrrd", "only 3D NRRD/MetaImage files are supported (got 2D)")]:
        with pytest.raises(ImageError) as error:
            read_image(tmp_path / name)
        assert str(error.value) == f"{tmp_path / name}: {problem}"


# ----------------------------------------------------------------------------- forged headers


def forged_nifti(path: Path, shape: tuple[int, ...], dtype=np.uint8, data: bytes = b"\x00" * 1000) -> Path:
    """A NIfTI-1 file whose header claims ``shape`` but that holds only ``data``."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header["vox_offset"] = 352
    raw = header.binaryblock + b"\x00" * 4 + data
    path.write_bytes(gzip.compress(raw, mtime=0) if path.name.endswith(".gz") else raw)
    return path


@pytest.mark.parametrize("name", ["huge.nii", "huge.nii.gz"])
def test_a_header_over_the_voxel_limit_is_refused_before_reading(tmp_path: Path, name: str, monkeypatch):
    monkeypatch.setenv("MRIAE_MAX_VOXELS", "1000000")
    path = forged_nifti(tmp_path / name, (200, 200, 100))
    with pytest.raises(ImageError) as error:
        read_image(path)
    assert str(error.value) == (f"{path}: header claims 200×200×100 = 4,000,000 voxels, over the limit of 1,000,000 "
                                "(set MRIAE_MAX_VOXELS to allow more)")


def test_an_itk_header_over_the_voxel_limit_is_refused_before_reading(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MRIAE_MAX_VOXELS", "1000000")
    path = tmp_path / "huge.mhd"
    path.write_text("ObjectType = Image\nNDims = 3\nDimSize = 200 200 100\nElementType = MET_SHORT\n"
                    "ElementDataFile = huge.raw\n")
    (tmp_path / "huge.raw").write_bytes(b"\x00" * 1000)
    with pytest.raises(ImageError) as error:
        read_image(path)
    assert str(error.value) == (f"{path}: header claims 200×200×100 = 4,000,000 voxels, over the limit of 1,000,000 "
                                "(set MRIAE_MAX_VOXELS to allow more)")


def test_simpleitk_prints_nothing_of_its_own_on_a_short_data_file(tmp_path: Path, capfd):
    path = tmp_path / "short.mhd"
    path.write_text("ObjectType = Image\nNDims = 3\nDimSize = 64 64 64\nElementType = MET_SHORT\n"
                    "ElementDataFile = short.raw\n")
    (tmp_path / "short.raw").write_bytes(b"\x00" * 1000)
    with pytest.raises(ImageError, match="short.mhd: cannot read image"):
        read_image(path)
    assert capfd.readouterr() == ("", "")  # MetaIO writes "data not read completely" to std::cerr


@pytest.mark.parametrize("name, after", [("short.nii", ""), ("short.nii.gz", " after decompression")])
def test_a_truncated_nifti_allocates_only_what_it_holds(tmp_path: Path, name: str, after: str):
    path = forged_nifti(tmp_path / name, (512, 512, 256), np.int16)  # claims 128 MiB, holds 1000 bytes
    tracemalloc.start()
    try:
        with pytest.raises(ImageError) as error:
            read_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    needed = 352 + 512 * 512 * 256 * 2
    assert str(error.value) == f"{path}: file is truncated: header needs {needed} bytes, file has 1352{after}"
    assert peak < 16 << 20


@pytest.mark.parametrize("order", ["<", ">"])
def test_gzip_reader_gives_nibabels_voxels_for_any_byte_order_scaling_and_member_count(tmp_path: Path, order: str):
    array = np.arange(7 * 6 * 5 * 2, dtype=np.int16).reshape(7, 6, 5, 2) - 100
    nifti = nib.Nifti1Image(array, np.diag([0.9, 1.1, 2.5, 1.0]), nib.Nifti1Header(endianness=order))
    nifti.header.set_data_dtype(np.int16)
    nifti.header.set_slope_inter(0.5, 10.0)
    single = tmp_path / "single.nii.gz"
    nib.save(nifti, single)
    assert nib.load(single).dataobj.dtype == np.dtype(f"{order}i2")
    raw = gzip.decompress(single.read_bytes())
    multi = tmp_path / "multi.nii.gz"  # several gzip members, as bgzip writes them
    multi.write_bytes(b"".join(gzip.compress(raw[i : i + 500]) for i in range(0, len(raw), 500)))
    expected = np.asarray(nib.load(single).dataobj.get_unscaled())
    for path in (single, multi):
        image = read_image(path)
        assert image.array.dtype == expected.dtype
        assert np.array_equal(image.array, expected)
        write_image(image, tmp_path / f"back-{path.name}")
        assert gzip.decompress((tmp_path / f"back-{path.name}").read_bytes()) == raw


def test_nibabel_sample_files_read_as_before(tmp_path: Path):
    for name in ("example4d.nii.gz", "example_nifti2.nii.gz", "standard.nii.gz"):
        proxy = nib.load(NIBABEL_DATA / name).dataobj
        image = read_image(NIBABEL_DATA / name)
        assert image.array.dtype == proxy.dtype
        assert np.array_equal(image.array, np.asarray(proxy.get_unscaled()))
