import numpy as np
import pytest

from remeco.models import emulation as em
from remeco.models.emulation import EmulationFormat
from remeco.models.mapping import map_layer


def test_round_shift_is_round_half_up_on_signed_values():
    v = np.array([-6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6])
    # divide by 4: -1.5 -> -1, -1.25 -> -1, -0.75 -> -1, -0.5 -> 0, 0.5 -> 1, 1.5 -> 2
    np.testing.assert_array_equal(em.round_shift(v, 2), [-1, -1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 1, 2])
    np.testing.assert_array_equal(em.round_shift(v, 0), v)
    expected = np.floor(v / 4 + 0.5).astype(int)
    np.testing.assert_array_equal(em.round_shift(v, 2), expected)


def test_adc_edges_clip_and_round():
    acc = np.array([-100, -1, 0, 7, 8, 15, 16, 23, 24, 4079, 4080, 4088, 10**6])
    out = em.adc_quantize(acc, 4, 8)
    expected = np.clip(np.floor(acc / 16 + 0.5), 0, 255)
    np.testing.assert_array_equal(out, expected)
    assert out[0] == 0 and out[-1] == 255
    assert em.adc_quantize(np.array([7]), 4, 8)[0] == 0  # 7/16 < 1/2
    assert em.adc_quantize(np.array([8]), 4, 8)[0] == 1  # tie rounds up
    np.testing.assert_array_equal(em.adc_quantize(np.array([-3, 5, 300]), 0, 8), [0, 5, 255])


def test_average_copies_per_element_shift():
    s = np.array([7, 7, 7, -7, 6])
    k = np.array([0, 1, 2, 1, 2])
    np.testing.assert_array_equal(em.average_copies(s, k), [7, 4, 2, -3, 2])


def test_codes_of_ideal_levels_are_exact_and_saturate():
    fmt = EmulationFormat()
    g_off, g_on = 0.5e-6, 10e-6
    levels = np.arange(16)
    t = g_off + levels * (g_on - g_off) / 15
    np.testing.assert_array_equal(em.quantize_codes(t, g_off, g_on, fmt), levels << 4)
    big = em.quantize_codes(np.array([1.0, -1.0]), g_off, g_on, fmt)
    np.testing.assert_array_equal(big, [fmt.code_max, fmt.code_min])
    with pytest.raises(ValueError, match="transfer"):
        em.quantize_codes(np.array([np.nan]), g_off, g_on, fmt)
    with pytest.raises(ValueError, match="g_off"):
        em.quantize_codes(np.array([1e-6]), g_on, g_off, fmt)


@pytest.mark.parametrize("adc_shift", [0, 2, 4])
def test_ideal_crossbar_reproduces_integer_dot_products(adc_shift):
    fmt = EmulationFormat(rows=32, cols=16, adc_bits=16)
    rng = np.random.default_rng(adc_shift)
    w = rng.integers(-128, 128, (75, 9))
    m = map_layer(w, fmt, rng.integers(0, 3, (9, 2)))
    codes = m.target_levels() << fmt.code_frac
    x = rng.integers(0, 256, (11, 75))
    z = em.emulate_matvec(x, m, codes, adc_shift)
    np.testing.assert_array_equal(z, (x @ w) << fmt.code_frac)


def test_step_7_to_accumulator_requantize_and_logits():
    np.testing.assert_array_equal(em.to_accumulator(np.array([-24, -8, -9, 7, 8, 24]), 4), [-1, 0, -1, 0, 1, 2])
    t = np.array([-1000, 0, 5, 6, 1 << 20])
    out = em.requantize(t, multiplier=3, shift=4)
    np.testing.assert_array_equal(out, np.clip(np.floor(t * 3 / 16 + 0.5), 0, 255))
    np.testing.assert_array_equal(em.final_logits(np.array([-3, 0, 7])), [-3, 0, 7])
    with pytest.raises(ValueError, match="logits"):
        em.final_logits(np.array([1 << 40]))
    with pytest.raises(ValueError, match="multiplier"):
        em.requantize(t, 1 << 15, 3)
    with pytest.raises(ValueError, match="shift"):
        em.requantize(t, 3, 63)


def test_reference_network_uses_the_contract_requantize():
    from remeco.models import nn as rn

    rng = np.random.default_rng(0)
    acc = rng.integers(-(1 << 20), 1 << 20, 1000)
    for m, sh in ((1, 0), (16384, 20), (32767, 30), (3, 2)):
        np.testing.assert_array_equal(rn.requantize(acc, m, sh), em.requantize(acc, m, sh))


def test_adc_clipping_loses_information_in_a_narrow_adc():
    fmt = EmulationFormat(rows=32, cols=8, adc_bits=4)
    w = np.full((32, 2), 127)
    m = map_layer(w, fmt)
    codes = m.target_levels() << fmt.code_frac
    x = np.full((1, 32), 255)
    z = em.emulate_matvec(x, m, codes, 0)
    assert z[0, 0] < (x @ w)[0, 0] << 4


def test_widths_cover_extremes():
    fmt = EmulationFormat()
    w = fmt.widths(fan_in=400, max_copies_log2=2, adc_shift=6)
    # the largest |z| is K * 255 * 128 * 2**F
    assert (400 * 255 * 128) << 4 < 1 << (w["z"] - 1)
    assert 128 * fmt.code_max < 1 << (w["acc"] - 1)


def test_format_validation_names_the_field():
    with pytest.raises(ValueError, match="rows"):
        EmulationFormat(rows=0)
    with pytest.raises(ValueError, match="code_bits"):
        EmulationFormat(code_bits=6)
    with pytest.raises(ValueError, match="adc_bits"):
        EmulationFormat(adc_bits=0)


def test_bad_inputs():
    fmt = EmulationFormat(rows=8, cols=8)
    m = map_layer(np.zeros((8, 2), dtype=int), fmt)
    codes = m.target_levels()
    with pytest.raises(ValueError, match="x"):
        em.emulate_matvec(np.full((1, 8), 256), m, codes, 0)
    with pytest.raises(ValueError, match="x"):
        em.emulate_matvec(np.zeros((1, 7), dtype=int), m, codes, 0)
    with pytest.raises(ValueError, match="codes"):
        em.emulate_matvec(np.zeros((1, 8), dtype=int), m, codes[..., :4], 0)
    with pytest.raises(ValueError, match="adc_shift"):
        em.emulate_matvec(np.zeros((1, 8), dtype=int), m, codes, -1)


def _emulate_step_by_step(x, m, codes, adc_shift):
    """The contract's steps 2-6 composed literally from the primitive functions."""
    fmt = m.fmt
    xp = em.pad_inputs(x, m)  # (..., RT, rows)
    planes = em.input_bit_planes(xp, fmt.input_bits)  # (B, ..., RT, rows)
    y = 0
    for rt in range(m.row_tiles):
        tile_cols = np.concatenate([codes[rt, ct] for ct in range(m.col_tiles)], axis=1)
        acc = em.column_accumulate(planes[..., rt, :], tile_cols)  # (B, ..., cols)
        y = y + em.shift_add_bits(em.adc_quantize(acc, adc_shift, fmt.adc_bits))
    y = y[..., : m.physical_columns]
    slices = em.average_columns(y, m)
    return em.combine_slices(slices, np.asarray(x).sum(axis=-1), adc_shift, fmt)


@pytest.mark.parametrize("seed", range(4))
def test_fast_emulation_equals_the_literal_composition_of_the_steps(seed):
    rng = np.random.default_rng(seed)
    fmt = EmulationFormat(rows=int(rng.choice([8, 16, 32])), cols=int(rng.choice([8, 16])), adc_bits=int(rng.integers(3, 9)))
    k, n = int(rng.integers(5, 70)), int(rng.integers(1, 12))
    m = map_layer(rng.integers(-128, 128, (k, n)), fmt, rng.integers(0, 3, (n, fmt.n_slices)))
    codes = rng.integers(fmt.code_min, fmt.code_max + 1, (m.row_tiles, m.col_tiles, fmt.rows, fmt.cols))
    x = rng.integers(0, 256, (3, 7, k)) * (rng.random((3, 7, k)) < 0.6)
    x[0, 0] = 0  # an all-zero input vector takes the skip path
    shift = int(rng.integers(0, 8))
    np.testing.assert_array_equal(em.emulate_matvec(x, m, codes, shift), _emulate_step_by_step(x, m, codes, shift))
