"""Where bits and errors sit (``mriae evaluate --map``): code lengths that add up to the real
stream, head masks of a phantom, per-region numbers on known errors, and the command."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, png_size, run_mriae

from mriae import api
from mriae.codec import psnr
from mriae.entropy_coder.stream import code_lengths, encode_symbols
from mriae.evaluation.maps import LatentBits, head_mask, latent_bits, region_masks, region_stats
from mriae.header import read
from mriae.io import Image, read_image, write_image
from mriae.models.weights import DEFAULT_WEIGHTS, load_codec
from mriae.transforms.geometry import plan_on
from mriae.transforms.tiles import latent_shape

MNI = REPO / "sample_data" / "mni152_t1_2mm.nii.gz"


def ellipsoid(shape: tuple[int, int, int], radii: tuple[float, float, float]) -> np.ndarray:
    """Boolean ellipsoid of ``radii`` (voxels) centred in ``shape``."""
    grid = np.indices(shape, dtype=np.float64)
    centre = [(n - 1) / 2 for n in shape]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1


@pytest.fixture(scope="module")
def phantom() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(volume, head, brain, ventricles): Rician-like noise in the air around an ellipsoid head
    (60), an inner ellipsoid brain (100) and dark ventricles inside it, as dark as the air;
    rounded like stored scanner values."""
    shape = (64, 72, 56)
    head, brain = ellipsoid(shape, (26, 30, 22)), ellipsoid(shape, (20, 24, 16))
    ventricles = ellipsoid(shape, (4, 8, 4))
    rng = np.random.default_rng(0)
    volume = np.abs(rng.normal(0, 5, shape) + 1j * rng.normal(0, 5, shape))
    volume[head] = 60 + rng.normal(0, 5, int(head.sum()))
    volume[brain] = 100 + rng.normal(0, 5, int(brain.sum()))
    volume[ventricles] = np.abs(rng.normal(0, 5, int(ventricles.sum())))
    return np.rint(volume), head, brain, ventricles


@pytest.fixture(scope="module")
def mni_q5() -> tuple[Image, bytes]:
    """The MNI sample and its .mriae file at the default quality."""
    image = read_image(MNI)
    return image, api.compress(image.array, affine=image.affine)[0]


def test_code_lengths_add_up_to_the_stream():
    tables = load_codec().level(5).tables
    rng = np.random.default_rng(1)
    symbols = np.rint(rng.laplace(0, 1.5, (len(tables), 6, 7, 8))).astype(np.int32)
    symbols[:, 0, 0, :3] = [-5000, 300, 70000]  # escapes, far outside every table
    bits = code_lengths(symbols, tables)
    assert bits.shape == symbols.shape and (bits > 0).all()
    assert bits[:, 0, 0, 2].min() > 24  # an escape costs its table entry and its value
    assert bits.sum() == pytest.approx(8 * len(encode_symbols(symbols, tables)), rel=0.01)


def test_bits_per_latent_position_add_up_to_the_chunk(mni_q5):
    image, data = mni_q5
    bits = latent_bits(data)
    assert bits.bits.shape == latent_shape(bits.grid) == (13, 15, 12)
    chunk = read(data)[1][0]
    assert bits.total == pytest.approx(8 * len(chunk), rel=0.02)
    assert bits.on_image_grid().shape == image.array.shape
    background = bits.bits[0, 0, 0]  # a corner of air costs next to nothing
    assert background < 0.05 * bits.bits.max()


def test_context_coded_volumes_have_no_latent_bits(mni_q5):
    image, _ = mni_q5
    assert latent_bits(api.compress(image.array, affine=image.affine, max_error=4)[0]) is None


def test_head_mask_of_a_phantom(phantom):
    volume, head, _, ventricles = phantom
    mask = head_mask(volume)
    assert mask.shape == volume.shape and mask.dtype == bool
    assert mask[ventricles].all()  # enclosed dark holes are filled
    assert np.count_nonzero(mask ^ head) < 0.01 * np.count_nonzero(head)  # a few voxels of the noisy outline


def test_regions_of_a_phantom(phantom):
    volume, head, brain, _ = phantom
    masks = region_masks(volume, brain)
    assert list(masks) == ["background", "head", "brain"]
    assert (sum(m.astype(int) for m in masks.values()) == 1).all()  # they split the voxels
    assert np.array_equal(masks["brain"], brain)
    assert np.count_nonzero(masks["head"] ^ (head & ~brain)) < 0.01 * np.count_nonzero(head)
    assert list(region_masks(volume)) == ["background", "head"]


def test_region_stats_on_known_errors(phantom):
    volume, _, brain, _ = phantom
    masks = region_masks(volume, brain)
    decoded = volume + np.where(masks["background"], 2.0, 0.0)
    decoded[masks["head"]] += np.where(np.arange(np.count_nonzero(masks["head"])) % 2, 1.0, -1.0)
    shape = volume.shape  # multiples of 8: one latent position per 8×8×8 block, no padding
    grid = plan_on(shape, np.eye(4), 3)
    uniform = LatentBits(np.ones(latent_shape(grid)), grid)
    stats = {s.region: s for s in region_stats(volume, decoded, masks, uniform)}
    peak = float(volume.max() - volume.min())
    background, head, brain_stats = stats["background"], stats["head"], stats["brain"]
    assert (background.rmse, background.max_error) == (2.0, 2.0)
    assert background.psnr == pytest.approx(20 * math.log10(peak / 2))
    assert (head.rmse, head.max_error) == (1.0, 1.0)
    assert (brain_stats.rmse, brain_stats.max_error, brain_stats.psnr) == (0.0, 0.0, math.inf)
    for s in stats.values():  # bits spread evenly: each region's share of the bits is its share of the voxels
        assert s.bit_share == pytest.approx(s.voxel_share)
        assert s.bits_per_voxel == pytest.approx(uniform.total / volume.size)
    everything = region_stats(volume, decoded, {"all": np.ones(shape, bool)})[0]
    assert everything.psnr == pytest.approx(psnr(volume, decoded))  # mriae's PSNR, on one region
    assert math.isnan(everything.bit_share) and everything.voxel_share == 1


def brain_of_the_sample(tmp_path: Path) -> Path:
    """A brain mask on the MNI sample's grid: its head's upper part."""
    image = read_image(MNI)
    brain = head_mask(image.array) & (np.indices(image.array.shape)[2] > 40)
    path = tmp_path / "brain.nii.gz"
    write_image(Image(brain.astype(np.uint8), image.affine), path)
    return path


def test_evaluate_map_draws_the_regions(tmp_path: Path, monkeypatch, capsys):
    report, figure = tmp_path / "report", tmp_path / "map.png"
    code, out, err = run_mriae(monkeypatch, capsys, "evaluate", str(MNI), "-o", str(report), "--qualities", "5",
                               "--map", str(figure), "--brain-mask", str(brain_of_the_sample(tmp_path)))
    assert (code, err) == (0, "")
    assert png_size(figure)[0] == 1400
    lines = out.splitlines()
    assert lines[-2] == ("split: training (its voxels are those of sample_data/mni152_t1_2mm.nii.gz, "
                         f"in the training set list {DEFAULT_WEIGHTS}.volumes.json)")
    assert "| split | **training**: its voxels are those of sample_data/mni152_t1_2mm.nii.gz" in (
        report / "summary.md").read_text()
    assert [row["split"] for row in csv.DictReader((report / "metrics.csv").open())] == ["train"]
    assert lines[2:4] == ["regions of volume 1:", "    region  voxels    bits bits/voxel      RMSE  PSNR dB   max err"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[4:7]}
    assert list(rows) == ["background", "head", "brain"]
    assert all(len(values) == 6 and values[0].endswith("%") and values[1].endswith("%") for values in rows.values())
    with open(report / "regions.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [row["region"] for row in table] == ["background", "head", "brain"]
    assert sum(float(row["bit_share"]) for row in table) == pytest.approx(1)
    assert sum(float(row["voxel_share"]) for row in table) == pytest.approx(1)


def test_evaluate_map_of_the_context_coder_says_there_are_no_latent_bits(tmp_path: Path, monkeypatch, capsys):
    figure = tmp_path / "map.png"
    code, out, _ = run_mriae(monkeypatch, capsys, "evaluate", str(MNI), "-o", str(tmp_path / "r"), "--max-error",
                             "4", "--map", str(figure))
    assert code == 0 and png_size(figure)[0] == 1400
    assert "only network volumes have latents (this file: context coder)" in out
    assert "brain: not available without --brain-mask" in out
    background = next(line for line in out.splitlines() if line.split()[0] == "background").split()
    assert background[2:4] == ["-", "-"]  # no bits


@pytest.mark.parametrize("problem", ["missing", "shape", "grid", "alone", "volume"])
def test_bad_map_options_are_one_line(tmp_path: Path, monkeypatch, capsys, problem: str):
    scan, mask = tmp_path / "scan.nii", tmp_path / "mask.nii"
    write_image(Image(np.arange(8 * 8 * 8, dtype=np.uint8).reshape(8, 8, 8), np.eye(4)), scan)
    if problem in ("shape", "grid"):
        shape, affine = ((8, 8, 7), np.eye(4)) if problem == "shape" else ((8, 8, 8), np.diag([2.0, 2, 2, 1]))
        write_image(Image(np.ones(shape, np.uint8), affine), mask)
    options = {"alone": ["--brain-mask", str(mask)], "volume": ["--map", str(tmp_path / "m.png"), "--volume", "2"]}
    args = options.get(problem, ["--map", str(tmp_path / "m.png"), "--brain-mask", str(mask)])
    code, out, err = run_mriae(monkeypatch, capsys, "evaluate", str(scan), "-o", str(tmp_path / "r"), *args)
    expected = {
        "missing": (1, f"error: {mask}: no such file\n"),
        "shape": (1, f"error: {mask}: a brain mask of shape (8, 8, 7), but the image's volumes are (8, 8, 8)\n"),
        "grid": (1, f"error: {mask}: the brain mask is on another grid than the image (their affines differ)\n"),
        "alone": (2, "error: --brain-mask and --volume go with --map\n"),
        "volume": (2, "error: --volume must be 1..1 (got 2)\n"),
    }
    assert (code, err) == expected[problem]
    assert out == "" and not (tmp_path / "m.png").exists() and not (tmp_path / "r").exists()
