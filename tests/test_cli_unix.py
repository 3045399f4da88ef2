"""Unix habits of the command line: - for stdin and stdout, several inputs in one call,
-q/--quiet and -v/--verbose (and the old -q N for the quality), --format, and what `mriae
info` says of the grid."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO
from conftest import run_mriae as main

import mriae
from mriae import cli, container
from mriae.cli import quality_option_renamed
from mriae.io import Image, ImageError, read_image, write_image
from mriae.io.stream import sniff_suffix, spooled_image

SAMPLE = REPO / "sample_data" / "mni152_t1_2mm.nii.gz"
DEPRECATED = "warning: -q 3 for the quality level is deprecated: use -Q 3 or --quality 3 (-q now means --quiet)"


def process(*args: str, stdin: bytes | int | None = None, stdout: int = subprocess.PIPE) -> subprocess.CompletedProcess:
    """``mriae ARGS`` in a fresh process, fed ``stdin`` (bytes, or a file descriptor)."""
    feed = {"input": stdin} if isinstance(stdin, bytes) else {"stdin": stdin}
    return subprocess.run([sys.executable, "-m", "mriae", *args], **feed, stdout=stdout, stderr=subprocess.PIPE,
                          check=False, timeout=300, cwd=REPO)


@pytest.fixture(scope="module")
def head(tmp_path_factory) -> Path:
    """A 48×64×40 crop of the 2 mm MNI head (uint8, its own affine), as .nii.gz."""
    sample = nib.load(SAMPLE)
    crop = np.asarray(sample.dataobj)[20:68, 24:88, 20:60]
    affine = sample.affine.copy()
    affine[:3, 3] += affine[:3, :3] @ [20, 24, 20]
    path = tmp_path_factory.mktemp("head") / "head.nii.gz"
    nib.save(nib.Nifti1Image(crop, affine), path)
    return path


def stdin_holding(monkeypatch, data: bytes) -> None:
    """Make the in-process command read ``data`` as its stdin."""
    monkeypatch.setattr(cli, "stdin_bytes", lambda: io.BytesIO(data))


# ----------------------------------------------------------------------------- stdin and stdout


def test_stdin_to_stdout_round_trip_matches_the_file_round_trip(head: Path, tmp_path: Path, monkeypatch, capsys):
    packed, restored, gzipped = tmp_path / "head.mriae", tmp_path / "restored.nii", tmp_path / "restored.nii.gz"
    assert main(monkeypatch, capsys, "compress", str(head), "-o", str(packed))[0] == 0
    assert main(monkeypatch, capsys, "decompress", str(packed), "-o", str(restored))[0] == 0
    assert main(monkeypatch, capsys, "decompress", str(packed), "-o", str(gzipped))[0] == 0

    piped = process("compress", "-", "-o", "-", stdin=head.read_bytes())
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == packed.read_bytes()  # the same bytes as from the file
    size = f"{head.stat().st_size / 1000:.1f} kB"
    assert piped.stderr.decode().startswith(f"<stdin> → <stdout>: {size} → ")  # messages go to stderr

    unpacked = process("decompress", "-", "-o", "-", "--format", "nii", stdin=piped.stdout)
    assert unpacked.returncode == 0, unpacked.stderr
    assert unpacked.stderr.decode() == "<stdin> → <stdout>: shape (48, 64, 40), uint8\n"
    assert unpacked.stdout == restored.read_bytes()
    (tmp_path / "piped.nii").write_bytes(unpacked.stdout)
    piped_image, file_image = nib.load(tmp_path / "piped.nii"), nib.load(restored)
    assert piped_image.get_data_dtype() == file_image.get_data_dtype() == np.uint8
    assert np.array_equal(piped_image.affine, nib.load(head).affine)
    assert np.array_equal(np.asarray(piped_image.dataobj), np.asarray(file_image.dataobj))

    default = process("decompress", "-", stdin=packed.read_bytes())  # no -o: stdout, in the original format
    assert default.returncode == 0, default.stderr
    assert default.stdout == gzipped.read_bytes() and default.stdout[:2] == b"\x1f\x8b"


def test_binary_data_is_never_written_to_or_read_from_a_terminal(head: Path, tmp_path: Path):
    controller, terminal = pty.openpty()
    try:
        result = process("compress", str(head), "-o", "-", stdout=terminal)
        assert (result.returncode, result.stderr.decode()) == (
            2, "error: refusing to write binary data to a terminal; use -o FILE or redirect\n")
        result = process("decompress", "-", "-o", str(tmp_path / "x.nii"), stdin=terminal)
        assert (result.returncode, result.stderr.decode()) == (
            2, "error: refusing to read binary data from a terminal; give a file or redirect\n")
        os.set_blocking(controller, False)
        with pytest.raises(BlockingIOError):  # nothing reached the terminal
            os.read(controller, 1024)
    finally:
        os.close(controller)
        os.close(terminal)
    assert list(tmp_path.iterdir()) == []


def test_stdin_errors_name_stdin_and_leave_no_spooled_file(head: Path, tmp_path: Path, monkeypatch, capsys):
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    target = tmp_path / "x.mriae"
    data = head.read_bytes()
    for given, message in [
        (data[: len(data) // 2], "error: <stdin>: file is truncated: header needs 123232 bytes, file has "),
        (b"", "error: <stdin>: empty (no image data)"),
        (b"P5\n48 64\n255\n" + bytes(100), ("error: <stdin>: not a NIfTI, NRRD or MetaImage image (a stream may hold "
                                           ".nii, .nii.gz, .nrrd or .mha data)")),
    ]:
        stdin_holding(monkeypatch, given)
        code, out, err = main(monkeypatch, capsys, "compress", "-", "-o", str(target))
        assert (code, out) == (1, "")
        assert err.startswith(message) and err.count("\n") == 1, err
        assert list(spool.iterdir()) == [] and not target.exists()


def test_a_stream_longer_than_any_image_within_the_limits_is_refused(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("MRIAE_MAX_VOXELS", "1000")  # 9,000 bytes and 1 MiB of header
    endless = io.BytesIO(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)).to_bytes() + bytes(2 << 20))
    limit = r"^<stdin>: more than 1,057,576 bytes, more than an image within the voxel limits can hold"
    with pytest.raises(ImageError, match=limit), spooled_image(endless):
        pass
    assert endless.tell() < (2 << 20)  # it stopped reading at the limit
    assert list(tmp_path.iterdir()) == []


def test_formats_are_sniffed_from_their_first_bytes(tmp_path: Path):
    image = Image(np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6), np.diag([2.0, 2.0, 3.0, 1.0]))
    for suffix in (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd", ".nhdr"):
        write_image(image, tmp_path / suffix.replace(".", "x", 1) / f"x{suffix}")
    nifti2 = tmp_path / "two.nii"
    nib.save(nib.Nifti2Image(image.array, image.affine), nifti2)
    for suffix in (".nii", ".nii.gz", ".nrrd", ".mha"):
        assert sniff_suffix((tmp_path / suffix.replace(".", "x", 1) / f"x{suffix}").read_bytes()[:65536]) == suffix
    assert sniff_suffix(nifti2.read_bytes()) == ".nii"
    assert sniff_suffix(nifti2.read_bytes()[:4][::-1] + nifti2.read_bytes()[4:]) == ".nii"  # big-endian sizeof_hdr
    refused = {
        ".mhd": "<stdin>: a MetaImage header whose voxels are in another file cannot be read from a stream; give the "
                ".mhd file's path",
        ".nhdr": "<stdin>: a detached NRRD header (its voxels are in another file) cannot be read from a stream; give "
                 "the .nhdr file's path",
    }
    for suffix, message in refused.items():
        with pytest.raises(ImageError) as error:
            sniff_suffix((tmp_path / suffix.replace(".", "x", 1) / f"x{suffix}").read_bytes())
        assert str(error.value) == message
    with pytest.raises(ImageError, match=r"^<stdin>: gzip data, but not a NIfTI image inside"):
        sniff_suffix(__import__("gzip").compress(b"hello" * 100))


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_itk_files_from_stdin_code_as_from_their_path(head: Path, tmp_path: Path, monkeypatch, capsys, suffix: str):
    source = tmp_path / f"head{suffix}"
    write_image(read_image(head), source)
    assert main(monkeypatch, capsys, "compress", str(source), "-o", str(tmp_path / "a.mriae"), "-Q", "2")[0] == 0
    stdin_holding(monkeypatch, source.read_bytes())
    code, out, err = main(monkeypatch, capsys, "compress", "-", "-o", str(tmp_path / "b.mriae"), "-Q", "2")
    assert (code, err) == (0, "") and out.startswith(f"<stdin> → {tmp_path / 'b.mriae'}: ")
    assert (tmp_path / "a.mriae").read_bytes() == (tmp_path / "b.mriae").read_bytes()


def test_nothing_reaches_stdout_when_the_output_fails(tmp_path: Path, monkeypatch, capsys):
    packed = tmp_path / "series.mriae"
    assert main(monkeypatch, capsys, "compress", "--lossless", "-o", str(packed),
                str(write_series(tmp_path / "series.nii")))[0] == 0
    code, out, err = main(monkeypatch, capsys, "decompress", str(packed), "-o", "-", "--format", "nrrd")
    assert (code, out) == (1, "")
    assert err == f"error: {packed}: only 3D images can be written as NRRD/MetaImage (shape (8, 8, 6, 2))\n"


def write_series(path: Path) -> Path:
    """A small 4D int16 series at ``path``."""
    write_image(Image(np.arange(8 * 8 * 6 * 2, dtype=np.int16).reshape(8, 8, 6, 2), np.eye(4)), path)
    return path


# ----------------------------------------------------------------------------- --format


def test_format_names_the_output_type(head: Path, tmp_path: Path, monkeypatch, capsys):
    packed = tmp_path / "head.mriae"
    assert main(monkeypatch, capsys, "compress", str(head), "-o", str(packed), "--lossless")[0] == 0
    named = tmp_path / "restored"  # no image suffix: written as named, in the format asked for
    code, out, _ = main(monkeypatch, capsys, "decompress", str(packed), "-o", str(named), "--format", "mha")
    assert (code, out) == (0, f"{packed} → {named}: shape (48, 64, 40), uint8\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.mriae", "restored"]
    assert named.read_bytes().startswith(b"ObjectType = Image\n")
    (tmp_path / "copy.mha").write_bytes(named.read_bytes())
    assert np.array_equal(read_image(tmp_path / "copy.mha").array, np.asarray(nib.load(head).dataobj))
    assert main(monkeypatch, capsys, "decompress", str(packed), "--format", "nrrd")[0] == 0  # beside, as head.nrrd
    assert read_image(tmp_path / "head.nrrd").array.shape == (48, 64, 40)

    usage = [
        (["-o", str(tmp_path / "r.nii"), "--format", "nrrd"], (f"error: {tmp_path / 'r.nii'}: its name says .nii, but "
                                                             "--format says nrrd")),
        (["-o", str(tmp_path / "r"), "--format", "mhd"], (f"error: {tmp_path / 'r'}: --format mhd writes a header and "
                                                        "a data file: name the output NAME.mhd")),
        (["-o", "-", "--format", "nhdr"], ("error: --format nhdr writes a header and a data file, which stdout cannot "
                                          "take: use -o FILE, or --format nii, nii.gz, nrrd, mha, mgz or mgh")),
        (["--format", "png"], "error: --format must be one of nii, nii.gz, nrrd, nhdr, mha, mhd, mgz, mgh, hdr, dicom (got 'png')"),
    ]
    for args, message in usage:
        assert main(monkeypatch, capsys, "decompress", str(packed), *args) == (2, "", message + "\n")

    pair = tmp_path / "pair"
    pair.mkdir()
    write_image(read_image(head), pair / "head.mhd")
    assert main(monkeypatch, capsys, "compress", str(pair / "head.mhd"), "--lossless", "-q")[0] == 0
    assert main(monkeypatch, capsys, "decompress", str(pair / "head.mriae"), "-o", "-") == (
        2, "", ("error: the original format (.mhd) is not a single file, which stdout needs: give --format nii, "
               "nii.gz, nrrd, mha, mgz or mgh\n"))
    assert sorted(p.name for p in pair.iterdir()) == ["head.mhd", "head.mriae", "head.raw"]


# ----------------------------------------------------------------------------- --format dicom, --series


def dicom_sourced(path: Path) -> Path:
    """A lossless .mriae at ``path`` of a 4×5×3 int16 image recorded as read from a DICOM
    series (no DICOM reader needed: mriae writes the series itself)."""
    data, _ = mriae.compress(np.arange(60, dtype=np.int16).reshape(4, 5, 3), lossless=True)
    parsed = container.unpack(data)
    tags = {"0008|0016": "1.2.840.10008.5.1.4.1.1.4", "0028|0004": "MONOCHROME2", "0028|0100": "16",
            "0028|0101": "16", "0028|0102": "15", "0028|0103": "1", "0010|0010": "Doe^Jane"}
    parsed.header["image"]["source"] = {"kind": "dicom", "shape": [4, 5, 3], "dtype": "<i2", "tags": tags}
    path.write_bytes(container.pack(parsed.header, parsed.chunks))
    return path


def test_a_series_from_stdin_goes_to_the_folder_o_names(tmp_path: Path, monkeypatch, capsys):
    packed = dicom_sourced(tmp_path / "t1.mriae")
    monkeypatch.chdir(tmp_path)
    stdin_holding(monkeypatch, packed.read_bytes())
    usage = [
        ([], "error: --format dicom writes a folder of files: give -o FOLDER for what comes from stdin"),
        (["-o", "t1.nii.gz"], ("error: t1.nii.gz: --format dicom writes a folder of files: name it without an image "
                               "suffix")),
    ]
    for args, message in usage:
        assert main(monkeypatch, capsys, "decompress", "-", "--format", "dicom", *args) == (2, "", message + "\n")
    assert main(monkeypatch, capsys, "decompress", str(packed), "--format", "dicom", "-o", "x.mha")[0] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t1.mriae"]  # no folder "-", "t1.nii.gz" or "x.mha"

    (tmp_path / "empty").mkdir()  # an existing empty folder is what -o names for a series
    code, out, err = main(monkeypatch, capsys, "decompress", "-", "--format", "dicom", "-o", "empty", "-v")
    lines = out.splitlines()
    assert (code, err, len(lines)) == (0, "", 3)
    assert lines[0] == "<stdin> → empty: 3 DICOM files, shape (4, 5, 3), int16"
    assert lines[1].startswith("  volume 1/1: stored exactly, ")
    assert lines[2].endswith(" s in all (read, decode, write)")
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == ["IM0001.dcm", "IM0002.dcm", "IM0003.dcm"]

    controller, terminal = pty.openpty()  # nothing binary goes to stdout: a terminal there is no reason to refuse
    try:
        result = process("decompress", "-", "--format", "dicom", "-o", str(tmp_path / "tty"), stdin=packed.read_bytes(),
                         stdout=terminal)
        assert (result.returncode, result.stderr) == (0, b"")
        assert os.read(controller, 1024).decode().startswith(f"<stdin> → {tmp_path / 'tty'}: 3 DICOM files")
    finally:
        os.close(controller)
        os.close(terminal)
    assert len(list((tmp_path / "tty").iterdir())) == 3


def test_series_needs_folders_of_dicom_files(head: Path, tmp_path: Path, monkeypatch, capsys):
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    stdin_holding(monkeypatch, head.read_bytes())
    target = tmp_path / "x.mriae"
    for input, name in (("-", "<stdin>"), (str(head), str(head))):
        code, out, err = main(monkeypatch, capsys, "compress", input, "--series", "1.2.3", "-o", str(target))
        assert (code, out, err) == (2, "", (f"error: --series picks a series in a folder of DICOM files; {name} is "
                                            "not one\n"))
    assert list(spool.iterdir()) == [] and not target.exists()


# ----------------------------------------------------------------------------- several inputs


def test_several_inputs_each_get_their_output_and_a_failure_stops_none(head: Path, tmp_path: Path, monkeypatch,
                                                                       capsys):
    first, second, bad = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz", tmp_path / "bad.nii.gz"
    first.write_bytes(head.read_bytes())
    write_image(Image(np.asarray(nib.load(head).dataobj)[:, :, :20], nib.load(head).affine), second)
    bad.write_bytes(b"not an image")
    code, out, err = main(monkeypatch, capsys, "compress", str(first), str(bad), str(second), "-Q", "2")
    assert code == 1
    assert [line.split(": ")[0] for line in out.splitlines()] == [f"{first} → {tmp_path / 'a.mriae'}",
                                                                  f"{second} → {tmp_path / 'b.mriae'}"]
    assert err.startswith(f"error: {bad}: cannot read image (") and err.count("\n") == 1
    assert not (tmp_path / "bad.mriae").exists()

    folder = tmp_path / "restored"
    folder.mkdir()
    inputs = [str(tmp_path / "a.mriae"), str(tmp_path / "b.mriae")]
    assert main(monkeypatch, capsys, "decompress", *inputs, "-o", str(folder), "-q") == (0, "", "")
    assert nib.load(folder / "a.nii.gz").shape == (48, 64, 40) and nib.load(folder / "b.nii.gz").shape == (48, 64, 20)

    code, out, err = main(monkeypatch, capsys, "test", *inputs, str(bad))
    assert (code, out.count(": OK, shape ")) == (1, 2) and err.startswith(f"error: {bad}: not an .mriae file")

    usage = [
        (["compress", str(first), str(second), "-o", str(tmp_path / "x.mriae")],
         f"error: -o {tmp_path / 'x.mriae'}: with several inputs, -o must be an existing folder"),
        (["compress", "-", str(first)], "error: - (stdin) cannot be mixed with other inputs"),
        (["decompress", *inputs, "-o", "-"], "error: -o -: with several inputs, -o must be an existing folder"),
        (["compress", "-", "-o", str(folder)], (f"error: -o {folder} is a folder: give -o FILE (or -o -) for what "
                                               "comes from stdin")),
        (["compress", str(first), "-q", "-v"], "error: -q/--quiet and -v/--verbose cannot be combined"),
    ]
    for args, message in usage:
        assert main(monkeypatch, capsys, *args) == (2, "", message + "\n")


def test_two_inputs_for_one_output_never_replace_each_other(head: Path, tmp_path: Path, monkeypatch, capsys):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "scan.nii.gz").write_bytes(head.read_bytes())
    out_folder = tmp_path / "out"
    out_folder.mkdir()
    code, out, err = main(monkeypatch, capsys, "compress", str(tmp_path / "x" / "scan.nii.gz"),
                          str(tmp_path / "y" / "scan.nii.gz"), "-o", str(out_folder), "--force", "-q")
    assert (code, out) == (1, "")
    assert err == (f"error: {tmp_path / 'y' / 'scan.nii.gz'}: {out_folder / 'scan.mriae'} is the output of "
                   f"{tmp_path / 'x' / 'scan.nii.gz'}, an earlier input of this command\n")
    assert [p.name for p in out_folder.iterdir()] == ["scan.mriae"]


# ----------------------------------------------------------------------------- -q, -v, and the old -q N


def test_quality_option_renamed():
    assert quality_option_renamed(["compress", "a.nii", "-q", "3", "-o", "x"]) == (
        ["compress", "a.nii", "--quality", "3", "-o", "x"], [DEPRECATED.removeprefix("warning: ")])
    assert quality_option_renamed(["batch", "in", "out", "-q7"])[0] == ["batch", "in", "out", "--quality", "7"]
    for args in (["compress", "a.nii", "-q"], ["compress", "-q", "a.nii"], ["compress", "a.nii", "-q", "-Q", "3"],
                 ["decompress", "-q", "3"], ["compress", "--", "-q", "3"], ["test", "-q", "4"]):
        assert quality_option_renamed(args) == (args, [])


def test_q_before_an_existing_path_is_quiet(tmp_path: Path, monkeypatch, capsys):
    """``mriae compress -q 1 2`` with DICOM folders 1 and 2 codes both, quietly, at the default quality."""
    pytest.importorskip("SimpleITK")
    from test_dicom import write_series as write_dicom_series

    monkeypatch.chdir(tmp_path)
    assert quality_option_renamed(["compress", "-q", "1", "2"])[0] == ["compress", "--quality", "1", "2"]  # no 1 yet
    for name in ("1", "2"):
        write_dicom_series(tmp_path / name, np.arange(12 * 10 * 4, dtype=np.int16).reshape(12, 10, 4) * int(name))
    assert quality_option_renamed(["compress", "-q", "1", "2"]) == (["compress", "-q", "1", "2"], [])
    assert quality_option_renamed(["compress", "-q", "3", "2"])[0] == ["compress", "--quality", "3", "2"]
    assert main(monkeypatch, capsys, "compress", "-q", "1", "2") == (0, "", "")
    for name in ("1", "2"):
        info = json.loads(main(monkeypatch, capsys, "info", "--json", f"{name}.mriae")[1])
        assert (info["quality"], info["shape"]) == (5, [12, 10, 4])


def test_the_old_quality_option_of_batch_still_works_with_a_warning(tmp_path: Path, monkeypatch, capsys):
    (tmp_path / "in").mkdir()
    code, out, err = main(monkeypatch, capsys, "batch", str(tmp_path / "in"), str(tmp_path / "out"), "-q", "9")
    assert (code, out) == (2, "")
    assert err == DEPRECATED.replace("3", "9") + "\nerror: --quality must be a level 1..8 (got 9)\n"
    assert not (tmp_path / "out").exists()


def test_batch_says_each_file_with_verbose_and_nothing_with_quiet(head: Path, tmp_path: Path):
    source, output = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    (source / "a.nii.gz").write_bytes(head.read_bytes())
    verbose = process("batch", str(source), str(output), "--workers", "1", "-v", "-Q", "2")
    assert verbose.returncode == 0, verbose.stderr
    lines = verbose.stdout.decode().splitlines()
    assert lines[0].startswith(f"done: {source / 'a.nii.gz'} → {output / 'a.mriae'} (") and lines[0].endswith(" s)")
    assert lines[1].startswith("1 files: 1 done, 0 skipped, 0 failed in ")
    quiet = process("batch", str(source), str(output), "--workers", "1", "-q", "-Q", "2")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, b"", b"")
    assert json.loads((tmp_path / "out.report" / "batch_report.json").read_text())["files"][0]["status"] == "skipped"


def test_quiet_verbose_and_the_deprecated_quality_option(head: Path, tmp_path: Path, monkeypatch, capsys):
    packed = tmp_path / "head.mriae"
    code, out, err = main(monkeypatch, capsys, "compress", str(head), "-o", str(packed), "-q", "3")
    assert (code, err) == (0, DEPRECATED + "\n") and out.startswith(f"{head} → {packed}: ")
    assert json.loads(main(monkeypatch, capsys, "info", "--json", str(packed))[1])["quality"] == 3

    assert main(monkeypatch, capsys, "compress", str(head), "-o", str(packed), "--force", "-q") == (0, "", "")
    assert main(monkeypatch, capsys, "test", str(packed), "--quiet") == (0, "", "")
    assert main(monkeypatch, capsys, "decompress", str(packed), "-o", str(tmp_path / "r.nii"), "-q") == (0, "", "")
    assert (tmp_path / "r.nii").is_file()

    code, out, err = main(monkeypatch, capsys, "compress", str(head), "-o", str(packed), "--force", "-v",
                          "--threads", "1")
    lines = out.splitlines()
    assert (code, err, len(lines)) == (0, "", 3)
    assert lines[0].startswith(f"{head} → {packed}: ")
    assert lines[1].startswith("  volume 1/1: network, 1 tile of 128³, ") and lines[1].endswith(" kB")
    assert lines[2].startswith("  1 thread for tiles; ") and lines[2].endswith(" s in all (read, code, verify, write)")
    code, out, _ = main(monkeypatch, capsys, "compress", str(head), "-o", str(packed), "--force", "-v", "--lossless")
    assert code == 0 and out.splitlines()[1].startswith("  volume 1/1: context coder, lossless, ")
    code, out, _ = main(monkeypatch, capsys, "test", str(packed), "-v")
    assert code == 0 and out.splitlines()[1].startswith("  volume 1/1: context coder, lossless, ")


# ----------------------------------------------------------------------------- info


def test_info_shows_the_voxel_size_and_the_affine(tmp_path: Path, monkeypatch, capsys):
    affine = np.array([[-1.2, 0, 0, 90.123456], [0, 1.5, 0.1, -126.0004], [0, 0, 2.25, -72], [0, 0, 0, 1]])
    path = tmp_path / "oblique.nii"
    write_image(Image(np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4), affine), path)
    assert main(monkeypatch, capsys, "compress", str(path), "--lossless", "-q")[0] == 0
    code, out, _ = main(monkeypatch, capsys, "info", str(tmp_path / "oblique.mriae"))
    lines = dict(line.strip().split(": ", 1) for line in out.splitlines())  # one "key: value" a line
    assert code == 0
    assert lines["spacing"] == "1.2 × 1.5 × 2.252 mm"  # rounded to 3 decimals
    assert lines["affine"] == "[-1.2 0 0 90.123] [0 1.5 0.1 -126] [0 0 2.25 -72] [0 0 0 1]"
    summary = json.loads(main(monkeypatch, capsys, "info", "--json", str(tmp_path / "oblique.mriae"))[1])
    assert np.array_equal(np.array(summary["affine"]), affine.astype(np.float32))  # NIfTI keeps float32
    assert summary["spacing"] == [float(v) for v in np.linalg.norm(np.array(summary["affine"])[:3, :3], axis=0)]
    packed = (tmp_path / "oblique.mriae").read_bytes()
    stdin_holding(monkeypatch, packed)
    code, out, _ = main(monkeypatch, capsys, "info", "-", "--json")
    assert code == 0 and json.loads(out)["file"] == "<stdin>" and json.loads(out)["affine"] == summary["affine"]
