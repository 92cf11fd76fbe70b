"""rtl/fixed helpers == their integer rules, on every input of small widths (Amaranth simulator)."""

from __future__ import annotations

import itertools

from amaranth import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from remeco.rtl.fixed import clamp, round_shift_sat, round_shift_var


def _round_shift(v: int, n: int) -> int:
    return (v + (1 << n >> 1)) >> n  # floor((v + 2**(n-1)) / 2**n), n = 0: v


def _evaluate(shape, shift_bits: int, outputs) -> dict:
    """``{(v, n): (out, ...)}`` for every ``v`` of ``shape`` and shift ``n``."""
    v, n = Signal(shape), Signal(shift_bits)
    exprs = outputs(v, n)
    sigs = [Signal(e.shape()) for e in exprs]
    m = Module()
    m.d.comb += [s.eq(e) for s, e in zip(sigs, exprs)]
    lo, hi = (-(1 << (shape.width - 1)), 1 << (shape.width - 1)) if shape.signed else (0, 1 << shape.width)
    seen = {}

    async def bench(ctx):
        for a, b in itertools.product(range(lo, hi), range(1 << shift_bits)):
            ctx.set(v, a)
            ctx.set(n, b)
            seen[a, b] = tuple(ctx.get(s) for s in sigs)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    return seen


def test_round_shift_var_every_input():
    for shape in (signed(7), unsigned(6)):
        got = _evaluate(shape, 3, lambda v, n: [round_shift_var(v, n)])
        assert got == {(a, b): (_round_shift(a, b),) for a, b in got}


def test_clamp_after_round_shift_every_input():
    # the requantizer's use: saturate a rounded value to [0, 2**k - 1] (fast path), and a general range
    got = _evaluate(signed(9), 3, lambda v, n: [clamp(round_shift_var(v, n), 0, 15),
                                                clamp(v, 0, 255), clamp(v, -3, 20), clamp(v, 0, 15)])
    want = {(a, b): (min(max(_round_shift(a, b), 0), 15), min(max(a, 0), 255), min(max(a, -3), 20),
                     min(max(a, 0), 15)) for a, b in got}
    assert got == want
    assert len(got) == 512 * 8


def test_round_shift_sat_every_input():
    # saturated to [-8, 8]; shifts past the value's width included; unsigned and too-narrow values too
    for shape, bits in ((signed(9), 3), (unsigned(8), 3), (signed(4), 3), (signed(7), 1)):
        lim = 1 << bits
        got = _evaluate(shape, 4, lambda v, n: [round_shift_sat(v, n, bits),
                                                clamp(round_shift_sat(v, n, bits), 0, lim - 1)])
        want = {(a, b): (min(max(_round_shift(a, b), -lim), lim), min(max(_round_shift(a, b), 0), lim - 1))
                for a, b in got}
        assert got == want, shape
