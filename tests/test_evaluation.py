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
from mriae.evaluation.plots import rd_plot, slices_plot


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
    slices_plot(volume, volume * 0.9, tmp_path / "s.png", spacing=(1, 1.5, 4))
    assert png_size(tmp_path / "s.png") == (900, 900)


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
        assert float(row["bits_per_voxel"]) > 0 and math.isfinite(float(row["psnr"]))
        assert int(row["voxels"]) == 128 * 96 * 24 * 2
        assert -1 <= float(row["ssim"]) <= 1 and float(row["max_abs_error"]) >= 0
    sizes = [float(row["bits_per_voxel"]) for row in rows]
    assert sizes == sorted(sizes)  # higher quality, more bits
    assert png_size(report / "rd.png") == (800, 600)
    assert png_size(report / "slices.png") == (900, 900)
    assert "bits/voxel" in result.stdout and len(result.stdout.splitlines()) == len(qualities) + 2

    from typer.testing import CliRunner

    from mriae.cli import app

    runner = CliRunner()
    again = runner.invoke(app, command[3:])  # in-process: the error paths need no second start-up
    assert again.exit_code == 1 and "already exists" in again.output
    bad = runner.invoke(app, command[3:] + ["--force", "--qualities", "0,99"])
    assert bad.exit_code == 2 and "--qualities" in bad.output
