"""The fidelity options (a quality level, a maximum error, lossless, a PSNR) in every face: the
command line (compress, info, evaluate, batch), the Python API, the MONAI transforms, the
bundle config and batch jobs. Each passes the option through to the file it writes (its header
says context-coded with that error) and each refuses two options, or a bad value, before any work.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import REPO
from conftest import run_mriae as main

import mriae
from mriae import cli
from mriae.header import read_header

SLOPE = 0.5


def volume(shape=(20, 18, 12), seed: int = 0) -> np.ndarray:
    """A smooth int16 head-like ramp with noise: neither a label map nor constant."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.linspace(0, 1, n) for n in shape), indexing="ij")
    values = 400 * np.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2 + (z - 0.5) ** 2) * 4) + 300 * x * y
    return np.rint(values + rng.normal(0, 15, shape) + 50).astype(np.int16)


def save_nifti(path: Path, array: np.ndarray, slope: float | None = None) -> Path:
    image = nib.Nifti1Image(array, np.diag([1.0, 1.2, 2.0, 1.0]))
    if slope is not None:
        image.header.set_slope_inter(slope, 10.0)
    nib.save(image, path)
    return path


def stored(path: Path) -> np.ndarray:
    """The stored (unscaled) voxels of a NIfTI file."""
    return np.asarray(nib.load(path).dataobj.get_unscaled())


def context_error(data: bytes) -> float:
    """The maximum error a file's header promises; fails unless every volume is context-coded."""
    header = read_header(data)
    assert not header.learned and all(v.context is not None for v in header.volumes)
    return header.max_error


@pytest.fixture
def scan(tmp_path: Path) -> Path:
    return save_nifti(tmp_path / "scan.nii.gz", volume())


@pytest.fixture
def scaled(tmp_path: Path) -> Path:
    """A NIfTI whose scl_slope (0.5) scales its stored int16 values."""
    return save_nifti(tmp_path / "scaled.nii.gz", volume(), SLOPE)


# ----------------------------------------------------------------------------- command line: usage


ONE_OF = "cannot be combined: give one of -Q/--quality, --max-error, --lossless, --psnr"
CONFLICTS = [
    (["-Q", "3", "--max-error", "2"], f"error: --quality and --max-error {ONE_OF}"),
    (["--lossless", "--psnr", "40"], f"error: --psnr and --lossless {ONE_OF}"),
    (["--max-error", "0", "--lossless"], f"error: --max-error and --lossless {ONE_OF}"),
    (["--max-error", "-1"], "error: bad --max-error: the maximum error must be a finite number ≥ 0, got -1.0"),
    (["--max-error", "inf"], "error: bad --max-error: the maximum error must be a finite number ≥ 0, got inf"),
    (["--psnr", "5"], "error: bad --psnr: the PSNR must be 10–200 dB, got 5.0"),
    (["--psnr", "nan"], "error: bad --psnr: the PSNR must be 10–200 dB, got nan"),
    (["-Q", "9"], "error: --quality must be a level 1..8 (got 9)"),
]


@pytest.mark.parametrize("args, message", CONFLICTS)
def test_compress_refuses_conflicts_and_bad_values_before_any_work(monkeypatch, capsys, scan: Path,
                                                                   args: list[str], message: str):
    scan.with_name("scan.mriae").write_bytes(b"existing")  # usage is checked first, even before this
    assert main(monkeypatch, capsys, "compress", str(scan), *args) == (2, "", message + "\n")
    assert scan.with_name("scan.mriae").read_bytes() == b"existing"


def test_a_conflict_is_one_line_and_exit_2_in_a_real_process(scan: Path):
    result = subprocess.run([sys.executable, "-m", "mriae", "compress", str(scan), "--psnr", "40", "-Q", "4"],
                            capture_output=True, text=True, check=False, timeout=120)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("error: --quality and --psnr cannot be combined: give one of -Q/--quality, "
                             "--max-error, --lossless, --psnr\n")
    assert not scan.with_name("scan.mriae").exists()


def test_a_non_number_is_a_usage_error(monkeypatch, capsys, scan: Path):
    code, out, err = main(monkeypatch, capsys, "compress", str(scan), "--max-error", "two")
    assert (code, out) == (2, "")
    assert err.startswith("error: Invalid value for '--max-error'") and err.count("\n") == 1


# ----------------------------------------------------------------------------- command line: round trips


def test_cli_max_error_round_trip_keeps_every_voxel_within_the_bound(monkeypatch, capsys, scaled: Path):
    bound = 3
    packed = scaled.with_name("scaled.mriae")
    code, out, err = main(monkeypatch, capsys, "compress", str(scaled), "--max-error", str(bound))
    assert (code, err) == (0, "")
    restored = scaled.with_name("restored.nii.gz")
    assert main(monkeypatch, capsys, "decompress", str(packed), "-o", str(restored))[0] == 0

    original, decoded = stored(scaled).astype(np.int64), stored(restored).astype(np.int64)
    error = np.abs(original - decoded)
    assert error.max() <= bound  # every voxel, in stored units
    assert error.max() == bound  # and the bound is used, not wasted
    physical = np.abs(nib.load(scaled).get_fdata() - nib.load(restored).get_fdata())
    assert physical.max() <= bound * SLOPE + 1e-9
    assert nib.load(restored).header.binaryblock == nib.load(scaled).header.binaryblock

    # the summary says what was achieved, measured: coder, max error, voxels at the bound, PSNR,
    # and that the bound is in stored units (× |scl_slope| in physical units)
    at_bound = float(np.mean(error == bound))
    line = out.strip()
    assert f"context coder, max error {bound} (bound {bound}, {at_bound:.1%} of voxels at it), PSNR " in line
    psnr = float(re.search(r"PSNR ([\d.]+) dB", line).group(1))
    assert psnr == pytest.approx(mriae.codec.psnr(original, decoded), abs=0.005)
    assert line.endswith(f"; errors are in stored units, × |scl_slope| {SLOPE:g} in physical units "
                         f"(max error {bound * SLOPE:g}, bound {bound * SLOPE:g})")

    code, out, _ = main(monkeypatch, capsys, "info", "--json", str(packed))
    info = json.loads(out)
    assert (code, info["mode"], info["max_error"], info["scl_slope"], info["quality"]) == (0, "context", 3.0, 0.5, None)
    assert info["model"] == {"name": None, "sha256": None}
    code, out, _ = main(monkeypatch, capsys, "info", str(packed))
    lines = dict(line.strip().split(": ", 1) for line in out.splitlines())
    assert lines["mode"] == "context coder, every voxel within 3"
    assert lines["max_error"] == "3 (stored units; × |scl_slope| 0.5: 1.5 in physical units)"


def test_cli_lossless_round_trip_is_bit_exact(monkeypatch, capsys, scaled: Path):
    packed = scaled.with_name("scaled.mriae")
    code, out, _ = main(monkeypatch, capsys, "compress", str(scaled), "--lossless")
    assert code == 0 and out.rstrip().endswith("bits/voxel, context coder, lossless")
    restored = scaled.with_name("restored.nii.gz")
    assert main(monkeypatch, capsys, "decompress", str(packed), "-o", str(restored))[0] == 0
    original, back = nib.load(scaled), nib.load(restored)
    assert back.header.binaryblock == original.header.binaryblock  # the header, scl_slope included
    assert stored(restored).dtype == stored(scaled).dtype
    assert stored(restored).tobytes() == stored(scaled).tobytes()  # the voxels, bit for bit
    info = json.loads(main(monkeypatch, capsys, "info", "--json", str(packed))[1])
    assert (info["mode"], info["max_error"], info["psnr"]) == ("lossless", 0.0, None)


def test_cli_quality_and_psnr_say_their_coder(monkeypatch, capsys, scan: Path, tmp_path: Path):
    code, out, _ = main(monkeypatch, capsys, "compress", str(scan), "-Q", "4", "-o", str(tmp_path / "q.mriae"))
    assert code == 0 and ", network, max error " in out
    info = json.loads(main(monkeypatch, capsys, "info", "--json", str(tmp_path / "q.mriae"))[1])
    assert (info["mode"], info["quality"], info["max_error"], info["scl_slope"]) == ("learned", 4, None, None)
    text = main(monkeypatch, capsys, "info", str(tmp_path / "q.mriae"))[1]
    assert "mode: learned, quality 4" in text and "max_error: none (learned: no per-voxel bound)" in text

    code, out, _ = main(monkeypatch, capsys, "compress", str(scan), "--psnr", "45", "-o", str(tmp_path / "p.mriae"))
    assert code == 0
    achieved = float(re.search(r"PSNR ([\d.]+) dB", out).group(1))
    assert achieved >= 45
    decoded = mriae.decompress(tmp_path / "p.mriae").array
    assert mriae.codec.psnr(volume(), decoded) == pytest.approx(achieved, abs=0.005)


# ----------------------------------------------------------------------------- command line: evaluate


def test_evaluate_measures_max_errors_and_lossless_and_reports_the_bound(monkeypatch, capsys, scan: Path):
    report = scan.parent / "report"
    code, out, err = main(monkeypatch, capsys, "evaluate", str(scan), "-o", str(report), "--max-error", "1,6",
                          "--lossless")
    assert (code, err) == (0, "")
    with open(report / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # only the settings asked for (no quality levels), larger errors first, then lossless
    assert [(r["setting"], r["codec"], r["coder"]) for r in rows] == [
        ("e6", "mriae-max-error", "context"), ("e1", "mriae-max-error", "context"),
        ("lossless", "mriae-lossless", "context")]
    original = volume().astype(np.int64)
    for row, bound in zip(rows, (6, 1, 0)):
        assert float(row["bound"]) == bound
        assert float(row["max_abs_error"]) == bound  # measured on the decoded file
        # the fraction at the bound matches an independent round trip (deterministic coder)
        decoded = mriae.decompress(mriae.compress(original.astype(np.int16), max_error=bound)[0]).array
        expected = float(np.mean(np.abs(original - decoded) == bound)) if bound else 0.0
        assert float(row["at_bound"]) == pytest.approx(expected)
    assert 0 < float(rows[0]["at_bound"]) < 1
    assert float(rows[0]["bits_per_voxel"]) < float(rows[1]["bits_per_voxel"]) < float(rows[2]["bits_per_voxel"])
    assert rows[2]["psnr"] == "inf"
    table = out.splitlines()
    assert table[0].split()[:3] == ["setting", "coder", "bits/voxel"] and "at bound" in table[0]
    assert table[1].split()[:4] == ["max", "error", "6", "context"]
    assert table[3].split()[:2] == ["lossless", "context"]
    assert (report / "rd.png").is_file() and (report / "slices.png").is_file()


@pytest.mark.parametrize("args, fragment", [
    (["--max-error", "1,x"], "error: bad --max-error '1,x': give numbers ≥ 0, e.g. --max-error 1,5,20"),
    (["--max-error", "2,-1"], "error: bad --max-error '2,-1': the maximum error must be a finite number ≥ 0, got -1.0"),
    (["--psnr", "40,300"], "error: bad --psnr '40,300': the PSNR must be 10–200 dB, got 300.0"),
])
def test_evaluate_refuses_bad_lists_before_any_work(monkeypatch, capsys, scan: Path, args, fragment):
    report = scan.parent / "report"
    assert main(monkeypatch, capsys, "evaluate", str(scan), "-o", str(report), *args) == (2, "", fragment + "\n")
    assert not report.exists()


def test_evaluate_settings_default_to_every_quality_level():
    from mriae.models.weights import load_codec

    assert cli.evaluation_settings(None, None, None, False) == (list(load_codec().qualities), [])
    levels, others = cli.evaluation_settings("2,4", "1,5,5", "45,40", True)
    assert levels == [2, 4]
    assert [str(f) for f in others] == ["PSNR ≥ 40 dB", "PSNR ≥ 45 dB", "max error 5", "max error 1", "lossless"]


# ----------------------------------------------------------------------------- Python API


@pytest.mark.parametrize("dtype, bound", [(np.int16, 4), (np.float32, 2.5)])
def test_api_max_error_reaches_the_header_and_every_voxel(tmp_path: Path, dtype, bound: float):
    array = volume().astype(dtype) + (np.float32(0.25) if dtype == np.float32 else 0)
    data, stats = mriae.compress(array, tmp_path / "x.mriae", max_error=bound)
    assert context_error(data) == bound and (tmp_path / "x.mriae").read_bytes() == data
    decoded = mriae.decompress(data).array
    error = np.abs(array.astype(np.float64) - decoded.astype(np.float64))
    assert error.max() <= bound and stats.max_error == error.max()
    assert (stats.coder, stats.at_bound) == ("context", pytest.approx(float(np.mean(error >= bound))))


def test_api_lossless_and_conflicts(tmp_path: Path):
    array = volume()
    data, stats = mriae.compress(array, lossless=True)
    assert read_header(data).lossless and read_header(data).max_error == 0 and stats.coder == "context"
    assert mriae.decompress(data).array.tobytes() == array.tobytes()
    target = tmp_path / "never.mriae"
    with pytest.raises(ValueError, match="^ask for one of a quality level, a maximum error, a PSNR or lossless, "
                                         "not a quality level and a maximum error$"):
        mriae.compress(array, target, quality=3, max_error=2)
    with pytest.raises(ValueError, match="PSNR must be 10–200 dB"):
        mriae.compress(array, target, psnr=1)
    assert not target.exists()


# ----------------------------------------------------------------------------- MONAI transforms


def test_monai_compress_transforms_pass_the_fidelity_through(scan: Path):
    from monai.data import MetaTensor

    from mriae.monai import Compress, Compressd, Decompress

    data = Compress(max_error=3)(str(scan))
    assert context_error(data) == 3
    decoded = Decompress(ensure_channel_first=False)(data).numpy()
    assert np.abs(decoded.astype(np.int64) - stored(scan)).max() <= 3

    tensor = MetaTensor(torch.as_tensor(volume()[None].astype(np.float32)), affine=torch.eye(4))
    d = Compressd("image", output_keys="mriae", lossless=True)({"image": tensor})
    assert read_header(d["mriae"]).lossless
    assert d["mriae_stats"]["fidelity"] == "lossless" and d["mriae_stats"]["coder"] == "context"
    assert d["mriae_stats"]["max_error"] == 0 and d["mriae_stats"]["quality"] is None
    assert np.array_equal(Decompress()(d["mriae"]).numpy(), tensor.numpy())

    d = Compressd("image", max_error=1.5)({"image": str(scan)})
    assert context_error(d["image"]) == 1  # whole numbers: within 1.5 is within 1, the bound the file keeps
    assert d["image_stats"]["max_error"] == 1 and d["image_stats"]["fidelity"] == "max error 1.5"
    assert Compress().quality == 5 and Compress(quality=2).fidelity.quality == 2
    with pytest.raises(ValueError, match="not a quality level and lossless"):
        Compressd("image", quality=4, lossless=True)


# ----------------------------------------------------------------------------- bundle


def bundle_config(name: str, **overrides):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    bundle_root = REPO / "pipelines" / "bundle" / "mriae_codec"
    parser.read_config(str(bundle_root / "configs" / name))
    parser.update({"bundle_root": str(bundle_root), **overrides})
    return parser


def test_bundle_inference_config_takes_a_max_error(tmp_path: Path, scan: Path):
    output = tmp_path / "out"
    parser = bundle_config("inference.json", dataset_dir=str(scan.parent), output_dir=str(output), max_error=2,
                           save_reconstructions=False)
    assert parser["quality"] is None and parser["lossless"] is False and parser["psnr"] is None  # the defaults
    (row,) = parser.get_parsed_content("evaluator").run()
    data = (output / "scan.mriae").read_bytes()
    assert context_error(data) == 2
    assert (row["fidelity"], row["coder"], row["quality"]) == ("max error 2", "context", "")
    decoded = mriae.decompress(data).array.astype(np.int64)
    assert row["max_error"] == np.abs(decoded - stored(scan)).max() <= 2
    with open(output / "metrics.csv", newline="") as handle:
        (written,) = csv.DictReader(handle)
    assert (written["fidelity"], written["coder"], float(written["max_error"])) == ("max error 2", "context", 2.0)


def test_bundle_inference_config_refuses_two_modes(tmp_path: Path, scan: Path):
    parser = bundle_config("inference.json", dataset_dir=str(scan.parent), output_dir=str(tmp_path / "out"),
                           quality=5, lossless=True)
    with pytest.raises(Exception) as failure:
        parser.get_parsed_content("evaluator")
    chain = [failure.value]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    assert any("not a quality level and lossless" in str(error) for error in chain)
    assert not (tmp_path / "out" / "scan.mriae").exists()


def test_bundle_evaluate_config_runs_the_fidelity_settings(tmp_path: Path, scan: Path):
    output = tmp_path / "eval"
    output.mkdir()
    parser = bundle_config("evaluate.json", dataset_dir=str(scan.parent), output_dir=str(output), qualities=[],
                           max_errors=[4], lossless=True)
    rows = parser.get_parsed_content("evaluator").run()
    assert [(r["setting"], r["quality"]) for r in rows] == [("e4", ""), ("lossless", "")]
    assert context_error((output / "scan_e4.mriae").read_bytes()) == 4
    assert read_header((output / "scan_lossless.mriae").read_bytes()).lossless
    assert rows[1]["psnr_db"] == "inf" and rows[1]["max_error"] == 0


# ----------------------------------------------------------------------------- batch jobs


def test_batch_settings_carry_the_fidelity_to_every_task(tmp_path: Path):
    from mriae.batch import BatchJob
    from mriae.batch.job import Summary, plan, write_reports
    from mriae.batch.state import load_state
    from mriae.batch.task import run_task

    inputs = tmp_path / "in"
    (inputs / "sub-01").mkdir(parents=True)
    (inputs / "sub-02").mkdir()
    save_nifti(inputs / "sub-01" / "a.nii.gz", volume(seed=1))
    save_nifti(inputs / "sub-02" / "b.nii.gz", volume(seed=2))
    items, settings = plan(BatchJob(str(inputs), str(tmp_path / "out"), max_error=2))
    assert (settings.max_error, settings.signature) == (2, "compress:e2")
    settings.output_root.mkdir()
    records = [run_task(item, settings) for item in items]
    assert [(r.status, r.coder) for r in records] == [("done", "context")] * 2
    for item, record in zip(items, records):
        data = Path(record.output).read_bytes()
        assert context_error(data) == 2
        error = np.abs(mriae.decompress(data).array.astype(np.int64) - stored(item.source))
        assert record.max_error == error.max() <= 2
    state = load_state(settings.report_folder)
    assert {entry["settings"] for entry in state.values()} == {"compress:e2"}  # the state log records it

    again = run_task(items[0], settings, state[str(items[0].source)])
    assert (again.status, again.max_error, again.coder) == ("skipped", records[0].max_error, "context")
    other = plan(BatchJob(str(inputs), str(tmp_path / "out"), lossless=True))[1]
    assert other.signature == "compress:lossless"
    refused = run_task(items[0], other, state[str(items[0].source)])  # made at e2: not this job's output
    assert refused.status == "failed" and "already exists" in refused.error

    write_reports(Summary(records), settings.output_root, settings)
    report = json.loads((settings.output_root / "batch_report.json").read_text())
    assert report["settings"] == {"signature": "compress:e2", "fidelity": "max error 2", "tiles_at_once": 1}
    assert {row["coder"] for row in report["files"]} == {"context"}


def test_batch_job_yaml_takes_a_mode_and_refuses_two(tmp_path: Path):
    from mriae.batch import BatchJob

    spec = tmp_path / "job.yaml"
    spec.write_text("inputs: in\noutput: out\npsnr: 42\n")
    job = BatchJob.from_yaml(spec)
    assert (job.psnr, job.quality, str(job.fidelity)) == (42, None, "PSNR ≥ 42 dB")
    spec.write_text("inputs: in\noutput: out\nquality: 5\nlossless: true\n")
    with pytest.raises(ValueError, match=f"^{re.escape(str(spec))}: ask for one of .* not a quality level and "
                                         "lossless$"):
        BatchJob.from_yaml(spec)
    assert BatchJob("in", "out").fidelity == mriae.fidelity.Fidelity.of(quality=5)


def test_batch_cli_refuses_conflicts_before_starting_a_cluster(monkeypatch, capsys, tmp_path: Path):
    (tmp_path / "in").mkdir()
    out = tmp_path / "out"
    assert main(monkeypatch, capsys, "batch", str(tmp_path / "in"), str(out), "--lossless", "--max-error", "1") == (
        2, "", f"error: --max-error and --lossless {ONE_OF}\n")
    spec = tmp_path / "job.yaml"
    spec.write_text("inputs: in\noutput: out\ndecompress: true\n")  # the command line's fidelity would not be used
    assert main(monkeypatch, capsys, "batch", "--job", str(spec), "--max-error", "1") == (
        2, "", "error: --max-error does not apply to a decompress job\n")
    assert not out.exists()
