"""cocotb bench: the processing element over one long full-rate run (simulation speed).

Used by ``bench/rtl_sim.py``: the stimulus (packed programming words, input beats and
the model's expected outputs) comes from an ``.npz`` file written by the caller, so the
C++ harness of the same script can run exactly the same traffic. Python stays out of the
inner loop: the clock toggles in the simulator's GPI layer (``clock = "gpi"``, the
default, as in every bench, see :func:`remeco.tb.common.start_clock`; ``"py"`` is cocotb's
coroutine clock) or, built with ``run_bench(hdl_clock=True)``, in the HDL (then
``clock`` is ignored); the input source and the output sink are full rate, so they
sleep while the PE computes and wake only per beat. The ``player`` test, built with
``run_bench(hdl_player=HdlPlayer("x", "o", ...))``, takes Python out of the timed phase
altogether: the testbench's Verilog player streams the input beats from a memory (loaded
with ``$readmemh`` from the file this test writes) and records the outputs; Python writes
the start register, wakes once when ``play_done`` rises, and reads the recorded outputs
from the ``$writememh`` file.

Parameters: ``stimulus`` (path of the ``.npz``), ``result`` (path of the JSON written at
the end), ``clock``, ``period_ns`` (10 with the HDL clock); for the ``floor`` test
``floor_cycles``. Run one test at a time (``testcase``): each writes ``result``.

The timed phase starts when the first input beat is offered and ends when the last
output beat has moved; the JSON holds its simulated cycles, its wall seconds and the
outputs. Every output is compared with the model's (the run fails on a mismatch).
"""

from __future__ import annotations

import json
import time

import cocotb
import numpy as np
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, RisingEdge

from .common import Comparison, bench_params, start_clock
from .stream import StreamSink, StreamSource

#: Settings (static input ports) stored in the stimulus, in this order.
SETTINGS = ("code_on", "code_off", "multiplier", "shift", "last_layer", "col_tiles_used")
#: Programming streams stored in the stimulus, in the order they are sent.
PROGRAM = ("load", "desc", "bias")


@cocotb.test()
async def throughput(dut):
    """Program the layer, then stream every input vector at full rate and time it."""
    p = bench_params()
    period = int(p.get("period_ns", 10))
    stim = np.load(p["stimulus"])
    start_clock(dut, period, impl=p.get("clock", "gpi"))
    await _program(dut, stim, period)

    x = StreamSource(dut, "x", None, 1.0)
    o = StreamSink(dut, "o", None, 1.0)
    expected = [int(v) for v in stim["expected"]]
    await RisingEdge(dut.clk)
    t0, c0 = time.perf_counter(), get_sim_time("ns")
    x.send(int(w) for w in stim["x"])
    await o.wait_for(len(expected), timeout_cycles=int(stim["timeout_cycles"]))
    t1, c1 = time.perf_counter(), get_sim_time("ns")
    got = [v - (1 << 32) if v >> 31 else v for v in o.words()]
    with open(p["result"], "w") as fh:
        json.dump({"cycles": int(round((c1 - c0) / period)), "seconds": t1 - t0, "outputs": got}, fh)
    cmp = Comparison()
    cmp.check("outputs", expected, got)
    cmp.finish("throughput")


async def _program(dut, stim, period: int) -> None:
    """Reset, send the programming streams, apply the settings (untimed)."""
    for name in PROGRAM + ("x", "gen", "fault"):
        getattr(dut, f"{name}__valid").value = 0
    dut.o__ready.value = 0
    for name in SETTINGS:
        getattr(dut, name).value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    sources = {name: StreamSource(dut, name, None, 1.0) for name in PROGRAM}
    for name in PROGRAM:
        sources[name].send(int(w) for w in stim[name])
    while not all(s.idle for s in sources.values()):
        await RisingEdge(dut.clk)
    for name, value in zip(SETTINGS, stim["settings"]):
        getattr(dut, name).value = int(value)
    await ClockCycles(dut.clk, 2)


@cocotb.test()
async def player(dut):
    """Program the layer (as ``throughput``), then let the testbench's Verilog player stream it.

    Needs ``run_bench(hdl_player=...)``. Timed: from the start register write to the one
    wake-up on ``play_done``; the cycles are the player's count (first beat offered to
    last output taken).
    """
    from cocotb.triggers import First, Timer

    from .runner import HdlPlayer

    p = bench_params()
    period = int(p.get("period_ns", 10))
    stim = np.load(p["stimulus"])
    start_clock(dut, period)
    await _program(dut, stim, period)
    xs = [int(w) for w in stim["x"]]
    expected = [int(v) for v in stim["expected"]]
    with open(HdlPlayer.IN_FILE, "w") as fh:  # the run directory: the simulator's working directory
        fh.write("".join(f"{w:x}\n" for w in xs))
    dut.play_in_count.value = len(xs)
    dut.play_out_count.value = len(expected)
    await RisingEdge(dut.clk)
    t0, c0 = time.perf_counter(), get_sim_time("ns")
    dut.play_start.value = 1
    await First(RisingEdge(dut.play_done), Timer(int(stim["timeout_cycles"]) * period, "ns"))
    t1 = time.perf_counter()
    if not int(dut.play_done.value):
        raise AssertionError(f"timeout: {int(dut.play_out_ptr.value)} of {len(expected)} output beats after "
                             f"{(get_sim_time('ns') - c0) // period} cycles")
    cycles = int(dut.play_cycles.value)
    bits = len(dut.o__payload)
    with open(HdlPlayer.OUT_FILE) as fh:
        words = [int(t, 16) for t in fh.read().split() if not t.startswith(("//", "@"))]
    got = [w - (1 << bits) if w >> (bits - 1) else w for w in words]
    with open(p["result"], "w") as fh:
        json.dump({"cycles": cycles, "seconds": t1 - t0, "outputs": got}, fh)
    cmp = Comparison()
    cmp.check("outputs", expected, got)
    cmp.finish("player")


@cocotb.test()
async def floor(dut):
    """No Python while the clock runs: the PE idles for ``floor_cycles`` under one Timer.

    The rate of this run is the most any cocotb bench can reach on this model: the cost
    of the simulator loop, the VPI callbacks and the GPI clock alone.
    """
    from cocotb.triggers import Timer

    p = bench_params()
    period = int(p.get("period_ns", 10))
    start_clock(dut, period, impl=p.get("clock", "gpi"))
    for name in PROGRAM + ("x", "gen", "fault"):
        getattr(dut, f"{name}__valid").value = 0
    dut.o__ready.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    cycles = int(p["floor_cycles"])
    t0 = time.perf_counter()
    await Timer(cycles * period, unit="ns")
    t1 = time.perf_counter()
    with open(p["result"], "w") as fh:
        json.dump({"cycles": cycles, "seconds": t1 - t0, "outputs": None}, fh)
