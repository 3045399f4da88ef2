"""The command line as a user meets it: outputs, summaries, and one-line errors."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import NIBABEL_DATA

from mriae import container


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mriae", *args], capture_output=True, text=True, cwd=cwd, check=False)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def scan(tmp_path: Path) -> Path:
    target = tmp_path / "scan.nii.gz"
    shutil.copy(NIBABEL_DATA / "example4d.nii.gz", target)
    return target


def test_compress_decompress_info(scan: Path):
    before = digest(scan)
    result = run("compress", str(scan))
    assert result.returncode == 0, result.stderr
    compressed = scan.with_name("scan.mriae")
    assert compressed.is_file()
    assert "bits/voxel" in result.stdout and "PSNR" in result.stdout and "×" in result.stdout
    assert digest(scan) == before  # the input is never modified

    restored = scan.with_name("rec.nii.gz")
    result = run("decompress", str(compressed), "-o", str(restored))
    assert result.returncode == 0, result.stderr
    assert nib.load(restored).shape == (128, 96, 24, 2)

    result = run("info", str(compressed), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["shape"] == [128, 96, 24, 2]
    assert info["volumes"] == 2
    assert info["format"] == ".nii.gz"
    assert info["bits_per_voxel"] == pytest.approx(compressed.stat().st_size * 8 / (128 * 96 * 24 * 2))


def test_decompress_defaults_to_the_original_format(scan: Path, tmp_path: Path):
    compressed = tmp_path / "out" / "copy.mriae"
    compressed.parent.mkdir()
    assert run("compress", str(scan), "-o", str(compressed)).returncode == 0
    assert run("decompress", str(compressed)).returncode == 0
    assert (compressed.parent / "copy.nii.gz").is_file()


def test_existing_output_needs_force(scan: Path):
    assert run("compress", str(scan)).returncode == 0
    output = scan.with_name("scan.mriae")
    stamp = digest(output)
    result = run("compress", str(scan), "-Q", "2")
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {output} already exists (use --force to replace)"
    assert digest(output) == stamp
    assert run("compress", str(scan), "-Q", "2", "--force").returncode == 0
    assert digest(output) != stamp


def assert_clean_failure(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_bad_inputs_fail_with_one_line_and_no_output(tmp_path: Path, scan: Path):
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b not really gzip")
    assert_clean_failure(run("compress", str(broken)), "broken.nii.gz", "cannot read image")
    assert not (tmp_path / "broken.mriae").exists()

    assert_clean_failure(run("compress", str(tmp_path / "nope.nii")), "nope.nii", "no such file")
    assert_clean_failure(run("compress", str(scan), "-Q", "99"), "--quality must be a level 1..8 (got 99)")
    assert_clean_failure(run("compress", str(scan), "--spacing", "0,1"), "--spacing")

    assert run("compress", str(scan)).returncode == 0
    good = scan.with_name("scan.mriae").read_bytes()
    cases = {
        "truncated.mriae": (good[: len(good) // 3], "truncated"),
        "corrupt.mriae": (good[:100] + bytes([good[100] ^ 1]) + good[101:], "corrupt"),
        "future.mriae": (good[:4] + bytes([9]) + good[5:], "format version 9 is not supported"),
        "notmriae.mriae": (b"hello world" * 10, "not an .mriae file"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        assert_clean_failure(run("decompress", str(path)), name, message)
        assert not path.with_suffix(".nii.gz").exists()
        assert path.read_bytes() == data


def test_missing_or_different_weights_are_reported(tmp_path: Path, scan: Path):
    assert run("compress", str(scan)).returncode == 0
    parsed = container.unpack(scan.with_name("scan.mriae").read_bytes())
    for name, change, message in [
        ("other.mriae", {"name": "not-installed"}, "weights 'not-installed', which are not installed"),
        ("stale.mriae", {"sha256": "0" * 16}, "but the installed ones are"),
    ]:
        header = {**parsed.header, "model": {**parsed.header["model"], **change}}
        path = tmp_path / name
        path.write_bytes(container.pack(header, parsed.chunks))
        assert_clean_failure(run("decompress", str(path)), name, message)


def test_info_reports_a_malformed_header_in_one_line(tmp_path: Path):
    path = tmp_path / "odd.mriae"
    data = container.pack({"image": {"shape": [2, 2, 2], "dtype": "<i2", "suffix": ".nii"}, "quality": 1}, [b""])
    path.write_bytes(data)
    assert_clean_failure(run("info", str(path)), "odd.mriae", "header is malformed", "has no affine")
    assert path.read_bytes() == data


def test_debug_shows_the_traceback(tmp_path: Path):
    bad = tmp_path / "bad.mriae"
    bad.write_bytes(b"nope")
    result = run("decompress", str(bad), "--debug")
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_output_may_not_overwrite_the_input(scan: Path):
    result = run("compress", str(scan), "-o", str(scan), "--force")
    assert_clean_failure(result, "would overwrite the input")
    assert nib.load(scan).shape == (128, 96, 24, 2)


def test_float_volume_psnr_is_reported(tmp_path: Path):
    path = tmp_path / "float.nii"
    nib.save(nib.Nifti1Image(np.linspace(0, 1, 16 * 16 * 16, dtype=np.float32).reshape(16, 16, 16), np.eye(4)), path)
    result = run("compress", str(path))
    assert result.returncode == 0, result.stderr
    assert "PSNR" in result.stdout


def test_version_and_test_verify_without_writing(scan: Path, tmp_path: Path, monkeypatch, capsys):
    from conftest import run_mriae

    from mriae import __version__

    assert run_mriae(monkeypatch, capsys, "--version") == (0, f"mriae {__version__}\n", "")
    packed = tmp_path / "scan.mriae"
    assert run_mriae(monkeypatch, capsys, "compress", str(scan), "-o", str(packed))[0] == 0
    data = packed.read_bytes()
    cut = tmp_path / "cut.mriae"
    cut.write_bytes(data[: len(data) - 40])
    before = sorted(tmp_path.iterdir())
    code, out, err = run_mriae(monkeypatch, capsys, "test", str(packed), str(cut))
    assert code == 1
    assert out.startswith(f"{packed}: OK, shape ")
    assert err.count("\n") == 1 and err.startswith(f"error: {cut}: ")
    assert sorted(tmp_path.iterdir()) == before  # nothing written
    assert run_mriae(monkeypatch, capsys, "test", str(packed))[0] == 0


def test_info_says_orientation_dtype_and_rounded_figures(scan: Path, tmp_path: Path, monkeypatch, capsys):
    from conftest import run_mriae

    from mriae.cli import dtype_words, orientation

    packed = tmp_path / "scan.mriae"
    assert run_mriae(monkeypatch, capsys, "compress", str(scan), "-o", str(packed))[0] == 0
    code, out, _ = run_mriae(monkeypatch, capsys, "info", str(packed))
    lines = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in out.splitlines()}
    assert code == 0
    assert lines["orientation"] == "".join(nib.aff2axcodes(nib.load(scan).affine)) == "LAS"
    assert lines["dtype"] == "int16"
    assert len(lines["bits_per_voxel"].split(".")[1]) == 4
    oblique = np.array([[0, 0, -2.0, 0], [0.3, 1.9, 0, 0], [1.9, -0.3, 0, 0], [0, 0, 0, 1]])
    assert orientation(oblique) == "".join(nib.aff2axcodes(oblique)) == "SAL"
    assert dtype_words(np.dtype(">f4")) == "float32 (big-endian)" and dtype_words(np.dtype("<i2")) == "int16"
