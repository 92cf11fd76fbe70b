"""Register slice for a stream: breaks the combinational ``ready`` path between two blocks.

A chain of stream blocks whose ``i.ready`` follows ``o.ready`` in the same cycle turns the
backpressure of the last block into one long path back to the first (in the PE: the
descriptor lookup of the drain, through shift-and-add and the ADC, to the enable of
every pipeline register of the crossbar tile). A :class:`SkidBuffer` between two blocks
ends that path: its ``i.ready`` is a flip-flop. A :class:`RingSlice` does the same and
also keeps ``o.ready`` off the payload registers' enables.
"""

from __future__ import annotations

from amaranth import Module, Mux, ResetSignal, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer", "RingSlice"]


class SkidBuffer(wiring.Component):
    """Two-entry stream register with a registered ``i.ready`` (full throughput, one cycle latency).

    ``o`` is driven from the main register; a beat that arrives while ``o`` is stalled is
    parked in the skid register, and ``i.ready`` drops until it has moved on. Beats leave
    in order, none is lost or duplicated, and nothing is accepted while ``rst`` is high.

    Parameters
    ----------
    shape:
        Payload shape of both streams.

    Members
    -------
    i : ``In(stream.Signature(shape))``
    o : ``Out(stream.Signature(shape))``
    """

    def __init__(self, shape) -> None:
        self.shape = shape
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        skid_valid = Signal()
        skid = Signal.like(self.o.payload, reset_less=True)
        m.d.comb += self.i.ready.eq(~skid_valid & ~ResetSignal())
        take = self.i.valid & self.i.ready
        with m.If(~skid_valid):
            # the skid register follows i while it is empty: its enable is a flip-flop, and
            # i.valid (perhaps from far away) reaches one flip-flop's logic, not its enables
            m.d.sync += skid.eq(self.i.payload)
        with m.If(~self.o.valid | self.o.ready):
            # the main register is free: refill it from the skid register first, else from i
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid), self.o.valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(take)]
        with m.Elif(take):
            m.d.sync += skid_valid.eq(1)
        return m


class RingSlice(wiring.Component):
    """A :class:`SkidBuffer` whose ``o.ready`` drives no payload enable (same handshakes, cycle for cycle).

    The two entries are a ring: a beat is written into the entry the write pointer names,
    ``o`` shows the entry the read pointer names. ``i.ready`` drops while both entries
    are taken. Beats leave in order, none is lost or duplicated, and nothing is accepted
    while ``rst`` is high.

    ``o.ready`` reaches only the read pointer and the two occupancy flags, never the
    payload registers' enables: the payload registers are written from ``i`` alone, so
    a consumer whose ``ready`` is late logic far from the slice (in the top: the issue
    stage and the MM2S slice by the pins; the S2MM slice by the pins and the S2MM ring by
    the output FIFO) drives a few flip-flops instead of ``2 x width`` enables. The price
    is one multiplexer level on ``o.payload``.

    Parameters
    ----------
    shape:
        Payload shape of both streams.

    Members
    -------
    i : ``In(stream.Signature(shape))``
    o : ``Out(stream.Signature(shape))``
    """

    def __init__(self, shape) -> None:
        self.shape = shape
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        entries = [Signal.like(self.o.payload, name=f"entry{k}", reset_less=True) for k in range(2)]
        wr = Signal()  # entry the next beat goes into
        rd = Signal()  # entry o shows
        full = Signal()  # both entries taken
        m.d.comb += [
            self.i.ready.eq(~full & ~ResetSignal()),
            self.o.payload.eq(Mux(rd, entries[1], entries[0])),
        ]
        put = self.i.valid & self.i.ready
        get = self.o.valid & self.o.ready
        with m.If(put):
            m.d.sync += wr.eq(~wr)
            for k in range(2):
                with m.If(wr == k):
                    m.d.sync += entries[k].eq(self.i.payload)
        with m.If(get):
            m.d.sync += rd.eq(~rd)
        # occupancy: o.valid is "at least one", full is "two"
        with m.If(put & ~get):
            m.d.sync += [self.o.valid.eq(1), full.eq(self.o.valid)]
        with m.Elif(get & ~put):
            m.d.sync += [self.o.valid.eq(full), full.eq(0)]
        return m
