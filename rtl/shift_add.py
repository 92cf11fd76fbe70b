"""Shift-and-add over input bits and row tiles (emulation step 4).

Implements :func:`remeco.models.emulation.shift_add_bits` summed over row tiles:
``y[col] = sum_tiles sum_b adc[tile, b, col] << b`` (exact, unsigned).
"""

from __future__ import annotations

from amaranth import Module, Mux, ResetSignal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .fixed import bits_for

__all__ = ["ShiftAdd"]


class ShiftAdd(wiring.Component):
    """Per-column accumulators of ``code << bit``, one beat per cycle.

    Every input beat is one ADC conversion of column ``col`` for input bit ``bit``. A
    beat with ``first`` starts the column's sum from zero; a beat with ``last`` also
    emits the column's finished sum. Between them the beats of different columns may
    interleave freely (the PE sends bit-plane by bit-plane: bit 0 of all columns, then
    bit 1, ..., then the same for the next row tile). The sums live in a ``cols``-deep
    memory, read asynchronously and written on the beat's clock edge, so back-to-back
    beats of the same column are exact.

    ``i.ready`` is high unless a ``last`` beat waits for the output register (the
    other beats never stall); latency from a ``last`` beat to its output is one cycle.

    Parameters
    ----------
    adc_bits, input_bits, cols:
        ADC resolution, input bits and columns per tile.
    y_width:
        Width of the (unsigned) sums, ``EmulationFormat.widths(fan_in)["y"]``.

    Members
    -------
    i : ``In(stream.Signature(StructLayout({code, bit, col, first, last})))``
        ADC codes with their input-bit position, column and sequence flags.
    o : ``Out(stream.Signature(StructLayout({y, col})))``
        Finished column sums.
    """

    def __init__(self, adc_bits: int, input_bits: int, cols: int, y_width: int) -> None:
        if y_width < adc_bits + input_bits - 1:
            raise ValueError(f"y_width={y_width} cannot hold one tile's sum")
        self.adc_bits = adc_bits
        self.input_bits = input_bits
        self.cols = cols
        self.y_width = y_width
        col_w = bits_for(cols - 1)
        self.in_layout = data.StructLayout({
            "code": unsigned(adc_bits),
            "bit": unsigned(bits_for(input_bits - 1)),
            "col": unsigned(col_w),
            "first": unsigned(1),
            "last": unsigned(1),
        })
        self.out_layout = data.StructLayout({"y": unsigned(y_width), "col": unsigned(col_w)})
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(self.out_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.sums = sums = Memory(shape=unsigned(self.y_width), depth=self.cols, init=[])
        rd = sums.read_port(domain="comb")
        wr = sums.write_port()

        beat = self.i.payload
        take = self.i.valid & self.i.ready
        new = (Mux(beat.first, 0, rd.data) + (beat.code << beat.bit))[: self.y_width]
        m.d.comb += [
            # only a `last` beat needs the output register; nothing is taken (nor written
            # into the sums, which reset does not clear) in reset
            self.i.ready.eq(~ResetSignal() & (~beat.last | ~self.o.valid | self.o.ready)),
            rd.addr.eq(beat.col),
            wr.addr.eq(beat.col),
            wr.data.eq(new),
            wr.en.eq(take),
        ]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(take & beat.last):
            m.d.sync += [
                self.o.valid.eq(1),
                self.o.payload.y.eq(new),
                self.o.payload.col.eq(beat.col),
            ]
        return m
