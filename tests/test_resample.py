"""The torch-only resampler gives MONAI's grids, affines and voxels bit for bit.

Files compressed with --spacing before mriae dropped MONAI from its core install record a
coding grid MONAI chose and decode through MONAI's resampler: the same bytes in and out
need the same roundings. The comparison needs MONAI (the [monai] extra) and skips without
it; tests/test_golden.py decodes a resampled golden file either way.
"""

import numpy as np
import pytest
import torch

from mriae.transforms.resample import recorded_affine, resample, spacing_grid

monai_data = pytest.importorskip("monai.data")
monai_transforms = pytest.importorskip("monai.transforms")


def _affine(rng: np.random.Generator, kind: str) -> np.ndarray:
    affine = np.eye(4)
    zooms = np.diag(rng.uniform(0.5, 3.0, 3))
    rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    affine[:3, :3] = {
        "axes": zooms,
        "flipped and permuted": (zooms * rng.choice([-1.0, 1.0], 3))[rng.permutation(3)],
        "oblique": rotation @ zooms,
        "sheared": rotation @ zooms + rng.normal(scale=0.1, size=(3, 3)),
    }[kind]
    affine[:3, 3] = rng.normal(scale=50.0, size=3)
    return affine


CASES = [(seed, kind) for seed in range(6) for kind in ("axes", "flipped and permuted", "oblique", "sheared")]


@pytest.mark.parametrize(("seed", "kind"), CASES)
def test_the_same_grid_affine_and_voxels_as_monai_there_and_back(seed, kind):
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(1, 24, size=3))
    affine = _affine(rng, kind)
    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    # every third case asks for (almost) the voxel size the image has: MONAI then keeps it
    spacing = tuple(zooms + 1e-4) if seed % 3 == 0 else tuple(float(s) for s in rng.choice([0.7, 1.0, 1.5, 2.5], 3))
    volume = rng.random(shape, dtype=np.float32)
    image = monai_data.MetaTensor(torch.as_tensor(volume)[None], affine=torch.as_tensor(affine))

    theirs = monai_transforms.Spacing(pixdim=spacing, mode="bilinear", padding_mode="border",
                                      dtype=torch.float64)(image)
    coding_shape, target = spacing_grid(shape, affine, spacing)
    ours = resample(volume, affine, target, coding_shape)
    assert coding_shape == tuple(theirs.shape[1:])
    assert np.array_equal(recorded_affine(affine, target, shape, coding_shape), theirs.affine.numpy())
    assert ours.dtype == torch.float32 and torch.equal(ours, theirs.as_tensor()[0])

    coding_affine = theirs.affine.numpy()
    back = monai_transforms.SpatialResample(mode="bilinear", padding_mode="border", dtype=torch.float64)(
        theirs, dst_affine=torch.as_tensor(affine), spatial_size=shape)
    assert torch.equal(resample(ours, coding_affine, affine, shape), back.as_tensor()[0])


def test_a_grid_that_does_not_move_gives_the_values_back():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    volume = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    coding_shape, target = spacing_grid(volume.shape, affine, (2.0, 2.0, 2.0005))
    assert coding_shape == volume.shape
    assert np.array_equal(recorded_affine(affine, target, volume.shape, coding_shape), affine)
    assert np.array_equal(resample(volume, affine, target, coding_shape).numpy(), volume)
