import numpy as np
import pytest

from mriae.transforms.intensity import IntensityRange


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16", "int32", ">i2", "float32", "float64"])
def test_scale_unscale_is_exact_without_coding_loss(dtype):
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    low, high = (info.min, info.max) if info else (-1500.25, 3000.5)
    volume = np.linspace(low, high, 5 * 6 * 7).reshape(5, 6, 7)
    if info:
        volume = np.rint(volume)
    volume = volume.astype(dtype)
    intensity = IntensityRange.of(volume)
    scaled = intensity.scale(volume)
    assert scaled.dtype == np.float32 and scaled.min() == 0.0 and scaled.max() == 1.0
    restored = intensity.unscale(scaled, volume.dtype)
    assert restored.dtype == volume.dtype
    # exact up to 16-bit integers; beyond, float32's 24-bit mantissa bounds the error
    tolerance = 0 if info and info.bits <= 16 else (high - low) * 2.0**-23
    assert np.abs(restored.astype(np.float64) - volume.astype(np.float64)).max() <= tolerance


def test_unscale_rounds_and_clips_to_the_original_range():
    intensity = IntensityRange(-10.0, 20.0)
    restored = intensity.unscale(np.array([-0.5, 0.0, 0.49, 1.0, 1.7], dtype=np.float32), np.dtype("int16"))
    assert restored.tolist() == [-10, -10, 5, 20, 20]


def test_constant_volume_scales_to_zeros_and_back():
    volume = np.full((3, 4, 5), 42, dtype=np.uint16)
    intensity = IntensityRange.of(volume)
    assert intensity.constant
    assert not intensity.scale(volume).any()
    assert np.array_equal(intensity.unscale(np.zeros((3, 4, 5), np.float32), volume.dtype), volume)
