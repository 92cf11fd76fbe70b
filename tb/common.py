"""What every bench shares: parameters, statistics, clock and reset, model comparison.

Benches run inside the simulator process (started by :mod:`remeco.tb.runner`); they get
their parameters as JSON in ``$REMECO_BENCH_PARAMS`` and report how many output
transactions they compared (and how many differed) to ``$REMECO_BENCH_STATS``.
"""

from __future__ import annotations

import json
import os

import numpy as np

__all__ = ["bench_params", "record_stats", "hdl_clock_period", "start_clock", "sampled", "reset", "Comparison"]


def bench_params() -> dict:
    """The bench parameters passed by the runner (empty when run by hand)."""
    return json.loads(os.environ.get("REMECO_BENCH_PARAMS", "{}"))


def record_stats(test: str, vectors: int, mismatches: int) -> None:
    """Append one test's counts to the runner's statistics file."""
    path = os.environ.get("REMECO_BENCH_STATS")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"test": test, "vectors": int(vectors), "mismatches": int(mismatches)}) + "\n")


def hdl_clock_period() -> int | None:
    """The period (ns) of the clock the HDL generates, or ``None`` when the bench drives it.

    Set by ``run_bench(hdl_clock=True)`` (:func:`remeco.tb.runner.hdl_clock_testbench`).
    """
    value = os.environ.get("REMECO_HDL_CLOCK")
    return int(value) if value else None


def start_clock(dut, period_ns: int = 10, impl: str = "gpi") -> None:
    """Start the ``clk`` of an Amaranth top level (a simulator-side clock).

    ``impl="gpi"`` toggles the clock in cocotb's C++ layer (no Python per half period);
    ``"py"`` is cocotb's coroutine clock. Both drive the same edges: the benches only
    write inputs after a rising edge, and their writes are applied after the design has
    evaluated that edge either way. When the clock is in the HDL (:func:`hdl_clock_period`)
    there is nothing to start; ``period_ns`` must then be the HDL clock's.
    """
    period = hdl_clock_period()
    if period is not None:
        if period_ns != period:
            raise ValueError(f"the HDL clock runs at {period} ns, the bench asked for {period_ns} ns")
        return
    from cocotb.clock import Clock

    Clock(dut.clk, period_ns, unit="ns", impl=impl).start()


def sampled(dut, name: str):
    """The handle to read output ``name`` with in a rising-edge callback: the value the edge sampled.

    With the bench's own (GPI or Python) clock that is the port itself: cocotb runs edge
    callbacks before the design evaluates the edge. With the clock in the HDL, Verilator
    runs them after it, so the testbench keeps a copy registered on the edge
    (``<name>`` + :data:`remeco.tb.runner.SAMPLED_SUFFIX`). Wait for changes
    (``RisingEdge(dut.<name>)``) on the port itself.
    """
    if hdl_clock_period() is None:
        return getattr(dut, name)
    return getattr(dut, f"{name}__sampled")


async def reset(dut, cycles: int = 2, component=None) -> None:
    """Hold the synchronous, active-high ``rst`` for ``cycles`` clock edges.

    With ``component``, first drive all its inputs to 0 (see :func:`.stream.quiet_inputs`).
    """
    from cocotb.triggers import ClockCycles

    if component is not None:
        from .stream import quiet_inputs

        quiet_inputs(dut, component)
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles)
    dut.rst.value = 0


class Comparison:
    """Collects model-vs-RTL comparisons of one test and reports them.

    ``check(what, expected, got, context)`` compares two equal-length sequences of
    transactions (arrays or lists); a length difference counts as mismatches too.
    ``finish(test)`` records the counts and raises ``AssertionError`` listing the first
    mismatches when there were any.
    """

    def __init__(self, limit: int = 8) -> None:
        self.vectors = 0
        self.mismatches = 0
        self.lines: list[str] = []
        self.limit = limit

    def check(self, what: str, expected, got, context=None) -> int:
        """Compare ``expected`` with ``got`` elementwise (rows of 2-D arrays compare whole)."""
        exp = np.asarray(expected, dtype=object) if not isinstance(expected, np.ndarray) else expected
        act = np.asarray(got, dtype=object) if not isinstance(got, np.ndarray) else got
        n = min(len(exp), len(act))
        bad: list[int] = []
        for i in range(n):
            if not np.array_equal(np.asarray(exp[i]), np.asarray(act[i])):
                bad.append(i)
        missing = abs(len(exp) - len(act))
        self.vectors += max(len(exp), len(act))
        self.mismatches += len(bad) + missing
        if missing:
            self.lines.append(f"{what}: expected {len(exp)} transactions, got {len(act)}")
        for i in bad[: self.limit]:
            ctx = "" if context is None else f" for input {context[i]!r}"
            self.lines.append(f"{what}[{i}]{ctx}: expected {exp[i]!r}, got {act[i]!r}")
        if len(bad) > self.limit:
            self.lines.append(f"{what}: ... {len(bad) - self.limit} more mismatches")
        return len(bad) + missing

    def finish(self, test: str) -> None:
        """Record the statistics and fail the test if anything differed."""
        record_stats(test, self.vectors, self.mismatches)
        if self.mismatches:
            raise AssertionError(
                f"{self.mismatches} of {self.vectors} transactions differ from the model:\n"
                + "\n".join(self.lines)
            )


async def run_stream(dut, words, n_out: int, p: dict, seed: int, *, src: str = "i", dst: str = "o", component=None) -> list[int]:
    """Reset, push ``words`` into ``src`` and collect ``n_out`` words from ``dst``.

    Idle cycles and backpressure follow ``p["valid_prob"]`` and ``p["ready_prob"]``.
    """
    import random

    from cocotb.triggers import ClockCycles

    from .stream import StreamSink, StreamSource

    start_clock(dut)
    await reset(dut, component=component)
    source = StreamSource(dut, src, random.Random(seed), p.get("valid_prob", 1.0))
    sink = StreamSink(dut, dst, random.Random(seed + 1), p.get("ready_prob", 1.0))
    source.send(words)
    await sink.wait_for(n_out, timeout_cycles=50 * (len(words) + n_out) + 200)
    await ClockCycles(dut.clk, 8)  # anything extra would show up as a length mismatch
    return sink.words()


async def run_with_reset(dut, words0, words1, n_out1: int, p: dict, seed: int, *, src: str = "i", dst: str = "o",
                         component=None):
    """Traffic, a reset in the middle of it, more traffic.

    Sends ``words0``; once a third of them moved, holds the output back for a few
    cycles (so results are pending), resets while the source is still offering a beat,
    drops the rest of ``words0`` and sends ``words1``. Returns ``(sent0, got0, got1)``:
    words that moved into the DUT before the reset and outputs before / after it.
    """
    import random

    from cocotb.triggers import ClockCycles, RisingEdge

    from .stream import StreamSink, StreamSource

    start_clock(dut)
    await reset(dut, component=component)
    source = StreamSource(dut, src, random.Random(seed), p.get("valid_prob", 1.0))
    sink = StreamSink(dut, dst, random.Random(seed + 1), p.get("ready_prob", 1.0))
    source.send(words0)
    while source.count < len(words0) // 3:
        await RisingEdge(dut.clk)
    await reset_with_results_pending(dut, source, sink)
    source.send(words1)
    n0 = len(sink.words(0))
    await sink.wait_for(n0 + n_out1, timeout_cycles=50 * (len(words1) + n_out1) + 200)
    await ClockCycles(dut.clk, 8)
    sent0 = source.words(0)
    return sent0, sink.words(0), sink.words(1)


async def reset_with_results_pending(dut, source, sink) -> None:
    """Hold the output back a few cycles (results pending), then reset while the source
    is still offering a beat; the source's unsent words are dropped."""
    from cocotb.triggers import ClockCycles

    sink.paused = True
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 1
    source.flush()
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    sink.paused = False


def check_reset(cmp: Comparison, what: str, expected0, got0, expected1, got1) -> None:
    """Outputs before the reset: a strict prefix of ``expected0`` (something was in
    flight and dropped); after it: exactly ``expected1``."""
    exp0 = list(expected0)
    if len(got0) >= len(exp0):
        cmp.lines.append(f"{what}: nothing was in flight at the reset ({len(got0)} of {len(exp0)} outputs)")
        cmp.mismatches += 1
    cmp.check(f"{what} before reset", exp0[: len(got0)], got0)
    cmp.check(f"{what} after reset", list(expected1), got1)


def _unpack(words, payload):
    return payload.unpack_many(words)


async def random_case(dut, name: str, design, make, count: int, label: str, *, outputs=_unpack, context=None) -> None:
    """The standard random-stimulus case of a single-stream bench.

    ``design(p)`` builds the component, ``make(rng, p, count) -> (beats, expected)`` draws
    the stimulus and its model outputs; the beats go through with random idle cycles and
    backpressure (:func:`run_stream`) and every output is compared with ``expected``.
    ``outputs(words, payload)`` decodes the output words (default: the payload fields);
    ``context(beats)`` optionally labels each output in mismatch reports.
    """
    from .stream import stream_payload

    p = bench_params()
    comp = design(p)
    pin, pout = stream_payload(comp, "i"), stream_payload(comp, "o")
    rng = np.random.default_rng(p["seed"])
    beats, expected = make(rng, p, count if isinstance(count, int) else count(p))
    got = await run_stream(dut, pin.pack_many(beats), len(expected), p, p["seed"], component=comp)
    cmp = Comparison()
    extra = {"context": context(beats)} if context is not None else {}
    cmp.check(label, expected, outputs(got, pout), **extra)
    cmp.finish(name)


async def reset_case(dut, name: str, design, make, counts: tuple[int, int], label: str, *, outputs=_unpack) -> None:
    """The standard reset-in-the-middle case: a batch cut by a reset, then a clean batch.

    Outputs before the reset must be a prefix of the first batch's (something in flight
    is dropped), outputs after it exactly the second batch's (:func:`check_reset`).
    """
    from .stream import stream_payload

    p = bench_params()
    comp = design(p)
    pin, pout = stream_payload(comp, "i"), stream_payload(comp, "o")
    rng = np.random.default_rng(p["seed"] + 1)
    beats0, exp0 = make(rng, p, counts[0])
    beats1, exp1 = make(rng, p, counts[1])
    _, got0, got1 = await run_with_reset(dut, pin.pack_many(beats0), pin.pack_many(beats1), len(exp1), p,
                                         p["seed"] + 2, component=comp)
    cmp = Comparison()
    check_reset(cmp, label, exp0, outputs(got0, pout), exp1, outputs(got1, pout))
    cmp.finish(name)
