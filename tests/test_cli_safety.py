"""The command line never loses or corrupts a file and never shows a traceback: every failure
is one line on stderr with its exit code (docs/errors.md lists them all)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import as_from_a_terminal
from conftest import run_mriae as main

import mriae
from mriae import codec
from mriae.io import Image, read_image, write_image

LONG = "a-folder-name-long-enough-to-wrap-any-narrow-terminal-several-times-over"


def run(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mriae", *args], capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def start(*args: str) -> subprocess.Popen:
    """``mriae ARGS`` in a child process that takes signals as from a terminal."""
    return subprocess.Popen([sys.executable, "-m", "mriae", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=as_from_a_terminal)  # noqa: PLW1509 - it only resets SIGINT


@pytest.fixture(scope="module")
def small_mriae(tmp_path_factory) -> Path:
    """A quickly decoded .mriae file of a constant 3D volume."""
    path = tmp_path_factory.mktemp("small") / "small.mriae"
    mriae.compress(np.full((6, 5, 4), 3, np.int16), path)
    return path


@pytest.fixture
def scan(tmp_path: Path) -> Path:
    path = tmp_path / "scan.nii"
    write_image(Image(np.arange(8 * 8 * 8, dtype=np.uint8).reshape(8, 8, 8), np.eye(4)), path)
    return path


# ----------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize("args, message", [
    (["-Q", "9"], "error: --quality must be a level 1..8 (got 9)"),
    (["-Q", "0"], "error: --quality must be a level 1..8 (got 0)"),
    (["--spacing", "abc"], "error: --spacing must be one or three positive numbers in mm (got 'abc')"),
])
def test_bad_options_are_usage_errors_before_any_work(scan: Path, args: list[str], message: str):
    scan.with_suffix(".mriae").write_bytes(b"existing")  # usage is checked first, even before this
    result = run("compress", str(scan), *args)
    assert (result.returncode, result.stderr) == (2, message + "\n")
    assert scan.with_suffix(".mriae").read_bytes() == b"existing"


def test_error_lines_are_never_wrapped_when_stderr_is_not_a_terminal(tmp_path: Path):
    missing = tmp_path / LONG / LONG / "scan.nii.gz"
    narrow = {"COLUMNS": "40"}
    result = run("compress", str(missing), env=narrow)
    assert (result.returncode, result.stderr) == (1, f"error: {missing}: no such file\n")
    result = run("compress", str(missing), "-Q", LONG, env=narrow)
    assert result.returncode == 2
    assert result.stderr.startswith("error: Invalid value for '--quality' / '-Q': ")
    assert result.stderr.endswith(" (see 'mriae compress --help')\n") and result.stderr.count("\n") == 1
    result = run("compress", env=narrow)
    assert (result.returncode, result.stderr) == (2, "error: Missing argument 'FILE'. (see 'mriae compress --help')\n")


@pytest.mark.parametrize("args, message", [
    (["compress", "x.nii", "--xyzzy"], "error: No such option: --xyzzy (see 'mriae compress --help')"),
    (["bogus"], "error: No such command 'bogus'. (see 'mriae --help')"),
])
def test_unknown_options_and_commands_are_usage_errors(monkeypatch, capsys, args: list[str], message: str):
    assert main(monkeypatch, capsys, *args) == (2, "", message + "\n")


# ----------------------------------------------------------------------------- overwrites


def test_an_unsupported_output_type_is_a_usage_error(small_mriae: Path, tmp_path: Path):
    result = run("decompress", str(small_mriae), "-o", str(tmp_path / "out.png"))
    message = (f"error: {tmp_path / 'out.png'}: unsupported output type "
               "(use .nii.gz, .nii, .nrrd, .nhdr, .mha, .mhd, .mgz, .mgh or .hdr, or --format WORD)")
    assert (result.returncode, result.stderr) == (2, message + "\n")
    assert list(tmp_path.iterdir()) == []


def test_decompress_never_replaces_the_data_file_of_a_pair(small_mriae: Path, tmp_path: Path):
    folder = tmp_path / "rec"
    folder.mkdir()
    (folder / "vol.raw").write_bytes(b"an unrelated scan")
    result = run("decompress", str(small_mriae), "-o", str(folder / "vol.mhd"))
    message = f"error: {folder / 'vol.raw'} already exists (use --force to replace)\n"
    assert (result.returncode, result.stderr) == (1, message)
    assert sorted(p.name for p in folder.iterdir()) == ["vol.raw"]
    assert (folder / "vol.raw").read_bytes() == b"an unrelated scan"
    result = run("decompress", str(small_mriae), "-o", str(folder / "vol.mhd"), "--force")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["vol.mhd", "vol.raw"]
    assert np.array_equal(read_image(folder / "vol.mhd").array, np.full((6, 5, 4), 3, np.int16))


def test_an_unwritable_output_folder_is_reported_before_the_work(scan: Path, tmp_path: Path, monkeypatch, capsys):
    def no_work(*args, **kwargs):
        raise AssertionError("compression started before the output folder was checked")

    monkeypatch.setattr(codec, "compress_image", no_work)
    (tmp_path / "a-file").write_bytes(b"")
    target = tmp_path / "a-file" / "out.mriae"
    code, out, err = main(monkeypatch, capsys, "compress", str(scan), "-o", str(target))
    assert (code, out) == (1, "")
    assert err == f"error: cannot write to {tmp_path / 'a-file'} (it is not a folder)\n"


def test_evaluate_writes_its_report_all_or_nothing(scan: Path, tmp_path: Path, monkeypatch, capsys):
    from mriae.evaluation import plots

    def broken_plot(*args, **kwargs):
        raise RuntimeError("matplotlib failed")

    report = tmp_path / "report"
    monkeypatch.setattr(plots, "rd_plot", broken_plot)
    code, _, err = main(monkeypatch, capsys, "evaluate", str(scan), "-o", str(report), "--qualities", "1")
    assert code == 1
    assert err == (f"error: {scan}: internal error: RuntimeError: matplotlib failed "
                   "(run with --debug for the traceback)\n")
    assert sorted(p.name for p in report.iterdir()) == []  # no metrics.csv or slices.png without rd.png

    monkeypatch.undo()
    (report / "rd.png").write_bytes(b"an older report")
    code, _, err = main(monkeypatch, capsys, "evaluate", str(scan), "-o", str(report), "--qualities", "1")
    assert (code, err) == (1, f"error: {report / 'rd.png'} already exists (use --force to replace)\n")
    assert sorted(p.name for p in report.iterdir()) == ["rd.png"]


# ----------------------------------------------------------------------------- interrupts and pipes


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_while_writing_leaves_nothing_behind(tmp_path: Path, signum: int):
    big = tmp_path / "big.mriae"
    mriae.compress(np.full((256, 256, 128, 2), 7, np.int16), big)  # 32 MB to gzip: the write takes a while
    target = tmp_path / "out" / "big.nii.gz"
    process = start("decompress", str(big), "-o", str(target))
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".mriae-") for p in target.parent.glob("*")) and process.poll() is None:
        assert time.monotonic() < deadline, "the staging folder never appeared"
        time.sleep(0.005)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert (process.returncode, err) == (128 + signum, "interrupted\n")
    assert list(target.parent.iterdir()) == []


def test_ctrl_c_during_start_up_is_one_line(small_mriae: Path, tmp_path: Path):
    process = start("decompress", str(small_mriae), "-o", str(tmp_path / "restored.nii.gz"))
    time.sleep(1.0)  # decompress loads torch, which takes seconds (`mriae info` is done in a fraction of one)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert (process.returncode, out, err) == (130, "", "interrupted\n")


def test_ctrl_c_during_a_command_is_one_line(scan: Path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(codec, "compress_image", interrupted)
    assert main(monkeypatch, capsys, "compress", str(scan)) == (130, "", "interrupted\n")
    assert not scan.with_suffix(".mriae").exists()


def test_a_closed_pipe_ends_quietly_like_cat(small_mriae: Path):
    for args in (["info", str(small_mriae)], ["info", str(small_mriae), "--json"], ["compress", "--help"]):
        process = start(*args)
        process.stdout.close()  # the reader is gone before the first line, as `| head -0` would be
        err = process.stderr.read()
        assert (process.wait(timeout=120), err) == (141, "")


# ----------------------------------------------------------------------------- what used to leak tracebacks


def test_info_refuses_an_endless_or_non_regular_file(tmp_path: Path):
    result = run("info", "/dev/zero", timeout=120)
    assert (result.returncode, result.stderr) == (1, "error: /dev/zero: not an .mriae file (bad magic bytes)\n")
    result = run("info", str(tmp_path), timeout=120)
    assert (result.returncode, result.stderr) == (1, f"error: {tmp_path}: is a folder, not an .mriae file\n")


def test_out_of_memory_is_one_line(small_mriae: Path, tmp_path: Path, monkeypatch, capsys):
    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(codec, "decompress_image", exhausted)
    code, out, err = main(monkeypatch, capsys, "decompress", str(small_mriae), "-o", str(tmp_path / "x.nii"))
    assert (code, out, err) == (1, "", f"error: out of memory while decompressing {small_mriae}\n")


def test_an_unexpected_exception_is_one_line_and_debug_shows_it(small_mriae: Path, monkeypatch, capsys):
    def bug(*args, **kwargs):
        return 1 / 0

    monkeypatch.setattr(codec, "decompress_image", bug)
    code, out, err = main(monkeypatch, capsys, "decompress", str(small_mriae))
    assert (code, out) == (1, "")
    assert err == (f"error: {small_mriae}: internal error: ZeroDivisionError: division by zero "
                   "(run with --debug for the traceback)\n")
    with pytest.raises(ZeroDivisionError):
        main(monkeypatch, capsys, "decompress", str(small_mriae), "--debug")


def test_compress_says_how_many_outlier_voxels_it_stored_exactly(tmp_path: Path):
    import nibabel as nib

    volume = (np.arange(24 * 20 * 16).reshape(24, 20, 16) % 700).astype(np.int16)
    volume[3, 4, 5] = 32767
    path = tmp_path / "hot.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)
    result = subprocess.run([sys.executable, "-m", "mriae", "compress", str(path)], check=False, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("dB (1 outlier voxel stored exactly)")


def test_info_shows_the_mode_and_the_outliers_stored_exactly(monkeypatch, capsys):
    golden = Path(__file__).parent / "golden"
    code, out, _ = main(monkeypatch, capsys, "info", "--json", str(golden / "v4_labels_uint8.mriae"))
    labels = json.loads(out)
    assert (code, labels["mode"], labels["model"]["name"], labels["outliers"]) == (0, "exact", None, 0)
    code, out, _ = main(monkeypatch, capsys, "info", "--json", str(golden / "v4_marker_outliers_int16.mriae"))
    marker = json.loads(out)
    assert (code, marker["mode"], marker["quality"], marker["outliers"]) == (0, "learned", 4, 27)
