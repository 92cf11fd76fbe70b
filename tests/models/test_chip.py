import math

import numpy as np
import pytest

from remeco.models.chip import ChipParams, program_layer, wire_resistances
from remeco.models.device import DeviceParams
from remeco.models.emulation import EmulationFormat
from remeco.models.mapping import map_layer


@pytest.fixture(scope="module")
def layer():
    fmt = EmulationFormat(rows=32, cols=32)
    w = np.random.default_rng(0).integers(-128, 128, (50, 20))
    return map_layer(w, fmt, np.r_[np.ones(4, int), np.zeros(16, int)])


def test_ideal_chip_gives_exact_level_codes(layer):
    prog = program_layer(layer, ChipParams.ideal(), seed=1, instance=0)
    codes = prog.codes(DeviceParams(), layer.fmt)
    np.testing.assert_array_equal(codes, layer.target_levels() << layer.fmt.code_frac)
    assert not prog.fault_map.any()


def test_chip_instance_is_a_function_of_seed_and_instance_only(layer):
    p = ChipParams()
    a = program_layer(layer, p, seed=3, instance=5, layer=2)
    b = program_layer(layer, p, seed=3, instance=5, layer=2)
    np.testing.assert_array_equal(a.transfer, b.transfer)
    np.testing.assert_array_equal(a.fault_map, b.fault_map)
    for other in (dict(seed=3, instance=6, layer=2), dict(seed=4, instance=5, layer=2), dict(seed=3, instance=5, layer=1)):
        c = program_layer(layer, p, **other)
        assert not np.array_equal(a.fault_map, c.fault_map)
    # wire resistance belongs to the instance, shared by its layers
    c = program_layer(layer, p, seed=3, instance=5, layer=0)
    assert (a.r_word_line, a.r_bit_line) == (c.r_word_line, c.r_bit_line)


def test_wire_resistance_distribution_matches_the_paper():
    p = ChipParams()
    n = 4000
    r = np.array([wire_resistances(p, seed=0, instance=i) for i in range(n)])
    # N(2, sigma^2 = 0.5): 5-sigma bounds on the sample mean and variance
    se_mean = math.sqrt(0.5 / (2 * n))
    assert abs(r.mean() - 2.0) < 5 * se_mean
    se_var = 0.5 * math.sqrt(2 / (2 * n - 1))
    assert abs(r.var(ddof=1) - 0.5) < 5 * se_var
    assert np.corrcoef(r[:, 0], r[:, 1])[0, 1] < 5 / math.sqrt(n)
    assert wire_resistances(p.with_(wire_resistance=1.5), seed=0, instance=0) == (1.5, 1.5)


def test_ir_drop_attenuates_and_grows_with_wire_resistance(layer):
    base = ChipParams.ideal()
    g = program_layer(layer, base, seed=0, instance=0).transfer
    drops = []
    for r in (1.0, 4.0):
        t = program_layer(layer, base.with_(wire_resistance=r, ir_drop="exact"), seed=0, instance=0).transfer
        assert np.all(t <= g * (1 + 1e-12))
        drops.append(np.mean(1 - t.sum() / g.sum()))
    assert 0 < drops[0] < drops[1]


def test_stuck_cells_take_the_extreme_conductances(layer):
    p = ChipParams.ideal().with_(stuck_at_rate=0.2)
    prog = program_layer(layer, p, seed=0, instance=0)
    dev = p.device
    np.testing.assert_allclose(prog.conductance[prog.fault_map == 1], dev.g_on)
    np.testing.assert_allclose(prog.conductance[prog.fault_map == -1], dev.g_off)
    assert (prog.fault_map != 0).mean() == pytest.approx(0.2, abs=0.03)


@pytest.mark.parametrize(
    "field,value",
    [("stuck_at_rate", 1.5), ("stuck_on_fraction", -0.1), ("d2d_sigma", -1.0), ("wire_std", float("nan")),
     ("wire_resistance", -2.0), ("ir_drop", "spice")],
)
def test_bad_chip_params_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        ChipParams(**{field: value})


def test_level_count_mismatch_is_reported(layer):
    p = ChipParams(device=DeviceParams(levels=8))
    with pytest.raises(ValueError, match="levels"):
        program_layer(layer, p, seed=0, instance=0)
    with pytest.raises(ValueError, match="layer"):
        program_layer(layer, ChipParams(), seed=0, instance=0, layer=-1)


def test_tile_memo_gives_identical_read_only_results_and_can_be_disabled():
    from remeco.models import chip as chip_mod

    layer = map_layer(np.random.default_rng(2).integers(-128, 128, (150, 20)), EmulationFormat())
    p = ChipParams()
    chip_mod.clear_tile_cache()
    first = program_layer(layer, p, seed=0, instance=1, layer=3)
    again = program_layer(layer, p, seed=0, instance=1, layer=3)  # from the memo
    chip_mod.set_tile_cache_size(0)
    try:
        fresh = program_layer(layer, p, seed=0, instance=1, layer=3)
    finally:
        chip_mod.set_tile_cache_size(128)
    for name in ("transfer", "conductance", "fault_map", "pulses"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name))
        np.testing.assert_array_equal(getattr(fresh, name), getattr(first, name))
    assert all(not entry[0].flags.writeable for entry in chip_mod._TILE_CACHE.values())


# --------------------------------------------------------------------------- paired chip instances


def _cells(a: np.ndarray, mapped) -> np.ndarray:
    """Tile-shaped ``(rt, ct, rows, cols)`` -> ``(fan_in, physical_columns)`` of used cells."""
    rt, ct, rows, cols = a.shape
    return a.transpose(0, 2, 1, 3).reshape(rt * rows, ct * cols)[: mapped.fan_in, : mapped.physical_columns]


def _by_logical(a: np.ndarray, mapped, copy: int) -> np.ndarray:
    """Used cells of copy ``copy`` as ``(n_slices, fan_in, neurons)``, NaN where the layout has none."""
    out = np.full((mapped.fmt.n_slices, mapped.fan_in, mapped.neurons), np.nan)
    cols = np.flatnonzero(mapped.col_copy == copy)
    out[mapped.col_slice[cols], :, mapped.col_neuron[cols]] = _cells(a, mapped)[:, cols].T
    return out


PAIRED = ChipParams(stuck_at_rate=0.2)  # many faults, default D2D: differences cannot hide


@pytest.fixture(scope="module")
def plans():
    fmt = EmulationFormat(rows=32, cols=32)
    w = np.random.default_rng(5).integers(-128, 128, (70, 24))
    msb = np.zeros((24, 2), int)
    msb[::3, 1] = 1  # some neurons, MSB slice only
    return {"base": map_layer(w, fmt), "averaging": map_layer(w, fmt, 1),
            "msb": map_layer(w, fmt, msb), "four": map_layer(w, fmt, 2)}


def test_first_copy_is_the_same_device_in_every_layout(plans):
    from remeco.models.chip import layer_draws

    base = plans["base"]
    draws = {name: layer_draws(m, PAIRED, seed=4, instance=2, layer=1) for name, m in plans.items()}
    progs = {name: program_layer(m, PAIRED, seed=4, instance=2, layer=1) for name, m in plans.items()}
    for name, m in plans.items():
        assert m.physical_columns > base.physical_columns or name == "base"
        for field in ("fault_map", "rate_up", "rate_down"):
            want = _by_logical(getattr(draws["base"], field), base, 0)
            np.testing.assert_array_equal(_by_logical(getattr(draws[name], field), m, 0), want)
        np.testing.assert_array_equal(_cells(progs[name].fault_map, m), _cells(draws[name].fault_map, m))
        # the same device programmed to the same level: the same conductance and pulses
        for field in ("conductance", "pulses"):
            np.testing.assert_array_equal(_by_logical(getattr(progs[name], field), m, 0),
                                          _by_logical(getattr(progs["base"], field), base, 0))
    assert (_cells(draws["base"].fault_map, base) != 0).mean() == pytest.approx(0.2, abs=0.03)


def test_redundant_copies_have_their_own_devices_shared_between_plans(plans):
    from remeco.models.chip import layer_draws

    d = {name: layer_draws(m, PAIRED, seed=4, instance=2, layer=1) for name, m in plans.items()}
    avg, four, msb = plans["averaging"], plans["four"], plans["msb"]
    for field in ("fault_map", "rate_up"):
        c0, c1 = (_by_logical(getattr(d["averaging"], field), avg, c) for c in (0, 1))
        assert np.mean(c0 != c1) > 0.1  # copy 1 is another device
        # copy 1 of a neuron is the same device whichever plan copies it
        np.testing.assert_array_equal(_by_logical(getattr(d["four"], field), four, 1), c1)
        m1 = _by_logical(getattr(d["msb"], field), msb, 1)
        held = ~np.isnan(m1)
        assert held.sum() == msb.fan_in * 8
        np.testing.assert_array_equal(m1[held], c1[held])
        c2, c3 = (_by_logical(getattr(d["four"], field), four, c) for c in (2, 3))
        assert np.mean(c2 != c1) > 0.1 and np.mean(c3 != c2) > 0.1


def test_paired_draws_are_a_function_of_the_keys(plans):
    from remeco.models.chip import clear_tile_cache, layer_draws

    m = plans["averaging"]
    a = program_layer(m, PAIRED, seed=4, instance=2, layer=1, committee_copy=1)
    clear_tile_cache()
    b = program_layer(m, PAIRED, seed=4, instance=2, layer=1, committee_copy=1)
    for field in ("transfer", "conductance", "fault_map", "pulses"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    ref = layer_draws(m, PAIRED, seed=4, instance=2, layer=1)
    for other in (dict(committee_copy=1), dict(layer=2), dict(instance=3), dict(seed=5)):
        kw = dict(seed=4, instance=2, layer=1) | other
        assert np.mean(layer_draws(m, PAIRED, **kw).fault_map != ref.fault_map) > 0.05, other
    with pytest.raises(ValueError, match="committee_copy"):
        program_layer(m, PAIRED, seed=0, instance=0, committee_copy=-1)


def test_padding_cells_are_never_pulsed_so_only_their_stuck_state_is_drawn(plans):
    m = plans["msb"]
    prog = program_layer(m, PAIRED, seed=4, instance=2, layer=1)
    rt, ct, rows, cols = prog.pulses.shape
    pad = np.ones((rt * rows, ct * cols), dtype=bool)
    pad[: m.fan_in, : m.physical_columns] = False
    flat = {f: getattr(prog, f).transpose(0, 2, 1, 3).reshape(pad.shape) for f in ("pulses", "conductance", "fault_map")}
    healthy = pad & (flat["fault_map"] == 0)
    assert healthy.sum() > 100 and (pad & (flat["fault_map"] != 0)).sum() > 10
    assert not flat["pulses"][healthy].any()
    np.testing.assert_array_equal(flat["conductance"][healthy], PAIRED.device.g_off)


# --------------------------------------------------------------------------- outcome memo


def _plan_layers(shapes, fmt, seed):
    """Mapped layers of a network of ``shapes`` (fan_in, neurons) under plan-like layouts:
    ``{plan: (mapped layers, committee copies)}``."""
    rng = np.random.default_rng(seed)
    weights = [rng.integers(-128, 128, shape) for shape in shapes]
    layouts = {"base": lambda n: None, "averaging": lambda n: 1, "four": lambda n: 2,
               "sensitive_neuron": lambda n: (np.arange(n) % 3 == 0).astype(int),
               "msb": lambda n: np.c_[np.zeros(n, int), np.ones(n, int)]}
    plans = {name: ([map_layer(w, fmt, copies(w.shape[1])) for w in weights], 1) for name, copies in layouts.items()}
    plans["committee"] = (plans["base"][0], 2)
    return plans


def _codes(plan, params, instance):
    """Codes of every layer of every committee copy of a plan on one chip instance."""
    from remeco.models.chip import program_layers

    layers, n_copies = plan
    progs = program_layers(layers * n_copies, params, seed=7, instance=instance,
                           layers=[i for _ in range(n_copies) for i in range(len(layers))],
                           committee_copies=[c for c in range(n_copies) for _ in layers])
    return [p.codes(params.device, layers[0].fmt) for p in progs]


LENET5 = [(25, 6), (150, 16), (400, 120), (120, 84), (84, 10)]


@pytest.mark.parametrize("shapes,fmt", [(LENET5, EmulationFormat()),
                                        ([(70, 24), (24, 13), (13, 5)], EmulationFormat(rows=32, cols=32))],
                         ids=["lenet5", "small"])
def test_plans_programmed_in_any_order_give_the_codes_of_each_plan_alone(shapes, fmt):
    from remeco.models import chip as chip_mod

    params = PAIRED.with_(ir_drop="fast", wire_std=0.7)  # faults, D2D and IR-drop on
    plans = _plan_layers(shapes, fmt, seed=len(shapes))
    alone = {}
    for name, plan in plans.items():
        chip_mod.clear_tile_cache()
        alone[name] = _codes(plan, params, instance=3)
    names = list(plans)
    orders = [names, names[::-1], list(np.random.default_rng(0).permutation(names))]
    try:
        for i, order in enumerate(orders):
            chip_mod.clear_tile_cache()
            if i == 2:  # memo of devices only: every tile is programmed again from device outcomes
                chip_mod.set_tile_cache_size(0)
            for j, name in enumerate(order):
                if i == 1 and j == 3:
                    chip_mod.clear_tile_cache()
                codes = _codes(plans[name], params, instance=3)
                assert len(codes) == len(alone[name])
                for got, want in zip(codes, alone[name]):
                    assert np.array_equal(got, want), (order, name)
    finally:
        chip_mod.set_tile_cache_size(128)
    # and the memo is not just giving back the first instance: another one differs
    other = _codes(plans["base"], params, instance=4)
    assert not all(np.array_equal(a, b) for a, b in zip(other, alone["base"]))


def test_devices_programmed_by_an_earlier_plan_are_not_simulated_again(monkeypatch):
    from remeco.models import chip as chip_mod

    fmt = EmulationFormat(rows=32, cols=32)
    plans = _plan_layers([(70, 24)], fmt, seed=1)
    simulated = []
    real = chip_mod.program_drawn

    def spy(levels, *args, **kwargs):
        simulated.append(levels.size)
        return real(levels, *args, **kwargs)

    monkeypatch.setattr(chip_mod, "program_drawn", spy)
    chip_mod.clear_tile_cache()
    _codes(plans["four"], PAIRED, instance=1)
    assert sum(simulated) == 3 * 6 * 32 * 32  # every cell of the 3 x 6 crossbars
    # copies 0 and 1 of every weight, and padding cells where "four" has padding: all known
    simulated.clear()
    averaging = _codes(plans["averaging"], PAIRED, instance=1)
    assert simulated == []
    chip_mod.clear_tile_cache()
    assert all(np.array_equal(a, b) for a, b in zip(averaging, _codes(plans["averaging"], PAIRED, instance=1)))
    # other weights on the same devices: only the devices whose level changed run again
    w = plans["base"][0][0].weights.copy()
    w[:5] += np.where(w[:5] < 0, 1, -1)
    changed = [map_layer(w, fmt)]
    _codes(plans["base"], PAIRED, instance=1)
    simulated.clear()
    got = _codes((changed, 1), PAIRED, instance=1)
    assert 0 < sum(simulated) <= 5 * 24 * 2
    chip_mod.clear_tile_cache()
    assert all(np.array_equal(a, b) for a, b in zip(got, _codes((changed, 1), PAIRED, instance=1)))


def test_outcome_memo_is_bounded():
    from remeco.models import chip as chip_mod

    fmt = EmulationFormat(rows=32, cols=32)
    plan = _plan_layers([(70, 24)], fmt, seed=1)["averaging"]
    chip_mod.clear_tile_cache()
    want = _codes(plan, PAIRED, instance=2)
    chip_mod.clear_tile_cache()
    chip_mod.set_outcome_cache_bytes(20_000)
    try:
        got = _codes(plan, PAIRED, instance=2)
        assert chip_mod._OUTCOME_CACHE_HELD <= 20_000
        assert chip_mod._OUTCOME_CACHE_HELD == sum(e.nbytes for e in chip_mod._OUTCOME_CACHE.values())
    finally:
        chip_mod.set_outcome_cache_bytes(256 << 20)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
    with pytest.raises(ValueError, match="nbytes"):
        chip_mod.set_outcome_cache_bytes(-1)


# --------------------------------------------------------------------------- pinned bits


def _programming_digests() -> dict:
    """blake2b digests of everything programming gives on fixed chip instances: LeNet-5
    shapes under six plan-like layouts in campaign order (the memos shared, as a campaign
    task uses them) with the default chip (faults, D2D, fast IR-drop), plus small layers
    with exact IR-drop and with open-loop programming."""
    import hashlib

    from remeco.models import chip as chip_mod
    from remeco.models.chip import program_layers

    ints = hashlib.blake2b(digest_size=16)
    bits = hashlib.blake2b(digest_size=16)  # everything, floats bit for bit (this machine only)
    # floats: sums and position-weighted sums, compared to a relative 1e-9 (a bit-for-bit
    # digest would pin this machine's libm / BLAS kernels, not the code)
    floats = np.zeros(4)
    cases = [(LENET5, EmulationFormat(), ChipParams(), [3, 4]),
             ([(70, 24), (24, 13)], EmulationFormat(rows=32, cols=32), ChipParams(ir_drop="exact", d2d_sigma=0.2), [1]),
             ([(70, 24), (24, 13)], EmulationFormat(rows=32, cols=32), ChipParams(write_verify=False), [1])]
    for shapes, fmt, params, instances in cases:
        chip_mod.clear_tile_cache()
        plans = _plan_layers(shapes, fmt, seed=11)
        for instance in instances:
            for layers, n_copies in plans.values():
                progs = program_layers(layers * n_copies, params, seed=7, instance=instance,
                                       layers=[i for _ in range(n_copies) for i in range(len(layers))],
                                       committee_copies=[c for c in range(n_copies) for _ in layers])
                for p in progs:
                    for a in (p.codes(params.device, fmt), p.fault_map, p.pulses):
                        ints.update(np.ascontiguousarray(a, dtype=np.int64).data)
                    for k, a in enumerate((p.conductance, p.transfer)):
                        a = np.asarray(a, dtype=np.float64).ravel()
                        bits.update(np.ascontiguousarray(a).data)
                        ramp = np.cos(np.arange(a.size) * 0.618)
                        floats[2 * k : 2 * k + 2] += (a.sum(), a @ ramp)
    return {"ints": ints.hexdigest(), "floats": floats, "bits": ints.hexdigest() + bits.hexdigest()}


PINNED_FLOATS = [3.386999688148021, 0.0012057231280546434, 3.305370135158592, 0.0011879325572513376]


@pytest.fixture(scope="module")
def programming_digests():
    return _programming_digests()


def test_programmed_codes_are_pinned(programming_digests):
    """Cell codes, fault maps and pulse counts of fixed chip instances, bit for bit, as the
    code before the programming speed-ups (issue 9) gave them: faster programming must
    not change a single draw or outcome (the random streams are keyed by logical
    position, DEVICE_KEYING)."""
    assert programming_digests["ints"] == "9dd2c9086ab5216a2b7598b2c672be41"


def test_programmed_conductances_are_pinned(programming_digests):
    """The float64 conductances and transfer matrices of the same instances: their sums
    and position-weighted sums to a relative 1e-9 (libm / BLAS kernels of another CPU
    may move the last bits; any change of the physics moves these far more)."""
    np.testing.assert_allclose(programming_digests["floats"], PINNED_FLOATS, rtol=1e-9)


def test_programming_in_c_gives_the_bits_of_the_numpy_code(programming_digests, monkeypatch):
    """The C write-and-verify and fast IR drop (models/engine/write_verify.c, ir_drop.c)
    against the numpy code they replace (REMECO_NO_NATIVE_PROGRAMMING=1) on the pinned
    instances: codes, fault maps, pulses, conductances and transfer matrices, every bit."""
    from remeco.models.engine import native

    if native.programming() is None:
        pytest.skip("the C programming code is not available here")
    monkeypatch.setenv("REMECO_NO_NATIVE_PROGRAMMING", "1")
    assert _programming_digests()["bits"] == programming_digests["bits"]
