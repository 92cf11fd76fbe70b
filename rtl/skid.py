"""Register slice for a stream: breaks the combinational ``ready`` path between two blocks.

A chain of stream blocks whose ``i.ready`` follows ``o.ready`` in the same cycle turns the
backpressure of the last block into one long path back to the first (in the PE: the
descriptor lookup of the drain, through shift-and-add and the ADC, to the enable of
every pipeline register of the crossbar tile). A :class:`SkidBuffer` between two blocks
ends that path: its ``i.ready`` is a flip-flop.
"""

from __future__ import annotations

from amaranth import Module, ResetSignal, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer"]


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
        skid = Signal.like(self.o.payload)
        m.d.comb += self.i.ready.eq(~skid_valid & ~ResetSignal())
        take = self.i.valid & self.i.ready
        with m.If(~self.o.valid | self.o.ready):
            # the main register is free: refill it from the skid register first, else from i
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid), self.o.valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(take)]
        with m.Elif(take):
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m
