"""Processing element: one layer, end to end (emulation steps 2-7).

Tile -> ADC -> shift-and-add -> redundancy averager -> slice combiner -> bias, ReLU and
requantization, sequenced in the stream order of :mod:`remeco.models.periphery`. For an
input vector ``x`` the output equals ``requantize(add_bias(to_accumulator(z, code_frac),
bias), multiplier, shift)`` with ``z = emulate_matvec(x, mapped, apply_fault_map(codes,
...), adc_shift)`` (or ``final_logits`` of ``t = add_bias(...)`` when ``last_layer`` is set).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..models.emulation import EmulationFormat
from .adc import ADCQuantizer
from .averager import Averager
from .combine import SliceCombiner
from .crossbar import CrossbarTile, programming_members
from .fixed import bits_for
from .requant import BIAS_BITS, MULTIPLIER_BITS, OUT_BITS, SHIFT_BITS, Requantizer
from .shift_add import ShiftAdd
from .skid import SkidBuffer

__all__ = ["ProcessingElement"]


class ProcessingElement(wiring.Component):
    """A layer of ``fan_in`` inputs and ``neurons`` outputs on ``row_tiles x col_tiles`` tiles.

    Operation: program the cell codes (``load``), the column descriptors (``desc``, one
    per physical column, :func:`remeco.models.periphery.column_descriptors`) and the
    biases (``bias``); set the static inputs. Then each input vector is ``fan_in`` beats
    on ``x`` and produces ``neurons`` beats on ``o``. Faults are injected at any time
    between vectors through ``fault`` or ``gen`` without reloading anything.

    Cycle behaviour: ``x`` is accepted only between vectors (``fan_in`` cycles at full
    rate); then the PE issues ``col_tiles_used * row_tiles * input_bits`` bit planes,
    each taking ``cols`` cycles in the tile, so a vector costs about ``col_tiles_used *
    row_tiles * input_bits * cols`` cycles. After the vector's last output the next
    vector is accepted (the pipeline tail of the previous one drains meanwhile). Every
    stage has stream handshakes, so ``o`` may back-pressure at will. ``rst`` clears the
    sequencer and the pipeline, not the memories (codes, faults, descriptors, biases).

    Parameters
    ----------
    fmt:
        Numeric format.
    fan_in, neurons:
        Layer shape (``K`` inputs, ``N`` outputs).
    col_tiles:
        Column tiles held; a layer's physical columns (all copies) must fit in
        ``col_tiles * cols``; unused columns are marked ``used = 0`` in the descriptors.
    adc_shift:
        The layer's ADC shift.
    max_copies_log2:
        Largest redundancy ``k`` the descriptors may use.

    Members
    -------
    x : ``In(stream.Signature(unsigned(input_bits)))``
        Input activations, ``fan_in`` beats per vector.
    o : ``Out(stream.Signature(signed(32)))``
        Outputs: uint8 activations, or int32 logits when ``last_layer``.
    load : ``In(stream.Signature(StructLayout({tile, row, col, code})))``
        Cell codes; ``tile = row_tile * col_tiles + col_tile``.
    fault : ``In(stream.Signature(StructLayout({tile, row, col, kind})))``
        Fault-map entries (:mod:`remeco.models.fault_lfsr`).
    gen : ``In(stream.Signature(StructLayout({seed, rate, on})))``
        Starts the fault generator; ``gen_busy`` is high while it runs.
    gen_busy : ``Out(1)``
        The fault generator is running.
    desc : ``In(stream.Signature(StructLayout({col, slice, k, first, last, end, used})))``
        Column descriptors, ``col`` in ``[0, col_tiles * cols)``.
    bias : ``In(stream.Signature(StructLayout({neuron, value})))``
        Per-neuron biases (int32, accumulator units).
    code_on, code_off : ``In(signed(code_bits))``
        Codes of stuck-on / stuck-off cells.
    multiplier, shift, last_layer : ``In(MULTIPLIER_BITS)``, ``In(SHIFT_BITS)``, ``In(1)``
        Requantization settings (:func:`remeco.models.emulation.requantize`: ``multiplier``
        in ``[1, 2**15)``, ``shift`` in ``[0, 62]``);
        ``last_layer`` selects logits (:func:`remeco.models.emulation.final_logits`).
    col_tiles_used : ``In(range(col_tiles + 1))``
        Column tiles the current layer occupies (``MappedLayer.col_tiles``, in
        ``[1, col_tiles]``); only these are swept, so a plan with fewer copies runs faster.
    """

    def __init__(
        self, fmt: EmulationFormat, fan_in: int, neurons: int, col_tiles: int, adc_shift: int, max_copies_log2: int
    ) -> None:
        self.fmt = fmt
        self.fan_in, self.neurons, self.col_tiles = fan_in, neurons, col_tiles
        self.adc_shift, self.max_k = adc_shift, max_copies_log2
        self.row_tiles = -(-fan_in // fmt.rows)
        w = fmt.widths(fan_in, max_copies_log2, adc_shift)
        self.x_sum_width = bits_for(fan_in * ((1 << fmt.input_bits) - 1))
        self.plane_tag = data.StructLayout({
            "bit": unsigned(bits_for(fmt.input_bits - 1)), "first": unsigned(1), "last": unsigned(1)})
        col_w = bits_for(fmt.cols - 1)
        self.adc_tag = data.StructLayout({
            "col": unsigned(col_w), "bit": unsigned(bits_for(fmt.input_bits - 1)),
            "first": unsigned(1), "last": unsigned(1)})
        self._widths = w
        self.desc_layout = data.StructLayout({
            "slice": unsigned(bits_for(fmt.n_slices - 1)), "k": unsigned(bits_for(max_copies_log2)),
            "first": unsigned(1), "last": unsigned(1), "end": unsigned(1), "used": unsigned(1)})
        super().__init__({
            "x": In(stream.Signature(unsigned(fmt.input_bits))),
            "o": Out(stream.Signature(signed(OUT_BITS))),
            **programming_members(fmt.rows, fmt.cols, self.row_tiles * col_tiles, fmt.code_bits),
            "gen_busy": Out(1),
            "desc": In(stream.Signature(data.StructLayout({
                "col": unsigned(bits_for(col_tiles * fmt.cols - 1)), **dict(self.desc_layout.members)}))),
            "bias": In(stream.Signature(data.StructLayout({
                "neuron": unsigned(bits_for(neurons - 1)), "value": signed(BIAS_BITS)}))),
            "code_on": In(signed(fmt.code_bits)),
            "code_off": In(signed(fmt.code_bits)),
            "multiplier": In(MULTIPLIER_BITS),
            "shift": In(SHIFT_BITS),
            # not "final": Verilator's generated model class has a final() method
            "last_layer": In(1),
            "col_tiles_used": In(bits_for(col_tiles)),
        })

    def elaborate(self, platform):
        m = Module()
        fmt = self.fmt
        R, C, B = fmt.rows, fmt.cols, fmt.input_bits
        RT, CT, K, N = self.row_tiles, self.col_tiles, self.fan_in, self.neurons
        w = self._widths
        tile = CrossbarTile(R, C, RT * CT, fmt.code_bits, w["acc"], self.plane_tag.size)
        adc = ADCQuantizer(w["acc"], fmt.adc_bits, self.adc_shift, self.adc_tag.size)
        sa = ShiftAdd(fmt.adc_bits, B, C, w["y"])
        avg = Averager(w["y"], fmt.n_slices, self.max_k)
        comb = SliceCombiner(fmt, w["y"], self.x_sum_width, w["z"], self.adc_shift)
        rq = Requantizer(w["z"], fmt.code_frac)
        m.submodules.tile, m.submodules.adc, m.submodules.shift_add = tile, adc, sa
        m.submodules.averager, m.submodules.combine, m.submodules.requant = avg, comb, rq
        # between the tile and the ADC: the tile's pipeline enable (a few hundred registers)
        # must not wait for the backpressure of the whole periphery in the same cycle
        m.submodules.tile_skid = skid = SkidBuffer(tile.o.payload.shape())
        wiring.connect(m, tile.o, skid.i)

        # -- pass-through programming ports ---------------------------------------------
        wiring.connect(m, wiring.flipped(self.load), tile.load)
        wiring.connect(m, wiring.flipped(self.fault), tile.fault)
        wiring.connect(m, wiring.flipped(self.gen), tile.gen)
        m.d.comb += [
            self.gen_busy.eq(tile.gen_busy),
            tile.code_on.eq(self.code_on),
            tile.code_off.eq(self.code_off),
        ]

        # -- memories: input vector, column descriptors, biases --------------------------------
        m.submodules.xbuf = xbuf = Memory(shape=unsigned(R * B), depth=RT, init=[])
        m.submodules.descs = descs = Memory(shape=self.desc_layout, depth=CT * C, init=[])
        m.submodules.biases = biases = Memory(shape=signed(BIAS_BITS), depth=N, init=[])
        x_wr, x_rd = xbuf.write_port(granularity=B), xbuf.read_port(domain="comb")
        d_wr, d_rd = descs.write_port(), descs.read_port(domain="comb")
        b_wr, b_rd = biases.write_port(), biases.read_port(domain="comb")

        dp = self.desc.payload
        m.d.comb += [
            self.desc.ready.eq(1),
            d_wr.addr.eq(dp.col),
            d_wr.en.eq(self.desc.valid),
            self.bias.ready.eq(1),
            b_wr.addr.eq(self.bias.payload.neuron),
            b_wr.data.eq(self.bias.payload.value),
            b_wr.en.eq(self.bias.valid),
        ]
        for name in self.desc_layout.members:
            m.d.comb += getattr(d_wr.data, name).eq(getattr(dp, name))

        # -- sequencer ------------------------------------------------------------------------
        x_word = Signal(range(max(RT, 2)))
        x_elem = Signal(range(max(R, 2)))
        x_count = Signal(range(max(K, 2)))
        x_sum = Signal(self.x_sum_width)
        bit = Signal(range(max(B, 2)))
        rt = Signal(range(max(RT, 2)))
        ct = Signal(range(max(CT, 2)))
        out_count = Signal(range(max(N, 2)))

        m.d.comb += [
            x_wr.addr.eq(x_word),
            x_wr.data.eq(Cat(*([self.x.payload] * R))),
            x_rd.addr.eq(rt),
        ]
        plane = Cat(*(x_rd.data[r * B:(r + 1) * B].bit_select(bit, 1) for r in range(R)))
        tag = data.View(self.plane_tag, tile.i.payload.tag)
        m.d.comb += [
            tile.i.payload.bits.eq(plane),
            tile.i.payload.tile.eq(rt * CT + ct),
            tag.bit.eq(bit),
            tag.first.eq((rt == 0) & (bit == 0)),
            tag.last.eq((rt == RT - 1) & (bit == B - 1)),
        ]
        with m.FSM() as fsm:
            with m.State("LOAD"):
                m.d.comb += x_wr.en.eq(Mux(self.x.valid, Const(1, R) << x_elem, 0))
                with m.If(self.x.valid):
                    m.d.sync += [x_sum.eq(x_sum + self.x.payload), x_count.eq(x_count + 1), x_elem.eq(x_elem + 1)]
                    with m.If(x_elem == R - 1):
                        m.d.sync += [x_elem.eq(0), x_word.eq(x_word + 1)]
                    with m.If(x_count == K - 1):
                        m.d.sync += [bit.eq(0), rt.eq(0), ct.eq(0)]
                        m.next = "RUN"
            with m.State("RUN"):
                with m.If(tile.i.ready):
                    m.d.sync += bit.eq(bit + 1)
                    with m.If(bit == B - 1):
                        m.d.sync += [bit.eq(0), rt.eq(rt + 1)]
                        with m.If(rt == RT - 1):
                            m.d.sync += [rt.eq(0), ct.eq(ct + 1)]
                            with m.If(ct == self.col_tiles_used - 1):
                                m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(self.o.valid & self.o.ready & (out_count == N - 1)):
                    m.d.sync += [x_sum.eq(0), x_count.eq(0), x_word.eq(0), x_elem.eq(0)]
                    m.next = "LOAD"

        # Plain assignments, not inside the state bodies: a comb output that depends only on
        # the state register would sit at X in Icarus until the first transition.
        m.d.comb += [self.x.ready.eq(fsm.ongoing("LOAD")), tile.i.valid.eq(fsm.ongoing("RUN"))]

        # -- datapath ----------------------------------------------------------------------------
        # tile -> (skid buffer) -> ADC (the column and the plane's tag travel as the ADC tag)
        m.d.comb += [
            adc.i.valid.eq(skid.o.valid),
            skid.o.ready.eq(adc.i.ready),
            adc.i.payload.acc.eq(skid.o.payload.acc),
            adc.i.payload.tag.eq(Cat(skid.o.payload.col, skid.o.payload.tag)),
        ]
        # ADC -> shift-and-add
        atag = data.View(self.adc_tag, adc.o.payload.tag)
        m.d.comb += [
            sa.i.valid.eq(adc.o.valid),
            adc.o.ready.eq(sa.i.ready),
            sa.i.payload.code.eq(adc.o.payload.code),
            sa.i.payload.bit.eq(atag.bit),
            sa.i.payload.col.eq(atag.col),
            sa.i.payload.first.eq(atag.first),
            sa.i.payload.last.eq(atag.last),
        ]
        # shift-and-add -> averager, with the physical column's descriptor; padding dropped.
        # Exactly col_tiles_used * cols sums leave per vector, so the counter wraps in step.
        phys = Signal(range(max(CT * C, 2)))
        phys_last = self.col_tiles_used * C - 1
        phys_next = Mux(phys == phys_last, 0, phys + 1)
        step = sa.o.valid & sa.o.ready
        # The descriptor of `phys`, registered: read at the address phys takes next, so the
        # drain's lookup (and the averager's run-time shift by d.k) starts at a flip-flop.
        # It is refreshed every cycle, so a descriptor written between vectors is seen.
        d = Signal(self.desc_layout)
        m.d.sync += d.eq(d_rd.data)
        m.d.comb += [
            d_rd.addr.eq(Mux(step, phys_next, phys)),
            avg.i.valid.eq(sa.o.valid & d.used),
            sa.o.ready.eq(Mux(d.used, avg.i.ready, 1)),
            avg.i.payload.y.eq(sa.o.payload.y),
            avg.i.payload.slice.eq(d.slice),
            avg.i.payload.k.eq(d.k),
            avg.i.payload.first.eq(d.first),
            avg.i.payload.last.eq(d.last),
            avg.i.payload.end.eq(d.end),
        ]
        with m.If(step):
            m.d.sync += phys.eq(phys_next)
        # averager -> combiner (x_sum is stable until the vector's last output)
        m.d.comb += [
            comb.i.valid.eq(avg.o.valid),
            avg.o.ready.eq(comb.i.ready),
            comb.i.payload.a.eq(avg.o.payload.a),
            comb.i.payload.slice.eq(avg.o.payload.slice),
            comb.i.payload.end.eq(avg.o.payload.end),
            comb.i.payload.x_sum.eq(x_sum),
        ]
        # combiner -> requantizer with the neuron's bias
        neuron = Signal(range(max(N, 2)))
        m.d.comb += [
            b_rd.addr.eq(neuron),
            rq.i.valid.eq(comb.o.valid),
            comb.o.ready.eq(rq.i.ready),
            rq.i.payload.z.eq(comb.o.payload),
            rq.i.payload.bias.eq(b_rd.data),
            rq.i.payload.multiplier.eq(self.multiplier),
            rq.i.payload.shift.eq(self.shift),
            rq.i.payload.final.eq(self.last_layer),
        ]
        with m.If(comb.o.valid & comb.o.ready):
            m.d.sync += neuron.eq(Mux(neuron == N - 1, 0, neuron + 1))
        # requantizer -> output
        wiring.connect(m, rq.o, wiring.flipped(self.o))
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += out_count.eq(Mux(out_count == N - 1, 0, out_count + 1))
        return m
