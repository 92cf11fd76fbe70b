"""Host driver over register map 2.0: the model backend's register/stream rules and the Accelerator."""

from __future__ import annotations

import numpy as np
import pytest

from remeco.host import driver
from remeco.host.driver import BACKENDS, Accelerator, AcceleratorError, BusError, ModelDevice, make_device
from remeco.models.chip import ChipParams
from remeco.models.emulation import EmulationFormat
from remeco.models.fabric import (
    FabricConfig,
    descriptor_words,
    layer_code_words,
    memory_fault_map,
    output_words,
    pack_codes,
    pack_faults,
    pack_inputs,
    run_layer,
    unpack_outputs,
)
from remeco.models.fault_lfsr import THRESHOLD_ONE, apply_fault_map, rate_threshold
from remeco.models.mapping import map_layer
from remeco.models.network import ProgrammedNetwork, calibrate_adc_shifts, infer, map_network, program_network
from remeco.models.redundancy import RedundancyPlan, make_plan
from remeco.rtl import regmap
from remeco.rtl.regmap import REGISTERS, lookup

# -- the model backend on its own: a small fabric and one hand-loaded layer ------------------

SMALL_FMT = EmulationFormat(rows=8, cols=8)
SMALL = FabricConfig(fmt=SMALL_FMT, column_lanes=4, vector_lanes=2, code_words=32, desc_words=16, max_fan_in=20)


def _w(dev, name, value):
    dev.write(lookup(name).offset, value)


def _r(dev, name):
    return dev.read(lookup(name).offset)


def _status(dev):
    word = _r(dev, "STATUS")
    return {f.name for f in lookup("STATUS").fields if word & f.mask}


def _load(dev, target, words, address):
    _w(dev, "STREAM_TARGET", target)
    _w(dev, "LOAD_ADDRESS", address)
    dev.stream(np.asarray(words, dtype=np.uint32))
    _w(dev, "STREAM_TARGET", regmap.STREAM_INPUTS)


@pytest.fixture()
def layer():
    """A K=5, N=3 layer (P=6: two blocks of 4 lanes, 10 code words) loaded at code 0, descriptors 0."""
    rng = np.random.default_rng(0)
    m = map_layer(rng.integers(-128, 128, size=(5, 3)), SMALL_FMT)
    codes = (m.target_levels() << SMALL_FMT.code_frac) + rng.integers(-20, 21, size=m.target_levels().shape)
    dev = ModelDevice(SMALL)
    words = layer_code_words(codes, m, SMALL)
    _load(dev, regmap.STREAM_CODES, pack_codes(words, SMALL), 0)
    _load(dev, regmap.STREAM_DESCRIPTORS, descriptor_words(m), 0)
    x = rng.integers(0, 256, size=(5, 5))
    return dev, m, words, x


def _start(dev, m, vectors, **regs):
    values = {"LAYER_FAN_IN": m.fan_in, "LAYER_COLUMNS": m.physical_columns, "LAYER_NEURONS": m.neurons,
              "LAYER_CODE_BASE": 0, "LAYER_DESC_BASE": 0, "LAYER_ADC_SHIFT": 3, "LAYER_VECTORS": vectors}
    values.update(regs)
    for name, v in values.items():
        _w(dev, name, v)
    _w(dev, "CONTROL", 1)


def _expected(m, words, x, adc_shift=3, faults=None, code_on=0, code_off=0):
    return run_layer(x, words, faults, descriptor_words(m), m.neurons, adc_shift, SMALL, code_on, code_off)


def test_identification_capacities_and_reset_values():
    dev = ModelDevice(SMALL)
    assert _r(dev, "ID") == regmap.ID_VALUE and _r(dev, "VERSION") == regmap.VERSION_VALUE
    caps = {"CAP_CODE_WORDS": 32, "CAP_DESC_WORDS": 16, "CAP_COLUMN_LANES": 4, "CAP_VECTOR_LANES": 2,
            "CAP_MAX_FAN_IN": 20, "CAP_TILE_ROWS": 8}
    assert {name: _r(dev, name) for name in caps} == caps
    for reg in REGISTERS:
        if reg.access == "rw":
            assert dev.read(reg.offset) == reg.reset, reg.name
    assert _r(dev, "FAULT_SEED") == 1 and _status(dev) == set() and _r(dev, "ERROR_CODE") == 0
    assert (_r(dev, "CYCLES_LO"), _r(dev, "CYCLES_HI")) == (0, 0)


def test_rw_registers_keep_their_implemented_bits_and_commands_self_clear():
    dev = ModelDevice(SMALL)
    for reg in REGISTERS:
        if reg.access == "rw" and reg.name != "FAULT_CONTROL":
            dev.write(reg.offset, 0xFFFFFFFF)
            assert dev.read(reg.offset) == reg.mask, reg.name
    assert _r(dev, "LAYER_ADC_SHIFT") == 31 and _r(dev, "FAULT_RATE") == 0x1FFFF
    _w(dev, "FAULT_CONTROL", 0b111)  # GENERATE and CLEAR read back 0, ENABLE stays
    assert _r(dev, "FAULT_CONTROL") == lookup("FAULT_CONTROL").field("ENABLE").mask
    _w(dev, "CONTROL", 0b10)
    assert _r(dev, "CONTROL") == 0  # write-only: OKAY with 0


def test_slverr_for_unknown_offsets_and_read_only_writes():
    dev = ModelDevice(SMALL)
    used = {r.offset for r in REGISTERS}
    for offset in [o for o in range(0, 1 << regmap.ADDR_BITS) if o not in used][:40] + [0x100, 0x1000]:
        with pytest.raises(BusError, match="SLVERR"):
            dev.read(offset)
        with pytest.raises(BusError, match="SLVERR"):
            dev.write(offset, 0)
    for name in ("ID", "STATUS", "ERROR_CODE", "CAP_CODE_WORDS", "CYCLES_LO"):
        before = _r(dev, name)
        with pytest.raises(BusError, match=f"SLVERR: register {name} .* read-only"):
            _w(dev, name, 0xF)
        assert _r(dev, name) == before  # ignored
    with pytest.raises(ValueError, match="value"):
        _w(dev, "LAYER_VECTORS", 1 << 32)
    with pytest.raises(ValueError, match="value"):
        _w(dev, "LAYER_VECTORS", -1)


def test_a_run_returns_run_layer_outputs_and_latches_its_registers(layer):
    dev, m, words, x = layer
    _start(dev, m, len(x))
    assert _status(dev) == {"BUSY"}
    for name in ("LAYER_NEURONS", "LAYER_ADC_SHIFT", "LAYER_CODE_BASE"):  # latched: changing them is harmless
        _w(dev, name, 7)
    out = dev.stream(pack_inputs(x, SMALL), output_words(len(x), m.neurons, SMALL))
    assert out.dtype == np.uint32
    np.testing.assert_array_equal(unpack_outputs(out, len(x), m.neurons, SMALL), _expected(m, words, x))
    assert _status(dev) == {"DONE"}
    assert (_r(dev, "CYCLES_LO"), _r(dev, "CYCLES_HI")) == (0, 0)  # no clock in the model


def test_a_run_may_take_its_words_over_several_rounds(layer):
    dev, m, words, x = layer
    _start(dev, m, len(x))
    inputs, n_out = pack_inputs(x, SMALL), output_words(len(x), m.neurons, SMALL)
    first = dev.stream(inputs[:3])  # not even one group of 2 vectors (5 words) yet
    second = dev.stream(inputs[3:12], 2)
    assert len(first) == 0 and len(second) == 2
    assert _status(dev) == {"BUSY"}
    rest = dev.stream(inputs[12:], n_out - 3)
    assert _status(dev) == {"BUSY"}  # one output word still waits for its receive
    last = dev.stream(np.zeros(0, dtype=np.uint32), 1)
    assert _status(dev) == {"DONE"}
    got = unpack_outputs(np.concatenate([second, rest, last]), len(x), m.neurons, SMALL)
    np.testing.assert_array_equal(got, _expected(m, words, x))


def test_stream_rounds_that_cannot_complete_time_out_naming_the_cause(layer):
    dev, m, _, x = layer
    with pytest.raises(TimeoutError, match="held off.*STREAM_TARGET=0 and no run is busy"):
        dev.stream(pack_inputs(x, SMALL))
    with pytest.raises(TimeoutError, match="S2MM.*0 of 4.*no run is busy"):
        dev.stream(np.zeros(0, dtype=np.uint32), 4)
    _start(dev, m, len(x))
    inputs, n_out = pack_inputs(x, SMALL), output_words(len(x), m.neurons, SMALL)
    with pytest.raises(TimeoutError, match="S2MM.*12 of 18.*still waits for 5 input words"):
        dev.stream(inputs[:-5], n_out)  # two groups in: their 12 words go to the failed round
    with pytest.raises(TimeoutError, match="2 of 7 words held off.*took the 5 input words"):
        dev.stream(np.concatenate([inputs[-5:], [1, 2]]).astype(np.uint32), 0)
    with pytest.raises(TimeoutError, match="S2MM.*6 of 18"):
        dev.stream(np.zeros(0, dtype=np.uint32), n_out)  # the last group's outputs
    assert _status(dev) == {"DONE"}
    with pytest.raises(ValueError, match="words"):
        dev.stream(np.zeros((2, 2), dtype=np.uint32))
    with pytest.raises(ValueError, match="receive"):
        dev.stream(np.zeros(0, dtype=np.uint32), -1)


def test_descriptors_that_never_close_the_run_leave_it_busy(layer):
    dev, m, _, x = layer
    desc = descriptor_words(m) & ~np.uint32(1 << 10)  # no "end": no neuron is ever emitted
    _load(dev, regmap.STREAM_DESCRIPTORS, desc, 0)
    _start(dev, m, len(x))
    with pytest.raises(TimeoutError, match="stays busy.*close 0 neurons, the run expects 3"):
        dev.stream(pack_inputs(x, SMALL), output_words(len(x), m.neurons, SMALL))
    assert _status(dev) == {"BUSY"}
    _w(dev, "CONTROL", 0b10)
    assert _status(dev) == set()


@pytest.mark.parametrize("name,value", [
    ("LAYER_FAN_IN", 0), ("LAYER_FAN_IN", 21), ("LAYER_COLUMNS", 0), ("LAYER_NEURONS", 0),
    ("LAYER_VECTORS", 0), ("LAYER_CODE_BASE", 23), ("LAYER_DESC_BASE", 11), ("STREAM_TARGET", 1),
])
def test_start_checks_the_run_description(layer, name, value):
    dev, m, _, x = layer
    _w(dev, name, value)
    regs = {name: value} if name.startswith("LAYER_") else {}
    _start(dev, m, len(x), **regs)
    assert _status(dev) == {"ERROR"} and _r(dev, "ERROR_CODE") == 1  # nothing started
    _w(dev, "STREAM_TARGET", 0)
    _start(dev, m, len(x), LAYER_CODE_BASE=22, LAYER_DESC_BASE=10)  # the last words that fit
    assert _status(dev) == {"BUSY"} and _r(dev, "ERROR_CODE") == 0  # START clears ERROR


def test_commands_while_busy_are_ignored_with_error_3(layer):
    dev, m, words, x = layer
    _start(dev, m, len(x))
    dev.fault_memory[:] = 1
    for command in (("CONTROL", 1), ("FAULT_CONTROL", 1), ("FAULT_CONTROL", 2)):
        _w(dev, *command)
        assert _status(dev) == {"BUSY", "ERROR"} and _r(dev, "ERROR_CODE") == 3
    assert (dev.fault_memory == 1).all()
    out = dev.stream(pack_inputs(x, SMALL), output_words(len(x), m.neurons, SMALL))
    np.testing.assert_array_equal(unpack_outputs(out, len(x), m.neurons, SMALL), _expected(m, words, x))
    assert _status(dev) == {"DONE", "ERROR"}  # the error stays until START or SOFT_RESET


def test_fault_generator_and_clear():
    dev = ModelDevice(SMALL)
    _load(dev, regmap.STREAM_FAULTS, np.full(32, 0x55555555, dtype=np.uint32), 0)  # every entry 1
    seed, rate, on = 99, rate_threshold(0.3), rate_threshold(0.4)
    for name, v in (("FAULT_SEED", seed), ("FAULT_RATE", rate), ("FAULT_ON_FRACTION", on), ("FAULT_WORDS", 10)):
        _w(dev, name, v)
    _w(dev, "FAULT_CONTROL", 1)
    np.testing.assert_array_equal(dev.fault_memory[:10], memory_fault_map(seed, rate, on, 10, SMALL))
    assert (dev.fault_memory[10:] == 1).all()  # beyond FAULT_WORDS: untouched
    _w(dev, "FAULT_CONTROL", 0b11)  # CLEAR together with GENERATE: the whole memory is cleared
    assert not dev.fault_memory.any()
    _w(dev, "FAULT_SEED", 0)  # acts as 1
    _w(dev, "FAULT_CONTROL", 1)
    np.testing.assert_array_equal(dev.fault_memory[:10], memory_fault_map(1, rate, on, 10, SMALL))
    _w(dev, "FAULT_RATE", 0x1FFFF)  # thresholds above 65536 mean "always"
    _w(dev, "FAULT_ON_FRACTION", THRESHOLD_ONE + 5)
    _w(dev, "FAULT_CONTROL", 1)
    assert (dev.fault_memory[:10] == 3).all()
    assert _status(dev) == set()
    _w(dev, "FAULT_WORDS", 33)
    _w(dev, "FAULT_CONTROL", 1)
    assert _status(dev) == {"ERROR"} and _r(dev, "ERROR_CODE") == 1


def test_enable_applies_the_map_with_sign_extended_stuck_codes(layer):
    dev, m, words, x = layer
    n_out = output_words(len(x), m.neurons, SMALL)
    faults = np.random.default_rng(5).choice(np.array([0, 1, 3]), size=words.shape)
    _load(dev, regmap.STREAM_FAULTS, pack_faults(faults, SMALL), 0)
    bits = SMALL_FMT.code_bits
    _w(dev, "CODE_ON", (0x5A5 << bits) | ((1 << bits) - 7))  # -7 in the low code_bits, junk above
    _w(dev, "CODE_OFF", (-3) & 0xFFFFFFFF)
    _start(dev, m, len(x))  # ENABLE off: the map is not applied
    clean = unpack_outputs(dev.stream(pack_inputs(x, SMALL), n_out), len(x), m.neurons, SMALL)
    np.testing.assert_array_equal(clean, _expected(m, words, x))
    _w(dev, "FAULT_CONTROL", 4)
    _start(dev, m, len(x))
    faulty = unpack_outputs(dev.stream(pack_inputs(x, SMALL), n_out), len(x), m.neurons, SMALL)
    np.testing.assert_array_equal(faulty, _expected(m, words, x, faults=faults, code_on=-7, code_off=-3))
    assert not np.array_equal(faulty, clean)


def test_load_address_increments_per_memory_word_and_code_words_assemble():
    dev = ModelDevice(SMALL)  # 4 lanes: 2 stream words per code word
    codes = np.arange(-12, 12).reshape(6, 4)
    stream = pack_codes(codes, SMALL)
    _w(dev, "STREAM_TARGET", regmap.STREAM_CODES)
    _w(dev, "LOAD_ADDRESS", 3)
    dev.stream(stream[:5])
    assert _r(dev, "LOAD_ADDRESS") == 5  # two complete words, one half pending
    np.testing.assert_array_equal(dev.code_memory[3:5], codes[:2])
    assert not dev.code_memory[5].any()
    dev.stream(stream[5:6])  # completes the third word
    assert _r(dev, "LOAD_ADDRESS") == 6
    np.testing.assert_array_equal(dev.code_memory[5], codes[2])
    dev.stream(stream[6:7])
    _w(dev, "LOAD_ADDRESS", 10)  # restarts the assembly: the pending half is dropped
    dev.stream(stream[8:10])
    np.testing.assert_array_equal(dev.code_memory[10], codes[4])
    assert not dev.code_memory[6].any() and _r(dev, "LOAD_ADDRESS") == 11
    _w(dev, "STREAM_TARGET", regmap.STREAM_FAULTS)
    _w(dev, "LOAD_ADDRESS", 2)
    dev.stream(np.array([0b11_01_00_11, 0b01], dtype=np.uint32))  # one word per memory word
    np.testing.assert_array_equal(dev.fault_memory[2:4], [[3, 0, 1, 3], [1, 0, 0, 0]])
    assert _r(dev, "LOAD_ADDRESS") == 4
    _w(dev, "STREAM_TARGET", regmap.STREAM_DESCRIPTORS)
    dev.stream(np.array([7, 8, 9], dtype=np.uint32))
    np.testing.assert_array_equal(dev.desc_memory[4:7], [7, 8, 9])
    assert _r(dev, "LOAD_ADDRESS") == 7 and _status(dev) == set()


@pytest.mark.parametrize("target,per_word,depth", [
    (regmap.STREAM_CODES, 2, 32), (regmap.STREAM_FAULTS, 1, 32), (regmap.STREAM_DESCRIPTORS, 1, 16),
])
def test_words_beyond_a_memory_are_dropped_with_error_2(target, per_word, depth):
    dev = ModelDevice(SMALL)
    _w(dev, "STREAM_TARGET", target)
    _w(dev, "LOAD_ADDRESS", depth - 1)
    dev.stream(np.full(2 * per_word, 0x00050005, dtype=np.uint32))
    assert _status(dev) == {"ERROR"} and _r(dev, "ERROR_CODE") == 2
    assert _r(dev, "LOAD_ADDRESS") == depth + 1
    memory = {regmap.STREAM_CODES: dev.code_memory, regmap.STREAM_FAULTS: dev.fault_memory,
              regmap.STREAM_DESCRIPTORS: dev.desc_memory}[target]
    assert memory[depth - 1].any() and memory[:depth - 1].sum() == 0


def test_soft_reset_aborts_and_clears_stream_state_but_keeps_memories_and_registers(layer):
    dev, m, words, x = layer
    _w(dev, "FAULT_CONTROL", 4)
    _w(dev, "STREAM_TARGET", regmap.STREAM_CODES)
    _w(dev, "LOAD_ADDRESS", 20)
    dev.stream(np.array([0x00010001], dtype=np.uint32))  # half a code word pending
    _w(dev, "STREAM_TARGET", 0)
    _start(dev, m, len(x))
    dev.stream(pack_inputs(x, SMALL)[:5], 2)  # one group in, part of its outputs out
    _w(dev, "LAYER_FAN_IN", 0)
    _w(dev, "CONTROL", 1)  # error 3 while busy
    _w(dev, "CONTROL", 0b11)  # SOFT_RESET wins over START in the same write
    assert _status(dev) == set() and _r(dev, "ERROR_CODE") == 0
    with pytest.raises(TimeoutError, match="held off"):  # the run's stream state is gone
        dev.stream(pack_inputs(x, SMALL)[5:])
    with pytest.raises(TimeoutError, match="S2MM"):
        dev.stream(np.zeros(0, dtype=np.uint32), 1)
    assert (_r(dev, "FAULT_CONTROL"), _r(dev, "LOAD_ADDRESS"), _r(dev, "LAYER_FAN_IN")) == (4, 20, 0)
    _w(dev, "STREAM_TARGET", regmap.STREAM_CODES)
    dev.stream(pack_codes(np.full((1, 4), 9), SMALL))  # the pending half was dropped: a whole word
    np.testing.assert_array_equal(dev.code_memory[20], [9, 9, 9, 9])
    np.testing.assert_array_equal(dev.code_memory[:10], words)  # the memories keep their contents


def test_closed_device_refuses_access():
    dev = ModelDevice(SMALL)
    dev.close()
    with pytest.raises(RuntimeError, match="closed"):
        _r(dev, "ID")
    with pytest.raises(ValueError, match="cfg"):
        ModelDevice("small")


# -- the Accelerator on the trained LeNet-5 -----------------------------------------------

FMT = EmulationFormat(rows=64, cols=64)
CFG = FabricConfig(fmt=FMT)


def _mixed_plan(sizes):
    """Per-slice copies 0..2 (MSB-style [0, 1] rows included) for every neuron of every layer."""
    rng = np.random.default_rng(11)
    ks = tuple(rng.integers(0, 3, size=(n, FMT.n_slices)) for n in sizes)
    ks[-1][:] = [0, 1]
    return RedundancyPlan("mixed", ks)


@pytest.fixture(scope="module")
def setup(lenet5_small, mnist5k):
    _, net = lenet5_small
    train, test = mnist5k
    sizes = [layer.out_features for layer in net.layers]
    shifts = calibrate_adc_shifts(net, FMT, train.images[:100])
    plans = {"base": make_plan("base", sizes), "layer_averaging": make_plan("layer_averaging", sizes),
             "mixed": _mixed_plan(sizes), "committee": make_plan("committee", sizes)}
    nets = {}
    for name, plan in plans.items():
        mapped = map_network(net, plan, FMT, shifts)
        nets[name] = (mapped, program_network(mapped, ChipParams(), seed=0, instance=1))
    return nets, test.images[:12]


@pytest.fixture()
def acc(setup):
    nets, _ = setup
    a = Accelerator("model", cfg=CFG)
    a.load(*nets["base"])
    return a


def _faulty_chip(chip, maps, code_on, code_off):
    codes = tuple(
        tuple(apply_fault_map(c, f, code_on, code_off) for c, f in zip(copy_codes, copy_maps))
        for copy_codes, copy_maps in zip(chip.codes, maps)
    )
    return ProgrammedNetwork(chip.copies, codes)


@pytest.mark.parametrize("plan", ["base", "layer_averaging", "mixed", "committee"])
def test_model_backend_is_bit_exact_with_the_emulation_executor(setup, plan):
    nets, images = setup
    mapped, chip = nets[plan]
    with Accelerator("model", cfg=CFG) as a:
        a.load(mapped, chip)
        got = a.infer(images, batch_size=5)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, infer(mapped, images, executor="emulation", programmed=chip))
        assert a.cycles == 0  # the model has no clock
        copies = 1 << mapped.plan.committee_log2
        assert len(a.plan.layers) == copies and a.plan.code_words <= CFG.code_words
    with pytest.raises(RuntimeError, match="closed"):
        a.device.read(0)


@pytest.mark.parametrize("plan", ["base", "committee"])
def test_injected_faults_are_the_maps_fault_maps_reports(setup, plan):
    nets, images = setup
    mapped, chip = nets[plan]
    a = Accelerator("model", cfg=CFG)
    a.load(mapped, chip)
    clean = a.infer(images)
    a.inject_faults(seed=7, rate=0.05, on_fraction=0.5)
    faulty = a.infer(images)
    assert not np.array_equal(faulty, clean)
    maps = a.fault_maps(seed=7, rate=0.05, on_fraction=0.5)
    code_on = (FMT.levels - 1) << FMT.code_frac
    want = infer(mapped, images, executor="emulation", programmed=_faulty_chip(chip, maps, code_on, 0))
    np.testing.assert_array_equal(faulty, want)
    cells = np.concatenate([f.ravel() for row in maps for f in row])
    assert set(np.unique(cells)) == {0, 1, 3}
    a.inject_faults(seed=8, rate=0.05, code_on=-5, code_off=FMT.code_max)
    maps8 = a.fault_maps(seed=8, rate=0.05)
    want8 = infer(mapped, images, executor="emulation", programmed=_faulty_chip(chip, maps8, -5, FMT.code_max))
    np.testing.assert_array_equal(a.infer(images), want8)
    a.clear_faults()
    np.testing.assert_array_equal(a.infer(images), clean)


def test_fault_maps_place_padding_and_rates(acc, setup):
    nets, _ = setup
    mapped, _ = nets["base"]
    maps = acc.fault_maps(seed=3, rate=0.1, on_fraction=0.25)
    for m, f in zip(mapped.layers, maps[0]):
        assert f.shape == (m.row_tiles, m.col_tiles, FMT.rows, FMT.cols) and f.dtype == np.uint8
        full = f.transpose(0, 2, 1, 3).reshape(m.row_tiles * FMT.rows, -1)
        assert not full[m.fan_in :].any() and not full[:, m.physical_columns :].any()  # padding: healthy
    used = np.concatenate([
        f.transpose(0, 2, 1, 3).reshape(m.row_tiles * FMT.rows, -1)[: m.fan_in, : m.physical_columns].ravel()
        for m, f in zip(mapped.layers, maps[0])
    ])
    assert 0.08 < np.mean(used > 0) < 0.12
    assert 0.2 < np.mean(used == 3) / np.mean(used > 0) < 0.3


def test_load_fault_maps_round_trip(acc, setup):
    nets, images = setup
    mapped, chip = nets["base"]
    acc.inject_faults(seed=3, rate=0.1)
    injected = acc.infer(images)
    maps = acc.fault_maps(seed=3, rate=0.1)
    acc.clear_faults()
    acc.load_fault_maps(maps)
    np.testing.assert_array_equal(acc.infer(images), injected)
    rng = np.random.default_rng(1)
    own = [[rng.choice(np.array([0, 1, 3]), p=[0.9, 0.05, 0.05], size=f.shape) for f in maps[0]]]
    acc.load_fault_maps(own, code_on=7, code_off=-2)
    want = infer(mapped, images, executor="emulation", programmed=_faulty_chip(chip, own, 7, -2))
    np.testing.assert_array_equal(acc.infer(images), want)
    bad = [list(own[0])]
    bad[0][1] = np.full_like(own[0][1], 2)
    with pytest.raises(ValueError, match=r"maps\[0\]\[1\] entries"):
        acc.load_fault_maps(bad)
    bad[0][1] = own[0][1][:, :, :4]
    with pytest.raises(ValueError, match=r"maps\[0\]\[1\] must be an integer array of shape"):
        acc.load_fault_maps(bad)
    with pytest.raises(ValueError, match="maps must be maps"):
        acc.load_fault_maps(own * 2)


def test_run_layer_splits_large_batches_into_runs(acc, setup, monkeypatch):
    nets, _ = setup
    mapped, chip = nets["base"]
    m = mapped.layers[1]
    x = np.random.default_rng(2).integers(0, 256, size=(37, m.fan_in)).astype(np.uint8)
    whole = acc.run_layer(0, 1, x)
    monkeypatch.setattr(driver, "MAX_RUN_WORDS", 4 * m.fan_in)  # 4 groups of 4 vectors per run
    np.testing.assert_array_equal(acc.run_layer(0, 1, x), whole)
    assert acc.run_layer(0, 1, x[:0]).shape == (0, m.neurons)


def test_waits_time_out_naming_what_they_waited_for(setup):
    class NeverDone(ModelDevice):
        """STATUS never shows DONE or the end of the fault generator once ``stuck`` is set."""

        stuck = False

        def read(self, offset):
            if self.stuck and offset == lookup("STATUS").offset:
                return 0b1001  # BUSY | GEN_BUSY
            return super().read(offset)

    nets, images = setup
    dev = NeverDone(CFG)
    a = Accelerator(dev, timeout=0.05)
    a.load(*nets["base"])
    dev.stuck = True
    with pytest.raises(TimeoutError, match="0.05 s waiting for the run of copy 0 layer 0"):
        a.infer(images[:1])
    with pytest.raises(TimeoutError, match="fault generator"):
        a.inject_faults(seed=1, rate=0.01)
    with pytest.raises(TimeoutError, match="fault-map clear"):
        a.clear_faults()


def test_a_run_that_never_closes_times_out_through_the_stream(acc):
    dev = acc.device
    place = acc.plan.layers[0][2]
    _w(dev, "STREAM_TARGET", regmap.STREAM_DESCRIPTORS)
    _w(dev, "LOAD_ADDRESS", place.desc_base + place.columns - 1)
    dev.stream(np.zeros(1, dtype=np.uint32))  # the last neuron is never closed
    _w(dev, "STREAM_TARGET", 0)
    with pytest.raises(TimeoutError, match="copy 0 layer 2.*stays busy"):
        acc.run_layer(0, 2, np.zeros((3, place.fan_in), dtype=np.uint8))
    acc.reset()
    assert _status(dev) == set()


def test_rejected_commands_raise_accelerator_error_with_the_code(acc):
    acc.device.write(lookup("STREAM_TARGET").offset, regmap.STREAM_CODES)
    with pytest.raises(AcceleratorError, match="ERROR_CODE=1 \\(bad run description\\)") as info:
        acc.run_layer(0, 0, np.zeros((1, 25), dtype=np.uint8))
    assert info.value.code == 1


def test_load_errors_name_what_does_not_fit(setup):
    nets, _ = setup
    mapped, chip = nets["committee"]
    with pytest.raises(ValueError, match="code-memory words, the fabric has 6000"):
        Accelerator("model", cfg=FabricConfig(fmt=FMT, code_words=6000)).load(mapped, chip)
    with pytest.raises(ValueError, match="descriptor words"):
        Accelerator("model", cfg=FabricConfig(fmt=FMT, desc_words=500)).load(mapped, chip)
    with pytest.raises(ValueError, match="fan-in 256"):
        Accelerator("model", cfg=FabricConfig(fmt=FMT, max_fan_in=200)).load(mapped, chip)
    with pytest.raises(ValueError, match="mapped: the network's numeric format differs.*CAP_FORMAT.*rows 64 vs 128"):
        Accelerator("model").load(mapped, chip)
    narrow = FabricConfig(fmt=EmulationFormat(rows=64, input_bits=4), vector_lanes=8)
    with pytest.raises(ValueError, match="mapped: the network's numeric format differs.*input_bits 8 vs 4"):
        Accelerator("model", cfg=narrow).load(mapped, chip)
    base_mapped, _ = nets["base"]
    with pytest.raises(ValueError, match="programmed has copies of \\[5, 5\\] layers"):
        Accelerator("model", cfg=CFG).load(base_mapped, chip)


def test_bad_arguments_name_the_argument(setup, acc):
    nets, images = setup
    mapped, chip = nets["base"]
    cases = [
        (lambda: acc.infer(images.astype(np.int16)), "images"),
        (lambda: acc.infer(images[:, :, :20]), "images"),
        (lambda: acc.infer(images, batch_size=0), "batch_size"),
        (lambda: acc.inject_faults(seed=-1, rate=0.1), "seed"),
        (lambda: acc.inject_faults(seed=1, rate=1.5), "rate"),
        (lambda: acc.inject_faults(seed=1, rate=0.1, on_fraction=-0.1), "on_fraction"),
        (lambda: acc.inject_faults(seed=1, rate=0.1, code_on=1 << 20), "code_on"),
        (lambda: acc.inject_faults(seed=1, rate=0.1, code_off=1.5), "code_off"),
        (lambda: acc.fault_maps(seed=1 << 32, rate=0.1), "seed"),
        (lambda: acc.load("lenet", chip), "mapped"),
        (lambda: acc.load(mapped, None), "programmed"),
        (lambda: acc.run_layer(0, 0, np.zeros((2, 3), dtype=np.uint8)), "rows"),
        (lambda: acc.run_layer(0, 0, np.full((2, 25), 256)), "rows"),
        (lambda: acc.run_layer(1, 0, np.zeros((2, 25), dtype=np.uint8)), "copy"),
        (lambda: acc.run_layer(0, 5, np.zeros((2, 25), dtype=np.uint8)), "layer"),
        (lambda: Accelerator("model", timeout=0), "timeout"),
        (lambda: Accelerator(ModelDevice(CFG), cfg=CFG), "device_kwargs"),
        (lambda: Accelerator(object()), "device must implement"),
        (lambda: make_device("fpga"), "backend must be one of"),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match):
            call()
    assert BACKENDS == ("model", "sim", "board")


def test_infer_before_load_is_an_error():
    a = Accelerator("model", cfg=CFG)
    with pytest.raises(RuntimeError, match="load"):
        a.infer(np.zeros((1, 1, 28, 28), dtype=np.uint8))
    with pytest.raises(RuntimeError, match="load"):
        a.inject_faults(seed=1, rate=0.1)


def test_config_comes_from_the_capacity_registers():
    cfg = FabricConfig(fmt=EmulationFormat(rows=32), column_lanes=8, vector_lanes=2, code_words=100,
                       desc_words=50, max_fan_in=300)
    a = Accelerator("model", cfg=cfg)
    got = a.config
    assert (got.column_lanes, got.vector_lanes, got.code_words, got.desc_words, got.max_fan_in, got.fmt.rows) == (
        8, 2, 100, 50, 300, 32)


def test_version_and_id_mismatch_are_clear_errors(monkeypatch):
    monkeypatch.setattr(regmap, "VERSION_VALUE", 0x0001_0003)  # what the (model) device reports
    with pytest.raises(RuntimeError, match="register map 1.3, this driver speaks 2.x"):
        Accelerator("model")
    monkeypatch.setattr(regmap, "VERSION_VALUE", 0x0002_0007)  # a newer minor is fine
    Accelerator("model")
    monkeypatch.setattr(regmap, "ID_VALUE", 0x12345678)
    with pytest.raises(RuntimeError, match="device ID is 0x12345678.*not a remeco accelerator"):
        Accelerator("model")
