import numpy as np
import pytest

from remeco.models.chip import ChipParams
from remeco.models.emulation import EmulationFormat
from remeco.models.network import calibrate_adc_shifts, infer, map_network, program_network
from remeco.models.redundancy import make_plan


@pytest.fixture(scope="module")
def setup(lenet5_small, mnist5k):
    _, net = lenet5_small
    train, test = mnist5k
    sizes = [layer.out_features for layer in net.layers]
    return net, sizes, train.images[:100], test.images[:40], test.labels[:40]


@pytest.mark.parametrize("plan_name", ["base", "committee", "layer_averaging"])
def test_ideal_crossbar_with_wide_adc_reproduces_the_integer_network_bit_for_bit(setup, plan_name):
    net, sizes, calib, images, _ = setup
    fmt = EmulationFormat(rows=64, cols=64, adc_bits=16)
    shifts = calibrate_adc_shifts(net, fmt, calib)
    assert shifts == (0,) * len(sizes)  # 16 bits hold every column sum of a 64-row tile
    mapped = map_network(net, make_plan(plan_name, sizes), fmt, shifts)
    chip = program_network(mapped, ChipParams.ideal(), seed=0, instance=0)
    ref = infer(mapped, images, executor="reference")
    for executor in ("emulation", "physics"):
        np.testing.assert_array_equal(infer(mapped, images, executor=executor, programmed=chip), ref)


def test_non_ideal_chip_changes_logits_and_emulation_tracks_physics(setup):
    net, sizes, calib, images, labels = setup
    fmt = EmulationFormat()
    mapped = map_network(net, make_plan("base", sizes), fmt, calibrate_adc_shifts(net, fmt, calib))
    params = ChipParams()
    chip = program_network(mapped, params, seed=0, instance=3)
    ref = infer(mapped, images, executor="reference")
    emu = infer(mapped, images, executor="emulation", programmed=chip, params=params)
    phy = infer(mapped, images, executor="physics", programmed=chip, params=params)
    assert not np.array_equal(emu, ref)
    # the two crossbar models differ only by code rounding: same decisions almost always
    assert np.mean(emu.argmax(1) == phy.argmax(1)) >= 0.9


def test_network_mapping_errors(setup):
    net, sizes, calib, images, _ = setup
    fmt = EmulationFormat()
    with pytest.raises(ValueError, match="plan"):
        map_network(net, make_plan("base", sizes[:-1]), fmt, (4,) * len(sizes))
    with pytest.raises(ValueError, match="adc_shifts"):
        map_network(net, make_plan("base", sizes), fmt, (4,))
    mapped = map_network(net, make_plan("base", sizes), fmt, (4,) * len(sizes))
    with pytest.raises(ValueError, match="executor"):
        infer(mapped, images, executor="spice")
    with pytest.raises(ValueError, match="programmed"):
        infer(mapped, images, executor="emulation")


def test_plans_share_the_chip_instance_copy_zero_devices(setup):
    """Paired chip instances: the first copy of every weight is the same device in every plan."""
    net, sizes, calib, _, _ = setup
    fmt = EmulationFormat()
    shifts = calibrate_adc_shifts(net, fmt, calib)
    params = ChipParams(stuck_at_rate=0.05)
    chips = {}
    for name in ("base", "committee", "layer_averaging"):
        mapped = map_network(net, make_plan(name, sizes), fmt, shifts)
        chips[name] = (mapped, program_network(mapped, params, seed=1, instance=7))
    base, committee = chips["base"][1], chips["committee"][1]
    for b, c0, c1 in zip(base.copies[0], committee.copies[0], committee.copies[1]):
        for field in ("transfer", "conductance", "fault_map", "pulses"):
            np.testing.assert_array_equal(getattr(c0, field), getattr(b, field))
        assert not np.array_equal(c1.fault_map, b.fault_map)
    mapped, averaging = chips["layer_averaging"]
    for layer, b, a in zip(mapped.layers, base.copies[0], averaging.copies[0]):
        rt, ct, rows, cols = a.conductance.shape
        g = a.conductance.transpose(0, 2, 1, 3).reshape(rt * rows, ct * cols)
        rt, ct, rows, cols = b.conductance.shape
        g_base = b.conductance.transpose(0, 2, 1, 3).reshape(rt * rows, ct * cols)
        first = np.flatnonzero(layer.col_copy == 0)  # base columns in order: neuron, then slice
        np.testing.assert_array_equal(g[: layer.fan_in, first], g_base[: layer.fan_in, : first.size])
        second = np.flatnonzero(layer.col_copy == 1)
        assert not np.array_equal(g[: layer.fan_in, second], g[: layer.fan_in, first])
