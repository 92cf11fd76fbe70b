"""cocotb bench: :class:`remeco.rtl.pe.ProcessingElement` end to end against the model.

Expected outputs: ``requantize`` (or ``final_logits``) of ``t = add_bias(to_accumulator(z,
code_frac), bias)`` with ``z = emulate_matvec(x, mapped, apply_fault_map(codes, fault_map,
code_on, code_off), adc_shift)`` (contract step 7) on random
small layers laid out by :func:`remeco.models.mapping.map_layer` with random redundancy
plans, random programmed codes (ideal level codes plus programming error), and faults
from the on-chip generator and from host writes.

Parameters: the format fields ``rows``, ``cols``, ``slice_bits``, ``n_slices``,
``input_bits``, ``code_bits``, ``code_frac``, ``adc_bits``; ``fan_in``, ``neurons``,
``col_tiles``, ``adc_shift``, ``max_copies_log2``, ``layers``, ``vectors`` (per layer and
phase), ``stream_vectors`` (per layer, a last phase at full rate; optional), ``seed``,
``valid_prob``, ``ready_prob``.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, RisingEdge

from ..models.emulation import MAX_SHIFT, EmulationFormat, emulate_matvec, final_logits, requantize, to_accumulator
from ..models.fault_lfsr import apply_fault_map, generate_fault_map, rate_threshold
from ..models.mapping import map_layer
from ..models.periphery import add_bias, column_descriptors
from ..rtl.pe import ProcessingElement
from .common import Comparison, bench_params, check_reset, reset, reset_with_results_pending, start_clock
from .stream import StreamSink, StreamSource, stream_payload


def fmt_of(p: dict) -> EmulationFormat:
    """The numeric format the bench parameters describe."""
    return EmulationFormat(**{k: p[k] for k in (
        "rows", "cols", "slice_bits", "n_slices", "input_bits", "code_bits", "code_frac", "adc_bits")})


def design(p: dict) -> ProcessingElement:
    """The component under test for the bench parameters ``p``."""
    return ProcessingElement(fmt_of(p), p["fan_in"], p["neurons"], p["col_tiles"], p["adc_shift"], p["max_copies_log2"])


class Layer:
    """One random layer: mapping, codes of every tile held by the PE, biases."""

    def __init__(self, rng: np.random.Generator, p: dict, family: int) -> None:
        fmt = fmt_of(p)
        self.fmt, self.p = fmt, p
        n, k_max = p["neurons"], p["max_copies_log2"]
        weights = rng.integers(-fmt.weight_offset, fmt.weight_offset, size=(p["fan_in"], n))
        for _ in range(100):
            if family == 0:
                plan = np.zeros((n, fmt.n_slices), dtype=np.int64)
            elif family == 1:  # sensitive neurons
                plan = np.repeat(np.where(rng.random(n) < 0.4, rng.integers(1, k_max + 1, size=n), 0)[:, None],
                                 fmt.n_slices, axis=1)
            else:  # MSB copies and independent per-slice k
                plan = rng.integers(0, k_max + 1, size=(n, fmt.n_slices))
                if family == 2:
                    plan[:, : fmt.n_slices // 2] = 0
            mapped = map_layer(weights, fmt, plan)
            if mapped.col_tiles <= p["col_tiles"]:
                break
        else:
            raise ValueError("no plan fits the PE's column tiles; raise col_tiles")
        self.mapped = mapped
        rt, ct = mapped.row_tiles, p["col_tiles"]
        codes = rng.integers(fmt.code_min, fmt.code_max + 1, size=(rt, ct, fmt.rows, fmt.cols))
        ideal = mapped.target_levels() << fmt.code_frac
        noise = rng.integers(-(1 << fmt.code_frac) // 2, (1 << fmt.code_frac) // 2 + 1, size=ideal.shape)
        codes[:, : mapped.col_tiles] = np.clip(ideal + noise, fmt.code_min, fmt.code_max)
        self.codes = codes  # (row_tiles, col_tiles held, rows, cols); beyond mapped.col_tiles: junk
        # accumulator units: about the size of the dot products (|x| < 256, |w| <= 128)
        self.bias = rng.integers(-(1 << 16), 1 << 16, size=n)

    @property
    def tiles(self) -> int:
        return self.codes.shape[0] * self.codes.shape[1]

    def flat_codes(self) -> np.ndarray:
        """Codes as ``(tiles, rows, cols)`` with ``t = row_tile * col_tiles + col_tile``."""
        return self.codes.reshape(-1, self.fmt.rows, self.fmt.cols)

    def z(self, x: np.ndarray, fault_map: np.ndarray, code_on: int, code_off: int) -> np.ndarray:
        """Model: ``emulate_matvec`` on the codes as the faulty tiles read them."""
        read = apply_fault_map(self.flat_codes(), fault_map, code_on, code_off).reshape(self.codes.shape)
        return emulate_matvec(x, self.mapped, read[:, : self.mapped.col_tiles], self.p["adc_shift"])

    def t(self, x: np.ndarray, fault_map: np.ndarray, code_on: int, code_off: int) -> np.ndarray:
        """Model: ``t = acc + bias`` with ``acc = to_accumulator(z, code_frac)``."""
        return add_bias(to_accumulator(self.z(x, fault_map, code_on, code_off), self.fmt.code_frac), self.bias)

    def outputs(self, x, fault_map, code_on, code_off, multiplier, shift, final) -> np.ndarray:
        t = self.t(x, fault_map, code_on, code_off)
        if final:
            return final_logits(t).astype(np.int64)
        return requantize(t, multiplier, shift).astype(np.int64)


def random_inputs(rng: np.random.Generator, n: int, k: int, input_bits: int) -> np.ndarray:
    """Uniform, sparse, all-ones and all-zero input vectors."""
    top = (1 << input_bits) - 1
    x = rng.integers(0, top + 1, size=(n, k))
    x[1::4] *= rng.random((len(x[1::4]), k)) < 0.2
    x[2::7] = top
    x[5::11] = 0
    return x


def pick_requant(rng: np.random.Generator, t: np.ndarray) -> tuple[int, int]:
    """A (multiplier, shift) that maps the upper positive ``t`` into the uint8 range."""
    pos = t[t > 0]
    ref = float(np.quantile(pos, 0.9)) if pos.size else 1.0
    m = int(rng.integers(1 << 14, 1 << 15))
    shift = max(0, int(np.ceil(np.log2(max(ref * m / 200.0, 1.0)))))
    return m, min(shift, MAX_SHIFT)


class PEBench:
    """Clock, reset, bus models and programming helpers of one PE."""

    def __init__(self, dut, p: dict, seed: int) -> None:
        self.dut, self.p = dut, p
        comp = design(p)
        self.pay = {n: stream_payload(comp, n) for n in ("x", "o", "load", "fault", "gen", "desc", "bias")}
        r = random.Random(seed)
        self.x = StreamSource(dut, "x", r, p["valid_prob"])
        self.o = StreamSink(dut, "o", r, p["ready_prob"])
        self.load = StreamSource(dut, "load", r, p["valid_prob"])
        self.fault = StreamSource(dut, "fault", r, p["valid_prob"])
        self.gen = StreamSource(dut, "gen", r, 1.0)
        self.desc = StreamSource(dut, "desc", r, p["valid_prob"])
        self.bias = StreamSource(dut, "bias", r, p["valid_prob"])

    @classmethod
    async def start(cls, dut, p: dict, seed: int) -> "PEBench":
        start_clock(dut)
        await reset(dut, component=design(p))  # all inputs 0 first
        return cls(dut, p, seed)

    async def _drain(self, *sources: StreamSource) -> None:
        while not all(s.idle for s in sources):
            await RisingEdge(self.dut.clk)
        await RisingEdge(self.dut.clk)

    async def program(self, layer: Layer) -> None:
        """Codes of every held tile, descriptors, biases; the layer's column-tile count."""
        fmt = layer.fmt
        flat = layer.flat_codes()
        self.load.send(self.pay["load"].pack(tile=t, row=r, col=c, code=int(flat[t, r, c]))
                       for t in range(flat.shape[0]) for r in range(fmt.rows) for c in range(fmt.cols))
        d = column_descriptors(layer.mapped)
        self.desc.send(self.pay["desc"].pack(col=i, **{f: int(v[i]) for f, v in d.as_dict().items()}) for i in range(len(d)))
        self.bias.send(self.pay["bias"].pack(neuron=j, value=int(b)) for j, b in enumerate(layer.bias))
        await self._drain(self.load, self.desc, self.bias)
        self.dut.col_tiles_used.value = layer.mapped.col_tiles

    async def generate_faults(self, seed: int, rate: int, on: int) -> None:
        self.gen.send([self.pay["gen"].pack(seed=seed, rate=rate, on=on)])
        while not int(self.dut.gen_busy.value):
            await RisingEdge(self.dut.clk)
        while int(self.dut.gen_busy.value):
            await RisingEdge(self.dut.clk)

    async def write_faults(self, entries) -> None:
        self.fault.send(self.pay["fault"].pack(tile=t, row=r, col=c, kind=k) for t, r, c, k in entries)
        await self._drain(self.fault)

    async def run(self, x: np.ndarray, full_rate: bool = False) -> list[int]:
        """Send input vectors, return their outputs (``neurons`` per vector).

        ``full_rate``: no idle cycles on ``x``, no backpressure on ``o`` (the stream
        models then sleep while the PE computes: Python runs per beat, not per cycle).
        """
        probs = self.x.prob, self.o.prob
        if full_rate:
            self.x.prob = self.o.prob = 1.0
        base = self.o.count
        self.x.send(int(v) for v in x.reshape(-1))
        n_out = x.shape[0] * self.p["neurons"]
        per_vec = self.p["col_tiles"] * (-(-self.p["fan_in"] // self.p["rows"])) * self.p["input_bits"] * self.p["cols"]
        await self.o.wait_for(base + n_out, timeout_cycles=20 * (per_vec + self.p["fan_in"] + 50) * x.shape[0])
        await ClockCycles(self.dut.clk, 4)
        self.x.prob, self.o.prob = probs
        return self.pay["o"].unpack_many(self.o.words()[base:])


@cocotb.test()
async def random_layers(dut):
    """Per layer: clean hidden-layer outputs; generated faults with logits; host faults on top."""
    p = bench_params()
    tb = await PEBench.start(dut, p, p["seed"])
    rng = np.random.default_rng(p["seed"])
    fmt = fmt_of(p)
    cmp = Comparison()
    for li in range(p["layers"]):
        layer = Layer(rng, p, li % 4)
        await tb.program(layer)
        code_on, code_off = (fmt.levels - 1) << fmt.code_frac, int(rng.integers(-3, 3))
        dut.code_on.value, dut.code_off.value = code_on, code_off
        healthy = np.zeros((layer.tiles, fmt.rows, fmt.cols), dtype=np.int64)
        # clean cells after a map-clearing generator run (rate 0)
        await tb.generate_faults(1, 0, 0)

        x = random_inputs(rng, p["vectors"], p["fan_in"], fmt.input_bits)
        mult, shift = pick_requant(rng, layer.t(x, healthy, code_on, code_off))
        dut.multiplier.value, dut.shift.value, dut.last_layer.value = mult, shift, 0
        want = layer.outputs(x, healthy, code_on, code_off, mult, shift, False)
        cmp.check(f"layer {li} clean", want.reshape(-1), await tb.run(x))

        seed = int(rng.integers(0, 1 << 32))
        rate, on = rate_threshold(0.1), rate_threshold(0.5)
        await tb.generate_faults(seed, rate, on)
        fmap = generate_fault_map(seed, rate, on, layer.tiles, fmt.rows, fmt.cols).astype(np.int64)
        dut.last_layer.value = 1
        x = random_inputs(rng, p["vectors"], p["fan_in"], fmt.input_bits)
        want = layer.outputs(x, fmap, code_on, code_off, mult, shift, True)
        cmp.check(f"layer {li} generated faults, logits", want.reshape(-1), await tb.run(x))

        cells = rng.integers(0, [layer.tiles, fmt.rows, fmt.cols], size=(12, 3))
        kinds = rng.integers(0, 4, size=12)
        await tb.write_faults([(int(a), int(b), int(c), int(k)) for (a, b, c), k in zip(cells, kinds)])
        for (a, b, c), k in zip(cells, kinds):
            fmap[a, b, c] = k
        dut.last_layer.value = 0
        x = random_inputs(rng, max(2, p["vectors"] // 2), p["fan_in"], fmt.input_bits)
        want = layer.outputs(x, fmap, code_on, code_off, mult, shift, False)
        cmp.check(f"layer {li} host faults", want.reshape(-1), await tb.run(x))

        # The bulk of the outputs: a long run at full rate, with faults, logits on every other layer.
        if p.get("stream_vectors", 0):
            final = li % 2 == 1
            dut.last_layer.value = int(final)
            x = random_inputs(rng, p["stream_vectors"], p["fan_in"], fmt.input_bits)
            want = layer.outputs(x, fmap, code_on, code_off, mult, shift, final)
            cmp.check(f"layer {li} host faults, full rate", want.reshape(-1), await tb.run(x, full_rate=True))
    cmp.finish("random_layers")


@cocotb.test()
async def reset_mid_vector(dut):
    """Reset while a vector is in the pipeline; the programmed layer survives."""
    p = bench_params()
    tb = await PEBench.start(dut, p, p["seed"] + 1)
    rng = np.random.default_rng(p["seed"] + 1)
    fmt = fmt_of(p)
    layer = Layer(rng, p, 3)
    await tb.program(layer)
    await tb.generate_faults(99, rate_threshold(0.05), rate_threshold(0.5))
    fmap = generate_fault_map(99, rate_threshold(0.05), rate_threshold(0.5), layer.tiles, fmt.rows, fmt.cols)
    code_on, code_off = 100, 0
    dut.code_on.value, dut.code_off.value = code_on, code_off
    x0 = random_inputs(rng, 3, p["fan_in"], fmt.input_bits)
    x1 = random_inputs(rng, 3, p["fan_in"], fmt.input_bits)
    mult, shift = pick_requant(rng, layer.t(np.concatenate([x0, x1]), fmap, code_on, code_off))
    dut.multiplier.value, dut.shift.value, dut.last_layer.value = mult, shift, 0

    tb.x.send(int(v) for v in x0.reshape(-1))
    n = p["neurons"]
    while tb.o.count < n + 1:  # the second vector is in progress
        await RisingEdge(dut.clk)
    await reset_with_results_pending(dut, tb.x, tb.o)
    n0 = len(tb.o.words(0))
    tb.x.send(int(v) for v in x1.reshape(-1))
    per_vec = p["col_tiles"] * layer.mapped.row_tiles * fmt.input_bits * fmt.cols
    await tb.o.wait_for(n0 + 3 * n, timeout_cycles=40 * per_vec)
    await ClockCycles(dut.clk, 8)
    cmp = Comparison()
    check_reset(cmp, "out", layer.outputs(x0, fmap, code_on, code_off, mult, shift, False).reshape(-1),
                tb.pay["o"].unpack_many(tb.o.words(0)),
                layer.outputs(x1, fmap, code_on, code_off, mult, shift, False).reshape(-1),
                tb.pay["o"].unpack_many(tb.o.words(1)))
    cmp.finish("reset_mid_vector")
