"""Slice recombination and offset correction (emulation step 6).

Implements :func:`remeco.models.emulation.combine_slices` for one neuron at a time:
``z = (sum_s a[s] << (slice_bits * s)) << adc_shift  -  (weight_offset * x_sum) << code_frac``
with ``weight_offset = 2**(weight_bits - 1)``, so the offset term is a shift too.
"""

from __future__ import annotations

from amaranth import Module, Mux, ResetSignal, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..models.emulation import EmulationFormat
from .fixed import bits_for

__all__ = ["SliceCombiner"]


class SliceCombiner(wiring.Component):
    """Accumulates a neuron's averaged slices and emits its signed dot product ``z``.

    The slices of a neuron may arrive in any order (the averager emits them as their
    last copies complete); a beat with ``end`` closes the neuron and emits ``z`` using
    that beat's ``x_sum`` (``sum_k x_k`` of the input vector). The next beat starts a
    new neuron; so does the first beat after a reset.

    Throughput one beat per cycle; only an ``end`` beat waits for the output register.

    Parameters
    ----------
    fmt:
        Numeric format (``slice_bits``, ``n_slices``, ``weight_bits``, ``code_frac``).
    y_width:
        Width of the unsigned slice values.
    x_sum_width:
        Width of the unsigned ``x_sum``.
    z_width:
        Width of the signed result (``EmulationFormat.widths(...)["z"]``).
    adc_shift:
        The layer's ADC shift (a constant of the layer).

    Members
    -------
    i : ``In(stream.Signature(StructLayout({a, slice, end, x_sum})))``
        Averaged slice values.
    o : ``Out(stream.Signature(signed(z_width)))``
        One ``z`` per neuron, in units of ``2**-code_frac``.
    """

    def __init__(self, fmt: EmulationFormat, y_width: int, x_sum_width: int, z_width: int, adc_shift: int) -> None:
        self.fmt = fmt
        self.y_width = y_width
        self.x_sum_width = x_sum_width
        self.z_width = z_width
        self.adc_shift = adc_shift
        self.in_layout = data.StructLayout({
            "a": unsigned(y_width),
            "slice": unsigned(bits_for(fmt.n_slices - 1)),
            "end": unsigned(1),
            "x_sum": unsigned(x_sum_width),
        })
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(signed(z_width))),
        })

    def elaborate(self, platform):
        m = Module()
        fmt = self.fmt
        acc_w = self.y_width + fmt.slice_bits * (fmt.n_slices - 1) + bits_for(fmt.n_slices - 1)
        acc = Signal(acc_w)
        fresh = Signal(init=1)  # the next beat starts a new neuron
        beat = self.i.payload
        take = self.i.valid & self.i.ready

        total = Signal(acc_w)
        m.d.comb += total.eq(Mux(fresh, 0, acc) + (beat.a << (beat.slice * fmt.slice_bits)))
        offset_shift = fmt.weight_bits - 1 + fmt.code_frac
        # unsigned - unsigned is signed (one bit wider) in Amaranth: exact
        z = (total << self.adc_shift) - (beat.x_sum << offset_shift)

        # only an `end` beat needs the output register; nothing is taken in reset
        m.d.comb += self.i.ready.eq(~ResetSignal() & (~beat.end | ~self.o.valid | self.o.ready))
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(take):
            m.d.sync += [acc.eq(total), fresh.eq(beat.end)]
            with m.If(beat.end):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(z)]
        return m
