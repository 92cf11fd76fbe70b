"""To accumulator units, bias, ReLU and requantization (emulation step 7).

Implements, per beat, exactly the contract's step 7:

* ``acc = round_shift(z, code_frac)`` (:func:`remeco.models.emulation.to_accumulator`),
* ``t = acc + bias`` (:func:`remeco.models.periphery.add_bias`, bias in accumulator units),
* hidden layers: ``clamp(round_shift(t * multiplier, shift), 0, 255)``
  (:func:`remeco.models.emulation.requantize`, round half up, ReLU = the clamp at 0),
* last layer: ``t`` as an int32 logit (:func:`remeco.models.emulation.final_logits`).

The multiplier width and the largest shift are the model's
(:data:`remeco.models.emulation.MULTIPLIER_BITS`, :data:`~remeco.models.emulation.MAX_SHIFT`),
not restated here.
"""

from __future__ import annotations

from amaranth import Module, Mux, ResetSignal, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..models.emulation import MAX_SHIFT, MULTIPLIER_BITS
from .fixed import bits_for, clamp, round_shift_const, round_shift_sat

__all__ = ["Requantizer", "MULTIPLIER_BITS", "SHIFT_BITS", "BIAS_BITS", "OUT_BITS"]

#: ``shift`` port width (holds ``0 .. MAX_SHIFT``).
SHIFT_BITS = bits_for(MAX_SHIFT)
#: Bias width (int32, in accumulator units).
BIAS_BITS = 32
#: Output width: uint8 activations or int32 logits, both as a signed 32-bit value.
OUT_BITS = 32


class Requantizer(wiring.Component):
    """Three-stage pipeline: ``t``; ``t * multiplier``; rounding and saturation.

    Stage 1 rounds ``z`` to accumulator units and adds the bias (``t`` is held exactly,
    ``max(z_width - code_frac + 1, 32) + 1`` bits); stage 2 is the product alone (a
    registered multiply, so synthesis maps it onto DSP slices with their pipeline
    registers); stage 3 rounds by the run-time ``shift`` and saturates to ``[0, 255]``,
    or passes the low 32 bits of ``t`` for a logit (equal to the model wherever its
    int32 check passes).

    Every beat carries its own ``multiplier``, ``shift`` and ``final`` (last layer)
    settings, so one instance serves every layer; the PE feeds them from registers.
    ``shift`` values above ``MAX_SHIFT`` (the port holds up to ``2**SHIFT_BITS - 1``)
    still round exactly (``round_shift`` extended). A ``multiplier`` of 0 gives 0.

    Throughput one beat per cycle; each stage advances when the next is free or empty.

    Parameters
    ----------
    z_width:
        Width of the signed ``z``.
    code_frac:
        Fractional bits of ``z`` (``EmulationFormat.code_frac``).

    Members
    -------
    i : ``In(stream.Signature(StructLayout({z, bias, multiplier, shift, final})))``
        Dot products with the neuron's bias and the layer's requantization settings.
    o : ``Out(stream.Signature(signed(32)))``
        uint8 activation (hidden) or int32 logit (``final``).
    """

    def __init__(self, z_width: int, code_frac: int) -> None:
        if z_width < 2 or not 0 <= code_frac < z_width:
            raise ValueError(f"need z_width >= 2 and 0 <= code_frac < z_width, got {z_width}, {code_frac}")
        self.z_width = z_width
        self.code_frac = code_frac
        self.acc_width = z_width - code_frac + (1 if code_frac else 0)
        self.t_width = max(self.acc_width, BIAS_BITS) + 1
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
        beat = self.i.payload

        out_free = ~self.o.valid | self.o.ready

        # stage 1: t = round_shift(z, code_frac) + bias
        s1_valid = Signal()
        t1 = Signal(signed(self.t_width))
        mult1 = Signal(unsigned(MULTIPLIER_BITS))
        shift1 = Signal(unsigned(SHIFT_BITS))
        final1 = Signal()
        # stage 2: the product (and t for logits)
        s2_valid = Signal()
        prod = Signal(signed(self.t_width + MULTIPLIER_BITS + 1))
        t2 = Signal(signed(OUT_BITS))
        shift2 = Signal(unsigned(SHIFT_BITS))
        final2 = Signal()

        s2_free = ~s2_valid | out_free
        s1_free = ~s1_valid | s2_free
        m.d.comb += self.i.ready.eq(~ResetSignal() & s1_free)  # nothing is taken in reset

        with m.If(s1_free):
            m.d.sync += [
                s1_valid.eq(self.i.valid),
                t1.eq(round_shift_const(beat.z, self.code_frac) + beat.bias),
                mult1.eq(beat.multiplier),
                shift1.eq(beat.shift),
                final1.eq(beat.final),
            ]
        with m.If(s2_free):
            m.d.sync += [
                s2_valid.eq(s1_valid),
                prod.eq(t1 * mult1),
                t2.eq(t1[:OUT_BITS]),
                shift2.eq(shift1),
                final2.eq(final1),
            ]

        # stage 3: rounding and saturation, or the logit
        # saturated to [-256, 256] first: same clamp, 10 bits of rounding logic instead of 50
        hidden = clamp(round_shift_sat(prod, shift2, 8), 0, 255)
        with m.If(out_free):
            m.d.sync += [
                self.o.valid.eq(s2_valid),
                self.o.payload.eq(Mux(final2, t2, hidden)),
            ]
        return m
