"""The accelerator top's contract: memory layout, stream words, fault generator order, one run."""

from __future__ import annotations

import numpy as np
import pytest

from remeco.models.emulation import EmulationFormat
from remeco.models.fabric import (
    FabricConfig,
    decode_descriptors,
    descriptor_words,
    layer_code_words,
    memory_fault_map,
    output_words,
    pack_codes,
    pack_faults,
    pack_inputs,
    plan_memory,
    reference_run,
    run_layer,
    unpack_codes,
    unpack_faults,
    unpack_outputs,
)
from remeco.rtl.regmap import lookup
from remeco.models.fault_lfsr import FAULT_OFF, FAULT_ON, apply_fault_map, rate_threshold, xorshift32
from remeco.models.mapping import map_layer
from remeco.models.periphery import column_descriptors

FMT = EmulationFormat(rows=64, cols=32)


def _layer(rng, fan_in, neurons, copies, fmt=FMT):
    """A mapped layer with random weights and a copies_log2 spec: int, "neuron" (0..2 per neuron),
    "slice" (0..2 per neuron and slice) or "msb" ([0, 1] for every neuron)."""
    w = rng.integers(-fmt.weight_offset, fmt.weight_offset, size=(fan_in, neurons))
    if copies == "neuron":
        k = rng.integers(0, 3, size=neurons)
    elif copies == "slice":
        k = rng.integers(0, 3, size=(neurons, fmt.n_slices))
    elif copies == "msb":
        k = np.tile(np.arange(fmt.n_slices) >= fmt.n_slices - 1, (neurons, 1)).astype(np.int64)
    else:
        k = copies
    return map_layer(w, fmt, k)


def _codes(rng, mapped, fmt=FMT):
    """Programmed-like tile codes (target levels plus noise, some negative) with both extremes sprinkled in."""
    c = (mapped.target_levels() << fmt.code_frac) + rng.integers(-24, 25, size=mapped.target_levels().shape)
    c.reshape(-1)[::37] = fmt.code_min
    c.reshape(-1)[5::41] = fmt.code_max
    return np.clip(c, fmt.code_min, fmt.code_max)


def _inputs(rng, vectors, fan_in, fmt=FMT):
    x = rng.integers(0, 1 << fmt.input_bits, size=(vectors, fan_in))
    x[0] = 0
    x[-1] = (1 << fmt.input_bits) - 1
    return x


CASES = [  # fan_in, neurons, copies, adc_shift, column_lanes
    (1, 1, 0, 0, 2),
    (25, 6, 0, 3, 16),
    (25, 130, "msb", 2, 16),
    (128, 33, 1, 5, 16),
    (129, 17, "neuron", 4, 8),
    (300, 40, "slice", 6, 16),
    (300, 3, 2, 0, 4),
    (64, 130, "slice", 7, 16),
]


@pytest.mark.parametrize("fan_in,neurons,copies,adc_shift,lanes", CASES)
def test_run_layer_equals_the_emulation_of_the_mapped_layer(fan_in, neurons, copies, adc_shift, lanes):
    rng = np.random.default_rng(fan_in * 1000 + neurons)
    cfg = FabricConfig(fmt=FMT, column_lanes=lanes)
    m = _layer(rng, fan_in, neurons, copies)
    codes = _codes(rng, m)
    x = _inputs(rng, 9, fan_in)
    words, desc = layer_code_words(codes, m, cfg), descriptor_words(m)
    want = reference_run(x, m, codes, adc_shift)
    np.testing.assert_array_equal(run_layer(x, words, None, desc, neurons, adc_shift, cfg), want)
    # the fault map in memory words is the tile map through the same layout
    fmap = rng.choice(np.array([0, FAULT_OFF, FAULT_ON]), p=[0.8, 0.1, 0.1], size=codes.shape)
    faulty = apply_fault_map(codes, fmap, FMT.code_max, FMT.code_min)
    got = run_layer(x, words, layer_code_words(fmap, m, cfg), desc, neurons, adc_shift, cfg, FMT.code_max, FMT.code_min)
    np.testing.assert_array_equal(got, reference_run(x, m, faulty, adc_shift))
    assert fmap.any()


def test_run_layer_needs_descriptors_that_close_every_neuron():
    rng = np.random.default_rng(0)
    cfg = FabricConfig(fmt=FMT, column_lanes=4)
    m = _layer(rng, 10, 3, 0)
    words, desc = layer_code_words(_codes(rng, m), m, cfg), descriptor_words(m)
    x = _inputs(rng, 2, 10)
    with pytest.raises(ValueError, match="close 3 neurons, the run expects 4"):
        run_layer(x, words, None, desc, 4, 0, cfg)
    with pytest.raises(ValueError, match="code words must have shape"):
        run_layer(x, words[1:], None, desc, 3, 0, cfg)


def test_code_word_layout_by_hand():
    fmt = EmulationFormat(rows=4, cols=4)
    cfg = FabricConfig(fmt=fmt, column_lanes=4)
    m = map_layer(np.zeros((5, 3), dtype=np.int64), fmt)  # K=5, P=6: 2 row tiles, 2 column tiles, 2 blocks
    full = np.arange(8 * 8).reshape(8, 8)  # full[r, p] = 8 r + p
    tiles = full.reshape(2, 4, 2, 4).transpose(0, 2, 1, 3)
    words = layer_code_words(tiles, m, cfg)
    assert words.shape == (2 * 5, 4)
    np.testing.assert_array_equal(words[3], full[3, 0:4])  # block 0, row 3
    np.testing.assert_array_equal(words[5 + 4], [full[4, 4], full[4, 5], 0, 0])  # block 1, row 4, lanes past P padded
    with pytest.raises(ValueError, match="codes must have shape"):
        layer_code_words(tiles[:1], m, cfg)


def test_descriptor_words_carry_the_column_descriptors():
    rng = np.random.default_rng(1)
    m = _layer(rng, 8, 12, "slice")
    d = column_descriptors(m)
    got = decode_descriptors(descriptor_words(m))
    for name in ("slice", "k", "first", "last", "end"):
        np.testing.assert_array_equal(got[name], getattr(d, name)[: m.physical_columns])
    assert descriptor_words(m).dtype == np.uint32


def test_pack_round_trips():
    rng = np.random.default_rng(2)
    cfg = FabricConfig(fmt=FMT, column_lanes=6)
    codes = rng.integers(FMT.code_min, FMT.code_max + 1, size=(20, 6))
    codes[0] = [FMT.code_min, FMT.code_max, -1, 0, 1, -2]
    stream = pack_codes(codes, cfg)
    assert stream.dtype == np.uint32 and stream.shape == (20 * 3,)
    np.testing.assert_array_equal(unpack_codes(stream, cfg), codes)
    assert stream[0] == (FMT.code_min & 0xFFFF) | (FMT.code_max << 16)
    # only the low code_bits are read back: junk above them is ignored
    np.testing.assert_array_equal(unpack_codes(stream | np.uint32(0xF800F800), cfg), codes)
    faults = rng.integers(0, 4, size=(20, 6))
    fs = pack_faults(faults, cfg)
    assert fs.shape == (20,)
    np.testing.assert_array_equal(unpack_faults(fs, cfg), faults)
    assert pack_faults(np.array([[1, 3, 0, 0, 0, 2]]), cfg)[0] == 1 | 3 << 2 | 2 << 10
    with pytest.raises(ValueError, match="codes must be in"):
        pack_codes(np.full((1, 6), FMT.code_max + 1), cfg)
    with pytest.raises(ValueError, match="not a multiple of 3"):
        unpack_codes(stream[:4], cfg)
    with pytest.raises(ValueError, match="fault entries"):
        pack_faults(np.full((1, 6), 4), cfg)


def test_input_and_output_stream_layout_by_hand():
    cfg = FabricConfig(fmt=FMT, vector_lanes=4)
    x = np.array([[1, 2, 3], [4, 5, 255]])
    # one group (two padding vectors), row by row, vector i in byte i
    np.testing.assert_array_equal(pack_inputs(x, cfg), [0x0401, 0x0502, 0xFF03])
    # outputs: group by group, neuron by neuron, four int32 lanes (padding included)
    assert output_words(2, 2, cfg) == 8
    words = np.array([10, -20, 7, 7, 30, 40, 7, 7], dtype=np.int32).view(np.uint32)
    np.testing.assert_array_equal(unpack_outputs(words, 2, 2, cfg), [[10, 30], [-20, 40]])
    # two lanes: five vectors make three groups
    cfg2 = FabricConfig(fmt=FMT, vector_lanes=2)
    x5 = np.arange(5)[:, None] + np.array([[0, 100]])
    np.testing.assert_array_equal(pack_inputs(x5, cfg2), [0x0100, 0x6564, 0x0302, 0x6766, 0x0004, 0x0068])
    with pytest.raises(ValueError, match="inputs must be in"):
        pack_inputs(np.array([[256]]), cfg)
    with pytest.raises(ValueError, match="expected 8 output words"):
        unpack_outputs(words[:7], 2, 2, cfg)


def test_memory_fault_map_is_the_generator_stepped_lane_by_lane():
    cfg = FabricConfig(fmt=FMT, column_lanes=4, code_words=64)
    seed, rate, on = 12345, rate_threshold(0.3), rate_threshold(0.5)
    want = np.zeros((5, 4), dtype=np.uint8)
    state = seed
    for w in range(5):
        for lane in range(4):
            state = xorshift32(state)
            if state & 0xFFFF < rate:
                want[w, lane] = FAULT_ON if state >> 16 < on else FAULT_OFF
    got = memory_fault_map(seed, rate, on, 5, cfg)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.uint8 and want.any()
    big = memory_fault_map(seed, rate, on, 64, cfg)
    for n in (0, 1, 17, 63):
        np.testing.assert_array_equal(memory_fault_map(seed, rate, on, n, cfg), big[:n])
    np.testing.assert_array_equal(memory_fault_map(0, rate, on, 9, cfg), memory_fault_map(1, rate, on, 9, cfg))
    with pytest.raises(ValueError, match="words"):
        memory_fault_map(seed, rate, on, 65, cfg)


def test_plan_memory_places_copies_then_layers():
    rng = np.random.default_rng(3)
    cfg = FabricConfig(fmt=FMT, column_lanes=8)
    layers = [_layer(rng, 30, 5, 0), _layer(rng, 70, 4, 1)]  # P = 10 and 16: 2 blocks each
    plan = plan_memory(layers, [1, 2], 2, cfg)
    bases = [(p.code_base, p.desc_base) for row in plan.layers for p in row]
    assert bases == [(0, 0), (60, 10), (200, 26), (260, 36)]
    assert (plan.code_words, plan.desc_words) == (400, 52)
    assert plan.layers[1][1].code_words == 140 and plan.layers[1][1].adc_shift == 2


def test_plan_memory_errors_name_what_does_not_fit():
    rng = np.random.default_rng(4)
    m = _layer(rng, 100, 10, 0)  # P = 20 -> 2 blocks of 16 -> 200 code words
    with pytest.raises(ValueError, match="needs 400 code-memory words, the fabric has 300"):
        plan_memory([m], [0], 2, FabricConfig(fmt=FMT, code_words=300))
    with pytest.raises(ValueError, match="descriptor words"):
        plan_memory([m], [0], 1, FabricConfig(fmt=FMT, desc_words=19))
    with pytest.raises(ValueError, match="fan-in 100, the fabric takes at most 64"):
        plan_memory([m], [0], 1, FabricConfig(fmt=FMT, max_fan_in=64))
    with pytest.raises(ValueError, match="averages at most"):
        plan_memory([_layer(rng, 4, 2, 2)], [0], 1, FabricConfig(fmt=FMT, max_copies_log2=1))
    for bad in (-1, 32, 1.5):
        with pytest.raises(ValueError, match="adc_shift of layer 0"):
            plan_memory([m], [bad], 1, FabricConfig(fmt=FMT))
    with pytest.raises(ValueError, match="copies"):
        plan_memory([m], [0], 0, FabricConfig(fmt=FMT))
    with pytest.raises(ValueError, match="1 layers but 2 ADC shifts"):
        plan_memory([m], [0, 0], 1, FabricConfig(fmt=FMT))
    with pytest.raises(ValueError, match="another format"):
        plan_memory([m], [0], 1, FabricConfig())


@pytest.mark.parametrize("kwargs,match", [
    ({"column_lanes": 3}, "column_lanes must be even"),
    ({"column_lanes": 18}, "column_lanes"),
    ({"column_lanes": True}, "column_lanes"),
    ({"vector_lanes": 5}, "vector_lanes"),
    ({"vector_lanes": 0}, "vector_lanes"),
    ({"code_words": 0}, "code_words"),
    ({"desc_words": 1 << 25}, "desc_words"),
    ({"max_fan_in": 65536}, "max_fan_in"),
    ({"max_copies_log2": 16}, "max_copies_log2"),
    ({"fmt": "lenet"}, "fmt must be an EmulationFormat"),
    ({"fmt": EmulationFormat(code_bits=17)}, "code_bits"),
    ({"fmt": EmulationFormat(input_bits=9), "vector_lanes": 1}, "input_bits"),
])
def test_fabric_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FabricConfig(**kwargs)


def test_fabric_config_plain_data():
    cfg = FabricConfig(fmt=FMT, column_lanes=8)
    assert cfg.words_per_code_word == 4
    d = cfg.to_dict()
    assert d["column_lanes"] == 8 and d["fmt"] == FMT.to_dict()


def test_format_word_round_trips_through_cap_format():
    fmt = EmulationFormat(rows=32, cols=32, slice_bits=3, n_slices=3, input_bits=6, code_bits=12, code_frac=5, adc_bits=10)
    cfg = FabricConfig(fmt=fmt, max_copies_log2=5)
    back, k = FabricConfig.format_from_word(cfg.format_word(), 32)
    assert back == fmt and k == 5
    assert FabricConfig().format_word() < 1 << lookup("CAP_FORMAT").width
