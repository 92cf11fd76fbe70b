"""Redundancy averager: ``2**k`` physical copies -> one value (emulation step 5).

Implements :func:`remeco.models.emulation.average_copies` on the stream of physical
columns: ``a = floor((sum_copies y + 2**(k-1)) / 2**k)`` (round half up, ``k = 0``
passes ``y`` through).
"""

from __future__ import annotations

from amaranth import Array, Module, Mux, ResetSignal, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .fixed import bits_for, round_shift_var

__all__ = ["Averager"]


class Averager(wiring.Component):
    """Sums the copies of each (neuron, slice) and rounds the sum down by ``k`` bits.

    Beats are physical columns in layout order (:func:`remeco.models.mapping.map_layer`:
    neuron by neuron, copy by copy, slice within copy). Every beat carries its column's
    descriptor (:func:`remeco.models.periphery.column_descriptors`): ``slice``, the
    slice's ``k``, ``first`` (copy 0: start the slice's sum) and ``last`` (copy
    ``2**k - 1``: emit the average). Because ``k`` travels per beat, sensitive-neuron
    plans (``k`` per neuron) and MSB plans (``k`` per slice) run on the same block.
    One running sum per slice suffices since a neuron's columns are contiguous.
    ``end`` (the neuron's last column) is passed to the output with the last slice.

    Throughput one beat per cycle; only a ``last`` beat waits for the output register.

    Parameters
    ----------
    y_width:
        Width of the unsigned column values.
    n_slices:
        Slices per weight.
    max_copies_log2:
        Largest ``k`` the block must support.

    Members
    -------
    i : ``In(stream.Signature(StructLayout({y, slice, k, first, last, end})))``
        Column values with their descriptors.
    o : ``Out(stream.Signature(StructLayout({a, slice, end})))``
        Averaged slice values (``a`` fits ``y_width``: an average never exceeds the
        largest copy), in the order their last copies arrive.
    """

    def __init__(self, y_width: int, n_slices: int, max_copies_log2: int) -> None:
        self.y_width = y_width
        self.n_slices = n_slices
        self.max_k = max_copies_log2
        slice_w = bits_for(n_slices - 1)
        self.in_layout = data.StructLayout({
            "y": unsigned(y_width),
            "slice": unsigned(slice_w),
            "k": unsigned(bits_for(max_copies_log2)),
            "first": unsigned(1),
            "last": unsigned(1),
            "end": unsigned(1),
        })
        self.out_layout = data.StructLayout({"a": unsigned(y_width), "slice": unsigned(slice_w), "end": unsigned(1)})
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(self.out_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        sum_w = self.y_width + self.max_k
        sums = Array(Signal(sum_w, name=f"sum{s}") for s in range(self.n_slices))
        beat = self.i.payload
        take = self.i.valid & self.i.ready
        total = Signal(sum_w)
        m.d.comb += total.eq(Mux(beat.first, 0, sums[beat.slice]) + beat.y)

        # only a `last` beat needs the output register; nothing is taken in reset
        m.d.comb += self.i.ready.eq(~ResetSignal() & (~beat.last | ~self.o.valid | self.o.ready))
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(take):
            for s, reg in enumerate(sums):  # explicit per-slice enables (no partial case)
                with m.If(beat.slice == s):
                    m.d.sync += reg.eq(total)
            with m.If(beat.last):
                m.d.sync += [
                    self.o.valid.eq(1),
                    self.o.payload.a.eq(round_shift_var(total, beat.k)),
                    self.o.payload.slice.eq(beat.slice),
                    self.o.payload.end.eq(beat.end),
                ]
        return m
