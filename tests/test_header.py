import numpy as np
import pytest

from mriae.header import affine_of, affine_record, grid_of, grid_record
from mriae.transforms.geometry import plan


def oblique_affine(dtype) -> np.ndarray:
    rotation = np.array([[0.96, -0.28, 0.0], [0.28, 0.96, 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation * [0.9375, 0.9375, 3.3]
    affine[:3, 3] = [-119.53125, -97.2, 41.000001]
    return affine.astype(dtype).astype(np.float64)


def test_a_float32_affine_is_written_short_and_comes_back_bit_for_bit():
    affine = oblique_affine(np.float32)
    record = affine_record(affine)
    assert list(record) == ["affine32"] and len(record["affine32"]) == 12
    assert max(len(repr(v)) for v in record["affine32"]) <= 15 < max(len(repr(v)) for v in affine.ravel())
    assert affine_of(record).tobytes() == affine.tobytes()


def test_a_float64_affine_comes_back_bit_for_bit():
    affine = oblique_affine(np.float64)
    record = affine_record(affine)
    assert list(record) == ["affine"]
    assert affine_of(record).tobytes() == affine.tobytes()


def test_an_unusual_last_row_is_kept():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[3, 0] = 0.5
    assert len(affine_record(affine)["affine32"]) == 16
    assert np.array_equal(affine_of(affine_record(affine)), affine)


def test_a_negative_zero_in_the_last_row_is_kept():
    affine = np.eye(4)
    affine[3, 0] = -0.0
    assert affine_of(affine_record(affine)).tobytes() == affine.tobytes()


def test_a_missing_or_wrong_sized_affine_is_an_error():
    with pytest.raises(ValueError, match="12 or 16 values, got 5"):
        affine_of({"affine": [1.0] * 5})
    with pytest.raises(ValueError, match="the image record has no affine"):
        affine_of({"shape": [2, 2, 2]})


@pytest.mark.parametrize("spacing", [None, (2.0, 2.0, 2.0)])
def test_the_grid_is_rebuilt_from_its_record(spacing):
    affine = oblique_affine(np.float32)
    grid = plan((37, 41, 11), affine, 3, spacing)
    record = grid_record(grid)
    assert (record is None) == (spacing is None)
    assert grid_of(record, (37, 41, 11), affine, 3) == grid
