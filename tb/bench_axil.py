"""cocotb bench: :class:`remeco.rtl.axil.RegisterFile` against a Python model of the register map.

The DUT is :class:`Harness`: the register file with the real
:data:`remeco.rtl.regmap.REGISTERS`, its bus named ``s_axil`` as in the accelerator top,
every ``ro`` input driven from a free-running cycle counter (so a read shows *when* it
sampled) and the per-register outputs gathered into a few vectors that the monitor reads
once per cycle. cocotbext-axi's ``AxiLiteMaster`` drives the bus with random pauses on
all five channels.

Content comes from the model, timing from the documented rules. :class:`RegisterModel`
knows only the register table and the rules of :mod:`remeco.rtl.axil`. :class:`Monitor`
watches the bus handshakes every cycle and, from what the master actually sent, predicts
each ``<name>_written`` / ``<name>_read`` pulse (cycle and register), every output of
every cycle (stored values, self-clearing bits, ``wo`` strobes, core overwrites), the
cycle ``bvalid`` / ``rvalid`` rise and the response they carry; it also checks that a
waiting response stays put. The workers check what the master got back.

Statistics: ``vectors`` counts the accesses checked plus the cycles whose pulses and
outputs the monitor checked; ``mismatches`` every difference found.

Parameters (``$REMECO_BENCH_PARAMS``): ``addr_bits``, ``self_clearing`` (``{name: mask}``),
``core_writable`` (names), ``seed``, ``accesses`` (writes, and reads, of the random test),
``pause`` (probability that a master channel pauses in a cycle).
"""

from __future__ import annotations

import logging
import random
import warnings
from collections import deque
from dataclasses import dataclass

import cocotb
from amaranth import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout

from ..rtl.axil import OKAY, SLVERR, AxiLiteSignature, RegisterFile
from ..rtl.regmap import REGISTERS, Register
from .common import Comparison, bench_params, start_clock

#: Multiplier that spreads the ``ro`` inputs apart (each register sees a different value).
SALT = 0x9E3779B9
#: Cycles an access may take, pauses included, before the bench calls it a hang.
TIMEOUT_CYCLES = 400
_PERIOD_NS = 10
_MAX_LINES = 30


def ro_value(reg: Register, cycle: int) -> int:
    """What :class:`Harness` drives on ``ro`` register ``reg`` while its counter shows ``cycle``."""
    return (cycle ^ (reg.offset * SALT)) & 0xFFFF_FFFF & reg.mask


def register_file(p: dict) -> RegisterFile:
    """The register file under test for the bench parameters ``p``."""
    return RegisterFile(
        REGISTERS,
        addr_bits=p["addr_bits"],
        self_clearing=p.get("self_clearing", {}),
        core_writable=tuple(p.get("core_writable", ())),
    )


class Harness(wiring.Component):
    """A :class:`RegisterFile` with observable stimulus, as the bench's top level.

    Members
    -------
    s_axil : ``In(AxiLiteSignature(addr_bits))``
        The register file's bus.
    cycle : ``Out(32)``
        Cycles since reset; ``ro`` register ``R`` is driven with :func:`ro_value` of it.
    written, read : ``Out(len(registers))``
        Bit ``i``: ``<name>_written`` / ``<name>_read`` of register ``i`` of the table.
    outputs : ``Out(...)``
        The ``rw`` and ``wo`` outputs in table order, the first in the low bits.
    <name>_set, <name>_next
        The ``core_writable`` inputs, passed through.
    """

    def __init__(self, regfile: RegisterFile) -> None:
        self.regfile = regfile
        regs = regfile.registers
        members = {
            "s_axil": In(AxiLiteSignature(regfile.addr_bits)),
            "cycle": Out(32),
            "written": Out(len(regs)),
            "read": Out(len(regs)),
            "outputs": Out(sum(r.width for r in regs if r.access != "ro")),
        }
        for r in regs:
            if r.name in regfile.core_writable:
                members[f"{r.name.lower()}_set"] = In(1)
                members[f"{r.name.lower()}_next"] = In(r.width)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        rf = m.submodules.regfile = self.regfile
        wiring.connect(m, wiring.flipped(self.s_axil), rf.bus)
        m.d.sync += self.cycle.eq(self.cycle + 1)
        outs = []
        for i, r in enumerate(rf.registers):
            low = r.name.lower()
            m.d.comb += [self.written[i].eq(getattr(rf, f"{low}_written")), self.read[i].eq(getattr(rf, f"{low}_read"))]
            if r.access == "ro":
                m.d.comb += getattr(rf, low).eq((self.cycle ^ ((r.offset * SALT) & 0xFFFF_FFFF))[: r.width])
            else:
                outs.append(getattr(rf, low))
        m.d.comb += self.outputs.eq(Cat(*outs))
        for name in rf.core_writable:
            low = name.lower()
            m.d.comb += [getattr(rf, f"{low}_set").eq(getattr(self, f"{low}_set")),
                         getattr(rf, f"{low}_next").eq(getattr(self, f"{low}_next"))]
        return m


def design(p: dict) -> Harness:
    """The top level under test for the bench parameters ``p``."""
    return Harness(register_file(p))


def byte_mask(strb: int) -> int:
    """The 32-bit mask of the bytes ``wstrb`` enables."""
    return sum(0xFF << (8 * i) for i in range(4) if strb >> i & 1)


class RegisterModel:
    """What the register file answers and holds, from the table and the documented rules."""

    def __init__(self, registers, self_clearing: dict, core_writable) -> None:
        self.registers = tuple(registers)
        self.index = {r.name: i for i, r in enumerate(self.registers)}
        self._by_offset = {r.offset: r for r in self.registers}
        self.self_clearing = dict(self_clearing)
        self.core_writable = tuple(core_writable)
        # Bit positions of the rw / wo outputs in Harness.outputs.
        self.fields: list[tuple[Register, int]] = []
        lsb = 0
        for r in self.registers:
            if r.access != "ro":
                self.fields.append((r, lsb))
                lsb += r.width

    def at(self, offset: int) -> Register | None:
        """The register at a bus offset (``None``: no register, including misaligned)."""
        return self._by_offset.get(offset)

    def keep(self, reg: Register) -> int:
        """Bits of ``reg`` that are stored."""
        return reg.mask & ~self.self_clearing.get(reg.name, 0)

    def write_resp(self, offset: int) -> int:
        """``BRESP`` of a write to ``offset``."""
        reg = self.at(offset)
        return OKAY if reg is not None and reg.access != "ro" else SLVERR

    def read_resp(self, offset: int) -> int:
        """``RRESP`` of a read of ``offset``."""
        return OKAY if self.at(offset) is not None else SLVERR

    def reset_state(self) -> dict[str, int]:
        """Stored values after reset."""
        return {r.name: r.reset for r in self.registers if r.access == "rw"}

    def write(self, reg: Register, old: int, data: int, strb: int) -> tuple[int, int]:
        """``(stored value, output in the _written cycle)`` of an ``OKAY`` write."""
        bm = byte_mask(strb)
        if reg.access == "wo":
            return 0, data & bm & reg.mask
        new = ((old & ~bm) | (data & bm)) & reg.mask
        return new & self.keep(reg), new  # old holds no self-clearing bits

    def outputs(self, stored: dict[str, int], pulses: dict[str, int]) -> int:
        """``Harness.outputs`` for these stored values and this cycle's pulse outputs."""
        word = 0
        for r, lsb in self.fields:
            word |= (pulses[r.name] if r.name in pulses else stored.get(r.name, 0)) << lsb
        return word

    def describe(self, word: int) -> dict[str, int]:
        """``Harness.outputs`` split by register."""
        return {r.name: (word >> lsb) & r.mask for r, lsb in self.fields}


@dataclass
class _Write:
    aw: tuple[int, int] | None = None  # (cycle, awaddr)
    w: tuple[int, int, int] | None = None  # (cycle, wdata, wstrb)


class Monitor:
    """Per-cycle scoreboard of the DUT's pulses, outputs and responses (see module docstring).

    ``read_results`` receives ``(araddr, rresp, rdata)`` the model expects for each
    accepted read, in order, for the workers to compare with what the master got.
    """

    def __init__(self, dut, model: RegisterModel, cmp: Comparison) -> None:
        self.dut = dut
        self.model = model
        self.cmp = cmp
        self.cycle = 0
        self.synced = False  # nothing is known until the first reset
        self.after_reset = False
        self.stored = model.reset_state()
        self.prev_set: dict[str, int] = {}
        self.write = _Write()
        self.ar: tuple[int, int] | None = None
        self.read_due: tuple[int, int, int] | None = None  # (cycle rvalid rises, rresp, rdata)
        self.b_wait: int | None = None  # bresp of a B that was not taken
        self.r_wait: tuple[int, int] | None = None
        self.read_results: deque[tuple[int, int, int]] = deque()
        self.write_pulses = self.read_pulses = self.cycles_checked = 0
        self.collisions = 0  # bus writes that took effect at an edge where the core set the register
        #: How often each situation worth testing occurred (the random test requires each).
        self.coverage = dict.fromkeys(
            ("AW before W", "W before AW", "AW with W", "B waited", "R waited", "self-clearing pulse",
             "wo strobe", "core overwrite", "read and write pulse together"), 0)
        self.set_names = [(n, n.lower()) for n in model.core_writable]
        s = dut
        self._sig = {
            name: getattr(s, f"s_axil__{name}")
            for name in ("awvalid", "awready", "awaddr", "wvalid", "wready", "wdata", "wstrb", "bvalid", "bready",
                         "bresp", "arvalid", "arready", "araddr", "rvalid", "rready", "rdata", "rresp")
        }
        self._task = cocotb.start_soon(self._run())

    def error(self, text: str) -> None:
        """Count one mismatch (the first few are listed in the failure message)."""
        self.cmp.mismatches += 1
        if len(self.cmp.lines) < _MAX_LINES:
            self.cmp.lines.append(f"cycle {self.cycle}: {text}")

    async def _run(self) -> None:
        edge = RisingEdge(self.dut.clk)
        while True:
            await edge  # values read here are those of the cycle that just ended
            self._sample()
            self.cycle += 1

    def _bit(self, name: str) -> int:
        return int(self._sig[name].value)

    def _sample(self) -> None:
        dut, model, c = self.dut, self.model, self.cycle
        rst = int(dut.rst.value)
        if not self.synced:
            if rst:
                self.synced = self.after_reset = True
                self._reset()
            return
        self.cycles_checked += 1
        written, read = int(dut.written.value), int(dut.read.value)
        bvalid, rvalid = self._bit("bvalid"), self._bit("rvalid")

        # --- what this cycle must look like ------------------------------------------
        pulses: dict[str, int] = {}
        expect_w = expect_r = 0
        if self.after_reset:
            stored = model.reset_state()
            for what, v in (("bvalid", bvalid), ("rvalid", rvalid)):
                if v:
                    self.error(f"{what} high right after reset")
        else:
            stored = dict(self.stored)
            for name, nxt in self.prev_set.items():
                stored[name] = nxt & model.keep(model.registers[model.index[name]])
                self.coverage["core overwrite"] += 1
            wr = self.write
            if wr.aw is not None and wr.w is not None and c == max(wr.aw[0], wr.w[0]) + 2:
                addr, (_, data, strb) = wr.aw[1], wr.w
                order = "AW before W" if wr.aw[0] < wr.w[0] else "W before AW" if wr.aw[0] > wr.w[0] else "AW with W"
                self.coverage[order] += 1
                reg = model.at(addr)
                resp = model.write_resp(addr)
                if resp == OKAY:
                    expect_w = 1 << model.index[reg.name]
                    self.collisions += reg.name in self.prev_set
                    # The bus write wins over a core overwrite at the same edge.
                    new, out = model.write(reg, self.stored.get(reg.name, 0), data, strb)
                    if reg.access == "rw":
                        stored[reg.name] = new
                        self.coverage["self-clearing pulse"] += out != new
                    else:
                        self.coverage["wo strobe"] += out != 0
                    pulses[reg.name] = out
                if not bvalid:
                    self.error(f"no B response two cycles after AW and W of the write to {addr:#x}")
                elif self._bit("bresp") != resp:
                    self.error(f"write to {addr:#x}: bresp {self._bit('bresp')}, expected {resp}")
                self.write = _Write()
            elif bvalid and self.b_wait is None:
                self.error("bvalid rose without a write due")
            if self.ar is not None and c == self.ar[0] + 1:
                addr = self.ar[1]
                reg = model.at(addr)
                resp, data = model.read_resp(addr), 0
                if reg is not None:
                    expect_r = 1 << model.index[reg.name]
                    if reg.access == "ro":
                        data = ro_value(reg, int(dut.cycle.value))
                    elif reg.access == "rw":
                        data = stored[reg.name]
                self.read_due = (c + 1, resp, data)
                self.read_results.append((addr, resp, data))
                self.ar = None
            if self.read_due is not None and c == self.read_due[0]:
                _, resp, data = self.read_due
                got = (rvalid, self._bit("rresp"), int(self._sig["rdata"].value))
                if got != (1, resp, data):
                    self.error(f"R response (rvalid, rresp, rdata) = {got}, expected {(1, resp, data)}")
                self.read_due = None
            elif rvalid and self.r_wait is None:
                self.error("rvalid rose without a read due")

        # --- pulses and outputs --------------------------------------------------------
        if written != expect_w:
            self.error(f"_written pulses {self._names(written)}, expected {self._names(expect_w)}")
        if read != expect_r:
            self.error(f"_read pulses {self._names(read)}, expected {self._names(expect_r)}")
        self.coverage["read and write pulse together"] += bool(written and read)
        self.write_pulses += bin(written).count("1")
        self.read_pulses += bin(read).count("1")
        out = int(dut.outputs.value)
        want = model.outputs(stored, pulses)
        if out != want:
            got_d, want_d = model.describe(out), model.describe(want)
            diff = {n: (hex(want_d[n]), hex(got_d[n])) for n in want_d if want_d[n] != got_d[n]}
            self.error(f"outputs differ from the model, {{register: (expected, got)}}: {diff}")
        self.stored = stored

        # --- responses waiting must hold still ----------------------------------------
        bready, rready = self._bit("bready"), self._bit("rready")
        if self.b_wait is not None and (not bvalid or self._bit("bresp") != self.b_wait):
            self.error("a B response not taken changed or disappeared")
        self.b_wait = self._bit("bresp") if bvalid and not bready else None
        self.coverage["B waited"] += self.b_wait is not None
        r_now = (self._bit("rresp"), int(self._sig["rdata"].value)) if rvalid else None
        if self.r_wait is not None and r_now != self.r_wait:
            self.error("an R response not taken changed or disappeared")
        self.r_wait = r_now if not rready else None
        self.coverage["R waited"] += self.r_wait is not None

        # --- what was accepted in this cycle takes effect at its end --------------------
        self.after_reset = bool(rst)
        if rst:
            self._reset()
            return
        self.prev_set = {
            name: int(getattr(dut, f"{low}_next").value)
            for name, low in self.set_names
            if int(getattr(dut, f"{low}_set").value)
        }
        if self._bit("awvalid") and self._bit("awready"):
            if self.write.aw is not None:
                self.error("AW accepted while another write address is held")
            self.write.aw = (c, int(self._sig["awaddr"].value))
        if self._bit("wvalid") and self._bit("wready"):
            if self.write.w is not None:
                self.error("W accepted while another write data beat is held")
            self.write.w = (c, int(self._sig["wdata"].value), int(self._sig["wstrb"].value))
        if self._bit("arvalid") and self._bit("arready"):
            if self.ar is not None or self.read_due is not None:
                self.error("AR accepted while another read is in flight")
            self.ar = (c, int(self._sig["araddr"].value))

    def _reset(self) -> None:
        # The synchronous reset drops everything in flight and restores the reset values.
        self.stored = self.model.reset_state()
        self.prev_set = {}
        self.write = _Write()
        self.ar = self.read_due = self.b_wait = self.r_wait = None
        self.read_results.clear()

    def _names(self, bits: int) -> list[str]:
        return [r.name for i, r in enumerate(self.model.registers) if bits >> i & 1]


def _pauses(rng: random.Random, prob: float):
    while True:
        yield rng.random() < prob


class TB:
    """Clock, bus master, monitor and model of one test (create with :meth:`start`)."""

    def __init__(self, dut, p: dict, seed: int) -> None:
        self.dut = dut
        self.p = p
        self.rng = random.Random(seed)
        self.model = RegisterModel(REGISTERS, p.get("self_clearing", {}), p.get("core_writable", ()))
        self.cmp = Comparison()
        self.accesses = 0
        self.okay = {"write": 0, "read": 0}  # accesses the model answers OKAY
        self.axil = self.monitor = None  # made by start()
        self.span = 1 << p["addr_bits"]
        used = {r.offset for r in REGISTERS}
        self.holes = [a for a in range(0, self.span, 4) if a not in used]
        # Registers with behaviour of their own, picked more often than the table's share.
        self.special = [r for r in REGISTERS if r.access == "wo" or r.name in self.model.self_clearing
                        or r.name in self.model.core_writable]

    @classmethod
    async def start(cls, dut, p: dict, seed: int) -> "TB":
        """Clock and reset running, then the bus master; returns after the reset."""
        from cocotbext.axi import AxiLiteBus, AxiLiteMaster

        # In reset from the first edge on (a four-state simulator starts with X
        # everywhere), and the master and monitor only after that edge: they sample the
        # handshakes from the first edge they see.
        dut.rst.value = 1
        tb = cls(dut, p, seed)
        for name in tb.model.core_writable:
            getattr(dut, f"{name.lower()}_set").value = 0
            getattr(dut, f"{name.lower()}_next").value = 0
        start_clock(dut, _PERIOD_NS)
        await RisingEdge(dut.clk)
        # cocotbext-axi 0.1.28 still calls cocotb 1.x APIs that cocotb 2 deprecates.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.axi")
        tb.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_"), dut.clk, dut.rst)
        for log in (tb.axil.write_if.log, tb.axil.read_if.log):
            log.setLevel(logging.WARNING)  # one INFO line per access otherwise
        tb.monitor = Monitor(dut, tb.model, tb.cmp)
        await tb.reset()
        return tb

    @property
    def channels(self):
        """The master's AW, W, B, AR and R channel models."""
        w, r = self.axil.write_if, self.axil.read_if
        return (w.aw_channel, w.w_channel, w.b_channel, r.ar_channel, r.r_channel)

    def set_pauses(self, prob: float) -> None:
        """Pause every channel of the master with probability ``prob`` per cycle."""
        for ch in self.channels:
            ch.set_pause_generator(_pauses(random.Random(self.rng.random()), prob) if prob > 0 else None)
            if prob <= 0:
                ch.pause = False  # clearing the generator leaves its last value in place

    async def reset(self, cycles: int = 2) -> None:
        """Hold ``rst`` for ``cycles`` edges."""
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    def error(self, text: str) -> None:
        """Count one mismatch found by a worker."""
        self.cmp.mismatches += 1
        if len(self.cmp.lines) < _MAX_LINES:
            self.cmp.lines.append(text)

    def finish(self, test: str) -> None:
        """Record the statistics and fail on any mismatch."""
        self.cmp.vectors = self.accesses + self.monitor.cycles_checked
        if self.monitor.cycles_checked == 0:
            self.error("the monitor checked no cycle (no reset seen)")
        self.cmp.finish(test)

    def random_offset(self) -> int:
        """A register (often), a misaligned offset, a hole in the map or anything in range."""
        x = self.rng.random()
        if x < 0.15 and self.special:
            return self.rng.choice(self.special).offset
        if x < 0.7:
            return self.rng.choice(REGISTERS).offset
        if x < 0.8:
            return self.rng.choice(REGISTERS).offset + self.rng.randint(1, 3)
        if x < 0.9 and self.holes:
            return self.rng.choice(self.holes)
        return self.rng.randrange(self.span)

    def random_data(self) -> int:
        """A random word, 0 and all-ones more often than their share."""
        x = self.rng.random()
        if x < 0.1:
            return 0
        if x < 0.2:
            return 0xFFFF_FFFF
        return self.rng.getrandbits(32)

    async def _timed(self, what: str, coro):
        from cocotb.triggers import SimTimeoutError

        try:
            return await with_timeout(coro, TIMEOUT_CYCLES * _PERIOD_NS, "ns")
        except SimTimeoutError:
            raise AssertionError(f"hang: {what} not answered within {TIMEOUT_CYCLES} cycles") from None

    async def write(self, offset: int, data: int, strb: int = 0xF, order: str = "together", gap: int = 0) -> int:
        """Write through the master's channels (``order``: which of AW / W goes first,
        ``gap`` cycles after the first moved); check and return ``BRESP``."""
        from cocotbext.axi.axil_channels import AxiLiteAWTransaction, AxiLiteWTransaction

        wi = self.axil.write_if
        aw = (wi.aw_channel, AxiLiteAWTransaction(awaddr=offset, awprot=0))
        w = (wi.w_channel, AxiLiteWTransaction(wdata=data, wstrb=strb))

        async def go():
            if order == "together":
                await aw[0].send(aw[1])
                await w[0].send(w[1])
            else:
                first, second = (aw, w) if order == "aw_first" else (w, aw)
                await first[0].send(first[1])
                await first[0].wait()  # the beat has moved
                if gap:
                    await ClockCycles(self.dut.clk, gap)
                await second[0].send(second[1])
            return int((await wi.b_channel.recv()).bresp)

        resp = await self._timed(f"write {data:#010x} strb {strb:#x} to {offset:#x} ({order})", go())
        self._check_resp("write", offset, resp, self.model.write_resp(offset))
        return resp

    async def write_bytes(self, offset: int, data: bytes) -> int:
        """Write through the master's ``write`` (it derives ``wstrb`` from the address
        and length); check and return ``BRESP``."""
        res = await self._timed(f"write of {data.hex()} to {offset:#x}", self.axil.write(offset, data))
        resp = int(res.resp)
        self._check_resp("write", offset, resp, self.model.write_resp(offset))
        return resp

    async def read(self, offset: int, length: int = 4) -> int:
        """Read one beat through the master; check response and data against the model."""
        res = await self._timed(f"read of {offset:#x}", self.axil.read(offset, length))
        resp = int(res.resp)
        self._check_resp("read", offset, resp, self.model.read_resp(offset))
        if not self.monitor.read_results:
            self.error(f"read of {offset:#x}: the monitor saw no AR for it")
            return 0
        addr, _, data = self.monitor.read_results.popleft()
        lane = offset % 4
        want = ((data >> (8 * lane)) & ((1 << (8 * length)) - 1)).to_bytes(length, "little")
        if addr != offset:
            self.error(f"read of {offset:#x}: the master sent araddr {addr:#x}")
        elif bytes(res.data) != want:
            self.error(f"read of {offset:#x}: got {bytes(res.data).hex()}, expected {want.hex()} (little-endian bytes)")
        return int.from_bytes(res.data, "little")

    def _check_resp(self, what: str, offset: int, got: int, want: int) -> None:
        self.accesses += 1
        self.okay[what] += want == OKAY
        if got != want:
            reg = self.model.at(offset)
            name = f"{reg.name} ({reg.access})" if reg else "no register"
            self.error(f"{what} {offset:#x} [{name}]: response {got}, expected {want}")

    async def random_write(self) -> None:
        """One write of random kind: channel order, gap, strobes, or the master's byte API."""
        offset = self.random_offset()
        if self.rng.random() < 0.25:
            length = self.rng.randint(1, 4 - offset % 4)  # one beat
            await self.write_bytes(offset, self.rng.getrandbits(8 * length).to_bytes(length, "little"))
        else:
            strb = 0xF if self.rng.random() < 0.6 else self.rng.randrange(16)
            order = self.rng.choice(("together", "aw_first", "w_first"))
            await self.write(offset, self.random_data(), strb, order, self.rng.randint(0, 3))

    async def random_read(self) -> None:
        """One read of a random offset (misaligned ones stay within their word)."""
        offset = self.random_offset()
        await self.read(offset, self.rng.randint(1, 4 - offset % 4) if offset % 4 else 4)

    async def read_all(self) -> None:
        """Read every register once."""
        for r in REGISTERS:
            await self.read(r.offset)

    async def check_counts(self) -> None:
        """Pulses seen by the monitor == accesses the model answers ``OKAY`` (exactly
        one pulse per access; call with no access in flight)."""
        await ClockCycles(self.dut.clk, 2)  # the monitor has seen the last pulse
        for what, seen in (("write", self.monitor.write_pulses), ("read", self.monitor.read_pulses)):
            if seen != self.okay[what]:
                self.error(f"{seen} _{what.replace('write', 'written')} pulses for {self.okay[what]} OKAY {what}s")


async def _core_driver(tb: TB, prob: float) -> None:
    """Drive every ``<name>_set`` with probability ``prob`` per cycle and a random ``_next``."""
    dut, rng = tb.dut, random.Random(tb.rng.random())
    regs = [r for r in REGISTERS if r.name in tb.model.core_writable]
    edge = RisingEdge(dut.clk)
    while True:
        await edge
        for r in regs:
            on = rng.random() < prob
            getattr(dut, f"{r.name.lower()}_set").value = int(on)
            if on:
                getattr(dut, f"{r.name.lower()}_next").value = rng.getrandbits(r.width)


async def _start(dut, seed_offset: int) -> TB:
    p = bench_params()
    return await TB.start(dut, p, p["seed"] + seed_offset)


def _quiet_core(tb: TB) -> None:
    for name in tb.model.core_writable:
        getattr(tb.dut, f"{name.lower()}_set").value = 0


@cocotb.test()
async def every_offset_after_reset(dut):
    """Reset values of every register, then a write and a read at every offset of the
    address space (misaligned ones through the master's byte API)."""
    tb = await _start(dut, 0)
    for offset in range(tb.span):
        await tb.read(offset, 4 if offset % 4 == 0 else 4 - offset % 4)
    for offset in range(tb.span):
        if offset % 4:
            await tb.write_bytes(offset, bytes([tb.rng.getrandbits(8)]))
        else:
            await tb.write(offset, tb.random_data())
        await tb.read(offset, 4 if offset % 4 == 0 else 4 - offset % 4)
    await tb.check_counts()
    tb.finish("every_offset_after_reset")


@cocotb.test()
async def random_concurrent_traffic(dut):
    """Random reads and writes at the same time, every channel paused at random, the core
    overwriting its registers at random; then every register read back."""
    tb = await _start(dut, 1)
    n = tb.p["accesses"]
    tb.set_pauses(tb.p["pause"])
    core = cocotb.start_soon(_core_driver(tb, 0.05))

    async def writer():
        for _ in range(n):
            await tb.random_write()

    async def reader():
        for _ in range(n):
            await tb.random_read()

    workers = [cocotb.start_soon(writer()), cocotb.start_soon(reader())]
    for task in workers:
        await task
    core.cancel()
    _quiet_core(tb)
    tb.set_pauses(0)
    await tb.read_all()
    await tb.check_counts()
    missed = [k for k, v in tb.monitor.coverage.items() if v == 0 and (tb.p["pause"] > 0 or "waited" not in k)]
    if missed:
        tb.error(f"the random traffic never produced: {', '.join(missed)}")
    cocotb.log.info("coverage: %s", tb.monitor.coverage)
    tb.finish("random_concurrent_traffic")


@cocotb.test()
async def core_set_and_bus_write_collide(dut):
    """The core overwrites its registers on every edge while the bus writes and reads
    them: the edge a bus write takes effect stores the bus value, every other edge the
    core's."""
    tb = await _start(dut, 2)
    regs = [r for r in REGISTERS if r.name in tb.model.core_writable]
    if not regs:
        tb.error("no core_writable register in the bench parameters")
    core = cocotb.start_soon(_core_driver(tb, 1.0))
    for k in range(60 if regs else 0):
        r = tb.rng.choice(regs)
        if k % 3:
            strb = 0xF if k % 2 else tb.rng.randrange(16)
            await tb.write(r.offset, tb.random_data(), strb, tb.rng.choice(("together", "aw_first", "w_first")))
        else:
            await tb.read(r.offset)
    core.cancel()
    _quiet_core(tb)
    await tb.check_counts()
    if regs and tb.monitor.collisions < 20:
        tb.error(f"only {tb.monitor.collisions} bus writes met a core overwrite at the same edge")
    tb.finish("core_set_and_bus_write_collide")


@cocotb.test()
async def reset_with_responses_waiting(dut):
    """Every writable register changed, a B and an R response left waiting, then a
    reset: the responses are dropped and every register is back at its reset value."""
    tb = await _start(dut, 3)
    writable = [r for r in REGISTERS if r.access != "ro"]
    for r in writable:
        await tb.write(r.offset, ~r.reset & 0xFFFF_FFFF)
    await tb.read_all()
    b, r_ch = tb.axil.write_if.b_channel, tb.axil.read_if.r_channel
    b.pause = r_ch.pause = True
    rw = [r for r in writable if r.access == "rw"]
    tb.axil.init_write(rw[0].offset, (rw[0].reset ^ 1).to_bytes(4, "little"))
    tb.axil.init_read(REGISTERS[0].offset, 4)
    for _ in range(50):
        await RisingEdge(dut.clk)
        if int(dut.s_axil__bvalid.value) and int(dut.s_axil__rvalid.value):
            break
    else:
        tb.error("the B and R responses to leave waiting never came")
    await ClockCycles(dut.clk, 3)
    await tb.reset()
    b.pause = r_ch.pause = False
    await ClockCycles(dut.clk, 5)  # the monitor fails any response that still comes
    stored = {}
    for reg in REGISTERS:
        stored[reg.name] = await tb.read(reg.offset)
    for reg in rw:
        if stored[reg.name] != reg.reset:
            tb.error(f"{reg.name} reads {stored[reg.name]:#x} after reset, expected {reg.reset:#x}")
    tb.finish("reset_with_responses_waiting")
