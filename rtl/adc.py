"""ADC quantizer: column accumulator -> unsigned ADC code (emulation step 3).

Implements :func:`remeco.models.emulation.adc_quantize`:
``clamp(floor((acc + 2**(s-1)) / 2**s), 0, 2**adc_bits - 1)`` with ``s = adc_shift``
(no rounding term for ``s = 0``), i.e. an arithmetic right shift with round half up
followed by saturation at both ends.
"""

from __future__ import annotations

from amaranth import Module, Mux, ResetSignal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ADCQuantizer", "adc_expression"]


def adc_expression(acc, adc_shift: int, adc_bits: int):
    """Combinational ADC transfer function of a signed value (shared with the PE)."""
    half = (1 << adc_shift) >> 1
    rounded = (acc + half) >> adc_shift  # arithmetic: acc is signed
    top = (1 << adc_bits) - 1
    return Mux(rounded < 0, 0, Mux(rounded > top, top, rounded))[:adc_bits]


class ADCQuantizer(wiring.Component):
    """Pipelined ADC transfer function with stream handshakes (one register stage).

    Throughput one conversion per cycle, latency one cycle; ``i.ready`` is high when the
    output register is empty or being emptied. An optional ``tag`` travels with each
    value unchanged (the PE uses it for the column and bit of the conversion).

    Parameters
    ----------
    acc_width:
        Width of the signed accumulator (``EmulationFormat.widths(...)["acc"]``).
    adc_bits:
        ADC resolution.
    adc_shift:
        The layer's ADC shift ``s`` (a constant of the layer, fixed at elaboration).
    tag_width:
        Width of the side-band tag (0: no tag, payloads are plain values).

    Members
    -------
    i : ``In(stream.Signature(signed(acc_width)))``
        Accumulator values (with ``tag_width``: a struct ``{acc, tag}``).
    o : ``Out(stream.Signature(unsigned(adc_bits)))``
        ADC codes (with ``tag_width``: a struct ``{code, tag}``).
    """

    def __init__(self, acc_width: int, adc_bits: int, adc_shift: int, tag_width: int = 0) -> None:
        if acc_width < 2 or adc_bits < 1 or adc_shift < 0 or tag_width < 0:
            raise ValueError("need acc_width >= 2, adc_bits >= 1, adc_shift >= 0, tag_width >= 0")
        self.acc_width = acc_width
        self.adc_bits = adc_bits
        self.adc_shift = adc_shift
        self.tag_width = tag_width
        if tag_width:
            in_shape = data.StructLayout({"acc": signed(acc_width), "tag": unsigned(tag_width)})
            out_shape = data.StructLayout({"code": unsigned(adc_bits), "tag": unsigned(tag_width)})
        else:
            in_shape, out_shape = signed(acc_width), unsigned(adc_bits)
        super().__init__({"i": In(stream.Signature(in_shape)), "o": Out(stream.Signature(out_shape))})

    def elaborate(self, platform):
        m = Module()
        acc = self.i.payload.acc if self.tag_width else self.i.payload
        code = adc_expression(acc, self.adc_shift, self.adc_bits)
        # nothing is taken in reset: the beat would vanish with the cleared register
        m.d.comb += self.i.ready.eq(~ResetSignal() & (~self.o.valid | self.o.ready))
        with m.If(self.i.ready):
            m.d.sync += self.o.valid.eq(self.i.valid)
            if self.tag_width:
                m.d.sync += [self.o.payload.code.eq(code), self.o.payload.tag.eq(self.i.payload.tag)]
            else:
                m.d.sync += self.o.payload.eq(code)
        return m
