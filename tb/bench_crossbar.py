"""cocotb bench: :class:`remeco.rtl.crossbar.CrossbarTile` == ``column_accumulate`` on
``apply_fault_map`` codes, with host-written and generated (``generate_fault_map``) faults.

Parameters: ``rows``, ``cols``, ``tiles``, ``code_bits``, ``acc_width``, ``tag_width``,
``planes`` (per phase), ``seed``, ``valid_prob``, ``ready_prob``.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, RisingEdge

from ..models.emulation import column_accumulate
from ..models.fault_lfsr import THRESHOLD_ONE, apply_fault_map, generate_fault_map, rate_threshold
from ..rtl.crossbar import CrossbarTile
from .common import Comparison, bench_params, check_reset, reset, reset_with_results_pending, start_clock
from .stream import StreamSink, StreamSource, stream_payload


def design(p: dict) -> CrossbarTile:
    """The component under test for the bench parameters ``p``."""
    return CrossbarTile(p["rows"], p["cols"], p["tiles"], p["code_bits"], p["acc_width"], p["tag_width"])


class TileBench:
    """Clock, reset and bus models of one tile; programming helpers."""

    def __init__(self, dut, p: dict, seed: int) -> None:
        self.dut, self.p = dut, p
        comp = design(p)
        self.pay = {name: stream_payload(comp, name) for name in ("i", "o", "load", "fault", "gen")}
        self.rng = np.random.default_rng(seed)
        r = random.Random(seed)
        self.src = StreamSource(dut, "i", r, p["valid_prob"])
        self.sink = StreamSink(dut, "o", r, p["ready_prob"])
        self.load = StreamSource(dut, "load", r, p["valid_prob"])
        self.fault = StreamSource(dut, "fault", r, p["valid_prob"])
        self.gen = StreamSource(dut, "gen", r, 1.0)
        self.shape = (p["tiles"], p["rows"], p["cols"])
        self.code_min = -(1 << (p["code_bits"] - 1))
        self.code_max = (1 << (p["code_bits"] - 1)) - 1

    @classmethod
    async def start(cls, dut, p: dict, seed: int) -> "TileBench":
        start_clock(dut)
        await reset(dut, component=design(p))  # all inputs 0 first
        return cls(dut, p, seed)

    def random_codes(self) -> np.ndarray:
        """Codes over the full range; tile 0 at the extremes (largest column sums)."""
        codes = self.rng.integers(self.code_min, self.code_max, size=self.shape, endpoint=True)
        codes[0] = self.rng.choice([self.code_min, self.code_max], size=self.shape[1:])
        return codes

    async def program(self, codes: np.ndarray) -> None:
        """Write every cell (in a random order) and wait until done."""
        cells = [(t, r, c) for t in range(self.shape[0]) for r in range(self.shape[1]) for c in range(self.shape[2])]
        order = self.rng.permutation(len(cells))
        self.load.send(self.pay["load"].pack(tile=cells[i][0], row=cells[i][1], col=cells[i][2],
                                             code=int(codes[cells[i]])) for i in order)
        await self._drain(self.load)

    async def write_faults(self, entries) -> None:
        """Write ``[(tile, row, col, kind), ...]`` and wait until done."""
        self.fault.send(self.pay["fault"].pack(tile=t, row=r, col=c, kind=k) for t, r, c, k in entries)
        await self._drain(self.fault)

    async def _drain(self, src: StreamSource) -> None:
        while not src.idle:
            await RisingEdge(self.dut.clk)
        await RisingEdge(self.dut.clk)

    def planes(self, n: int):
        """``n`` random planes: bits (some all-0 / all-1), tile, tag."""
        rows = self.shape[1]
        density = self.rng.random(n)
        bits = (self.rng.random((n, rows)) < density[:, None]).astype(np.int64)
        bits[::7] = 1
        bits[3::11] = 0
        tiles = self.rng.integers(0, self.shape[0], size=n)
        tags = self.rng.integers(0, 1 << self.p["tag_width"], size=n)
        return bits, tiles, tags

    async def run_planes(self, bits, tiles, tags) -> list[tuple[int, int, int]]:
        """Send planes, return the ``(acc, col, tag)`` outputs they produce."""
        base = self.sink.count
        words = [self.pay["i"].pack(bits=int("".join(str(b) for b in row[::-1]), 2), tile=int(t), tag=int(g))
                 for row, t, g in zip(bits, tiles, tags)]
        self.src.send(words)
        n_out = len(words) * self.shape[2]
        await self.sink.wait_for(base + n_out, timeout_cycles=20 * n_out + 200)
        await ClockCycles(self.dut.clk, 4)
        return outputs(self.sink.words()[base:], self.pay["o"])

    def expected(self, codes_read: np.ndarray, bits, tiles, tags) -> list[tuple[int, int, int]]:
        """Model: ``column_accumulate`` of each plane on its tile's (faulty) codes."""
        out = []
        for row, t, g in zip(bits, tiles, tags):
            acc = column_accumulate(row, codes_read[t])
            out.extend((int(acc[c]), c, int(g)) for c in range(self.shape[2]))
        return out


def outputs(words, pay) -> list[tuple[int, int, int]]:
    cols = pay.unpack_many(words)
    return list(zip(cols["acc"], cols["col"], cols["tag"]))


@cocotb.test()
async def host_written_faults(dut):
    """Clean codes, then host-written faults, then the faults cleared: the codes stay."""
    p = bench_params()
    tb = await TileBench.start(dut, p, p["seed"])
    code_on, code_off = tb.code_max - 3, tb.code_min + 5
    dut.code_on.value, dut.code_off.value = code_on, code_off
    codes = tb.random_codes()
    await tb.program(codes)
    cmp = Comparison()

    bits, tiles, tags = tb.planes(p["planes"])
    cmp.check("clean (acc, col, tag)", tb.expected(codes, bits, tiles, tags), await tb.run_planes(bits, tiles, tags))

    fmap = np.zeros(tb.shape, dtype=np.int64)
    hit = tb.rng.random(tb.shape) < 0.2
    fmap[hit] = tb.rng.integers(0, 4, size=int(hit.sum()))  # 0..3, including the healthy 2
    await tb.write_faults([(*idx, int(fmap[idx])) for idx in zip(*np.nonzero(hit))])
    bits, tiles, tags = tb.planes(p["planes"])
    cmp.check("faulty (acc, col, tag)", tb.expected(apply_fault_map(codes, fmap, code_on, code_off), bits, tiles, tags),
              await tb.run_planes(bits, tiles, tags))

    # new stuck values take effect at once, without rewriting anything
    code_on, code_off = 17, -2
    dut.code_on.value, dut.code_off.value = code_on, code_off
    bits, tiles, tags = tb.planes(p["planes"] // 4 + 1)
    cmp.check("new stuck codes", tb.expected(apply_fault_map(codes, fmap, code_on, code_off), bits, tiles, tags),
              await tb.run_planes(bits, tiles, tags))

    await tb.write_faults([(*idx, 0) for idx in zip(*np.nonzero(hit))])
    bits, tiles, tags = tb.planes(p["planes"] // 4 + 1)
    cmp.check("cleared (acc, col, tag)", tb.expected(codes, bits, tiles, tags), await tb.run_planes(bits, tiles, tags))
    cmp.finish("host_written_faults")


@cocotb.test()
async def generated_faults(dut):
    """The on-chip generator writes exactly the model's map, in tiles*cols*rows cycles."""
    p = bench_params()
    tb = await TileBench.start(dut, p, p["seed"] + 10)
    code_on, code_off = tb.code_max, tb.code_min
    dut.code_on.value, dut.code_off.value = code_on, code_off
    codes = tb.random_codes()
    await tb.program(codes)
    cmp = Comparison()
    runs = [
        (0xC0FFEE + p["seed"], rate_threshold(0.15), rate_threshold(0.4)),
        (0, rate_threshold(0.5), rate_threshold(0.9)),  # seed 0 is replaced by 1
        (12345, THRESHOLD_ONE, 0),  # everything stuck off
        (777, 0, THRESHOLD_ONE),  # rate 0: clears the map
    ]
    for seed, rate, on in runs:
        tb.gen.send([tb.pay["gen"].pack(seed=seed, rate=rate, on=on)])
        while not int(dut.gen_busy.value):
            await RisingEdge(dut.clk)
        busy = 0
        while int(dut.gen_busy.value):
            busy += 1
            await RisingEdge(dut.clk)
        cells = int(np.prod(tb.shape))
        cmp.check(f"generator cycles (seed {seed})", [cells], [busy])
        fmap = generate_fault_map(seed, rate, on, *tb.shape)
        bits, tiles, tags = tb.planes(p["planes"] // 2 + 1)
        cmp.check(f"generated map seed {seed} (acc, col, tag)",
                  tb.expected(apply_fault_map(codes, fmap, code_on, code_off), bits, tiles, tags),
                  await tb.run_planes(bits, tiles, tags))
    cmp.finish("generated_faults")


@cocotb.test()
async def reset_mid_sweep(dut):
    """Reset while a sweep is stalled with an output pending; the codes survive."""
    p = bench_params()
    tb = await TileBench.start(dut, p, p["seed"] + 20)
    codes = tb.random_codes()
    await tb.program(codes)
    await tb.write_faults([(t, r, c, 0) for t in range(tb.shape[0]) for r in range(tb.shape[1]) for c in range(tb.shape[2])])
    bits0, tiles0, tags0 = tb.planes(30)
    bits1, tiles1, tags1 = tb.planes(30)
    words = lambda b, t, g: [tb.pay["i"].pack(bits=int("".join(str(x) for x in row[::-1]), 2), tile=int(tt), tag=int(gg))
                             for row, tt, gg in zip(b, t, g)]
    tb.src.send(words(bits0, tiles0, tags0))
    while tb.src.count < 10:
        await RisingEdge(dut.clk)
    await reset_with_results_pending(dut, tb.src, tb.sink)
    n0 = len(tb.sink.words(0))
    tb.src.send(words(bits1, tiles1, tags1))
    await tb.sink.wait_for(n0 + 30 * tb.shape[2], timeout_cycles=4000)
    await ClockCycles(dut.clk, 8)
    cmp = Comparison()
    check_reset(cmp, "(acc, col, tag)", tb.expected(codes, bits0, tiles0, tags0), outputs(tb.sink.words(0), tb.pay["o"]),
                tb.expected(codes, bits1, tiles1, tags1), outputs(tb.sink.words(1), tb.pay["o"]))
    cmp.finish("reset_mid_sweep")
