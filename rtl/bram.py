"""Large on-chip memories built so that synthesis maps them quickly and closes timing.

Yosys handles a memory's initial contents (which Amaranth always emits, zeros when
``init=[]``) in time that grows faster than the memory: one 16384 x 160 memory took
2.5 minutes of ``synth_ecp5``, the same bits as eight 2048-word banks 13 s. A
:class:`BankedMemory` is therefore made of banks of at most :data:`BANK_WORDS` words (one
block RAM deep on ECP5 and 7-series at widths up to 9 / 18 bits), each an
``amaranth.lib.memory.Memory``. Writes are registered once before the banks (the bank
decode and the write data leave the core's logic through a register), and the read
data is the selected bank's output, registered: :data:`READ_LATENCY` cycles from
``r_addr`` to ``r_data``, whatever the number of banks.
"""

from __future__ import annotations

from amaranth import Array, Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .fixed import bits_for

__all__ = ["BANK_WORDS", "READ_LATENCY", "BankedMemory"]

#: Largest bank (words); deeper memories are split into banks of this size.
BANK_WORDS = 2048
#: Cycles from ``r_addr`` to ``r_data``: the block RAM's read, then the bank multiplexer's register.
READ_LATENCY = 2


class BankedMemory(wiring.Component):
    """A ``depth x width`` memory, one write and one read port, in banks of :data:`BANK_WORDS`.

    The contents start at zero. A write (``w_en``) lands one cycle after it is offered
    (with ``registered_write=False``: at the clock edge that ends the cycle it is offered);
    a read returns ``r_data`` :data:`READ_LATENCY` cycles after ``r_addr`` (addresses
    beyond ``depth`` read an unspecified word and write nothing).

    Members
    -------
    w_addr, w_data, w_en : ``In``
        Write port.
    r_addr : ``In(bits_for(depth - 1))``
        Read address.
    r_data : ``Out(width)``
        The word at ``r_addr`` of :data:`READ_LATENCY` cycles earlier.
    """

    def __init__(self, width: int, depth: int, registered_write: bool = True) -> None:
        if width < 1 or depth < 1:
            self._MustUse__silence = True
            raise ValueError(f"width and depth must be >= 1, got {width}, {depth}")
        self.width, self.depth, self.registered_write = width, depth, registered_write
        aw = bits_for(depth - 1)
        super().__init__({
            "w_addr": In(aw), "w_data": In(width), "w_en": In(1),
            "r_addr": In(aw), "r_data": Out(width),
        })

    def elaborate(self, platform):
        m = Module()
        banks = -(-self.depth // BANK_WORDS)
        low = bits_for(min(self.depth, BANK_WORDS) - 1)
        w_addr, w_data, w_en = Signal.like(self.w_addr), Signal(self.width), Signal()
        domain = m.d.sync if self.registered_write else m.d.comb
        domain += [w_addr.eq(self.w_addr), w_data.eq(self.w_data), w_en.eq(self.w_en & (self.w_addr < self.depth))]
        outs = []
        for b in range(banks):
            words = min(BANK_WORDS, self.depth - b * BANK_WORDS)
            mem = Memory(shape=unsigned(self.width), depth=words, init=[])
            m.submodules[f"bank{b}"] = mem
            wr, rd = mem.write_port(), mem.read_port()
            m.d.comb += [
                wr.addr.eq(w_addr[:low]),
                wr.data.eq(w_data),
                wr.en.eq(w_en & ((w_addr >> low) == b) if banks > 1 else w_en),
                rd.addr.eq(self.r_addr[:low]),
            ]
            outs.append(rd.data)
        if banks == 1:
            m.d.sync += self.r_data.eq(outs[0])
        else:
            sel = Signal(range(banks))
            m.d.sync += sel.eq(self.r_addr >> low)  # the bank of the word the block RAMs are reading
            m.d.sync += self.r_data.eq(Array(outs)[sel])
        return m
