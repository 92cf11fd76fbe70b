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
