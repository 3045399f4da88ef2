"""The wavelet transform coder (mriae.wavelet): the transform, the stream, its damage checks."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mriae.wavelet import coder, transform
from mriae.wavelet.coder import WaveletError

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden" / "wavelet_12x10x9.bin"


def golden_volume() -> np.ndarray:
    """The 12×10×9 int16 volume of the golden stream (integer arithmetic only)."""
    i, j, k = np.indices((12, 10, 9))
    return ((i * i * 3 + j * 5 + k * k * 7 + i * j) % 61 + 4 * i).astype(np.int16)


def smooth_volume(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """A smooth MR-like float volume with a little noise."""
    grid = np.indices(shape).astype(np.float64)
    noise = np.random.default_rng(seed).normal(0.0, 2.0, shape)
    return 100 * np.sin(grid[0] / 3) * np.cos(grid[1] / 4) + 5 * grid[2] + noise


@pytest.mark.parametrize("shape", [(37, 20, 9), (1, 1, 1), (1, 5, 9), (2, 3, 17), (13, 1, 8), (9, 8, 1), (17, 16, 15),
                                   (64, 3, 40)])
def test_the_transform_reconstructs_odd_thin_and_one_voxel_shapes(shape):
    volume = np.random.default_rng(1).normal(100.0, 30.0, shape)
    low, bands = transform.forward(volume)
    low_shape, band_shapes = transform.band_shapes(shape)
    assert low.shape == low_shape
    assert [{o: band.shape for o, band in level.items()} for level in bands] == band_shapes
    restored = transform.inverse(low, bands)
    assert restored.shape == shape and restored.dtype == np.float64
    assert np.abs(restored - volume).max() <= 1e-9 * np.abs(volume).max()


def test_levels_split_the_long_axes_of_thin_volumes_and_stop_below_eight():
    assert transform.splits((128, 128, 10)) == [(True, True, True)] + [(True, True, False)] * 4
    assert transform.splits((7, 7, 7)) == []
    assert len(transform.splits((256, 256, 256))) == transform.MAX_LEVELS
    assert transform.orientations((True, False, True)) == [(0, 0, 1), (1, 0, 0), (1, 0, 1)]


@pytest.mark.parametrize(("level", "orientation"), [(0, (1, 0, 1)), (1, (0, 1, 0)), (2, (1, 1, 1)), (3, (0, 0, 0))])
def test_a_band_gain_is_the_norm_of_its_basis_function(level, orientation):
    shape = (96, 96, 96)  # four levels; (3, (0, 0, 0)) is the low band left after the last
    low_shape, band_shapes = transform.band_shapes(shape)
    low = np.zeros(low_shape)
    bands = [{o: np.zeros(band_shape) for o, band_shape in levels.items()} for levels in band_shapes]
    target = low if orientation == (0, 0, 0) else bands[level][orientation]
    target[tuple(n // 2 for n in target.shape)] = 1.0
    norm = math.sqrt(float((transform.inverse(low, bands) ** 2).sum()))
    assert norm == pytest.approx(transform.gain(shape, level, orientation), rel=1e-9)


@pytest.mark.parametrize(("shape", "dtype"), [((12, 10, 9), np.int16), ((1, 1, 1), np.float32), ((5, 5, 5), np.uint8),
                                              ((2, 3, 17), np.float64), ((40, 33, 9), np.float32)])
def test_a_stream_decodes_to_a_float64_volume_of_its_shape_within_its_range(shape, dtype):
    volume = (smooth_volume(shape) + 300).astype(dtype)
    step = 4.0
    decoded = coder.decode(coder.encode(volume, step), shape)
    assert decoded.shape == shape and decoded.dtype == np.float64
    assert decoded.min() >= volume.min() and decoded.max() <= volume.max()
    assert math.sqrt(float(np.mean((decoded - volume) ** 2))) < 0.6 * step


@pytest.mark.parametrize(("shape", "step", "rounding", "trade"), [((33, 29, 17), 1.5, coder.ROUNDING, coder.TRADE),
                                                                  ((12, 10, 9), 3.0, 0.5, 0.0), ((1, 5, 9), 0.25, 0.2, 0.5),
                                                                  ((64, 3, 40), 8.0, coder.ROUNDING, coder.TRADE),
                                                                  ((20, 18, 11), np.float32(2.7), 0.3, 0.13)])
def test_the_encoders_reconstruction_is_the_decoders_to_the_bit(shape, step, rounding, trade):
    volume = smooth_volume(shape, seed=5)
    stream, reconstruction = coder.encode_and_decode(volume, step, rounding, trade)
    assert stream == coder.encode(volume, step, rounding, trade)
    assert reconstruction.dtype == np.float64
    assert reconstruction.tobytes() == coder.decode(stream, shape).tobytes()


def test_a_constant_volume_codes_to_a_few_bytes_and_decodes_exactly():
    volume = np.full((30, 20, 10), 7.25)
    stream = coder.encode(volume, 0.5)
    assert len(stream) < 40
    assert np.array_equal(coder.decode(stream, volume.shape), volume)


def test_the_same_volume_gives_the_same_bytes_and_the_same_decoded_bits():
    volume = smooth_volume((33, 29, 17), seed=3).astype(np.float32)
    first, second = coder.encode(volume, 1.5), coder.encode(volume.copy(), 1.5)
    assert first == second
    assert coder.decode(first, volume.shape).tobytes() == coder.decode(second, volume.shape).tobytes()


def test_psnr_rises_as_the_step_falls_on_the_mni_template():
    volume = np.asarray(nib.load(REPO / "sample_data" / "mni152_t1_2mm.nii.gz").dataobj)  # 99×117×95 uint8
    peak = float(volume.max()) - float(volume.min())
    measured = []
    for step in (16.0, 4.0):
        stream = coder.encode(volume, step)
        error = np.mean((coder.decode(stream, volume.shape) - volume) ** 2)
        measured.append((len(stream), 10 * math.log10(peak**2 / error)))
    (small, low_psnr), (large, high_psnr) = measured
    assert low_psnr == pytest.approx(40.40, abs=0.05) and high_psnr == pytest.approx(51.60, abs=0.05)
    assert small == pytest.approx(56_700, rel=0.03) and large == pytest.approx(133_800, rel=0.03)


def test_a_damaged_or_cut_stream_raises_the_wavelet_error_and_nothing_else():
    volume = smooth_volume((16, 14, 9), seed=5)
    stream = coder.encode(volume, 2.0)
    rng = np.random.default_rng(20261130)
    refused = 0
    for trial in range(300):
        damaged = bytearray(stream)
        kind = trial % 4
        if kind == 0:
            damaged[rng.integers(len(damaged))] ^= 1 << int(rng.integers(8))
        elif kind == 1:
            damaged = damaged[: rng.integers(len(damaged))]
        elif kind == 2:
            for _ in range(int(rng.integers(1, 6))):
                damaged[rng.integers(len(damaged))] = int(rng.integers(256))
        else:
            damaged += bytes(rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8))
        try:
            decoded = coder.decode(bytes(damaged), volume.shape)
        except WaveletError as error:
            assert str(error)
            refused += 1
        else:
            assert decoded.shape == volume.shape and np.isfinite(decoded).all()
    assert refused >= 250


def test_a_stream_decoded_with_another_shape_is_refused():
    stream = coder.encode(smooth_volume((16, 14, 9)), 2.0)
    with pytest.raises(WaveletError):
        coder.decode(stream, (16, 14, 10))


@pytest.mark.parametrize(("volume", "step", "message"), [
    (np.zeros((4, 4)), 1.0, "3D"),
    (np.zeros((0, 4, 4)), 1.0, "3D"),
    (np.full((4, 4, 4), np.nan), 1.0, "finite"),
    (np.zeros((4, 4, 4)), 0.0, "step"),
    (np.zeros((4, 4, 4)), math.inf, "step"),
    (np.full((4, 4, 4), 1e160), 1.0, "within"),
    (np.full((4, 4, 4), 1e140), 1e-140, "too fine"),
])
def test_encode_refuses_what_it_cannot_code(volume, step, message):
    with pytest.raises(ValueError, match=message):
        coder.encode(volume, step)


def test_the_golden_stream_still_decodes_to_its_recorded_volume():
    """tests/golden/wavelet_12x10x9.bin is coder.encode(golden_volume(), 3.0) as first
    written; the format is frozen: it must decode to the same float64 bits forever."""
    data = GOLDEN.read_bytes()
    assert hashlib.sha256(data).hexdigest() == GOLDEN_FILE_SHA256
    decoded = coder.decode(data, (12, 10, 9))
    assert hashlib.sha256(decoded.astype("<f8").tobytes()).hexdigest() == GOLDEN_VOXELS_SHA256
    assert math.sqrt(float(np.mean((decoded - golden_volume()) ** 2))) < 0.6 * 3.0


GOLDEN_FILE_SHA256 = "98a5ac3df6d9b0da6f6457ea32dc5139dae7d5dfceec6f78b138a58480888e91"
GOLDEN_VOXELS_SHA256 = "a19d8df1752bfa1c270ef9ba0dcc3f36208b1084556ff8b20d3d0d66abb78dcf"
