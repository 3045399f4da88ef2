import numpy as np
import pytest

from mriae.transforms.geometry import GridPlan, from_network_grid, plan, to_network_grid


@pytest.mark.parametrize("shape", [(33, 41, 25), (1, 64, 64), (7, 11, 13), (128, 128, 10)])
def test_pad_and_crop_back_is_identity(shape):
    volume = np.random.default_rng(0).random(shape, dtype=np.float32)
    grid = plan(shape, np.eye(4), 3)
    tensor = to_network_grid(volume, grid)
    assert tuple(tensor.shape[2:]) == grid.padded_shape
    for n, k in zip(grid.padded_shape, grid.levels):
        assert n % 2**k == 0
    assert np.array_equal(from_network_grid(tensor, grid), volume)


def test_padding_replicates_the_edge():
    volume = np.arange(3 * 5 * 7, dtype=np.float32).reshape(3, 5, 7)
    grid = plan(volume.shape, np.eye(4), 4)
    padded = to_network_grid(volume, grid)[0, 0].numpy()
    assert np.array_equal(padded[-1, :5, :7], volume[-1])


def test_resampling_returns_to_the_original_grid():
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    affine[:3, 3] = [-40.0, 12.0, 7.5]
    z, y, x = np.meshgrid(np.arange(20), np.arange(24), np.arange(16), indexing="ij")
    volume = ((z + y + x) / 60.0).astype(np.float32).transpose(0, 1, 2)
    grid = plan(volume.shape, affine, 4, spacing=(1.0, 1.0, 1.0))
    assert grid.resampled
    assert grid.coding_shape == (39, 47, 46)
    coding_affine = np.asarray(grid.coding_affine).reshape(4, 4)
    assert np.allclose(np.linalg.norm(coding_affine[:3, :3], axis=0), 1.0)
    restored = from_network_grid(to_network_grid(volume, grid), grid)
    assert restored.shape == volume.shape
    assert np.abs(restored - volume).max() < 1e-4  # linear ramp: linear interpolation is exact


def test_plan_serializes():
    grid = plan((33, 41, 25), np.eye(4), 4, spacing=(1.5, 1.5, 1.5))
    assert GridPlan.from_dict(grid.to_dict()) == grid


@pytest.mark.parametrize("spacing", [(0.0, 1.0, 1.0), (-1.0, 1.0, 1.0), (float("nan"), 1.0, 1.0), (1.0, 1.0)])
def test_a_bad_spacing_is_refused(spacing):
    with pytest.raises(ValueError, match=r"^spacing must be three positive numbers in mm \(got \("):
        plan((10, 10, 10), np.diag([2.0, 2.0, 2.0, 1.0]), 2, spacing)
