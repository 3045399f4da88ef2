"""The autoencoder's CPU fast paths (issue 14) equal torch's own layers, values and gradients:
the single-output-channel transposed convolution by output phases, the single-input-channel
convolution by shifted copies, and GDN by a matrix product (in place without gradients)."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from mriae.models.autoencoder import single_channel_conv_by_patches, transposed_conv_by_phases
from mriae.models.gdn import GDN3d

STRIDES = list(itertools.product((1, 2), repeat=3))
SIZES = [(5, 6, 7), (1, 3, 2), (4, 4, 4)]


def values_and_gradients(function, x: torch.Tensor, weight: torch.Tensor) -> list[torch.Tensor]:
    out = function(x, weight)
    return [out, *torch.autograd.grad((out * out.detach().cos()).sum(), (x, weight))]


def shape_if_equal(ours, torchs, x: torch.Tensor, weight: torch.Tensor) -> tuple[int, ...]:
    """The output shape of ``ours``, after checking its values and gradients against ``torchs``."""
    mine, reference = values_and_gradients(ours, x, weight), values_and_gradients(torchs, x, weight)
    assert mine[0].shape == reference[0].shape
    for a, b in zip(mine, reference):
        assert torch.allclose(a, b, rtol=0, atol=1e-10)
    return tuple(mine[0].shape)


def random_layer(channels: tuple[int, int], weight_channels: tuple[int, int], size: tuple[int, ...]):
    """(x, weight, bias) in float64: x of shape (2, channels[0], *size), weight
    (*weight_channels, 3, 3, 3), bias of channels[1]."""
    torch.manual_seed(sum(size))
    x = torch.randn(2, channels[0], *size, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(*weight_channels, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    return x, weight, torch.randn(channels[1], dtype=torch.float64)


@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("size", SIZES)
def test_transposed_conv_by_phases_is_torchs(stride, size):
    x, weight, bias = random_layer((4, 3), (4, 3), size)
    extra = tuple(s - 1 for s in stride)
    shape = shape_if_equal(lambda a, w: transposed_conv_by_phases(a, w, bias, stride),
                           lambda a, w: F.conv_transpose3d(a, w, bias, stride=stride, padding=1, output_padding=extra),
                           x, weight)
    assert shape == (2, 3, *(n * s for n, s in zip(size, stride)))


@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("size", SIZES)
def test_single_channel_conv_by_patches_is_torchs(stride, size):
    x, weight, bias = random_layer((1, 5), (5, 1), size)
    shape = shape_if_equal(lambda a, w: single_channel_conv_by_patches(a, w, bias, stride),
                           lambda a, w: F.conv3d(a, w, bias, stride=stride, padding=1), x, weight)
    assert shape == (2, 5, *((n - 1) // s + 1 for n, s in zip(size, stride)))


@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_is_its_formula_in_place_or_not_and_trains_with_any_parameter_frozen(inverse):
    torch.manual_seed(2)
    gdn = GDN3d(4, inverse=inverse).double()
    with torch.no_grad():
        gdn.gamma_root.add_(0.1 * torch.rand(4, 4, dtype=torch.float64))
    x = torch.randn(2, 4, 3, 5, 2, dtype=torch.float64)
    beta, gamma = gdn.beta_root**2 + 1e-6, gdn.gamma_root**2
    norm = beta.view(1, 4, 1, 1, 1) + torch.einsum("ij,bjdhw->bidhw", gamma, x * x)
    expected = x * (norm.sqrt() if inverse else norm.rsqrt())
    with torch.no_grad():
        assert torch.allclose(gdn(x), expected, rtol=1e-12, atol=0)  # in place
    assert torch.allclose(gdn(x), expected, rtol=1e-12, atol=0)  # with gradients
    gdn.gamma_root.requires_grad_(False)
    gdn(x).sum().backward()  # only beta learns: the normalizer must not be overwritten
    assert gdn.beta_root.grad is not None and bool(gdn.beta_root.grad.abs().sum() > 0)
