"""AXI4-Lite slave register file generated from the register map (:mod:`remeco.rtl.regmap`).

:class:`RegisterFile` turns a table of :class:`~remeco.rtl.regmap.Register` into an
AXI4-Lite slave with one port per register towards the core; nothing here restates an
offset, a width or a reset value. :class:`AxiLiteSignature` is the bus, reusable by any
component that has an AXI4-Lite port.

Timing, as seen by the core (cycle ``C`` is the cycle before a clock edge, ``C + 1`` the
one after it):

* **Write.** ``AW`` and ``W`` are each taken into a one-entry holding register, in
  either order or together. In the first cycle ``C`` in which both are held, the write
  is decoded; it *takes effect* at the edge ending ``C``. In cycle ``C + 1``:
  ``<name>_written`` is high (for that one cycle), an ``rw`` output already shows the
  new value (its self-clearing bits are 1 only in this cycle), a ``wo`` output carries
  the written value (only in this cycle), and ``bvalid`` rises. So a core that sees
  ``<name>_written`` reads the new value from ``<name>`` in the same cycle.
* **Read.** ``AR`` is taken into a one-entry holding register. In the next cycle ``C``
  ``<name>_read`` is high, and the word returned is ``<name>`` as it is in ``C`` (an
  ``ro`` input is sampled at the edge ending ``C``); ``rvalid`` rises in ``C + 1``. A
  core that latches related state on ``<name>_read`` (``CYCLES_HI`` when ``CYCLES_LO``
  is read) therefore latches it at the same edge that samples the returned word.
* **Core writes.** ``<name>_set`` high in cycle ``C`` stores ``<name>_next`` at the edge
  ending ``C``, unless a bus write to the same register takes effect at that edge: the
  bus write wins and the core's value is dropped.

A write answers ``SLVERR`` and changes nothing when its offset has no register
(including misaligned offsets) or names an ``ro`` register; a read answers ``SLVERR``
with data 0 when its offset has no register; a read of a ``wo`` register answers
``OKAY`` with 0. One read and one write are in flight at a time: ``awready`` /
``wready`` stay low while their holding register is full or a ``B`` response waits,
``arready`` while an ``AR`` is held or an ``R`` response waits, and ``B`` / ``R`` are
held until ``bready`` / ``rready``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from amaranth import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from . import regmap
from .regmap import Register

__all__ = ["OKAY", "SLVERR", "AxiLiteSignature", "RegisterFile"]

#: ``BRESP`` / ``RRESP`` of a successful access.
OKAY = 0b00
#: ``BRESP`` / ``RRESP`` of an access to no register or a write to a read-only one.
SLVERR = 0b10


class AxiLiteSignature(wiring.Signature):
    """AXI4-Lite bus with 32-bit data, seen from the master.

    ``In(AxiLiteSignature(n))`` is the slave side. A component member ``s_axil`` of this
    signature becomes the Verilog ports ``s_axil__awaddr`` etc., which
    ``cocotbext.axi.AxiLiteBus.from_prefix(dut, "s_axil_")`` finds.

    Parameters
    ----------
    addr_bits:
        Width of ``awaddr`` / ``araddr``.

    Members
    -------
    awaddr, awprot, awvalid : ``Out(addr_bits)``, ``Out(3)``, ``Out(1)``
        Write address channel (``awready : In(1)``).
    wdata, wstrb, wvalid : ``Out(32)``, ``Out(4)``, ``Out(1)``
        Write data channel (``wready : In(1)``); ``wstrb`` bit ``i`` enables byte ``i``.
    bresp, bvalid : ``In(2)``, ``In(1)``
        Write response channel (``bready : Out(1)``).
    araddr, arprot, arvalid : ``Out(addr_bits)``, ``Out(3)``, ``Out(1)``
        Read address channel (``arready : In(1)``).
    rdata, rresp, rvalid : ``In(32)``, ``In(2)``, ``In(1)``
        Read data channel (``rready : Out(1)``).
    """

    #: Data width (AXI4-Lite allows 32 or 64; the register map is 32-bit).
    DATA_BITS = 32

    def __init__(self, addr_bits: int) -> None:
        if isinstance(addr_bits, bool) or not isinstance(addr_bits, int) or addr_bits < 1:
            raise ValueError(f"addr_bits must be a positive integer, got {addr_bits!r}")
        self._addr_bits = addr_bits
        d, s = self.DATA_BITS, self.DATA_BITS // 8
        super().__init__({
            "awaddr": Out(addr_bits), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(d), "wstrb": Out(s), "wvalid": Out(1), "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_bits), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
            "rdata": In(d), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })

    @property
    def addr_bits(self) -> int:
        """Width of the address channels."""
        return self._addr_bits

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.addr_bits == self.addr_bits

    def __repr__(self) -> str:
        return f"AxiLiteSignature({self.addr_bits})"


def _check_names(what: str, names, by_name: dict[str, Register]) -> None:
    for name in names:
        if name not in by_name:
            raise ValueError(f"{what}: no register named {name!r}")
        if by_name[name].access != "rw":
            raise ValueError(f"{what}: {name} is {by_name[name].access}; only rw registers store a value")


class RegisterFile(wiring.Component):
    """AXI4-Lite slave holding the registers of a register map (cycle timing: module docstring).

    Parameters
    ----------
    registers:
        The register table (default :data:`remeco.rtl.regmap.REGISTERS`); checked with
        :func:`remeco.rtl.regmap.validate`.
    addr_bits:
        Address bits decoded (default :data:`remeco.rtl.regmap.ADDR_BITS`); the bus port
        is this wide, so a wider master address connects by its low bits.
    self_clearing:
        ``{register name: bit mask}`` of ``rw`` bits that are never stored: they read
        back 0 and are 1 on the register's output only in the ``<name>_written`` cycle
        of a write that sets them (command bits next to stored ones, e.g.
        ``{"FAULT_CONTROL": 0b011}``).
    core_writable:
        Names of ``rw`` registers that the core may overwrite (``<name>_set``,
        ``<name>_next``), e.g. an auto-incrementing ``LOAD_ADDRESS``.

    Members
    -------
    bus : ``In(AxiLiteSignature(addr_bits))``
        The AXI4-Lite slave port; ``awprot`` / ``arprot`` are ignored.
    <name> : ``Out(width)`` for ``rw`` and ``wo``, ``In(width)`` for ``ro``
        ``<name>`` is the register name in lower case. ``rw``: the stored value (reset
        value after reset) with the self-clearing bits as above. ``wo``: the written
        value (bytes without ``wstrb`` are 0) in the ``<name>_written`` cycle, else 0.
        ``ro``: driven by the core, returned by reads.
    <name>_written : ``Out(1)``
        High for one cycle after a bus write to the register took effect with ``OKAY``
        (never for ``ro`` registers, whose writes answer ``SLVERR``).
    <name>_read : ``Out(1)``
        High for one cycle when a read of the register (``OKAY``) samples its value.
    <name>_set, <name>_next : ``In(1)``, ``In(width)``
        Only for ``core_writable`` registers: store ``<name>_next`` at the next edge
        (self-clearing bits ignored); a bus write at the same edge wins.
    """

    def __init__(
        self,
        registers: Iterable[Register] = regmap.REGISTERS,
        addr_bits: int = regmap.ADDR_BITS,
        self_clearing: Mapping[str, int] | None = None,
        core_writable: Iterable[str] = (),
    ) -> None:
        registers = tuple(registers)
        if not registers:
            raise ValueError("registers: the table is empty")
        regmap.validate(registers)
        if isinstance(addr_bits, bool) or not isinstance(addr_bits, int) or not 2 <= addr_bits <= 64:
            raise ValueError(f"addr_bits must be an integer in [2, 64], got {addr_bits!r}")
        top = max(registers, key=lambda r: r.offset)
        if top.offset + 3 >= 1 << addr_bits:
            raise ValueError(
                f"addr_bits={addr_bits} cannot address register {top.name} at offset {top.offset:#x} "
                f"(needs {(top.offset + 3).bit_length()})"
            )
        by_name = {r.name: r for r in registers}
        if self_clearing is None:
            self_clearing = {}
        if not isinstance(self_clearing, Mapping):
            raise ValueError(f"self_clearing must map register names to bit masks, got {self_clearing!r}")
        _check_names("self_clearing", self_clearing, by_name)
        for name, mask in self_clearing.items():
            reg = by_name[name]
            if isinstance(mask, bool) or not isinstance(mask, int) or mask <= 0 or mask & ~reg.mask:
                raise ValueError(
                    f"self_clearing: mask {mask!r} of {name} is not a non-zero mask of its {reg.width} bits"
                )
            if reg.reset & mask:
                raise ValueError(f"self_clearing: {name} resets to {reg.reset:#x}, which sets self-clearing bits")
        if isinstance(core_writable, str):
            raise ValueError(f"core_writable must be a collection of register names, got the string {core_writable!r}")
        core_writable = tuple(dict.fromkeys(core_writable))
        _check_names("core_writable", core_writable, by_name)

        self.registers = registers
        self.addr_bits = addr_bits
        self.self_clearing = {name: int(mask) for name, mask in self_clearing.items()}
        self.core_writable = core_writable

        members: dict = {"bus": In(AxiLiteSignature(addr_bits))}

        for r in registers:
            low = r.name.lower()
            ports = {
                low: In(r.width) if r.access == "ro" else Out(r.width, init=r.reset if r.access == "rw" else 0),
                f"{low}_written": Out(1),
                f"{low}_read": Out(1),
            }
            if r.name in core_writable:
                ports.update({f"{low}_set": In(1), f"{low}_next": In(r.width)})
            for name, member in ports.items():
                # e.g. registers A and A_READ, or a register called BUS
                if name in members:
                    raise ValueError(f"registers: port name {name!r} of register {r.name} is already taken")
                members[name] = member
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        lanes = AxiLiteSignature.DATA_BITS // 8

        # --- write: AW and W each wait in a one-entry holding register --------------
        aw_full, w_full, bvalid = Signal(), Signal(), Signal()
        aw_addr = Signal(self.addr_bits)
        w_data = Signal(AxiLiteSignature.DATA_BITS)
        w_strb = Signal(lanes)
        bresp = Signal(2)
        # Readies come from registers only (no combinational path from the valids), and
        # stay low while a B waits, so there is never more than one write in flight.
        m.d.comb += [
            bus.awready.eq(~aw_full & ~bvalid),
            bus.wready.eq(~w_full & ~bvalid),
            bus.bvalid.eq(bvalid),
            bus.bresp.eq(bresp),
        ]
        with m.If(bus.awvalid & bus.awready):
            m.d.sync += [aw_full.eq(1), aw_addr.eq(bus.awaddr)]
        with m.If(bus.wvalid & bus.wready):
            m.d.sync += [w_full.eq(1), w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]
        with m.If(bvalid & bus.bready):
            m.d.sync += bvalid.eq(0)
        byte_mask = Cat(w_strb[i].replicate(8) for i in range(lanes))
        strobed = w_data & byte_mask
        commit = aw_full & w_full & ~bvalid

        # Per-register state; pulse registers default to 0 every cycle and are set by
        # the decode below, so each is high for exactly the one cycle after its edge.
        stored: dict[str, Signal] = {}  # rw: the stored value (self-clearing bits 0)
        pulse: dict[str, Signal] = {}  # rw: self-clearing bits written; wo: the strobe
        written: dict[str, Signal] = {}
        for r in self.registers:
            low = r.name.lower()
            written[r.name] = Signal(name=f"{low}_written_q")
            m.d.sync += written[r.name].eq(0)
            m.d.comb += getattr(self, f"{low}_written").eq(written[r.name])
            sc = self.self_clearing.get(r.name, 0)
            if r.access == "rw":
                q = stored[r.name] = Signal(r.width, init=r.reset, name=f"{low}_q")
                if r.name in self.core_writable:
                    # Assigned before the bus decode, so a bus write at the same edge wins.
                    with m.If(getattr(self, f"{low}_set")):
                        m.d.sync += q.eq(getattr(self, f"{low}_next") & (r.mask & ~sc))
                if sc:
                    pulse[r.name] = Signal(r.width, name=f"{low}_sc_q")
                    m.d.comb += getattr(self, low).eq(q | pulse[r.name])
                else:
                    m.d.comb += getattr(self, low).eq(q)
            elif r.access == "wo":
                pulse[r.name] = Signal(r.width, name=f"{low}_q")
                m.d.comb += getattr(self, low).eq(pulse[r.name])
        for p in pulse.values():
            m.d.sync += p.eq(0)

        with m.If(commit):
            m.d.sync += [aw_full.eq(0), w_full.eq(0), bvalid.eq(1), bresp.eq(SLVERR)]
            with m.Switch(aw_addr):
                for r in self.registers:
                    if r.access == "ro":
                        continue  # no case: SLVERR, nothing changes
                    with m.Case(r.offset):
                        m.d.sync += [bresp.eq(OKAY), written[r.name].eq(1)]
                        value = strobed[: r.width]
                        if r.access == "rw":
                            sc = self.self_clearing.get(r.name, 0)
                            q = stored[r.name]
                            m.d.sync += q.eq(((q & ~byte_mask[: r.width]) | value) & (r.mask & ~sc))
                            if sc:
                                m.d.sync += pulse[r.name].eq(value & sc)
                        else:
                            m.d.sync += pulse[r.name].eq(value)

        # --- read: AR waits in a one-entry holding register, R is registered ---------
        ar_full, rvalid = Signal(), Signal()
        ar_addr = Signal(self.addr_bits)
        rdata = Signal(AxiLiteSignature.DATA_BITS)
        rresp = Signal(2)
        m.d.comb += [
            bus.arready.eq(~ar_full & ~rvalid),
            bus.rvalid.eq(rvalid),
            bus.rdata.eq(rdata),
            bus.rresp.eq(rresp),
        ]
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += [ar_full.eq(1), ar_addr.eq(bus.araddr)]
        with m.If(rvalid & bus.rready):
            m.d.sync += rvalid.eq(0)
        for r in self.registers:
            # An expression of its own (not a case of the switch below), so that Yosys
            # writes a continuous assignment, which four-state simulators evaluate at
            # time 0 (an `always @*` block stays X there until its inputs change).
            m.d.comb += getattr(self, f"{r.name.lower()}_read").eq(ar_full & (ar_addr == r.offset))
        # ar_full implies ~rvalid (arready needs ~rvalid, and only this sets rvalid).
        with m.If(ar_full):
            m.d.sync += [ar_full.eq(0), rvalid.eq(1), rdata.eq(0), rresp.eq(SLVERR)]
            with m.Switch(ar_addr):
                for r in self.registers:
                    low = r.name.lower()
                    with m.Case(r.offset):
                        m.d.sync += rresp.eq(OKAY)
                        if r.access == "ro":
                            m.d.sync += rdata.eq(getattr(self, low))
                        elif r.access == "rw":
                            m.d.sync += rdata.eq(stored[r.name])  # self-clearing bits read 0
        return m
