"""Issue 16 item 1: DICOM series in (a folder, one series or --series UID) and out
(``decompress --format dicom``), with their geometry, stored values and key attributes.

Every series is written here by SimpleITK/GDCM from a crop of the sample volume: small
(30×36×10), so that each test runs in about a second.
"""

from __future__ import annotations

import json
import locale
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from conftest import REPO, run_mriae

import mriae
from mriae import container
from mriae.header import HeaderError, read_header
from mriae.io import Image, ImageError
from mriae.io.dicom import read_series, stored_from_rescaled
from mriae.io.dicom import write_series as write_dicom

SERIES_UID = "1.2.826.0.1.3680043.2.1125.1.41"
OTHER_UID = "1.2.826.0.1.3680043.2.1125.1.42"
STUDY_UID = "1.2.826.0.1.3680043.2.1125.1.40"
SPACING = (0.9, 0.8, 2.5)
ORIGIN = (10.0, -20.0, 30.0)
AXIAL = np.eye(3)


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    """int16 (x, y, z) 30×36×10: a crop of the sample head, with negative values too."""
    head = np.asarray(nib.load(REPO / "sample_data" / "mni152_t1_2mm.nii.gz").dataobj)[30:60, 40:76, 30:40]
    return (head.astype(np.int16) * 10 - 300).astype(np.int16)


def oblique() -> np.ndarray:
    """A direction (columns: the x, y, z axes) turned 0.3 rad about (1, 1, 0)."""
    turn = sitk.VersorRigid3DTransform()
    turn.SetRotation((1.0, 1.0, 0.0), 0.3)
    return np.asarray(turn.GetMatrix()).reshape(3, 3)


def write_series(folder: Path, volume: np.ndarray, direction: np.ndarray = AXIAL, uid: str = SERIES_UID,
                 description: str = "T1 axial", rescale=None, slices=None, prefix: str = "slice",
                 tilt: float = 0.0) -> Path:
    """``volume`` (x, y, z stored values) as one DICOM file per slice, written by SimpleITK,
    with patient, study and series attributes. ``rescale``: (slope, intercept), or one per
    slice: written as physical values with those tags, which GDCM rescales back (it may write
    an MR image with a rescale as Enhanced MR, so these are CT). ``slices``: the slices to
    write (leave one out for a missing slice); ``tilt``: mm each slice moves along x."""
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.transpose(2, 1, 0)))
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(direction.ravel().tolist())
    cosines = "\\".join(f"{v:.12g}" for v in np.concatenate([direction[:, 0], direction[:, 1]]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    count = volume.shape[2]
    rescales = [rescale] * count if rescale is None or isinstance(rescale, tuple) else rescale
    for index in range(count) if slices is None else slices:
        piece = image[:, :, index]
        tags = {"0008|0005": "ISO_IR 100", "0010|0010": "Doe^Jane", "0010|0020": "P-0042", "0020|000d": STUDY_UID, "0020|000e": uid,
                "0008|103e": description, "0008|0060": "MR", "0018|0081": "4.2", "0018|0087": "3",
                "0020|0037": cosines, "0020|0013": str(index + 1), "0008|0018": f"{uid}.{index + 1}",
                "0020|0032": "\\".join(f"{v:.12g}" for v in np.add(image.TransformIndexToPhysicalPoint((0, 0, index)),
                                                                   (tilt * index, 0, 0)))}
        if rescales[index] is not None:
            slope, intercept = rescales[index]
            piece = sitk.Cast(piece, sitk.sitkFloat64) * slope + intercept
            tags.update({"0008|0060": "CT", "0028|1053": f"{slope:g}", "0028|1052": f"{intercept:g}",
                         "0028|0100": "16", "0028|0101": "16", "0028|0102": "15", "0028|0103": "1"})
        for key, value in tags.items():
            piece.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"{prefix}{index:03d}.dcm"))
        writer.Execute(piece)
    return folder


def itk_series(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(physical values (x, y, z), RAS affine) of the series in ``folder`` as SimpleITK's series reader gives them."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return sitk.GetArrayFromImage(image).transpose(2, 1, 0), np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine


def attributes(path: Path) -> dict[str, str]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return {key: reader.GetMetaData(key).strip() for key in reader.GetMetaDataKeys()}


def pixel_data(path: Path, count: int) -> bytes:
    """The Pixel Data value of a file whose last element it is (``count`` bytes)."""
    raw = path.read_bytes()
    assert b"\xe0\x7f\x10\x00" in (raw[-count - 8 : -count - 4], raw[-count - 12 : -count - 8])
    return raw[-count:]


def test_reading_a_series_leaves_the_process_locale_as_it_was(tmp_path, volume):
    folder = write_series(tmp_path / "T1", volume)
    before = locale.setlocale(locale.LC_ALL, "C.UTF-8")
    read_series(folder)
    assert locale.setlocale(locale.LC_ALL) == before and locale.getpreferredencoding(False) == "UTF-8"


def test_a_lossless_round_trip_gives_the_same_pixels_geometry_and_attributes(tmp_path, volume, monkeypatch, capsys):
    folder = write_series(tmp_path / "T1", volume, rescale=(2.0, -1024.0))
    physical, affine = itk_series(folder)
    code, out, err = run_mriae(monkeypatch, capsys, "compress", str(folder), "--lossless")
    assert code == 0, err
    archive = tmp_path / "T1.mriae"
    assert f"{folder} → {archive}" in out and "lossless" in out
    header = read_header(archive.read_bytes())
    assert header.image.shape == (30, 36, 10) and header.image.dtype == np.dtype("<i2")
    assert header.image.source["kind"] == "dicom"
    code, out, err = run_mriae(monkeypatch, capsys, "info", str(archive), "--json")
    assert code == 0 and json.loads(out)["format"] == "dicom"

    originals = sorted(folder.iterdir())
    for force in ([], ["--force"]):  # the default folder, beside the archive, holds the original series
        code, out, err = run_mriae(monkeypatch, capsys, "decompress", str(archive), "--format", "dicom", *force)
        assert code == 1 and err.strip() == (f"error: {folder} holds DICOM files of another series (slice000.dcm and 9 "
                                             "more): a series written there would mix with it; write into an empty "
                                             "folder")
        assert sorted(folder.iterdir()) == originals
    code, out, err = run_mriae(monkeypatch, capsys, "decompress", str(archive), "--format", "dicom", "-o",
                               str(tmp_path / "back"))
    assert code == 0, err
    written = sorted((tmp_path / "back").iterdir())
    assert [path.name for path in written] == [f"IM{index:04d}.dcm" for index in range(1, 11)]
    for original, copy in zip(originals, written):  # the same stored values, byte for byte
        assert pixel_data(copy, 30 * 36 * 2) == pixel_data(original, 30 * 36 * 2)
    values, geometry = itk_series(tmp_path / "back")
    np.testing.assert_array_equal(values, physical)
    np.testing.assert_allclose(geometry, affine, atol=1e-5)
    before, after = attributes(originals[3]), attributes(written[3])
    for key in ("0010|0010", "0010|0020", "0020|000d", "0008|103e", "0028|1053", "0028|1052", "0018|0081",
                "0018|0087", "0008|0060", "0020|0013", "0028|0101"):
        assert after[key] == before[key], key
    assert after["0028|1053"] == "2" and after["0028|1052"] == "-1024" and after["0010|0010"] == "Doe^Jane"
    new_uids = [attributes(path)["0008|0018"] for path in written]
    assert len(set(new_uids)) == 10 and not set(new_uids) & {attributes(path)["0008|0018"] for path in originals}
    assert after["0020|000e"] != SERIES_UID and after["0020|000e"] == attributes(written[0])["0020|000e"]
    assert "0028|2110" not in after  # lossless: not marked lossy

    again = tmp_path / "again"
    mriae.decompress(archive, again, format="dicom")
    assert [path.read_bytes() for path in sorted(again.iterdir())] == [path.read_bytes() for path in written]


def test_the_default_output_is_nifti_with_the_series_geometry_and_rescale(tmp_path, volume):
    folder = write_series(tmp_path / "CT", volume, direction=oblique(), rescale=(2.0, -1024.0))
    physical, affine = itk_series(folder)
    archive = tmp_path / "CT.mriae"
    mriae.compress(folder, archive, lossless=True)
    image = mriae.decompress(archive, tmp_path / "ct.nii.gz")
    np.testing.assert_array_equal(image.array, volume)  # the Python API gives the stored values
    nifti = nib.load(tmp_path / "ct.nii.gz")
    assert nifti.get_data_dtype() == np.int16
    assert (nifti.dataobj.slope, nifti.dataobj.inter) == (2.0, -1024.0)  # scl_slope, scl_inter
    np.testing.assert_array_equal(nifti.get_fdata(), physical)
    np.testing.assert_allclose(nifti.affine, affine, atol=1e-5)
    mriae.decompress(archive, tmp_path / "ct.nrrd")  # no rescale in NRRD: the physical values
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "ct.nrrd"))).T, physical)


def test_an_oblique_series_keeps_its_geometry_through_dicom(tmp_path, volume):
    folder = write_series(tmp_path / "oblique", volume, direction=oblique(), description="T1 oblique")
    physical, affine = itk_series(folder)
    image, size = read_series(folder)
    assert size == sum(path.stat().st_size for path in folder.iterdir())
    np.testing.assert_allclose(image.affine, affine, atol=1e-5)
    assert not np.allclose(affine[:3, :3], np.diag(np.diag(affine[:3, :3])))  # truly oblique
    data, _ = mriae.compress(folder, lossless=True)
    mriae.decompress(data, tmp_path / "back", format="dicom")
    values, geometry = itk_series(tmp_path / "back")
    np.testing.assert_array_equal(values, physical)
    np.testing.assert_allclose(geometry, affine, atol=1e-5)
    assert attributes(tmp_path / "back" / "IM0001.dcm")["0008|103e"] == "T1 oblique"


def test_a_region_and_a_lossy_decode_written_as_dicom(tmp_path, volume, monkeypatch, capsys):
    folder = write_series(tmp_path / "T1", volume)
    _, affine = itk_series(folder)
    archive = tmp_path / "t1.mriae"
    mriae.compress(folder, archive, max_error=3)
    code, out, err = run_mriae(monkeypatch, capsys, "decompress", str(archive), "--format", "dicom",
                               "--roi", "0:30,4:20,2:5", "-o", str(tmp_path / "roi"))
    assert code == 0, err
    assert out.strip() == f"{archive} → {tmp_path / 'roi'}: 3 DICOM files, shape (30, 16, 3), int16"
    values, geometry = itk_series(tmp_path / "roi")
    assert np.abs(values.astype(int) - volume[:, 4:20, 2:5]).max() <= 3
    shift = np.eye(4)
    shift[:3, 3] = (0, 4, 2)
    np.testing.assert_allclose(geometry, affine @ shift, atol=1e-5)
    first = attributes(tmp_path / "roi" / "IM0001.dcm")
    assert first["0020|0013"] == "3" and first["0028|2110"] == "01"  # its instance number; marked lossy

    mriae.decompress(archive, tmp_path / "preview", downsample=2, format="dicom")  # every other voxel
    values, geometry = itk_series(tmp_path / "preview")
    assert values.shape == (15, 18, 5) and np.abs(values.astype(int) - volume[::2, ::2, ::2]).max() <= 3
    np.testing.assert_allclose(geometry, affine @ np.diag([2.0, 2.0, 2.0, 1.0]), atol=1e-5)
    assert [attributes(path)["0020|0013"] for path in sorted((tmp_path / "preview").iterdir())] == \
        ["1", "3", "5", "7", "9"]


@pytest.mark.parametrize(("change", "problem"), [
    ({"slices": [0, 1, 2, 3, 5, 6, 7, 8, 9]},
     "slices are not evenly spaced (gaps from 2.5 to 5 mm: a missing slice or variable gaps)"),
    ({"slices": [0, 1, 2, 3, 4], "extra": 4},
     "2 slices share a position (several echoes, phases or repeats in one series?)"),
    ({"turned": True}, "slices of different orientations"),
])
def test_a_series_that_is_no_regular_grid_is_refused_in_one_line(tmp_path, volume, monkeypatch, capsys, change,
                                                                  problem):
    folder = write_series(tmp_path / "bad", volume, slices=change.get("slices"))
    if "extra" in change:  # a second echo at a position already taken
        write_series(folder, volume, slices=[change["extra"]], prefix="echo2_")
    if "turned" in change:
        write_series(folder, volume, direction=oblique(), slices=[9], prefix="turned_")
    code, out, err = run_mriae(monkeypatch, capsys, "compress", str(folder))
    assert code == 1 and out == ""
    assert err.splitlines()[0].startswith(f"error: {folder}: {problem}") and len(err.splitlines()) == 1
    assert not (tmp_path / "bad.mriae").exists()


def test_files_that_cannot_be_read_exactly_are_refused_naming_them(tmp_path, volume):
    tilted = write_series(tmp_path / "tilted", volume, tilt=0.5)
    with pytest.raises(ImageError, match=f"^{tilted}: slices are not stacked along their normal \\(a gantry tilt\\?\\)$"):
        read_series(tilted)
    multi = sitk.GetImageFromArray(volume.transpose(2, 1, 0).copy())
    multi.SetMetaData("0008|0060", "CT")
    (tmp_path / "multi").mkdir()
    sitk.WriteImage(multi, str(tmp_path / "multi" / "all.dcm"))
    with pytest.raises(ImageError, match="all.dcm: multi-frame DICOM files are not supported$"):
        read_series(tmp_path / "multi")
    flat = write_series(tmp_path / "flat", volume[:, :, :1])  # no Image Position (Patient), as in enhanced files
    path = flat / "slice000.dcm"
    path.write_bytes(path.read_bytes().replace(b"\x20\x00\x32\x00", b"\x20\x00\x30\x00"))  # (0020,0032) → (0020,0030)
    with pytest.raises(ImageError, match=r"slice000.dcm: has no Image Position \(Patient\) \(0020\|0032\); enhanced"):
        read_series(flat)
    colour = sitk.Image([8, 6], sitk.sitkVectorUInt8, 3)
    (tmp_path / "colour").mkdir()
    sitk.WriteImage(colour, str(tmp_path / "colour" / "rgb.dcm"))
    with pytest.raises(ImageError, match="rgb.dcm: colour DICOM images are not supported$"):
        read_series(tmp_path / "colour")
    named = write_series(tmp_path / "named", volume[:, :, :2])
    for path in named.iterdir():
        path.write_bytes(path.read_bytes().replace(b"Doe^Jane", b"Doe\nJane"))
    with pytest.raises(ImageError, match=r"PatientName \(0010\|0010\) 'Doe\\nJane' is not a valid PN value$"):
        read_series(named)
    huge = write_series(tmp_path / "huge", volume[:, :, :2], rescale=(1e39, 0.0))  # beyond float32 (scl_slope)
    with pytest.raises(ImageError, match=r"slice000.dcm: Rescale Slope '1e39' and Intercept '0' are not usable numbers "
                                         r"\(finite in float32, a nonzero slope\)$"):
        read_series(huge)


def patched(path: Path, tag: tuple[int, int], value: bytes) -> None:
    """Replace the value of the element ``tag`` of the implicit VR little endian file ``path``
    (as GDCM writes them) by ``value``, of the same length."""
    raw = path.read_bytes()
    head = struct.pack("<HHI", *tag, len(value))
    assert raw.count(head) == 1
    start = raw.index(head) + len(head)
    path.write_bytes(raw[:start] + value + raw[start + len(value):])


def test_a_slice_claiming_more_pixels_than_it_holds_is_refused_before_any_is_read(tmp_path, volume, monkeypatch,
                                                                                   capsys):
    folder = write_series(tmp_path / "forged", volume[:, :, :3])
    slice_file = folder / "slice001.dcm"
    for key in (0x0010, 0x0011):  # Rows and Columns of one 3 kB slice: 12000
        patched(slice_file, (0x0028, key), struct.pack("<H", 12000))
    monkeypatch.setenv("MRIAE_MAX_VOXELS", str(12000 * 12000 * 3))  # within the limits: only the check stops it
    monkeypatch.setenv("MRIAE_MAX_VOLUME_VOXELS", str(12000 * 12000 * 3))
    code, out, err = run_mriae(monkeypatch, capsys, "compress", str(folder), "--lossless")
    assert (code, out) == (1, "")
    assert err == (f"error: {slice_file}: its Pixel Data holds 2,160 bytes, not the 288,000,000 of 12000×12000 "
                   "16-bit pixels\n")
    assert not (tmp_path / "forged.mriae").exists()

    folder = write_series(tmp_path / "long", volume[:, :, :3])
    raw = (folder / "slice002.dcm").read_bytes()  # Pixel Data, the last element, claims 1 MB more than the file
    length = struct.unpack("<I", raw[-30 * 36 * 2 - 4: -30 * 36 * 2])[0]
    assert length == 30 * 36 * 2
    (folder / "slice002.dcm").write_bytes(raw[: -30 * 36 * 2 - 4] + struct.pack("<I", length + 2**20) + raw[-length:])
    with pytest.raises(ImageError, match=r"slice002.dcm: cannot read DICOM \(GDCM leaves it out of the folder's "
                                         r"series\)$"):
        read_series(folder)  # GDCM's scanner skips it: the series is not read without its last slice
    (folder / "slice002.dcm").write_bytes(raw[:-1000])  # truncated
    with pytest.raises(ImageError, match=r"slice002.dcm: cannot read DICOM \(GDCM leaves it out"):
        read_series(folder)


def test_pixel_data_inside_a_sequence_is_not_taken_for_the_slice_s(tmp_path, volume):
    """An Icon Image Sequence (0088,0200) of undefined length holds a small Pixel Data of its
    own before the slice's: the walk to the slice's Pixel Data skips it."""
    folder = write_series(tmp_path / "icons", volume[:, :, :2])
    for path in folder.iterdir():
        raw = path.read_bytes()
        start = len(raw) - 30 * 36 * 2 - 8  # the slice's Pixel Data element, the last one
        assert raw[start:start + 4] == b"\xe0\x7f\x10\x00"
        icon = (struct.pack("<HHI", 0x0088, 0x0200, 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
                + struct.pack("<HHI", 0x7FE0, 0x0010, 4) + bytes(4) + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
                + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
        path.write_bytes(raw[:start] + icon + raw[start:])
    image, _ = read_series(folder)
    np.testing.assert_array_equal(image.array, volume[:, :, :2])


def test_stored_values_come_back_from_rescaled_ones_only_when_that_is_certain():
    stored = np.arange(-2000, 2000, 7, dtype=np.int16)
    for slope, intercept, kind in ((2.0, -1024.0, np.int32), (0.3, 12.7, np.float64), (2.32930402930403, 0, np.float32)):
        rescaled = (stored * slope + intercept).astype(kind)  # as GDCM computes them
        np.testing.assert_array_equal(stored_from_rescaled(rescaled, slope, intercept, np.dtype(np.int16)), stored)
    assert stored_from_rescaled((stored * 0.3 + 12.7 + 0.1), 0.3, 12.7, np.dtype(np.int16)) is None  # off the grid
    assert stored_from_rescaled((stored * 2.0 + 70000).astype(np.int32), 2.0, 0, np.dtype(np.int16)) is None  # too wide
    coarse = (stored * 1e-3 + 5000).astype(np.float32)  # float32 cannot tell neighbours apart
    assert stored_from_rescaled(coarse, 1e-3, 5000, np.dtype(np.int16)) is None


def test_a_folder_of_two_series_needs_series(tmp_path, volume, monkeypatch, capsys):
    folder = write_series(tmp_path / "study", volume, prefix="t1_")
    write_series(folder, volume[:, :, ::-1].copy(), uid=OTHER_UID, description="T2 axial", prefix="t2_")
    code, out, err = run_mriae(monkeypatch, capsys, "compress", str(folder))
    assert code == 1 and out == ""
    assert err.strip() == (f"error: {folder}: holds 2 DICOM series, choose one with --series UID: {SERIES_UID} "
                           f"('T1 axial', 10 files); {OTHER_UID} ('T2 axial', 10 files)")
    assert not (tmp_path / "study.mriae").exists()
    code, _, err = run_mriae(monkeypatch, capsys, "compress", str(folder), "--series", "1.2.3")
    assert code == 1
    assert err.strip() == f"error: {folder}: no series 1.2.3 in this folder (it holds {SERIES_UID}, {OTHER_UID})"
    code, _, err = run_mriae(monkeypatch, capsys, "compress", str(folder), "--series", OTHER_UID, "--lossless")
    assert code == 0, err
    image = mriae.decompress(tmp_path / "study.mriae")
    np.testing.assert_array_equal(image.array, volume[:, :, ::-1])
    assert image.source["tags"]["0008|103e"] == "T2 axial"
    with pytest.raises(ValueError, match="series= .--series. applies to a folder of DICOM files"):
        mriae.compress(REPO / "sample_data" / "mni152_t1_2mm.nii.gz", series=OTHER_UID)


def test_per_slice_rescales_are_kept_and_give_physical_values_elsewhere(tmp_path, volume):
    rescales = [(1.0 + index % 3, -1024.0) for index in range(10)]
    folder = write_series(tmp_path / "CT", volume, rescale=rescales)
    physical, _ = itk_series(folder)
    data, _ = mriae.compress(folder, lossless=True)
    image = mriae.decompress(data, tmp_path / "ct.nii.gz")
    np.testing.assert_array_equal(image.array, volume)
    assert image.source["slices"]["0028|1053"] == [f"{slope:g}" for slope, _ in rescales]
    nifti = nib.load(tmp_path / "ct.nii.gz")
    assert nifti.get_data_dtype() == np.float32  # stored int16 × 1, 2 or 3 − 1024: every one a float32
    np.testing.assert_array_equal(np.asarray(nifti.dataobj), physical)
    mriae.decompress(data, tmp_path / "back", format="dicom")
    values, _ = itk_series(tmp_path / "back")
    np.testing.assert_array_equal(values, physical)
    assert [attributes(path)["0028|1053"] for path in sorted((tmp_path / "back").iterdir())] == \
        [f"{slope:g}" for slope, _ in rescales]
    learned, _ = mriae.compress(folder, quality=1)  # a preview that averages slices of different scales
    with pytest.raises(ImageError, match="a preview that averages slices of different rescales cannot be made"):
        mriae.decompress(learned, downsample=2)


def test_force_replaces_a_written_series_whole_and_keeps_other_files(tmp_path, volume, monkeypatch, capsys):
    archive = tmp_path / "t1.mriae"
    mriae.compress(write_series(tmp_path / "T1", volume), archive, lossless=True)
    out_folder = tmp_path / "out"
    assert run_mriae(monkeypatch, capsys, "decompress", str(archive), "--format", "dicom", "-o", str(out_folder))[0] == 0
    (out_folder / "notes.txt").write_text("keep me")
    (out_folder / "IM0001.txt").write_text("not named as a slice")
    code, _, err = run_mriae(monkeypatch, capsys, "decompress", str(archive), "--format", "dicom", "--roi", ":,:,0:5",
                               "-o", str(out_folder), "--force")
    assert code == 0, err
    assert sorted(path.name for path in out_folder.iterdir()) == [
        "IM0001.dcm", "IM0001.txt", "IM0002.dcm", "IM0003.dcm", "IM0004.dcm", "IM0005.dcm", "notes.txt"]
    image, _ = read_series(out_folder)  # one series, the region's: not mixed with the whole one
    np.testing.assert_array_equal(image.array, volume[:, :, :5])


def test_dicom_outputs_are_refused_before_any_work(tmp_path, volume, monkeypatch, capsys):
    folder = write_series(tmp_path / "T1", volume)
    archive = tmp_path / "t1.mriae"
    mriae.compress(folder, archive, lossless=True)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    code, out, err = run_mriae(monkeypatch, capsys, "decompress", str(archive), "--format", "dicom", "-o", str(busy))
    assert code == 1 and err.strip() == f"error: {busy} is not empty (use --force to write into it)"
    assert [path.name for path in busy.iterdir()] == ["notes.txt"]
    code, out, err = run_mriae(monkeypatch, capsys, "decompress", str(archive), "--format", "dicom", "-o", str(busy),
                               "--force")
    assert code == 0, err
    assert len(list(busy.iterdir())) == 11 and (busy / "notes.txt").read_text() == "keep me"
    code, out, err = run_mriae(monkeypatch, capsys, "decompress", str(archive), "--format", "mha")
    assert code == 0, err  # another format: the physical values (stored × slope + intercept), in that format
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "t1.mha"))).transpose(2, 1, 0).shape == volume.shape
    code, out, err = run_mriae(monkeypatch, capsys, "decompress", str(archive), "--format", "dicom", "-o", "-")
    assert code == 2 and err.strip() == ("error: --format dicom writes a folder of files, which stdout cannot take: "
                                         "use -o FOLDER, or --format nii, nii.gz, nrrd, mha, mgz or mgh")
    plain = tmp_path / "plain.mriae"
    mriae.compress(volume, plain, lossless=True)
    code, out, err = run_mriae(monkeypatch, capsys, "decompress", str(plain), "--format", "dicom", "-o",
                               str(tmp_path / "x"))
    assert code == 1 and err.strip() == (f"error: {plain}: made from a .nii.gz file, not a DICOM series: only those "
                                         "can be written as DICOM")
    assert not (tmp_path / "x").exists()
    code, out, err = run_mriae(monkeypatch, capsys, "compress", str(tmp_path / "empty"))
    assert code == 1 and out == "" and err.strip() == f"error: {tmp_path / 'empty'}: no such file"
    (tmp_path / "empty").mkdir()
    code, _, err = run_mriae(monkeypatch, capsys, "compress", str(tmp_path / "empty"))
    assert code == 1 and err.strip() == f"error: {tmp_path / 'empty'}: no DICOM series in this folder"


@pytest.fixture(scope="module")
def archive(tmp_path_factory, volume) -> bytes:
    """A lossless .mriae of an axial series."""
    return mriae.compress(write_series(tmp_path_factory.mktemp("T1"), volume), lossless=True)[0]


def forged(data: bytes, change) -> bytes:
    """``data`` with its DICOM record changed by ``change`` (and a valid CRC-32)."""
    parsed = container.unpack(data)
    change(parsed.header["image"]["source"])
    return container.pack(parsed.header, parsed.chunks)


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s["tags"].update({"7fe0|0010": "AAAA"}), r"image.source.tags\['7fe0\|0010'\] is not a kept DICOM"),
    (lambda s: s["tags"].update({"0002|0010": "1.2"}), r"tags\['0002\|0010'\] is not a kept DICOM attribute"),
    (lambda s: s["tags"].update({"0020|000d": "1.2.x"}), r"tags\['0020\|000d'\] '1.2.x' is not a valid UI value"),
    (lambda s: s["tags"].update({"0010|0010": "Doe\nJane"}), r"'Doe\\nJane' is not a valid PN value"),
    (lambda s: s["tags"].update({"0010|0010": "x" * 2000}), "is longer than 1024 characters"),
    (lambda s: s["tags"].update({"0028|0100": "8"}), "Bits Allocated and Pixel Representation do not describe"),
    (lambda s: s["tags"].update({"0028|0101": "17"}), "Bits Stored and High Bit do not fit"),
    (lambda s: s["tags"].pop("0008|0016"), r"has no SOPClassUID \(0008\|0016\)"),
    (lambda s: s["tags"].update({"0028|1053": "0"}), "RescaleSlope '0' is not a usable number"),
    (lambda s: s.update({"slices": {"0020|0013": ["1", "2"]}}), r"lists 2 values for 10 slices"),
    (lambda s: s.update({"slices": {"0008|0016": [None] * 10}}), r"slices\['0008\|0016'\] is also in"),
    (lambda s: s.update({"tags": []}), "tags is not a dict"),
    (lambda s: s["tags"].update({"0028|0101": None}), r"tags\['0028\|0101'\] is not a str"),
    (lambda s: s["tags"].update({"0008|0016": None}), r"tags\['0008\|0016'\] is not a str"),
    (lambda s: s["tags"].update({"0010|0010": None}), r"tags\['0010\|0010'\] is not a str"),
    (lambda s: s["tags"].update({"0028|1053": "1e308"}), "RescaleSlope '1e308' is not a usable number"),  # inf in float32
    (lambda s: s["tags"].update({"0028|1053": "1e-320"}), "RescaleSlope '1e-320' is not a usable number"),  # 0 in float32
    (lambda s: s["tags"].update({"0028|1052": "-1e39"}), "RescaleIntercept '-1e39' is not a usable number"),
])
def test_forged_dicom_records_are_refused_naming_the_field(archive, change, message):
    read_header(forged(archive, lambda source: None))
    with pytest.raises(HeaderError, match=message):
        read_header(forged(archive, change))


def test_a_dicom_record_of_more_slices_than_dicom_holds_is_refused(archive, tmp_path):
    """A constant image of 1×1×N coded in a few hundred bytes cannot make --format dicom
    write more than 65535 files."""
    record = container.unpack(archive).header["image"]["source"]
    tags = record["tags"]
    for count in (65535, 65536):
        data, _ = mriae.compress(np.zeros((1, 1, count), np.int16), lossless=True)
        parsed = container.unpack(data)
        parsed.header["image"]["source"] = {"kind": "dicom", "shape": [1, 1, count], "dtype": "<i2", "tags": tags}
        forged_data = container.pack(parsed.header, parsed.chunks)
        if count == 65535:
            assert read_header(forged_data).image.source["shape"] == [1, 1, 65535]
            continue
        with pytest.raises(HeaderError, match=r"image.source of a DICOM series has at most 65535 columns, rows and "
                                              r"slices, not \[1, 1, 65536\]"):
            read_header(forged_data)
    source = {"kind": "dicom", "shape": [1, 1, 65536], "dtype": "<i2", "tags": tags}
    with pytest.raises(ImageError, match="a DICOM series has at most 65535 columns, rows and slices"):
        write_dicom(Image(np.zeros((1, 1, 65536), np.int16), np.eye(4), ".nii.gz", source), tmp_path / "many")
    assert not (tmp_path / "many").exists()


def test_text_comes_back_as_the_bytes_it_was_in_its_character_set(tmp_path, volume):
    """A Latin-1 name (not UTF-8) is kept as its bytes, with its Specific Character Set."""
    folder = write_series(tmp_path / "latin", volume[:, :, :3])
    for path in folder.iterdir():
        raw = path.read_bytes()
        assert raw.count(b"Doe^Jane") == 1
        path.write_bytes(raw.replace(b"Doe^Jane", "Müller^J".encode("latin-1")))
    assert attributes(folder / "slice000.dcm")["0008|0005"] == "ISO_IR 100"
    data, _ = mriae.compress(folder, lossless=True)
    mriae.decompress(data, tmp_path / "back", format="dicom")
    raw = (tmp_path / "back" / "IM0001.dcm").read_bytes()
    assert "Müller^J".encode("latin-1") in raw and b"ISO_IR 100" in raw and "Müller".encode() not in raw


def test_a_folder_named_like_an_image_is_not_read_as_a_series(tmp_path):
    (tmp_path / "scan.nii.gz").mkdir()
    with pytest.raises(ImageError, match="scan.nii.gz: not a regular file"):
        mriae.compress(tmp_path / "scan.nii.gz")
