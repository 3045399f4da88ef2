import numpy as np
import pytest
import torch

from mriae.models.autoencoder import Autoencoder, AutoencoderConfig
from mriae.models.entropy import ESCAPE_LIMIT, decode_symbols, encode_symbols


@pytest.fixture(scope="module")
def bottleneck():
    torch.manual_seed(0)
    model = Autoencoder(AutoencoderConfig(hidden_channels=8, latent_channels=6, levels=2))
    model.entropy_bottleneck.update_medians()
    return model.entropy_bottleneck


def test_symbols_round_trip_bit_exactly_including_escapes(bottleneck):
    tables = bottleneck.coding_tables(bottleneck.channel_steps(1.0))
    rng = np.random.default_rng(1)
    symbols = rng.integers(-3, 4, size=(6, 500)).astype(np.int32)
    symbols[0, 0] = 10_000  # far outside every table: escaped
    symbols[5, 499] = -ESCAPE_LIMIT + 10
    data = encode_symbols(symbols, tables)
    assert np.array_equal(decode_symbols(data, tables, 500), symbols)


def test_coded_size_is_close_to_the_model_information_content(bottleneck):
    tables = bottleneck.coding_tables(bottleneck.channel_steps(1.0))
    rng = np.random.default_rng(2)
    symbols = np.stack(
        [t.offset + rng.choice(len(t.probabilities) - 1, size=4000, p=t.probabilities[:-1] / t.probabilities[:-1].sum())
         for t in tables]
    ).astype(np.int32)
    bits = sum(
        -np.log2(t.probabilities[row - t.offset] / t.probabilities.sum()).sum() for t, row in zip(tables, symbols)
    )
    coded_bits = len(encode_symbols(symbols, tables)) * 8
    assert bits <= coded_bits <= bits * 1.01 + 64


def test_tables_sum_to_one_and_widen_with_finer_steps(bottleneck):
    coarse, fine = (bottleneck.coding_tables(bottleneck.channel_steps(step)) for step in (2.0, 0.5))
    for a, b in zip(coarse, fine):
        assert abs(a.probabilities.sum() - 1.0) < 1e-4
        assert len(b.probabilities) > len(a.probabilities)


def test_channel_steps_follow_their_learned_slopes_within_bounds():
    bottleneck = Autoencoder(AutoencoderConfig(hidden_channels=8, latent_channels=4, levels=2)).entropy_bottleneck
    with torch.no_grad():
        bottleneck.step_slopes.copy_(torch.tensor([0.0, 0.5, -0.5, 3.0]))
    steps = bottleneck.channel_steps(0.25)
    assert torch.allclose(steps, torch.tensor([0.25, 0.125, 0.5, 0.0625]))
    assert torch.allclose(bottleneck.channel_steps(1.0), torch.ones(4))


def test_quantize_and_dequantize_use_each_channels_step():
    bottleneck = Autoencoder(AutoencoderConfig(hidden_channels=8, latent_channels=2, levels=2)).entropy_bottleneck
    y = torch.tensor([1.3, 1.3]).view(1, 2, 1, 1, 1)
    steps = torch.tensor([0.5, 2.0])
    symbols = bottleneck.quantize(y, steps)
    assert symbols.view(-1).tolist() == [3.0, 1.0]
    assert bottleneck.dequantize(symbols, steps).view(-1).tolist() == [1.5, 2.0]


def test_network_output_matches_input_shape_for_every_stride_schedule():
    model = Autoencoder(AutoencoderConfig(hidden_channels=8, latent_channels=6, levels=4))
    for shape, strides in [((16, 32, 48), (4, 4, 4)), ((1, 32, 16), (0, 4, 4)), ((4, 12, 6), (2, 2, 1))]:
        x = torch.rand(1, 1, *shape)
        with torch.no_grad():
            y = model.encode(x, strides)
            assert tuple(y.shape[2:]) == tuple(n >> k for n, k in zip(shape, strides))
            assert model.decode(y, strides).shape == x.shape
