"""Every volume format nibabel reads: MGH/MGZ and Analyze/NIfTI pairs written back in their own
format with their header bytes; MINC, PAR/REC, AFNI and ECAT decoded to NIfTI; CIFTI,
surfaces, streamlines and voxel files refused with their reason."""

from __future__ import annotations

import base64
import gzip
import io
import shutil
import warnings

import nibabel as nib
import numpy as np
import pytest
from conftest import NIBABEL_DATA, run_mriae

import mriae
from mriae import container
from mriae.batch.inputs import discover
from mriae.formats import refusal, restored_suffix
from mriae.header import HeaderError, read_header
from mriae.io import ImageError, read_image
from mriae.io.image import content_mismatch, source_files, voxel_file

AFFINE = np.array([[-2.0, 0, 0, 30], [0, 2.5, 0, -20], [0, 0, 3, -10], [0, 0, 0, 1]])


def volume(shape=(12, 10, 8), dtype=np.int16) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 200, shape).astype(dtype)


def copied(folder, name: str):
    """nibabel's test file ``name`` and its voxel file, copied into ``folder``."""
    for file in source_files(NIBABEL_DATA / name):
        shutil.copy(file, folder / file.name)
    return folder / name


def payload(path) -> bytes:
    """The bytes of ``path``, inflated if it is gzip-compressed."""
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def nibabel_values(path):
    """nibabel's reading of ``path``, as float64."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = nib.ecat.load(path) if path.suffix == ".v" else nib.load(path)
        return np.asarray(loaded.dataobj, dtype=np.float64), loaded.affine


# --------------------------------------------------------------------------- MGH/MGZ


def an_mgh(path, shape=(12, 10, 8, 3)):
    image = nib.MGHImage(volume(shape).astype(np.float32) / 7, AFFINE)
    image.header["tr"], image.header["flip_angle"], image.header["te"], image.header["ti"] = 2300, 0.15, 2.9, 900
    image.to_filename(path)
    return path


@pytest.mark.parametrize("name", ["scan.mgz", "scan.mgh", "test.mgz"])
def test_mgh_comes_back_byte_for_byte_with_its_footer(tmp_path, name):
    source = NIBABEL_DATA / name if name == "test.mgz" else an_mgh(tmp_path / name)
    data, _ = mriae.compress(source, lossless=True)
    assert read_header(data).image.suffix == source.suffix and restored_suffix(source.suffix) == (source.suffix, "")
    target = tmp_path / f"back{source.suffix}"
    image = mriae.decompress(data, target)
    assert image.array.dtype == np.dtype(">f4") and image.source["kind"] == "mgh"
    assert payload(target) == payload(source)  # header, voxels and footer (TR, flip angle, TE, TI, tags)
    back, original = nib.load(target), nib.load(source)
    assert back.shape == original.shape and np.array_equal(back.affine, original.affine)
    assert [float(back.header[key]) for key in ("tr", "flip_angle", "te", "ti")] == \
        [float(original.header[key]) for key in ("tr", "flip_angle", "te", "ti")]
    again = tmp_path / f"again{source.suffix}"
    mriae.decompress(data, again)
    assert again.read_bytes() == target.read_bytes()  # deterministic, the gzip stream included


def test_an_mgh_region_and_preview_get_their_own_dimensions_and_centre(tmp_path):
    source = an_mgh(tmp_path / "scan.mgz")
    original = nib.load(source)
    data, _ = mriae.compress(source, lossless=True)
    mriae.decompress(data, tmp_path / "roi.mgz", roi=(slice(2, 7), slice(1, 9), slice(3, 8)))
    mriae.decompress(data, tmp_path / "preview.mgz", downsample=2)
    roi, preview = nib.load(tmp_path / "roi.mgz"), nib.load(tmp_path / "preview.mgz")
    assert roi.shape == (5, 8, 5, 3) and preview.shape == (6, 5, 4, 3)
    shifted = original.affine.copy()
    shifted[:3, 3] += original.affine[:3, :3] @ [2, 1, 3]
    assert np.allclose(roi.affine, shifted, atol=1e-4)
    assert np.allclose(preview.affine, original.affine @ np.diag([2, 2, 2, 1]), atol=1e-4)
    assert np.array_equal(roi.get_fdata(), original.get_fdata()[2:7, 1:9, 3:8])
    assert np.array_equal(preview.get_fdata(), original.get_fdata()[::2, ::2, ::2])
    assert float(roi.header["tr"]) == 2300


def test_other_images_written_as_mgh_or_pairs_get_a_fresh_header_with_their_affine(tmp_path):
    array = volume((12, 10, 8, 2))
    data, _ = mriae.compress(array, affine=AFFINE, lossless=True)
    for name, kind in (("out.mgz", nib.MGHImage), ("out.hdr", nib.Nifti1Pair)):
        mriae.decompress(data, tmp_path / name)
        back = nib.load(tmp_path / name)
        assert type(back) is kind and back.shape == array.shape and np.allclose(back.affine, AFFINE)
        assert np.array_equal(back.get_fdata(), array)
    with pytest.raises(ImageError, match="MGH stores 3D/4D uint8, int16, uint16, int32 or float32 voxels, not 3D float64"):
        mriae.decompress(mriae.compress(np.ones((4, 4, 4)), lossless=True)[0], tmp_path / "x.mgh")
    assert not (tmp_path / "x.mgh").exists()


# --------------------------------------------------------------------------- Analyze/NIfTI pairs


def a_pair(folder, kind: str):
    """A pair of ``kind`` written by nibabel: (its .hdr, the nibabel class it loads as)."""
    array = volume((12, 10, 8, 2))
    if kind == "nifti1":
        image = nib.Nifti1Pair(array, AFFINE)
        image.header.set_xyzt_units("mm", "sec")
        image.header.set_zooms((2, 2.5, 3, 1.5))
    elif kind == "nifti2":
        image = nib.Nifti2Pair(array, AFFINE)
    elif kind == "analyze":
        image = nib.AnalyzeImage(array, AFFINE)
    else:  # SPM2 Analyze with a scale factor, its affine in the header's origin
        image = nib.Spm2AnalyzeImage(array, AFFINE)
        image.header.set_slope_inter(0.5)
    path = folder / f"{kind}.hdr"
    image.to_filename(path)
    path.with_suffix(".mat").unlink(missing_ok=True)  # SPM writes one; the origin holds this affine
    return path


@pytest.mark.parametrize("kind", ["nifti1", "nifti2", "analyze", "spm2"])
def test_pairs_come_back_as_pairs_with_their_header_bytes(tmp_path, monkeypatch, capsys, kind):
    source = a_pair(tmp_path, kind)
    original = nib.load(source)
    data, stats = mriae.compress(source, lossless=True)
    assert stats.original_bytes == source.stat().st_size + source.with_suffix(".img").stat().st_size
    (tmp_path / "back.mriae").write_bytes(data)
    code, out, _ = run_mriae(monkeypatch, capsys, "decompress", str(tmp_path / "back.mriae"))
    target = tmp_path / "back.hdr"
    assert (code, out) == (0, f"{tmp_path / 'back.mriae'} → {target}: shape (12, 10, 8, 2), {stats_dtype(original)}\n")
    assert target.read_bytes() == source.read_bytes()
    assert target.with_suffix(".img").read_bytes() == source.with_suffix(".img").read_bytes()
    back = nib.load(target)
    assert type(back) is type(original) and np.array_equal(back.affine, original.affine)
    assert np.array_equal(back.get_fdata(), original.get_fdata())
    roi = mriae.decompress(data, tmp_path / "roi.hdr", roi=(slice(2, 7), slice(1, 9), slice(3, 8)))
    region = nib.load(tmp_path / "roi.hdr")
    shifted = original.affine.copy()
    shifted[:3, 3] += original.affine[:3, :3] @ [2, 1, 3]
    assert roi.array.shape == region.shape == (5, 8, 5, 2) and np.allclose(region.affine, shifted, atol=1e-4)
    assert np.array_equal(region.get_fdata(), original.get_fdata()[2:7, 1:9, 3:8])  # the scale kept too
    mriae.decompress(data, tmp_path / "preview.hdr", downsample=2)
    preview = nib.load(tmp_path / "preview.hdr")
    assert np.allclose(preview.affine, original.affine @ np.diag([2, 2, 2, 1]), atol=1e-4)
    assert np.array_equal(preview.get_fdata(), original.get_fdata()[::2, ::2, ::2])


def stats_dtype(image) -> str:
    """How the CLI names the voxel type of a nibabel image (its stored dtype)."""
    return str(np.dtype(image.get_data_dtype()))


def test_an_spm_affine_from_a_mat_file_is_carried_by_a_nifti_pair_header(tmp_path):
    rotated = AFFINE.copy()
    rotated[:3, :3] = AFFINE[:3, :3] @ np.array([[1, 0, 0], [0, 0.8, -0.6], [0, 0.6, 0.8]])
    image = nib.Spm2AnalyzeImage(volume(), rotated)
    image.header.set_slope_inter(0.5)
    image.to_filename(tmp_path / "spm.hdr")
    assert (tmp_path / "spm.mat").exists()
    original = nib.load(tmp_path / "spm.hdr")
    data, _ = mriae.compress(tmp_path / "spm.hdr", lossless=True)
    mriae.decompress(data, tmp_path / "back.hdr")
    back = nib.load(tmp_path / "back.hdr")
    assert type(back) is nib.Nifti1Pair and np.allclose(back.affine, rotated, atol=1e-5)
    assert np.array_equal(back.get_fdata(), original.get_fdata())


def test_a_pair_without_its_voxel_file_says_so(tmp_path):
    source = a_pair(tmp_path, "nifti1")
    source.with_suffix(".img").unlink()
    with pytest.raises(ImageError) as error:
        read_image(source)
    assert str(error.value) == f"{source}: its voxel file nifti1.img is missing"
    (tmp_path / "short.hdr").write_bytes(source.read_bytes())
    (tmp_path / "short.img").write_bytes(b"\x00" * 100)
    with pytest.raises(ImageError, match=r"short.img: file is truncated: header needs 3840 bytes, file has 100"):
        read_image(tmp_path / "short.hdr")


# --------------------------------------------------------------------------- read only: MINC, PAR/REC, AFNI, ECAT

READ_ONLY_CASES = [
    # file, stored dtype, scaled in the header (one scale), what the decoder writes
    ("minc1_1_scale.mnc", "|u1", True, "MINC"),
    ("minc2_1_scale.mnc", "|u1", True, "MINC"),
    ("minc2_4d.mnc", "<f4", False, "MINC"),  # a scale per slice: nibabel's values as float32; time last
    ("small.mnc", "<f4", False, "MINC"),
    ("phantom_EPI_asc_CLEAR_2_1.PAR", "<u2", True, "PAR/REC"),
    ("phantom_varscale.PAR", "<f4", False, "PAR/REC"),
    ("example4d+orig.HEAD", "<i2", False, "AFNI"),  # unscaled: exact
    ("scaled+tlrc.HEAD", "<i2", True, "AFNI"),
    ("tinypet.v", "<i2", True, "ECAT"),
]


@pytest.mark.parametrize(("name", "dtype", "scaled", "format_name"), READ_ONLY_CASES)
def test_read_only_formats_decode_to_nifti_with_nibabels_values(tmp_path, monkeypatch, capsys, name, dtype,
                                                                 scaled, format_name):
    source = copied(tmp_path, name)
    code, _, err = run_mriae(monkeypatch, capsys, "compress", str(source), "--lossless")
    assert code == 0, err
    stem = name.rsplit(".", 1)[0]
    code, out, _ = run_mriae(monkeypatch, capsys, "decompress", str(tmp_path / f"{stem}.mriae"))
    target = tmp_path / f"{stem}.nii.gz"
    assert code == 0 and out.startswith(f"{tmp_path / stem}.mriae → {target}: shape ")
    assert out.endswith(f" (written as NIfTI: nibabel cannot write {format_name})\n")
    assert read_header((tmp_path / f"{stem}.mriae").read_bytes()).image.suffix == source.suffix.lower()
    values, affine = nibabel_values(source)
    if name.endswith(".mnc") and values.ndim == 4:  # MINC stores time first
        values = np.moveaxis(values, 0, -1)
    back = nib.load(target)
    assert back.get_data_dtype().str == dtype and back.shape == values.shape
    assert np.array_equal(back.affine, affine.astype(np.float32))
    restored = back.get_fdata()
    if scaled:
        slope, inter = back.dataobj.slope, back.dataobj.inter  # what nibabel applies
        assert slope != 1.0
        assert np.allclose(restored, values, rtol=2**-23, atol=abs(inter) * 2**-23)
    elif dtype == "<f4":
        assert np.array_equal(restored, values.astype(np.float32))
    else:
        assert np.array_equal(restored, values)


def nifti_header(source: dict) -> nib.Nifti1Header:
    """The nibabel header of a ``nifti`` record."""
    return nib.Nifti1Header.from_fileobj(io.BytesIO(base64.b64decode(source["header"])))


def test_nifti_headers_of_read_only_formats_carry_time_and_description():
    par = read_image(NIBABEL_DATA / "phantom_EPI_asc_CLEAR_2_1.PAR")
    header = nifti_header(par.source)
    assert par.array.shape == (64, 64, 9, 3) and par.suffix == ".par"
    assert header.get_zooms() == (3.75, 3.75, 8.0, 2.0) and header.get_xyzt_units() == ("mm", "sec")
    assert header["descrip"].tobytes().rstrip(b"\x00") == b"Konvertertest;phantom;2014.02.14/09:00:57;EPI_asc CLEAR"
    minc = read_image(NIBABEL_DATA / "minc2-4d-d.mnc")  # its time axis (seconds) first in the file
    header = nifti_header(minc.source)
    assert minc.array.shape == (16, 16, 16, 5) and header.get_xyzt_units() == ("mm", "sec")
    assert header.get_zooms() == (1.0, 1.0, 1.0, 1.0)
    afni = nifti_header(read_image(NIBABEL_DATA / "example4d+orig.HEAD").source)
    assert afni.get_zooms() == (3.0, 3.0, 3.0, 3.0) and afni.get_xyzt_units() == ("mm", "sec")


def test_the_error_bound_of_a_scaled_format_is_in_its_stored_units(tmp_path, monkeypatch, capsys):
    source = copied(tmp_path, "phantom_EPI_asc_CLEAR_2_1.PAR")
    code, out, _ = run_mriae(monkeypatch, capsys, "compress", str(source), "--max-error", "2")
    assert code == 0 and f"{source} → {source.with_suffix('.mriae')}: 234.6 kB → " in out  # the .PAR and the .REC
    code, out, _ = run_mriae(monkeypatch, capsys, "info", str(source.with_suffix(".mriae")))
    assert code == 0 and "         format: .par\n" in out
    assert "      max_error: 2 (stored units; × |scl_slope| 1.29035: 2.5807 in physical units)\n" in out


# --------------------------------------------------------------------------- refused, with the reason


def a_cifti(path):
    """A NIfTI-2 file carrying a CIFTI-2 extension (a dense scalar over 4 cortex vertices)."""
    ci = nib.cifti2
    axis = ci.BrainModelAxis.from_mask(np.ones(4, bool), name="cortex_left")
    image = ci.Cifti2Image(np.zeros((1, 4), np.float32), (ci.ScalarAxis(["a"]), axis))
    image.to_filename(path)
    return path


@pytest.mark.parametrize(("name", "message"), [
    ("row_major.dconn.nii", "CIFTI-2 (surface/grayordinate data) is not supported"),
    ("plain.nii", "CIFTI-2 (surface/grayordinate data) is not supported"),  # found by its extension
    ("simple.trk", "streamlines (tractography) are not supported (mriae codes volumes)"),
    ("simple.tck", "streamlines (tractography) are not supported (mriae codes volumes)"),
    ("ascii.gii", "GIFTI surface data is not supported (mriae codes volumes)"),
    ("scaled+tlrc.BRIK", "the voxel file of an AFNI dataset: give its header (.HEAD)"),
    ("phantom_varscale.REC", "the voxel file of a PAR/REC pair: give its header (.PAR)"),
    ("T1.PAR", "its voxel file T1.REC is missing"),
])
def test_files_mriae_does_not_compress_are_refused_with_why(tmp_path, monkeypatch, capsys, name, message):
    if name == "plain.nii":
        source = a_cifti(tmp_path / name)
    else:
        folder = NIBABEL_DATA.parent.parent / "gifti" / "tests" / "data" if name.endswith(".gii") else NIBABEL_DATA
        source = tmp_path / name
        shutil.copy(folder / name, source)
    code, out, err = run_mriae(monkeypatch, capsys, "compress", str(source))
    assert (code, out, err) == (1, "", f"error: {source}: {message}\n")
    assert not list(tmp_path.glob("*.mriae"))
    if name != "plain.nii" and name != "T1.PAR":
        assert refusal(source) == message  # from the name alone, as batch lists skipped files


@pytest.mark.parametrize(("name", "content", "message", "real"), [
    ("prefiltered_func_data_mcf.par", b"-0.00165  0.00021  0.00038  0.0211 -0.0402  0.0617\n",
     "not a PAR/REC header (no '# === DATA DESCRIPTION FILE' line at its top)", "T1.PAR"),
    ("cube.hdr", b"ENVI\nsamples = 4\nlines = 4\nbands = 2\n",
     "not an Analyze/NIfTI header (its first 4 bytes, sizeof_hdr, are not 348 or 540)", "analyze.hdr"),
    ("session+orig.HEAD", b"head coil, 32 channels\n", "not an AFNI header (no 'type = ...-attribute' line at its top)",
     "scaled+tlrc.HEAD"),
    ("counter.v", b"module counter;\nendmodule\n", "not an ECAT 7 image (it does not start with 'MATRIX')", "tinypet.v"),
])
def test_a_file_whose_first_bytes_are_not_its_suffixs_type_is_refused_as_such(tmp_path, monkeypatch, capsys, name,
                                                                               content, message, real):
    source = tmp_path / name
    source.write_bytes(content)
    if voxel_file(source) is not None:  # its voxel file is there: not what the error is about
        voxel_file(source).write_bytes(b"\x00" * 128)
    code, out, err = run_mriae(monkeypatch, capsys, "compress", str(source))
    assert (code, out, err) == (1, "", f"error: {source}: {message}\n")
    assert (content_mismatch(source), content_mismatch(NIBABEL_DATA / real)) == (message, None)


def test_read_only_outputs_are_refused_before_any_work(tmp_path, monkeypatch, capsys):
    data, _ = mriae.compress(volume(), lossless=True)
    (tmp_path / "x.mriae").write_bytes(data)
    code, _, err = run_mriae(monkeypatch, capsys, "decompress", str(tmp_path / "x.mriae"), "-o", str(tmp_path / "x.mnc"))
    assert (code, err) == (2, f"error: {tmp_path / 'x.mnc'}: nibabel cannot write MINC (write .nii.gz or .nii instead)\n")
    code, _, err = run_mriae(monkeypatch, capsys, "decompress", str(tmp_path / "x.mriae"), "-o", str(tmp_path / "x.img"))
    assert code == 2 and "unsupported output type (use .nii.gz, .nii, .nrrd, .nhdr, .mha, .mhd, .mgz, .mgh or .hdr, or --format WORD)" in err
    with pytest.raises(ImageError, match="x.v: nibabel cannot write ECAT"):
        mriae.decompress(data, tmp_path / "x.v")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.mriae"]


def test_batch_finds_each_image_once_by_its_header(tmp_path):
    a_pair(tmp_path, "nifti1")
    for name in ("scaled+tlrc.HEAD", "scaled+tlrc.BRIK", "minc1_1_scale.mnc", "simple.trk"):
        shutil.copy(NIBABEL_DATA / name, tmp_path / name)
    assert [(item.relative.name, item.action) for item in discover(tmp_path)] == [
        ("minc1_1_scale.mnc", "code"), ("nifti1.hdr", "code"), ("scaled+tlrc.HEAD", "code"), ("simple.trk", "skip")]


# --------------------------------------------------------------------------- untrusted input


def test_an_mgh_header_over_the_limits_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setenv("MRIAE_MAX_VOXELS", "1000000")
    header = bytearray(284)
    header[:24] = np.array([1, 200, 200, 100, 1, 4], ">i4").tobytes()
    header[28:30] = np.array([1], ">i2").tobytes()
    (tmp_path / "huge.mgh").write_bytes(bytes(header) + b"\x00" * 1000)
    with pytest.raises(ImageError) as error:
        read_image(tmp_path / "huge.mgh")
    assert str(error.value) == (f"{tmp_path / 'huge.mgh'}: header claims 200×200×100 = 4,000,000 voxels, over the "
                                "limit of 1,000,000 (set MRIAE_MAX_VOXELS to allow more)")
    monkeypatch.delenv("MRIAE_MAX_VOXELS")
    with pytest.raises(ImageError, match=r"huge.mgh: file is truncated: header needs 8000284 bytes, file has 1284$"):
        read_image(tmp_path / "huge.mgh")


def forged(data: bytes, change) -> bytes:
    parsed = container.unpack(data)
    change(parsed.header["image"]["source"])
    return container.pack(parsed.header, parsed.chunks)


def test_forged_mgh_and_pair_records_are_refused_naming_the_field(tmp_path):
    mgh, _ = mriae.compress(an_mgh(tmp_path / "scan.mgz"), lossless=True)
    pair, _ = mriae.compress(a_pair(tmp_path, "nifti1"), lossless=True)
    def mgh_dims(source):
        header = bytearray(base64.b64decode(source["header"]))
        header[4:8] = (13).to_bytes(4, "big")
        source["header"] = base64.b64encode(bytes(header)).decode()

    cases = [
        (mgh, mgh_dims, "image.source.header describes another shape than image.shape"),
        (mgh, lambda source: source.update(header=source["header"][:-8]), "not the 284 of an MGH header"),
        (mgh, lambda source: source.update(footer="!!"), "image.source.footer is not base64"),
        (mgh, lambda source: source.update(footer="A" * (44 << 20)), "image.source.footer is over 33554432 bytes"),
        (pair, lambda source: source.update(prefix="AAAA"), "data offset is not the length of image.source.prefix"),
        (pair, lambda source: source.pop("prefix"), "has no 'prefix'"),
        (pair, lambda source: source.update(kind="minc"), "image.source.kind 'minc' is unknown"),
    ]
    for data, change, message in cases:
        with pytest.raises(HeaderError, match=message):
            read_header(forged(data, change))
