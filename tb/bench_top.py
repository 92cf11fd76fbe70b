"""cocotb bench: :class:`remeco.rtl.top.AcceleratorTop` == :mod:`remeco.models.fabric`.

Everything goes through the top's real buses (cocotbext-axi AXI4-Lite master, AXI4-Stream
source and sink with random pauses on both streams): random layers are mapped, their
code and descriptor words loaded in random chunks, and random runs are compared word for
word with :func:`remeco.models.fabric.run_layer`, without and with faults (host-written
fault words, the on-chip generator against :func:`~remeco.models.fabric.memory_fault_map`,
clear). Register rules of :mod:`remeco.rtl.regmap` (SLVERR, error codes, START
validation, SOFT_RESET in the middle of a run) are checked on the way.

Parameters: ``cfg`` (:meth:`FabricConfig.to_dict`), ``layers``, ``runs``, ``max_vectors``,
``seed``, ``pause`` (probability of a stalled stream cycle).
"""

from __future__ import annotations

import random

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, RisingEdge, SimTimeoutError, with_timeout
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from ..models import fabric
from ..models.emulation import EmulationFormat
from ..models.fault_lfsr import rate_threshold
from ..models.mapping import map_layer
from ..rtl import regmap
from ..rtl.top import AcceleratorTop
from .common import Comparison, bench_params, start_clock
from .stream import quiet_inputs


def config(p: dict) -> fabric.FabricConfig:
    """The fabric configuration of the bench parameters."""
    c = dict(p["cfg"])
    c["fmt"] = EmulationFormat(**c["fmt"])
    return fabric.FabricConfig(**c)


def design(p: dict) -> AcceleratorTop:
    """The component under test."""
    return AcceleratorTop(config(p))


def _off(name: str) -> int:
    return regmap.lookup(name).offset


class BusError(AssertionError):
    pass


class Host:
    """The bench's side of the buses: register access and DMA-like stream rounds."""

    def __init__(self, dut, rng: random.Random, pause: float) -> None:
        self.dut = dut
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_"), dut.clk, dut.rst)
        self.src = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_"), dut.clk, dut.rst, byte_lanes=1)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_"), dut.clk, dut.rst, byte_lanes=1)
        self.src.log.setLevel("WARNING")
        self.sink.log.setLevel("WARNING")
        self.axil.write_if.log.setLevel("WARNING")
        self.axil.read_if.log.setLevel("WARNING")
        if pause > 0:
            self.src.set_pause_generator(self._pauses(rng, pause))
            self.sink.set_pause_generator(self._pauses(rng, pause))

    @staticmethod
    def _pauses(rng: random.Random, p: float):
        while True:
            yield rng.random() < p

    async def write(self, name_or_offset, value: int) -> int:
        off = _off(name_or_offset) if isinstance(name_or_offset, str) else name_or_offset
        resp = await self.axil.write(off, int(value & 0xFFFFFFFF).to_bytes(4, "little"))
        return int(resp.resp)

    async def read(self, name_or_offset) -> tuple[int, int]:
        off = _off(name_or_offset) if isinstance(name_or_offset, str) else name_or_offset
        resp = await self.axil.read(off, 4)
        return int.from_bytes(resp.data, "little"), int(resp.resp)

    async def reg(self, name: str) -> int:
        value, resp = await self.read(name)
        if resp:
            raise BusError(f"read of {name} answered {resp}")
        return value

    async def set(self, name: str, value: int) -> None:
        resp = await self.write(name, value)
        if resp:
            raise BusError(f"write of {name} answered {resp}")

    async def send(self, words, limit_us: int = 20_000) -> None:
        """Send ``words`` as one frame (``tlast`` on the last); fail after ``limit_us`` of simulated time."""
        if len(words):
            await self.src.send(AxiStreamFrame([int(w) for w in words]))
            await with_timeout(self.src.wait(), limit_us, "us")

    async def receive(self, limit_us: int = 20_000) -> list[int]:
        """One frame from the S2MM side; fail after ``limit_us`` of simulated time."""
        frame = await with_timeout(self.sink.recv(), limit_us, "us")
        return [int(w) for w in frame.tdata]

    async def wait_status(self, mask: int, value: int, limit: int = 5_000) -> int:
        for _ in range(limit):
            status = await self.reg("STATUS")
            if status & mask == value:
                return status
        raise AssertionError(f"STATUS never reached {value:#x} under mask {mask:#x} (last {status:#x})")


def _bit(reg: str, field: str) -> int:
    return regmap.lookup(reg).field(field).mask


def random_layer(rng: np.random.Generator, cfg: fabric.FabricConfig):
    """A mapped layer with random shape, copies and codes (full code range)."""
    fmt = cfg.fmt
    k = int(rng.choice([1, fmt.rows - 1, fmt.rows, fmt.rows + 1, rng.integers(1, cfg.max_fan_in + 1)]))
    n = int(rng.integers(1, 3 * cfg.column_lanes))
    kind = rng.integers(0, 4)
    if kind == 0:
        copies = None
    elif kind == 1:
        copies = int(rng.integers(0, cfg.max_copies_log2 + 1))
    elif kind == 2:
        copies = rng.integers(0, cfg.max_copies_log2 + 1, size=n)
    else:  # MSB style: upper slices copied
        copies = np.zeros((n, fmt.n_slices), dtype=np.int64)
        copies[:, -1] = rng.integers(0, cfg.max_copies_log2 + 1, size=n)
    w = rng.integers(-fmt.weight_offset, fmt.weight_offset, size=(k, n))
    m = map_layer(w, fmt, copies)
    codes = rng.integers(fmt.code_min, fmt.code_max + 1, size=(m.row_tiles, m.col_tiles, fmt.rows, fmt.cols))
    if rng.random() < 0.3:  # extremes: saturate the ADC both ways
        codes = rng.choice([fmt.code_min, fmt.code_max, 0], size=codes.shape)
    return m, codes


class TopBench:
    def __init__(self, dut, p: dict) -> None:
        self.p = p
        self.cfg = config(p)
        self.rng = np.random.default_rng(p["seed"])
        self.host = Host(dut, random.Random(p["seed"]), p["pause"])
        self.cmp = Comparison()
        self.layers = []  # (mapped, codes, placement, code_words)
        self.fault_words = np.zeros((self.cfg.code_words, self.cfg.column_lanes), dtype=np.int64)
        self.faults_on = False
        self.code_on = self.code_off = 0

    def expect(self, what: str, want, got, info: dict | None = None) -> None:
        """One scalar comparison (``info`` goes into the failure message)."""
        label = what if not info else f"{what} {info}"
        self.cmp.check(label, [want], [got])

    async def load_chunks(self, target: int, base: int, words: np.ndarray) -> None:
        """Load stream words to ``target`` from memory word ``base``, in random chunks
        (a chunk boundary may split a code word: the assembly must carry over)."""
        h = self.host
        await h.set("STREAM_TARGET", target)
        await h.set("LOAD_ADDRESS", base)
        pos = 0
        while pos < len(words):
            step = int(self.rng.integers(1, max(2, len(words) // 2) + 1))
            await h.send(words[pos:pos + step])
            pos += step
        await h.set("STREAM_TARGET", regmap.STREAM_INPUTS)

    async def place_layers(self, count: int) -> None:
        cfg = self.cfg
        code_base = desc_base = 0
        for _ in range(count):
            m, codes = random_layer(self.rng, cfg)
            words = fabric.layer_code_words(codes, m, cfg)
            desc = fabric.descriptor_words(m)
            if code_base + len(words) > cfg.code_words or desc_base + len(desc) > cfg.desc_words:
                break
            place = fabric.LayerPlacement(m.fan_in, m.physical_columns, m.neurons, code_base, desc_base,
                                          int(self.rng.integers(0, 6)), len(words) // m.fan_in)
            await self.load_chunks(regmap.STREAM_CODES, code_base, fabric.pack_codes(words, cfg))
            await self.load_chunks(regmap.STREAM_DESCRIPTORS, desc_base, desc)
            self.layers.append((m, codes, place, words, desc))
            code_base += len(words)
            desc_base += len(desc)
        self.used_words = code_base

    async def run(self, index: int, vectors: int, label: str) -> None:
        """One run of layer ``index`` on random inputs, compared with the model."""
        h, cfg = self.host, self.cfg
        m, _, place, words, desc = self.layers[index]
        x = self.rng.integers(0, 1 << cfg.fmt.input_bits, size=(vectors, m.fan_in))
        if self.rng.random() < 0.2:
            x = self.rng.choice([0, (1 << cfg.fmt.input_bits) - 1], size=x.shape)
        lo, hi = place.code_base, place.code_base + len(words)
        faults = self.fault_words[lo:hi] if self.faults_on else None
        want = fabric.run_layer(x, words, faults, desc, m.neurons, place.adc_shift, cfg, self.code_on, self.code_off)
        for name, value in (("LAYER_FAN_IN", m.fan_in), ("LAYER_COLUMNS", m.physical_columns),
                            ("LAYER_NEURONS", m.neurons), ("LAYER_CODE_BASE", place.code_base),
                            ("LAYER_DESC_BASE", place.desc_base), ("LAYER_ADC_SHIFT", place.adc_shift),
                            ("LAYER_VECTORS", vectors)):
            await h.set(name, value)
        before = await h.reg("CYCLES_LO")
        await h.set("CONTROL", _bit("CONTROL", "START"))
        status = await h.reg("STATUS")
        self.expect(f"{label}: STATUS after START is BUSY", 1, status & 0b101, {"status": status})
        recv = cocotb.start_soon(h.receive())
        try:
            await h.send(fabric.pack_inputs(x, cfg))
            got_words = await recv
        except SimTimeoutError:
            recv.cancel()
            status, code = await h.reg("STATUS"), await h.reg("ERROR_CODE")
            raise AssertionError(
                f"{label}: run did not complete (STATUS={status:#x}, ERROR_CODE={code}, "
                f"{self.host.src.count()} input words not taken, {self.host.sink.count()} output words waiting, "
                f"{len(x)} vectors of fan-in {m.fan_in}, {m.physical_columns} columns, {m.neurons} neurons)"
            ) from None
        expected_words = fabric.output_words(vectors, m.neurons, cfg)
        if len(got_words) != expected_words:
            raise AssertionError(f"{label}: the run returned {len(got_words)} words, expected {expected_words}")
        got = fabric.unpack_outputs(np.asarray(got_words, dtype=np.uint32), vectors, m.neurons, cfg)
        info = {"layer": index, "vectors": vectors, "fan_in": m.fan_in, "columns": m.physical_columns,
                "faults": self.faults_on}
        self.cmp.check(f"{label} {info}: accumulators", want.reshape(-1), got.reshape(-1))
        status = await h.wait_status(0b111, 0b010)
        after = await h.reg("CYCLES_LO")
        groups = -(-vectors // cfg.vector_lanes)
        issue = groups * place.blocks * m.fan_in
        self.expect(f"{label}: the cycle counter covers at least the issue cycles", True, after - before >= issue,
                       {"cycles": after - before, "issue": issue})

    async def check_registers(self) -> None:
        h, cfg = self.host, self.cfg
        caps = {"ID": regmap.ID_VALUE, "VERSION": regmap.VERSION_VALUE, "CAP_CODE_WORDS": cfg.code_words,
                "CAP_DESC_WORDS": cfg.desc_words, "CAP_COLUMN_LANES": cfg.column_lanes,
                "CAP_VECTOR_LANES": cfg.vector_lanes, "CAP_MAX_FAN_IN": cfg.max_fan_in, "CAP_TILE_ROWS": cfg.fmt.rows}
        for name, want in caps.items():
            self.expect(f"register {name}", want, await h.reg(name))
        for off in (0x1C, 0x02, 0xFC, 0x8C):
            _, resp = await h.read(off)
            self.expect(f"read of unmapped offset {off:#x} answers SLVERR", 2, resp)
            self.expect(f"write to unmapped offset {off:#x} answers SLVERR", 2, await h.write(off, 0x1234))
        self.expect("write to ro ID answers SLVERR", 2, await h.write("ID", 0))
        self.expect("ID unchanged", regmap.ID_VALUE, await h.reg("ID"))
        self.expect("wo CONTROL reads 0", (0, 0), await h.read("CONTROL"))

    async def check_errors(self) -> None:
        h, cfg = self.host, self.cfg
        m, _, place, words, desc = self.layers[0]
        # bad run description: fan-in 0
        await h.set("LAYER_FAN_IN", 0)
        await h.set("CONTROL", _bit("CONTROL", "START"))
        self.expect("START with fan-in 0: ERROR, not BUSY", 0b100, (await h.reg("STATUS")) & 0b101)
        self.expect("START with fan-in 0: ERROR_CODE 1", 1, await h.reg("ERROR_CODE"))
        # beyond the code memory
        await h.set("LAYER_FAN_IN", m.fan_in)
        await h.set("LAYER_CODE_BASE", cfg.code_words - len(words) + 1)
        await h.set("CONTROL", _bit("CONTROL", "START"))
        self.expect("START past the code memory: ERROR_CODE 1", 1, await h.reg("ERROR_CODE"))
        await h.set("CONTROL", _bit("CONTROL", "SOFT_RESET"))
        self.expect("SOFT_RESET clears STATUS and ERROR_CODE", (0, 0),
                       (await h.reg("STATUS"), await h.reg("ERROR_CODE")))
        # a load past the descriptor memory: the word is dropped, ERROR_CODE 2
        await h.set("STREAM_TARGET", regmap.STREAM_DESCRIPTORS)
        await h.set("LOAD_ADDRESS", cfg.desc_words)
        await h.send([0x7FF])
        self.expect("load past the descriptor memory: ERROR_CODE 2", 2, await h.reg("ERROR_CODE"))
        self.expect("LOAD_ADDRESS increments past the end", cfg.desc_words + 1, await h.reg("LOAD_ADDRESS"))
        await h.set("STREAM_TARGET", regmap.STREAM_INPUTS)
        await h.set("CONTROL", _bit("CONTROL", "SOFT_RESET"))

    async def abort_run(self) -> None:
        """START a run, feed part of its inputs while S2MM holds off, SOFT_RESET: status,
        counter and stream state clear and the next run is exact."""
        h, cfg = self.host, self.cfg
        m, _, place, words, desc = self.layers[0]
        for name, value in (("LAYER_FAN_IN", m.fan_in), ("LAYER_COLUMNS", m.physical_columns),
                            ("LAYER_NEURONS", m.neurons), ("LAYER_CODE_BASE", place.code_base),
                            ("LAYER_DESC_BASE", place.desc_base), ("LAYER_ADC_SHIFT", place.adc_shift),
                            ("LAYER_VECTORS", 3 * cfg.vector_lanes)):
            await h.set(name, value)
        h.sink.clear_pause_generator()
        h.sink.pause = True  # a DMA whose S2MM channel is not armed
        await h.set("CONTROL", _bit("CONTROL", "START"))
        x = self.rng.integers(0, 256, size=(3 * cfg.vector_lanes, m.fan_in))
        words_in = fabric.pack_inputs(x, cfg)
        # half the first group: always taken (no output is due yet, so the held-off S2MM
        # cannot stall it); the pass in flight and the input buffer are then reset
        await h.send(words_in[: max(1, m.fan_in // 2)])
        await ClockCycles(h.dut.clk, 50)
        await h.set("CONTROL", _bit("CONTROL", "SOFT_RESET"))
        self.expect("SOFT_RESET aborts the run", 0, (await h.reg("STATUS")) & 0b111)
        self.expect("SOFT_RESET zeroes the cycle counter", 0, await h.reg("CYCLES_LO"))
        h.sink.pause = False
        if self.p["pause"] > 0:
            h.sink.set_pause_generator(h._pauses(random.Random(self.p["seed"] + 1), self.p["pause"]))
        await self.run(0, cfg.vector_lanes + 1, "run after an aborted run")

    async def faults(self) -> None:
        h, cfg = self.host, self.cfg
        fmt = cfg.fmt
        # host-written fault words for the whole used region
        fw = self.rng.choice([0, 0, 0, 1, 2, 3], size=(self.used_words, cfg.column_lanes))
        await self.load_chunks(regmap.STREAM_FAULTS, 0, fabric.pack_faults(fw, cfg))
        self.fault_words[: self.used_words] = fw
        self.code_on = int(self.rng.integers(fmt.code_min, fmt.code_max + 1))
        self.code_off = int(self.rng.integers(fmt.code_min, fmt.code_max + 1))
        await h.set("CODE_ON", self.code_on & 0xFFFFFFFF)
        await h.set("CODE_OFF", self.code_off & 0xFFFFFFFF)
        await h.set("FAULT_CONTROL", _bit("FAULT_CONTROL", "ENABLE"))
        self.faults_on = True
        for i in range(len(self.layers)):
            await self.run(i, int(self.rng.integers(1, self.p["max_vectors"] + 1)), f"host faults, layer {i}")
        # the on-chip generator
        seed = int(self.rng.integers(0, 1 << 32))
        rate, on = rate_threshold(float(self.rng.uniform(0.05, 0.4))), rate_threshold(0.5)
        await h.set("FAULT_SEED", seed)
        await h.set("FAULT_RATE", rate)
        await h.set("FAULT_ON_FRACTION", on)
        await h.set("FAULT_WORDS", self.used_words)
        await h.set("FAULT_CONTROL", _bit("FAULT_CONTROL", "GENERATE") | _bit("FAULT_CONTROL", "ENABLE"))
        self.expect("FAULT_CONTROL: GENERATE self-clears", _bit("FAULT_CONTROL", "ENABLE"), await h.reg("FAULT_CONTROL"))
        await h.wait_status(_bit("STATUS", "GEN_BUSY"), 0)
        self.fault_words[: self.used_words] = fabric.memory_fault_map(seed, rate, on, self.used_words, cfg)
        for i in range(len(self.layers)):
            await self.run(i, int(self.rng.integers(1, self.p["max_vectors"] + 1)), f"generated faults, layer {i}")
        # clear: every cell healthy again (ENABLE stays set)
        await h.set("FAULT_CONTROL", _bit("FAULT_CONTROL", "CLEAR") | _bit("FAULT_CONTROL", "ENABLE"))
        await h.wait_status(_bit("STATUS", "GEN_BUSY"), 0)
        self.fault_words[:] = 0
        await self.run(0, 2, "after CLEAR")


@cocotb.test()
async def top_matches_model(dut):
    p = bench_params()
    quiet_inputs(dut, design(p))  # no X on the bus inputs before the models take over (Icarus)
    start_clock(dut)
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    b = TopBench(dut, p)
    await b.check_registers()
    await b.place_layers(p["layers"])
    assert b.layers, "no layer fits the configured memories"
    await b.check_errors()
    for r in range(p["runs"]):
        i = int(b.rng.integers(0, len(b.layers)))
        await b.run(i, int(b.rng.integers(1, p["max_vectors"] + 1)), f"run {r} (layer {i})")
    await b.abort_run()
    await b.faults()
    b.cmp.finish("top")
