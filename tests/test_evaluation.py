"""Rate–distortion evaluation: BD-rate on curves with a known answer, metrics on known
arrays, figures of fixed size, and ``mriae evaluate`` as a user runs it."""

from __future__ import annotations

import csv
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import NIBABEL_DATA, png_size

from mriae.evaluation import RDPoint, bd_rate, max_abs_error, psnr, read_csv, ssim, write_csv
from mriae.evaluation.bdrate import rate_at
from mriae.evaluation.metrics import ssim_map
from mriae.evaluation.plots import rd_plot, slices_figure, slices_plot
from mriae.models.weights import DEFAULT_WEIGHTS


def anchor_curve(psnrs: np.ndarray) -> np.ndarray:
    """A convex, realistic RD curve: rate grows exponentially-ish with PSNR."""
    return np.exp(-4 + 0.11 * psnrs + 0.0008 * (psnrs - 35) ** 2)


@pytest.mark.parametrize("factor", [0.5, 0.7, 1.0, 1.3])
def test_bd_rate_of_a_constant_rate_factor_is_that_factor(factor: float):
    anchor_psnrs = np.linspace(28, 48, 7)
    test_psnrs = np.linspace(31, 52, 9)  # sampled elsewhere, overlapping on [31, 48]
    value = bd_rate(anchor_curve(anchor_psnrs), anchor_psnrs, factor * anchor_curve(test_psnrs), test_psnrs)
    # a cubic fits each log-rate curve up to its (tiny) quadratic term exactly
    assert value == pytest.approx((factor - 1) * 100, abs=1e-6)


def test_bd_rate_is_antisymmetric_and_order_free():
    p = np.linspace(30, 45, 6)
    a, b = anchor_curve(p), 0.6 * anchor_curve(p)
    forward, backward = bd_rate(a, p, b, p), bd_rate(b, p, a, p)
    assert (1 + forward / 100) * (1 + backward / 100) == pytest.approx(1)
    shuffled = np.array([3, 0, 5, 1, 4, 2])
    assert bd_rate(a[shuffled], p[shuffled], b, p) == pytest.approx(forward)


def test_bd_rate_is_nan_without_overlap_or_points():
    p = np.linspace(30, 40, 5)
    assert math.isnan(bd_rate(anchor_curve(p), p, anchor_curve(p + 20), p + 20))
    assert math.isnan(bd_rate(anchor_curve(p), p, anchor_curve(p[:3]), p[:3]))
    # lossless (infinite PSNR) points are ignored, not fitted
    with_lossless = np.append(p, np.inf)
    assert bd_rate(anchor_curve(p), p, np.append(anchor_curve(p), 8.0), with_lossless) == pytest.approx(0, abs=1e-9)


def test_bd_rate_fits_only_points_within_the_limits():
    p = np.linspace(30, 45, 6)
    a = anchor_curve(p)
    near_lossless = (np.append(a, [a[-1] * 1.1, a[-1] * 1.2]), np.append(p, [90.0, 120.0]))
    distorted = bd_rate(*near_lossless, 0.8 * a, p)
    assert abs(distorted + 20) > 1  # the wild points bend the anchor's cubic
    assert bd_rate(*near_lossless, 0.8 * a, p, psnr_limits=(0, 60)) == pytest.approx(-20, abs=1e-6)


def test_rate_at_interpolates_log_rate():
    assert rate_at([0.1, 0.4], [30, 40], 35) == pytest.approx(0.2)
    assert math.isnan(rate_at([0.1, 0.4], [30, 40], 41))


def test_metrics_on_known_arrays():
    original = np.linspace(0, 100, 1000).reshape(10, 10, 10)
    assert psnr(original, original + 1) == pytest.approx(40.0)
    assert psnr(original, original) == math.inf
    assert max_abs_error(original, original + np.where(original > 50, -3, 1)) == 3
    assert ssim(original, original) == pytest.approx(1.0)
    assert 0 < ssim(original, original + np.random.default_rng(0).normal(0, 10, original.shape)) < 0.9
    # a 4D series is scored volume by volume and averaged
    series = np.stack([original, original], axis=-1)
    noisy = np.stack([original, original + 5], axis=-1)
    assert ssim(series, noisy) == pytest.approx((1 + ssim_map(original, original + 5, 100).mean()) / 2)


def test_ssim_matches_scikit_image_away_from_borders():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(1)
    original = rng.uniform(0, 1, (20, 22, 18)).cumsum(axis=0)
    noisy = original + rng.normal(0, 0.3, original.shape)
    data_range = float(original.max() - original.min())
    expected = metrics.structural_similarity(original, noisy, data_range=data_range, gaussian_weights=True,
                                             sigma=1.5, use_sample_covariance=False)
    assert ssim_map(original, noisy, data_range)[5:-5, 5:-5, 5:-5].mean() == pytest.approx(expected, rel=1e-9)


def point(codec: str, bpv: float, db: float) -> RDPoint:
    return RDPoint("v", "validation", codec, f"{bpv}", 1000, int(bpv * 125), bpv, db, 0.9, 1.0, 0.1, 0.1)


def test_csv_round_trip_and_figure_sizes(tmp_path: Path):
    points = [point("mriae", r, 30 + 10 * r) for r in (0.1, 0.2, 0.4)] + [point("zstd", 4.0, math.inf)]
    write_csv(points, tmp_path / "m.csv")
    assert read_csv(tmp_path / "m.csv") == points
    rd_plot({"one": points}, tmp_path / "one.png")
    rd_plot({"a": points, "b": points, "c": points, "d": points}, tmp_path / "grid.png")
    assert png_size(tmp_path / "one.png") == (800, 600)
    assert png_size(tmp_path / "grid.png") == (2400, 1200)
    volume = np.random.default_rng(0).uniform(0, 1, (12, 9, 5))
    slices_plot(volume, volume * 0.9, tmp_path / "s.png", np.diag([1, 1.5, 4, 1]))
    expected = slices_figure(volume, volume * 0.9, np.diag([1, 1.5, 4, 1])).get_size_inches() * 100
    assert png_size(tmp_path / "s.png") == (1000, int(expected[1])) and expected[0] == 1000  # as tall as the slices need


def test_evaluate_command_writes_report(tmp_path: Path):
    scan = tmp_path / "scan.nii.gz"
    shutil.copy(NIBABEL_DATA / "example4d.nii.gz", scan)
    report = tmp_path / "report"
    command = [sys.executable, "-m", "mriae", "evaluate", str(scan), "-o", str(report)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    from mriae.models.weights import load_codec

    qualities = list(load_codec().qualities)
    with open(report / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["setting"] for row in rows] == [f"q{q}" for q in qualities]
    for row in rows:
        assert row["split"] == "validation"  # nibabel's example4d: a benchmark validation volume
        assert float(row["bits_per_voxel"]) > 0 and math.isfinite(float(row["psnr"]))
        assert int(row["voxels"]) == 128 * 96 * 24 * 2
        assert -1 <= float(row["ssim"]) <= 1 and float(row["max_abs_error"]) >= 0
    sizes = [float(row["bits_per_voxel"]) for row in rows]
    assert sizes == sorted(sizes)  # higher quality, more bits
    assert png_size(report / "rd.png") == (800, 600)
    assert png_size(report / "slices.png")[0] == 1000
    assert "| split | **validation**: its voxels are those of 2 volumes of nibabel/tests/data/example4d.nii.gz" in (
        report / "summary.md").read_text()
    assert result.stdout.splitlines()[-2].startswith("split: validation (its voxels are those of 2 volumes of")
    assert "bits/voxel" in result.stdout and len(result.stdout.splitlines()) == len(qualities) + 3

    from typer.testing import CliRunner

    from mriae.cli import app

    runner = CliRunner()
    again = runner.invoke(app, command[3:])  # in-process: the error paths need no second start-up
    assert again.exit_code == 1 and "already exists" in again.output
    bad = runner.invoke(app, command[3:] + ["--force", "--qualities", "0,99"])
    assert bad.exit_code == 2 and "--qualities" in bad.output


def test_evaluate_report_is_one_a_person_would_keep(tmp_path: Path, monkeypatch, capsys):
    """The figures say what they show, in which units, and show it at equal sizes; summary.md
    has the scan, its split, the run and the numbers of metrics.csv, with the figures."""
    import re

    from conftest import REPO, run_mriae
    from matplotlib.figure import Figure

    import mriae
    from mriae.io import Image, read_image, write_image
    from mriae.models.weights import load_codec

    crop = read_image(REPO / "sample_data" / "mni152_t1_2mm.nii.gz").array[25:75, 30:90, 25:70]
    scan, report = tmp_path / "crop.nii.gz", tmp_path / "report"
    write_image(Image(crop, np.diag([-2.0, 2.0, 3.0, 1.0])), scan)  # voxel axes → L, A, S; 3 mm slices
    saved: dict[str, Figure] = {}
    savefig = Figure.savefig

    def recorded(figure: Figure, path, *args, **kwargs):
        saved[Path(path).name] = figure
        return savefig(figure, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recorded)
    code, out, err = run_mriae(monkeypatch, capsys, "evaluate", str(scan), "-o", str(report), "--qualities", "1,5")
    assert (code, err) == (0, "")
    assert sorted(p.name for p in report.iterdir()) == ["metrics.csv", "rd.png", "slices.png", "summary.md"]
    split = "unknown (not in the training set list)"  # a crop of a training volume: not on the list, no claim
    assert out.splitlines()[-2] == f"split: {split} (its voxels are not those of any volume listed in {DEFAULT_WEIGHTS}.volumes.json)"
    rows = list(csv.DictReader((report / "metrics.csv").open()))
    assert [(row["setting"], row["split"]) for row in rows] == [("q1", "unknown"), ("q5", "unknown")]

    # summary.md: the scan and the run ...
    lines = (report / "summary.md").read_text().splitlines()
    assert lines[0] == "# mriae evaluate: crop.nii.gz"
    start = lines.index("| | |") + 2
    about = dict(line.strip("| ").split(" | ", 1) for line in lines[start:lines.index("", start)])
    assert about["source"] == f"`{scan}`"
    assert (about["shape"], about["voxel size"], about["dtype"]) == ("50 × 60 × 45 voxels", "2 × 2 × 3 mm", "uint8")
    assert about["intensities"] == f"{crop.min()} … {crop.max()} (stored units)"
    assert about["split"].startswith(f"**{split}**: its voxels are not those of any volume listed")
    assert about["weights"] == f"`{DEFAULT_WEIGHTS}`, sha256 `{load_codec().sha256}`"
    assert about["mriae"].startswith(f"{mriae.__version__}, commit ")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", about["date"])
    # ... the numbers of metrics.csv, rounded as printed ...
    table = [line.strip("| ").split(" | ") for line in lines if line.startswith("| quality ")]
    assert [cells[0] for cells in table] == ["quality 1", "quality 5"]
    for cells, row in zip(table, rows):
        assert cells[1] == row["coder"] == "network"
        assert float(cells[2]) == pytest.approx(float(row["bits_per_voxel"]), abs=5e-5)
        assert float(cells[3].rstrip("×")) == pytest.approx(8 / float(row["bits_per_voxel"]), abs=0.05)
        assert float(cells[4]) == pytest.approx(float(row["psnr"]), abs=5e-3)
        assert float(cells[5]) == pytest.approx(float(row["ssim"]), abs=5e-5)
        assert float(cells[6]) == float(row["max_abs_error"]) > 0
        assert cells[7:] == ["none", "-"]
    # ... and the figures beside it
    assert "![Rate–distortion](<rd.png>)" in lines and "![Central slices, quality 5](<slices.png>)" in lines

    title = f"crop: 50 × 60 × 45 voxels of 2 × 2 × 3 mm, uint8; split: {split}"
    rd = saved["rd.png"].axes[0]
    assert (rd.get_xlabel(), rd.get_ylabel()) == ("rate (bits/voxel)", "PSNR (dB; peak = max − min of the original)")
    assert rd.get_title() == title
    assert [text.get_text() for text in rd.get_legend().get_texts()] == ["mriae, quality levels"]
    assert list(rd.lines[0].get_xdata()) == [float(row["bits_per_voxel"]) for row in rows]
    assert png_size(report / "rd.png") == (800, 600)

    slices = saved["slices.png"]
    assert slices.get_suptitle().startswith(f"{title}\nquality 5: ")
    slices.draw_without_rendering()
    panels = {ax.get_label(): ax for ax in slices.axes if ax.get_label()}
    columns = ("original", "decoded, quality 5", "|original − decoded|")
    height_per_width = {"axial": 60 * 2 / (50 * 2), "coronal": 45 * 3 / (50 * 2), "sagittal": 45 * 3 / (60 * 2)}
    labels = {"axial": ("k = 22", "i (voxel index) → L", "j (voxel index) → A"),
              "coronal": ("j = 30", "i (voxel index) → L", "k (voxel index) → S"),
              "sagittal": ("i = 25", "j (voxel index) → A", "k (voxel index) → S")}
    assert len(panels) == 9
    for plane, aspect in height_per_width.items():
        boxes = [panels[f"{plane} {column}"].get_window_extent() for column in columns]
        assert all(box.width == pytest.approx(boxes[0].width, abs=0.5) for box in boxes)  # equal panels
        assert all(box.height == pytest.approx(boxes[0].height, abs=0.5) for box in boxes)
        assert boxes[0].height / boxes[0].width == pytest.approx(aspect, rel=0.01)  # the voxel size's aspect
        at, across, up = labels[plane]
        first = panels[f"{plane} original"]
        assert (first.get_xlabel(), first.get_ylabel()) == (across, f"{plane}, {at}\n{up}")
        decoded = panels[f"{plane} decoded, quality 5"]
        assert (decoded.get_xlabel(), decoded.get_ylabel()) == (across, up)
    assert [panels[f"axial {column}"].get_title() for column in columns] == list(columns)
    bars = [ax.get_xlabel() for ax in slices.axes if not ax.get_label()]
    assert bars[0] == "intensity of original and decoded (stored units)"
    assert bars[1].startswith("|original − decoded| (stored units)\n")
    assert png_size(report / "slices.png") == (1000, int(slices.get_size_inches()[1] * 100))


def test_the_commit_is_known_only_in_a_checkout_that_tracks_mriae(tmp_path: Path):
    if shutil.which("git") is None:
        pytest.skip("no git")
    from mriae.evaluation.summary import source_commit

    package = tmp_path / "repo" / "mriae"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    assert source_commit(package) is None  # not a checkout

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(package.parent), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              capture_output=True, text=True, check=True).stdout.strip()

    git("init", "-q")
    git("commit", "-q", "--allow-empty", "-m", "other files")
    assert source_commit(package) is None  # a checkout that does not track it: an installed copy
    git("add", "mriae/__init__.py")
    git("commit", "-q", "-m", "mriae")
    head = git("rev-parse", "HEAD")
    assert source_commit(package) == head
    (package / "__init__.py").write_text("changed = True\n")
    assert source_commit(package) == f"{head} + uncommitted changes"
