"""cocotb bench: :class:`remeco.rtl.adc.ADCQuantizer` == :func:`remeco.models.emulation.adc_quantize`.

Parameters (``$REMECO_BENCH_PARAMS``): ``acc_width``, ``adc_bits``, ``adc_shift``,
``tag_width``, ``vectors`` (random vectors besides the corner cases), ``seed``,
``valid_prob``, ``ready_prob``.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, RisingEdge

from ..models.emulation import adc_quantize
from ..rtl.adc import ADCQuantizer
from .common import Comparison, bench_params, reset, start_clock
from .stream import StreamSink, StreamSource, stream_payload


def design(p: dict) -> ADCQuantizer:
    """The component under test for the bench parameters ``p``."""
    return ADCQuantizer(p["acc_width"], p["adc_bits"], p["adc_shift"], p.get("tag_width", 0))


def corner_cases(acc_width: int, adc_bits: int, adc_shift: int) -> list[int]:
    """Saturation on both sides, zero, and every exact .5 rounding tie near the ends."""
    lo, hi = -(1 << (acc_width - 1)), (1 << (acc_width - 1)) - 1
    top = (1 << adc_bits) - 1
    one = 1 << adc_shift
    half = one >> 1
    vals = {lo, lo + 1, hi, hi - 1, 0, 1, -1, one, -one}
    for k in (-2, -1, 0, 1, 2, top - 1, top, top + 1, top + 2):
        centre = k * one
        # ties at centre + half (round half up), and their neighbours
        vals.update({centre, centre + half, centre + half - 1, centre + half + 1, centre - half, centre - half - 1})
    return sorted(v for v in vals if lo <= v <= hi)


def random_inputs(rng: np.random.Generator, n: int, acc_width: int, adc_bits: int, adc_shift: int) -> np.ndarray:
    """Half uniform over the whole input range, half over the ADC's live range and a bit beyond."""
    lo, hi = -(1 << (acc_width - 1)), (1 << (acc_width - 1)) - 1
    live_hi = min(hi, ((1 << adc_bits) + 1) << adc_shift)
    live_lo = max(lo, -(2 << adc_shift))
    a = rng.integers(lo, hi, size=n - n // 2, endpoint=True)
    b = rng.integers(live_lo, live_hi, size=n // 2, endpoint=True)
    out = np.concatenate([a, b])
    rng.shuffle(out)
    return out


def _values(words, payload, tagged: bool):
    cols = payload.unpack_many(words)
    if tagged:
        return np.asarray(cols["acc" if "acc" in cols else "code"], dtype=np.int64), np.asarray(cols["tag"], dtype=np.int64)
    return np.asarray(cols, dtype=np.int64), None


@cocotb.test()
async def random_and_corner_vectors(dut):
    """Corner cases and random vectors under random idle cycles and backpressure."""
    p = bench_params()
    comp = design(p)
    pin, pout = stream_payload(comp, "i"), stream_payload(comp, "o")
    tagged = p.get("tag_width", 0) > 0
    rng = np.random.default_rng(p["seed"])
    acc = np.concatenate([
        np.asarray(corner_cases(p["acc_width"], p["adc_bits"], p["adc_shift"]), dtype=np.int64),
        random_inputs(rng, p["vectors"], p["acc_width"], p["adc_bits"], p["adc_shift"]),
    ])
    tags = rng.integers(0, 1 << p.get("tag_width", 0), size=acc.size) if tagged else None

    start_clock(dut)
    await reset(dut, component=comp)
    src = StreamSource(dut, "i", random.Random(p["seed"] + 1), p["valid_prob"])
    sink = StreamSink(dut, "o", random.Random(p["seed"] + 2), p["ready_prob"])
    words = pin.pack_many({"acc": acc, "tag": tags} if tagged else acc)
    src.send(words)
    await sink.wait_for(len(words), timeout_cycles=100 * len(words) + 100)
    await ClockCycles(dut.clk, 4)

    cmp = Comparison()
    codes, out_tags = _values(sink.words(), pout, tagged)
    cmp.check("code", adc_quantize(acc, p["adc_shift"], p["adc_bits"]), codes, context=acc)
    if tagged:
        cmp.check("tag", tags, out_tags)
    cmp.finish("random_and_corner_vectors")


@cocotb.test()
async def reset_mid_transfer(dut):
    """A reset while a beat is being offered and outputs are pending.

    Before the reset the outputs must be a prefix of the model's answers to what was
    sent; the reset drops everything in flight (no output may appear for it); after it
    the block must answer exactly the new inputs.
    """
    p = bench_params()
    comp = design(p)
    pin, pout = stream_payload(comp, "i"), stream_payload(comp, "o")
    tagged = p.get("tag_width", 0) > 0
    rng = np.random.default_rng(p["seed"] + 100)
    n = 400

    start_clock(dut)
    await reset(dut, component=comp)
    src = StreamSource(dut, "i", random.Random(p["seed"] + 3), p["valid_prob"])
    sink = StreamSink(dut, "o", random.Random(p["seed"] + 4), p["ready_prob"])
    acc0 = random_inputs(rng, n, p["acc_width"], p["adc_bits"], p["adc_shift"])
    src.send(pin.pack_many({"acc": acc0, "tag": np.zeros(n, int)} if tagged else acc0))
    # Hold the sink off until an output is pending and an input is being offered, then
    # reset: the pending output and the offered beat are in flight and must be dropped.
    while src.count < n // 3:
        await RisingEdge(dut.clk)
    sink.paused = True
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 1
    src.flush()
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    sink.paused = False
    acc1 = random_inputs(rng, n, p["acc_width"], p["adc_bits"], p["adc_shift"])
    src.send(pin.pack_many({"acc": acc1, "tag": np.zeros(n, int)} if tagged else acc1))
    await sink.wait_for(len(sink.words(0)) + n, timeout_cycles=100 * n)
    await ClockCycles(dut.clk, 8)

    cmp = Comparison()
    sent0, _ = _values(src.words(0), pin, tagged)
    got0, _ = _values(sink.words(0), pout, tagged)
    if len(got0) > len(sent0):
        cmp.check("outputs before reset", sent0, got0)
    else:
        cmp.check("before reset", adc_quantize(sent0, p["adc_shift"], p["adc_bits"])[: len(got0)], got0)
    sent1, _ = _values(src.words(1), pin, tagged)
    cmp.check("inputs after reset", acc1, sent1)
    got1, _ = _values(sink.words(1), pout, tagged)
    cmp.check("after reset", adc_quantize(acc1, p["adc_shift"], p["adc_bits"]), got1, context=acc1)
    if len(sent0) <= len(got0):
        cmp.lines.append("reset hit no transfer in flight: the test did not test a mid-transfer reset")
        cmp.mismatches += 1
    cmp.finish("reset_mid_transfer")
