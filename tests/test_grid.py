import pytest

from mriae.transforms.grid import padded_length, plan_grid


@pytest.mark.parametrize(
    ("shape", "padded"),
    [
        ((197, 233, 189), (200, 240, 192)),
        ((33, 41, 25), (40, 48, 32)),
        ((128, 128, 10), (128, 128, 16)),
        ((1, 64, 64), (8, 64, 64)),
        ((128, 96, 24), (128, 96, 24)),
        ((7, 11, 13), (8, 16, 16)),
        ((1, 1, 1), (8, 8, 8)),
    ],
)
def test_plan_grid_pads_each_axis_to_a_multiple_of_the_total_stride(shape, padded):
    assert plan_grid(shape, 3) == ((3, 3, 3), padded)


def test_padded_length_limits():
    assert padded_length(17, 4) == 32
    assert padded_length(16, 4) == 16
    with pytest.raises(ValueError, match="axis length must be >= 1"):
        padded_length(0, 4)
