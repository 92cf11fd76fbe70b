"""rtl/skid: every beat leaves once, in order, under random valid / ready; i.ready is a register;
the ring slice makes the skid buffer's handshakes cycle for cycle."""

from __future__ import annotations

import random

import pytest
from amaranth import Module, unsigned
from amaranth.sim import Simulator

from remeco.rtl.skid import RingSlice, SkidBuffer


@pytest.mark.parametrize("cls", [SkidBuffer, RingSlice])
def test_slice_random_handshakes(cls):
    dut = cls(unsigned(16))
    rng = random.Random(7)
    sent, got = [], []

    async def bench(ctx):
        nxt = 0
        for cycle in range(3000):
            ctx.set(dut.i.valid, rng.random() < 0.7)
            ctx.set(dut.i.payload, nxt)
            ctx.set(dut.o.ready, rng.random() < (0.3 if cycle < 1500 else 0.9))
            if ctx.get(dut.i.valid) and ctx.get(dut.i.ready):
                sent.append(nxt)
                nxt += 1
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                got.append(ctx.get(dut.o.payload))
            await ctx.tick()
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.o.ready, 1)
        for _ in range(3):
            if ctx.get(dut.o.valid):
                got.append(ctx.get(dut.o.payload))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(sent) > 1000
    assert got == sent


def test_ring_slice_matches_skid_buffer_cycle_for_cycle():
    """Same stimuli into both: i.ready, o.valid and, when valid, o.payload agree every cycle."""
    m = Module()
    m.submodules.skid = skid = SkidBuffer(unsigned(16))
    m.submodules.ring = ring = RingSlice(unsigned(16))
    rng = random.Random(11)
    seen = {"cycles": 0, "stalled_full": 0}

    async def bench(ctx):
        for cycle in range(4000):
            valid, data = rng.random() < 0.6, rng.getrandbits(16)
            ready = rng.random() < (0.4 if cycle % 1000 < 500 else 0.95)
            for d in (skid, ring):
                ctx.set(d.i.valid, valid)
                ctx.set(d.i.payload, data)
                ctx.set(d.o.ready, ready)
            a = (ctx.get(skid.i.ready), ctx.get(skid.o.valid))
            b = (ctx.get(ring.i.ready), ctx.get(ring.o.valid))
            assert a == b, (cycle, a, b)
            if a[1]:
                assert ctx.get(skid.o.payload) == ctx.get(ring.o.payload), cycle
            seen["stalled_full"] += not a[0]
            seen["cycles"] += 1
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen["cycles"] == 4000 and seen["stalled_full"] > 100
