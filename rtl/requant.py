"""Bias, ReLU and requantization (emulation step 7).

Implements, per beat, ``t = z + (bias << code_frac)`` (:func:`remeco.models.periphery.add_bias`)
followed by either :func:`remeco.models.emulation.requantize` (hidden layers:
``clamp(round_shift(t * multiplier, shift + code_frac), 0, 255)``) or
:func:`remeco.models.emulation.final_logits` (last layer: ``round_shift(t, code_frac)``).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .fixed import clamp, round_shift_const, round_shift_var

__all__ = ["Requantizer", "MULTIPLIER_BITS", "SHIFT_BITS", "BIAS_BITS", "OUT_BITS"]

#: ``multiplier`` is in ``[0, 2**31 - 1]`` (the model's range).
MULTIPLIER_BITS = 31
#: ``shift`` port width; the model allows ``shift`` in ``[0, 48]``.
SHIFT_BITS = 6
#: Bias width (int32, in accumulator units).
BIAS_BITS = 32
#: Output width: uint8 activations or int32 logits, both as a signed 32-bit value.
OUT_BITS = 32


class Requantizer(wiring.Component):
    """Two-stage pipeline: ``t`` and ``t * multiplier``, then rounding and saturation.

    Every beat carries its own ``multiplier``, ``shift`` and ``final`` (last layer)
    settings, so one instance serves every layer; the PE feeds them from registers.
    Hidden-layer outputs are in ``[0, 255]``; logits are the low 32 bits of
    ``round_shift(t, code_frac)`` (equal to the model wherever the model's int32 check
    passes).

    Throughput one beat per cycle (stages advance together when the output is free).

    Parameters
    ----------
    z_width:
        Width of the signed ``z``.
    code_frac:
        Fractional bits of the codes (``EmulationFormat.code_frac``).

    Members
    -------
    i : ``In(stream.Signature(StructLayout({z, bias, multiplier, shift, final})))``
        Dot products with the neuron's bias and the layer's requantization settings.
    o : ``Out(stream.Signature(signed(32)))``
        uint8 activation (hidden) or int32 logit (``final``).
    """

    def __init__(self, z_width: int, code_frac: int) -> None:
        self.z_width = z_width
        self.code_frac = code_frac
        self.t_width = max(z_width, BIAS_BITS + code_frac) + 1
        self.in_layout = data.StructLayout({
            "z": signed(z_width),
            "bias": signed(BIAS_BITS),
            "multiplier": unsigned(MULTIPLIER_BITS),
            "shift": unsigned(SHIFT_BITS),
            "final": unsigned(1),
        })
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(signed(OUT_BITS))),
        })

    def elaborate(self, platform):
        m = Module()
        cf = self.code_frac
        beat = self.i.payload

        # stage 1: t and the product
        s1_valid = Signal()
        t = Signal(signed(self.t_width))
        prod = Signal(signed(self.t_width + MULTIPLIER_BITS + 1))
        shift = Signal(unsigned(SHIFT_BITS + 1))
        final = Signal()
        t_next = beat.z + (beat.bias << cf)

        out_free = ~self.o.valid | self.o.ready
        s1_free = ~s1_valid | out_free
        m.d.comb += self.i.ready.eq(s1_free)
        with m.If(s1_free):
            m.d.sync += [
                s1_valid.eq(self.i.valid),
                t.eq(t_next),
                prod.eq(t_next * beat.multiplier),
                shift.eq(beat.shift + cf),
                final.eq(beat.final),
            ]

        # stage 2: rounding and saturation
        hidden = clamp(round_shift_var(prod, shift), 0, 255)
        logit = round_shift_const(t, cf)[:OUT_BITS]
        with m.If(out_free):
            m.d.sync += [
                self.o.valid.eq(s1_valid),
                self.o.payload.eq(Mux(final, logit.as_signed(), hidden)),
            ]
        return m
