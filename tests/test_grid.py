import pytest

from mriae.transforms.grid import axis_levels, padded_length, plan_grid


@pytest.mark.parametrize(
    ("shape", "levels", "padded"),
    [
        ((197, 233, 189), (4, 4, 4), (208, 240, 192)),
        ((33, 41, 25), (3, 4, 2), (40, 48, 28)),
        ((128, 128, 10), (4, 4, 2), (128, 128, 12)),
        ((1, 64, 64), (0, 4, 4), (1, 64, 64)),
        ((128, 96, 24), (4, 4, 3), (128, 96, 24)),
        ((7, 11, 13), (3, 2, 4), (8, 12, 16)),
        ((1, 1, 1), (0, 0, 0), (1, 1, 1)),
    ],
)
def test_plan_grid_pads_each_axis_to_a_multiple_of_its_strides(shape, levels, padded):
    assert plan_grid(shape, 4) == (levels, padded)
    for n, k, p in zip(shape, levels, padded):
        assert p % 2**k == 0 and n <= p <= n * 1.25


def test_padded_length_and_levels_limits():
    assert padded_length(17, 4) == 32
    assert axis_levels(2, 4) == 1
    assert axis_levels(10_000, 4) == 4
    with pytest.raises(ValueError, match="axis length must be >= 1"):
        axis_levels(0, 4)
