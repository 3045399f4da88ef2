import numpy as np
import pytest
import torch

from mriae.entropy_coder.context import CONTEXTS, all_contexts, anchor_mask, channel_contexts
from mriae.entropy_coder.stream import ESCAPE_LIMIT, decode_symbols, encode_symbols, with_context_rows
from mriae.models.autoencoder import Autoencoder, AutoencoderConfig
from mriae.models.weights import DEFAULT_WEIGHTS, load_codec


@pytest.fixture(scope="module")
def bottleneck():
    torch.manual_seed(0)
    model = Autoencoder(AutoencoderConfig(hidden_channels=8, latent_channels=6, levels=2))
    model.entropy_bottleneck.update_medians()
    return model.entropy_bottleneck


def context_tables(bottleneck, step=1.0, calibration=()):
    return with_context_rows(bottleneck.coding_tables(bottleneck.channel_steps(step)), list(calibration))


@pytest.mark.parametrize("shape", [(8, 9, 7), (1, 1, 1), (1, 2, 1)])
def test_symbols_round_trip_bit_exactly_including_escapes(bottleneck, shape):
    rng = np.random.default_rng(1)
    tables = context_tables(bottleneck, calibration=[rng.integers(-2, 3, size=(6, 5, 6, 7))])
    symbols = rng.integers(-3, 4, size=(6, *shape)).astype(np.int32)
    symbols[0, 0, 0, 0] = 10_000  # far outside every table: escaped
    symbols[5, -1, -1, -1] = -ESCAPE_LIMIT + 10
    data = encode_symbols(symbols, tables)
    assert np.array_equal(decode_symbols(data, tables, shape), symbols)


def information_bits(symbols, tables):
    """Ideal code length of (C, D, H, W) symbols inside the tables, each by its context's row."""
    bits = 0.0
    for table, values, context in zip(tables, symbols, all_contexts(symbols)):
        rows = table.probabilities[context]
        p = np.take_along_axis(rows, (values - table.offset)[..., None], axis=-1)[..., 0]
        bits += -np.log2(p / rows.sum(axis=-1)).sum()
    return bits


def test_coded_size_is_close_to_the_model_information_content(bottleneck):
    rng = np.random.default_rng(2)
    tables = context_tables(bottleneck, calibration=[rng.integers(-1, 2, size=(6, 16, 16, 16))])
    factorized = bottleneck.coding_tables(bottleneck.channel_steps(1.0))
    row = [t.probabilities[0, :-1] / t.probabilities[0, :-1].sum() for t in factorized]
    symbols = np.stack([t.offset + rng.choice(len(r), size=(20, 20, 10), p=r) for t, r in zip(tables, row)]).astype(np.int32)
    bits = information_bits(symbols, tables)
    coded_bits = len(encode_symbols(symbols, tables)) * 8
    assert bits <= coded_bits <= bits * 1.01 + 64


def test_tables_sum_to_one_and_widen_with_finer_steps(bottleneck):
    coarse, fine = (context_tables(bottleneck, step) for step in (2.0, 0.5))
    for a, b in zip(coarse, fine):
        assert a.probabilities.shape[0] == CONTEXTS
        assert np.allclose(a.probabilities.sum(axis=1), 1.0, atol=1e-4)
        assert b.probabilities.shape[1] > a.probabilities.shape[1]


def test_contexts_combine_earlier_channels_and_anchor_neighbours():
    symbols = np.zeros((3, 3, 3, 3), dtype=np.int32)
    centre = (1, 1, 1)  # not an anchor: (i + j + k) odd; its six face neighbours are anchors
    symbols[2, 1, 0, 1] = -2
    symbols[2, 1, 1, 0] = 3
    within = 1 + 3  # a non-anchor whose anchor neighbours sum to 5: the interval 4..6
    assert all_contexts(symbols)[2][centre] == within
    symbols[0][centre] = 7  # one earlier channel is nonzero here
    assert all_contexts(symbols)[2][centre] == 1 * 7 + within
    symbols[1][centre] = -1
    contexts = all_contexts(symbols)
    assert contexts[2][centre] == 2 * 7 + within
    assert contexts[2][0, 0, 0] == 0  # an anchor with no earlier nonzero channel
    assert contexts[1][centre] == 1 * 7 + 1  # earlier: channel 0; no busy anchor neighbours in channel 1
    assert CONTEXTS == 49


def test_channel_by_channel_contexts_match_all_at_once():
    rng = np.random.default_rng(4)
    symbols = rng.integers(-2, 3, size=(5, 4, 6, 5)) * (rng.random((5, 4, 6, 5)) < 0.4)
    earlier = np.zeros((4, 6, 5), dtype=np.int64)
    anchors = anchor_mask((4, 6, 5))
    for values, expected in zip(symbols, all_contexts(symbols)):
        assert np.array_equal(channel_contexts(values, earlier), expected)
        # what the decoder has: the anchors first, then the others are decoded
        assert np.array_equal(channel_contexts(np.where(anchors, values, 0), earlier), expected)
        assert np.array_equal(channel_contexts(np.zeros_like(values), earlier)[anchors], expected[anchors])
        earlier += values != 0


def test_context_rows_learn_that_busy_neighbourhoods_hold_larger_symbols(bottleneck):
    rng = np.random.default_rng(3)
    smooth = np.repeat(np.repeat(np.repeat(rng.integers(-4, 5, size=(6, 4, 4, 4)), 4, 1), 4, 2), 4, 3)
    factorized = bottleneck.coding_tables(bottleneck.channel_steps(1.0))[0]
    table = context_tables(bottleneck, calibration=[smooth] * 4)[0]
    zero = -table.offset
    quiet, busy = table.probabilities[1], table.probabilities[6]  # channel 0: no earlier channels
    assert quiet[zero] > factorized.probabilities[0, zero] and quiet[zero] > 2 * busy[zero]


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


def test_integer_tables_reproduce_the_coders_own_quantization_of_the_shipped_tables():
    """Files of format 3 were coded from the float32 tables through constriction's leaky
    quantization; the integer tables must give the very same bitstreams, so those files
    still decode, and from now on the coder only ever sees exact integers."""
    import constriction

    from mriae.entropy_coder.stream import PRECISION, fixed_point

    categorical = constriction.stream.model.Categorical(perfect=False)
    rng = np.random.default_rng(5)
    for level in load_codec().levels:
        for table in level.tables[::16]:
            frequencies = table.frequencies
            assert frequencies.min() >= 1 and (frequencies.sum(axis=1) == 1 << PRECISION).all()
            assert np.array_equal(fixed_point(table.coding_rows), frequencies)  # a fixed point
            rows = rng.integers(0, len(frequencies), 300)
            symbols = rng.integers(0, frequencies.shape[1], 300).astype(np.int32)
            floats, integers = constriction.stream.stack.AnsCoder(), constriction.stream.stack.AnsCoder()
            floats.encode_reverse(symbols, categorical, table.probabilities[rows])
            integers.encode_reverse(symbols, categorical, table.coding_rows[rows])
            assert np.array_equal(floats.get_compressed(), integers.get_compressed())


def test_symbols_in_any_memory_order_give_the_same_contexts_and_stream():
    codec = load_codec(DEFAULT_WEIGHTS)
    tables = codec.level(5).tables
    symbols = np.random.default_rng(6).integers(-3, 4, (len(tables), 5, 4, 6)).astype(np.int32)
    data = encode_symbols(symbols, tables)
    for layout in (np.asfortranarray(symbols), symbols.transpose(0, 3, 2, 1).copy().transpose(0, 3, 2, 1)):
        assert np.array_equal(all_contexts(layout), all_contexts(symbols))
        assert encode_symbols(layout, tables) == data
    assert np.array_equal(decode_symbols(data, tables, [5, 4, 6]), symbols)  # a list of sizes too
