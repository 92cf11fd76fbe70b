import numpy as np
import pytest

from remeco.host.driver import Accelerator, BusError, ModelDevice, expected_fault_maps, make_device
from remeco.models.chip import ChipParams
from remeco.models.emulation import EmulationFormat
from remeco.models.fault_lfsr import rate_threshold
from remeco.models.network import calibrate_adc_shifts, infer, map_network, program_network
from remeco.models.redundancy import make_plan
from remeco.rtl.regmap import REGISTERS, lookup


@pytest.fixture(scope="module")
def setup(lenet5_small, mnist5k):
    _, net = lenet5_small
    train, test = mnist5k
    sizes = [layer.out_features for layer in net.layers]
    fmt = EmulationFormat(rows=64, cols=64)
    mapped = map_network(net, make_plan("base", sizes), fmt, calibrate_adc_shifts(net, fmt, train.images[:100]))
    chip = program_network(mapped, ChipParams(), seed=0, instance=1)
    return mapped, chip, test.images[:12], sizes


@pytest.fixture()
def acc(setup):
    mapped, chip, _, _ = setup
    a = Accelerator("model")
    a.load(mapped, chip)
    return a


def test_model_backend_is_bit_exact_with_the_emulation_executor(setup, acc):
    mapped, chip, images, _ = setup
    want = infer(mapped, images, executor="emulation", programmed=chip)
    got = acc.infer(images, batch_size=5)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)
    assert acc.cycles > 0


def test_committee_plan_is_bit_exact(setup):
    mapped, _, images, sizes = setup
    m2 = map_network(mapped.network, make_plan("committee", sizes), mapped.fmt, mapped.adc_shifts)
    chip = program_network(m2, ChipParams(), seed=0, instance=2)
    a = Accelerator(ModelDevice())
    a.load(m2, chip)
    np.testing.assert_array_equal(a.infer(images[:4]), infer(m2, images[:4], executor="emulation", programmed=chip))


def test_fault_injection_changes_logits_reproducibly_and_matches_the_lfsr(setup, acc):
    mapped, chip, images, _ = setup
    clean = acc.infer(images)
    acc.inject_faults(seed=7, rate=0.05, on_fraction=0.5)
    faulty = acc.infer(images)
    assert not np.array_equal(faulty, clean)
    acc.inject_faults(seed=7, rate=0.05, on_fraction=0.5)
    np.testing.assert_array_equal(acc.infer(images), faulty)
    acc.inject_faults(seed=8, rate=0.05, on_fraction=0.5)
    assert not np.array_equal(acc.infer(images), faulty)
    # the device holds exactly the maps of models.fault_lfsr (state continuing over slots)
    acc.inject_faults(seed=7, rate=0.05, on_fraction=0.5)
    want = expected_fault_maps(mapped.layers, mapped.fmt, 7, rate_threshold(0.05), rate_threshold(0.5))
    for got, w in zip(acc.device._faults, want):
        np.testing.assert_array_equal(got, w)
    assert 0.03 < np.mean(np.concatenate([w.ravel() for w in want]) > 0) < 0.07
    acc.clear_faults()
    np.testing.assert_array_equal(acc.infer(images), clean)


def test_cycle_counter_counts_up_and_resets(acc, setup):
    _, _, images, _ = setup
    acc.reset()
    c0 = acc.cycles
    acc.infer(images[:2])
    c1 = acc.cycles
    assert c1 > c0
    acc.reset()
    assert acc.cycles < c1


@pytest.mark.parametrize("name", ["sim", "board"])
def test_unavailable_backends_say_so(name):
    with pytest.raises(ValueError, match=f"backend '{name}' is not available yet"):
        Accelerator(name)
    with pytest.raises(ValueError, match="backend must be one of"):
        make_device("fpga")


def test_bad_inputs_name_the_argument(setup, acc):
    mapped, chip, images, _ = setup
    with pytest.raises(ValueError, match="images"):
        acc.infer(images.astype(np.int16))
    with pytest.raises(ValueError, match="images"):
        acc.infer(images[:, :, :20])
    with pytest.raises(ValueError, match="batch_size"):
        acc.infer(images, batch_size=0)
    with pytest.raises(ValueError, match="seed"):
        acc.inject_faults(seed=-1, rate=0.1)
    with pytest.raises(ValueError, match="rate"):
        acc.inject_faults(seed=1, rate=1.5)
    with pytest.raises(ValueError, match="on_fraction"):
        acc.inject_faults(seed=1, rate=0.1, on_fraction=-0.1)
    with pytest.raises(ValueError, match="code_on"):
        acc.inject_faults(seed=1, rate=0.1, code_on=1 << 20)
    with pytest.raises(ValueError, match="mapped"):
        acc.load("lenet", chip)
    with pytest.raises(ValueError, match="programmed"):
        acc.load(mapped, None)
    with pytest.raises(ValueError, match="timeout"):
        Accelerator("model", timeout=0)
    with pytest.raises(ValueError, match="rows"):
        acc.run_layer(0, np.zeros((2, 3), dtype=np.uint8))


def test_infer_before_load_is_an_error():
    with pytest.raises(RuntimeError, match="load"):
        Accelerator("model").infer(np.zeros((1, 1, 28, 28), dtype=np.uint8))


def test_bus_errors_for_invalid_addresses_and_directions():
    dev = ModelDevice()
    used = {r.offset for r in REGISTERS}
    bad = next(o for o in range(0, 0x100, 4) if o not in used)
    with pytest.raises(BusError, match="SLVERR"):
        dev.read(bad)
    with pytest.raises(BusError, match="SLVERR"):
        dev.write(bad, 0)
    with pytest.raises(BusError, match="read-only"):
        dev.write(lookup("ID").offset, 1)
    with pytest.raises(BusError, match="write-only"):
        dev.read(lookup("CONTROL").offset)
    dev.write(lookup("LAYER_MULTIPLIER").offset, 0xFFFFFFFF)
    assert dev.read(lookup("LAYER_MULTIPLIER").offset) == (1 << 15) - 1  # 15 implemented bits


def test_start_without_codes_reports_an_error(setup):
    mapped, _, _, _ = setup
    dev = ModelDevice()
    dev.configure(mapped)
    a = Accelerator(dev)
    a.mapped = mapped  # bypass load: codes were never written
    with pytest.raises(RuntimeError, match="ERROR_CODE=1"):
        a.run_layer(0, np.zeros((1, mapped.layers[0].fan_in), dtype=np.uint8))


class _StuckDevice(ModelDevice):
    """A fabric that never finishes: STATUS always reads BUSY."""

    def read(self, offset):
        if offset == lookup("STATUS").offset:
            return lookup("STATUS").field("BUSY").mask | lookup("STATUS").field("GEN_BUSY").mask
        return super().read(offset)


def test_waits_time_out(setup):
    mapped, chip, images, _ = setup
    a = Accelerator(_StuckDevice(), timeout=0.05)
    a.load(mapped, chip)
    with pytest.raises(TimeoutError, match="layer slot 0"):
        a.infer(images[:1])
    with pytest.raises(TimeoutError, match="fault generator"):
        a.inject_faults(seed=1, rate=0.01)


def test_receive_more_than_produced_times_out():
    with pytest.raises(TimeoutError, match="S2MM"):
        ModelDevice().receive(3)
