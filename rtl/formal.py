"""Formal property harnesses of the periphery blocks (proven by :mod:`remeco.tb.formal`).

Each harness is an :class:`~amaranth.hdl.Elaboratable` that instantiates one block,
drives every input it has (``rst``, ``i.valid``, ``i.payload``, ``o.ready``) from a free
solver variable each cycle (``AnySeq``: every input sequence, no stimulus), and states the
block's contract with Amaranth's ``Assert`` / ``Assume``. :mod:`remeco.tb.formal` converts
it to RTLIL and proves it with SymbiYosys (k-induction for the stream blocks, a bounded
check for the AXI4-Lite register file).

The arithmetic is an independent spec: it is written here from the rules stated in
:mod:`remeco.models.emulation`'s docstring, in a form of its own (multiplications and
comparisons where the RTL shifts, the rounding as an interval for the ADC), and never
calls :mod:`remeco.rtl.fixed` or a block's helpers.

Stream rules checked for every stream block (a ``stream.Signature`` in and out):

* **nothing accepted in reset:** ``i.valid & i.ready`` never while ``rst`` is high;
* **payload held:** an output beat offered and not taken (``o.valid & ~o.ready``) is
  offered again, unchanged, in the next cycle (unless that edge resets);
* **no beat lost, duplicated or reordered:** a scoreboard of the beats accepted and not
  yet emitted (reset by ``rst``) must never overflow the block's capacity, its count must
  equal the block's occupancy, and every emitted beat is the oldest one on it, checked
  against the spec.

To make the proofs inductive the harnesses also tie the blocks' internal state to the
spec's (white-box invariants: the shift-and-add memory, the averager's running sums, the
combiner's accumulator, the requantizer's stage registers). They find those registers by
name in the elaborated block (:func:`internal_signals`); a renamed register makes the
harness fail loudly, not pass.
"""

from __future__ import annotations

from amaranth import Array, Cat, ClockDomain, Const, Elaboratable, Fragment, Module, Mux, Signal, Value, signed
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, Shape
from amaranth.lib.wiring import In

from .axil import OKAY, SLVERR
from .requant import MULTIPLIER_BITS, OUT_BITS

__all__ = [
    "internal_signals",
    "ADCHarness",
    "ShiftAddHarness",
    "AveragerHarness",
    "CombineHarness",
    "RequantHarness",
    "RegisterFileHarness",
]


def internal_signals(fragment: Fragment, *names: str) -> dict[str, Signal]:
    """The signals called ``names`` that ``fragment``'s own statements assign.

    ``KeyError`` names any that are missing, so a harness cannot silently lose a hook.
    """
    found: dict[str, Signal] = {}
    for stmts in fragment.statements.values():
        for stmt in stmts:
            # _lhs_signals: every signal a (possibly nested) statement assigns
            for sig in stmt._lhs_signals():
                if sig.name in names:
                    found.setdefault(sig.name, sig)
    missing = [n for n in names if n not in found]
    if missing:
        raise KeyError(f"no internal register named {', '.join(missing)} in the block")
    return found


def _bits(value):
    """The raw (unsigned) bits of a value or a data view."""
    return Value.cast(value).as_unsigned()


def _any(sig) -> object:
    """A fresh free value as wide as ``sig`` (a signal or a data view)."""
    return AnySeq(Shape.cast(sig.shape()).width)


class _StreamHarness(Elaboratable):
    """Drives a stream block from free inputs and checks the stream rules with a scoreboard.

    Subclasses provide the record kept per accepted beat (:meth:`record`), the check of an
    emitted payload against the oldest record (:meth:`check`), the block's occupancy and
    any white-box invariants (:meth:`invariants`).
    """

    #: Beats the block can hold (accepted, not yet emitted).
    capacity = 1

    def __init__(self, dut) -> None:
        self.dut = dut
        #: The clock: the one input of the converted harness (``rtlil.convert(h, ports=h.ports)``).
        self.sync = ClockDomain("sync")
        self.ports = [self.sync.clk]

    # -- hooks ----------------------------------------------------------------------
    def prepare(self, module: Module) -> None:
        """Touch the elaborated block before it is frozen (e.g. add memory read ports)."""

    def record(self, m: Module, push) -> tuple[object, int]:
        """``(value, width)`` to remember for the beat on offer; ``push``: it is accepted
        (a subclass updates its spec state on it)."""
        raise NotImplementedError

    def emits(self):
        """Boolean: the beat on offer produces an output beat (default: every beat)."""
        return Const(1)

    def check(self, m: Module, rec, payload):
        """Boolean: ``payload`` is what the spec says for the beat recorded as ``rec``."""
        raise NotImplementedError

    def occupancy(self, m: Module):
        """Beats the block holds, from its registers."""
        return self.dut.o.valid

    def invariants(self, m: Module, entries, count) -> None:
        """White-box invariants tying the block's state to the spec's."""

    # -- the harness ----------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        m.domains.sync = sync = self.sync
        dut = self.dut
        module = dut.elaborate(platform)
        self.prepare(module)
        self.fragment = Fragment.get(module, platform)
        dut._MustUse__used = True  # elaborated above, through its module
        m.submodules.dut = self.fragment

        rst = Signal()
        m.d.comb += [
            rst.eq(AnySeq(1)),
            sync.rst.eq(rst),
            dut.i.valid.eq(AnySeq(1)),
            dut.i.payload.eq(_any(dut.i.payload)),
            dut.o.ready.eq(AnySeq(1)),
        ]
        push = dut.i.valid & dut.i.ready
        pop = dut.o.valid & dut.o.ready

        # nothing accepted in reset
        m.d.comb += Assert(~(rst & push))

        # payload held while valid and not ready (a register: cleared by a reset edge)
        stalled = Signal()
        held = Signal(dut.o.payload.shape())
        m.d.sync += [stalled.eq(dut.o.valid & ~dut.o.ready), held.eq(dut.o.payload)]
        with m.If(stalled):
            m.d.comb += Assert(dut.o.valid & (_bits(dut.o.payload) == _bits(held)))

        # scoreboard: records of the accepted beats that owe an output, oldest first
        value, width = self.record(m, push)
        entries = Array(Signal(width, name=f"sb{n}") for n in range(self.capacity))
        count = Signal(range(self.capacity + 1))
        enter = push & self.emits()
        m.d.comb += Assert(~(enter & ~pop & (count == self.capacity)))  # more than it can hold: one is lost
        with m.If(pop):
            for n in range(self.capacity - 1):
                m.d.sync += entries[n].eq(entries[n + 1])
        with m.If(enter):
            m.d.sync += entries[count - pop].eq(value)
        m.d.sync += count.eq(count + enter - pop)

        m.d.comb += Assert(count == self.occupancy(m))  # nothing lost, nothing made up
        with m.If(dut.o.valid):
            m.d.comb += Assert(self.check(m, entries[0], dut.o.payload))
        self.invariants(m, entries, count)
        return m



class ADCHarness(_StreamHarness):
    """:class:`~remeco.rtl.adc.ADCQuantizer` against step 3 of the contract.

    Spec as an interval: code ``c`` is right for ``acc`` iff ``acc >= c * 2**s - h`` (or
    ``c == 0``) and ``acc < (c + 1) * 2**s - h`` (or ``c == 2**adc_bits - 1``), with
    ``h = 2**(s-1)`` (0 for ``s = 0``): round half up, then saturation at both ends. The
    tag must come out unchanged.
    """

    def record(self, m, push):
        d = self.dut
        return _bits(d.i.payload), d.acc_width + d.tag_width

    def check(self, m, rec, payload):
        d = self.dut
        acc = rec[: d.acc_width].as_signed()
        code = payload.code if d.tag_width else payload
        one = 1 << d.adc_shift
        half = one // 2
        top = (1 << d.adc_bits) - 1
        ok = ((code == 0) | (acc >= code * one - half)) & ((code == top) | (acc < (code + 1) * one - half))
        if d.tag_width:
            ok &= payload.tag == rec[d.acc_width:]
        return ok


class ShiftAddHarness(_StreamHarness):
    """:class:`~remeco.rtl.shift_add.ShiftAdd` against step 4 of the contract.

    Spec: per column, ``y`` is the exact sum of ``code * 2**bit`` over the column's beats
    since its last ``first`` beat, emitted with the column on the ``last`` beat. The sums
    are not reset (neither is the block's memory): a column's first beat starts it.
    Assumed, the input contract the widths are sized for
    (:meth:`~remeco.models.emulation.EmulationFormat.widths`): ``bit < input_bits``,
    ``col < cols`` and no sum beyond ``y_width`` bits.
    """

    def prepare(self, module):
        # a combinational read port per column, to state what every memory word holds
        self.words = [module.submodules.sums.read_port(domain="comb") for _ in range(self.dut.cols)]

    def record(self, m, push):
        d = self.dut
        beat = d.i.payload
        self.sums = Array(Signal(d.y_width, name=f"spec_y{c}", reset_less=True) for c in range(d.cols))
        weight = Array(Const(1 << b, d.input_bits) for b in range(d.input_bits))
        new = Signal(d.y_width + d.adc_bits + d.input_bits + 1)
        m.d.comb += new.eq(Mux(beat.first, 0, self.sums[beat.col]) + beat.code * weight[beat.bit])
        with m.If(d.i.valid):
            m.d.comb += Assume((beat.bit < d.input_bits) & (beat.col < d.cols) & (new >> d.y_width == 0))
        with m.If(push):
            m.d.sync += self.sums[beat.col].eq(new)
        col_w = len(beat.col)
        value = Signal(d.y_width + col_w)
        m.d.comb += value.eq(new[: d.y_width] | (beat.col << d.y_width))
        return value, d.y_width + col_w

    def emits(self):
        return self.dut.i.payload.last

    def check(self, m, rec, payload):
        d = self.dut
        return (payload.y == rec[: d.y_width]) & (payload.col == rec[d.y_width:])

    def invariants(self, m, entries, count):
        for c, port in enumerate(self.words):
            m.d.comb += [port.addr.eq(c), Assert(port.data == self.sums[c])]


class AveragerHarness(_StreamHarness):
    """:class:`~remeco.rtl.averager.Averager` against step 5 of the contract.

    Spec: per slice, the exact sum of ``y`` over the beats since the slice's last
    ``first`` beat; on ``last``, ``a`` with ``a * 2**k - h <= sum < (a + 1) * 2**k - h``
    (round half up, ``h = 2**(k-1)``, 0 for ``k = 0``), with the slice and ``end``.
    Assumed (the layout contract): ``slice < n_slices``, ``k <= max_copies_log2`` and no
    more than ``2**k`` copies (this beat's ``k``) since the slice's ``first`` beat.
    """

    def record(self, m, push):
        d = self.dut
        beat = d.i.payload
        sum_w = d.y_width + d.max_k
        count_w = d.max_k + 2
        self.sums = Array(Signal(sum_w, name=f"spec_sum{s}") for s in range(d.n_slices))
        self.copies = copies = Array(Signal(count_w, name=f"spec_copies{s}") for s in range(d.n_slices))
        total = Signal(sum_w + 1)
        n = Signal(count_w + 1)
        m.d.comb += [
            total.eq(Mux(beat.first, 0, self.sums[beat.slice]) + beat.y),
            n.eq(Mux(beat.first, 0, copies[beat.slice]) + 1),
        ]
        with m.If(d.i.valid):
            m.d.comb += Assume((beat.slice < d.n_slices) & (beat.k <= d.max_k) & (n <= (Const(1) << beat.k)))
        with m.If(push):
            m.d.sync += [self.sums[beat.slice].eq(total), copies[beat.slice].eq(n)]
        self._layout = [("total", sum_w), ("k", len(beat.k)), ("slice", len(beat.slice)), ("end", 1)]
        value = Signal(sum(w for _, w in self._layout))
        m.d.comb += value.eq(total[:sum_w] | (beat.k << sum_w) | (beat.slice << (sum_w + len(beat.k)))
                             | (beat.end << (sum_w + len(beat.k) + len(beat.slice))))
        return value, len(value)

    def emits(self):
        return self.dut.i.payload.last

    def check(self, m, rec, payload):
        f, pos = {}, 0
        for name, w in self._layout:
            f[name] = rec[pos: pos + w]
            pos += w
        one = Const(1) << f["k"]
        half = one >> 1
        a = payload.a
        ok = (a * one <= f["total"] + half) & (f["total"] + half < (a + 1) * one)
        return ok & (payload.slice == f["slice"]) & (payload.end == f["end"])

    def invariants(self, m, entries, count):
        regs = internal_signals(self.fragment, *(f"sum{s}" for s in range(self.dut.n_slices)))
        ymax = (1 << self.dut.y_width) - 1
        for s in range(self.dut.n_slices):
            # the sums stay within what their copies can add up to (unreachable otherwise)
            m.d.comb += [Assert(regs[f"sum{s}"] == self.sums[s]), Assert(self.copies[s] <= (1 << self.dut.max_k)),
                         Assert(self.sums[s] <= self.copies[s] * ymax)]


class CombineHarness(_StreamHarness):
    """:class:`~remeco.rtl.combine.SliceCombiner` against step 6 of the contract.

    Spec: ``z = (sum_s a[s] * 2**(slice_bits * s)) * 2**adc_shift - x_sum * weight_offset
    * 2**code_frac`` over the beats since the last ``end`` beat (or reset), emitted on the
    ``end`` beat with that beat's ``x_sum``. Assumed (the contract the widths are sized
    for): ``slice < n_slices``, at most ``n_slices`` beats per neuron, and ``z`` fits
    ``z_width`` bits.
    """

    def record(self, m, push):
        d, fmt = self.dut, self.dut.fmt
        beat = d.i.payload
        acc_w = d.y_width + fmt.slice_bits * (fmt.n_slices - 1) + max(1, (fmt.n_slices - 1).bit_length())
        self.fresh = Signal(init=1, name="spec_fresh")
        self.acc = Signal(acc_w, name="spec_acc")
        self.beats = beats = Signal(range(fmt.n_slices + 1), name="spec_beats")
        scale = Array(Const(1 << (fmt.slice_bits * s), fmt.slice_bits * fmt.n_slices) for s in range(fmt.n_slices))
        total = Signal(acc_w + 1)
        n = Signal(range(fmt.n_slices + 2))
        z = Signal(signed(acc_w + d.adc_shift + d.x_sum_width + fmt.weight_bits + fmt.code_frac + 2))
        m.d.comb += [
            total.eq(Mux(self.fresh, 0, self.acc) + beat.a * scale[beat.slice]),
            n.eq(Mux(self.fresh, 0, beats) + 1),
            z.eq(total * (1 << d.adc_shift) - beat.x_sum * (fmt.weight_offset << fmt.code_frac)),
        ]
        z_lo, z_hi = -(1 << (d.z_width - 1)), (1 << (d.z_width - 1)) - 1
        with m.If(d.i.valid):
            m.d.comb += Assume((beat.slice < fmt.n_slices) & (n <= fmt.n_slices)
                               & (~beat.end | ((z >= z_lo) & (z <= z_hi))))
        with m.If(push):
            m.d.sync += [self.acc.eq(total), beats.eq(n), self.fresh.eq(beat.end)]
        return z[: d.z_width], d.z_width

    def emits(self):
        return self.dut.i.payload.end

    def check(self, m, rec, payload):
        return _bits(payload) == rec

    def invariants(self, m, entries, count):
        regs = internal_signals(self.fragment, "acc", "fresh")
        fmt = self.dut.fmt
        most = ((1 << self.dut.y_width) - 1) << (fmt.slice_bits * (fmt.n_slices - 1))  # one beat's largest term
        m.d.comb += Assert(regs["fresh"] == self.fresh)
        with m.If(~self.fresh):
            # the sum stays within what its beats can add up to (unreachable otherwise)
            m.d.comb += Assert((regs["acc"] == self.acc) & (self.beats <= fmt.n_slices)
                               & (self.acc <= self.beats * most))


class RequantHarness(_StreamHarness):
    """:class:`~remeco.rtl.requant.Requantizer` against step 7 of the contract.

    Spec: ``t = floor((z + 2**(code_frac-1)) / 2**code_frac) + bias`` (exact);
    ``final``: the low 32 bits of ``t``; else ``out`` in ``[0, 255]`` with
    ``out * 2**shift - h <= t * multiplier`` (or ``out == 0``) and ``t * multiplier <
    (out + 1) * 2**shift - h`` (or ``out == 255``), ``h = 2**(shift-1)`` (0 for
    ``shift = 0``): round half up, ReLU and saturation. Every input is allowed (any
    multiplier, any shift the port holds). Capacity three beats (the three stages).

    The one primitive shared with the RTL is the product ``t * multiplier``. The
    invariants prove the stage-1 registers hold the beat's spec ``t`` and multiplier;
    when the beat leaves stage 1 the harness records the product of those registers in
    the beat's scoreboard entry, and everything after is checked against that record.
    The product is then the same term in the RTL and the spec: comparing two
    multipliers with equal but differently built inputs is what bit-level k-induction
    cannot do in seconds (the earlier harness, which multiplied the recorded beat's
    fields, did not finish its base case in 5 minutes).
    """

    capacity = 3

    def record(self, m, push):
        self.beat_w = len(_bits(self.dut.i.payload))
        self.prod_w = self._prod_shape().width
        value = Signal(self.beat_w + self.prod_w)
        m.d.comb += value.eq(_bits(self.dut.i.payload))  # the product is filled in later
        return value, len(value)

    def _prod_shape(self):
        return signed(self.dut.t_width + MULTIPLIER_BITS + 1)  # the RTL's product register

    def _t(self, m, beat):
        """The spec's ``t`` of ``beat``, held at the RTL's width of ``t`` (it fits)."""
        cf = self.dut.code_frac
        z = beat.z
        t = Signal(signed(self.dut.t_width))
        m.d.comb += t.eq(((z + (1 << cf >> 1)) >> cf) + beat.bias if cf else z + beat.bias)
        return t

    def _split(self, rec):
        return self.dut.in_layout(rec[: self.beat_w]), rec[self.beat_w:].as_signed()

    def check(self, m, rec, payload):
        beat, p = self._split(rec)
        t = self._t(m, beat)
        shift = beat.shift
        half = (Const(1, 2) << shift) >> 1
        out = payload
        # out * 2**shift as a shift: no second multiplier
        hidden = (((out == 0) | ((out << shift) <= p + half)) & ((out == 255) | (p + half < ((out + 1) << shift)))
                  & (out >= 0) & (out <= 255))
        return Mux(beat.final, out == t[:OUT_BITS].as_signed(), hidden)

    def occupancy(self, m):
        self.stage = internal_signals(self.fragment, "s1_valid", "t1", "mult1", "shift1", "final1",
                                      "s2_valid", "prod", "t2", "shift2", "final2")
        return self.stage["s1_valid"] + self.stage["s2_valid"] + self.dut.o.valid

    def invariants(self, m, entries, count):
        st, dut = self.stage, self.dut
        # the scoreboard holds the beats oldest first: output register, stage 2, stage 1
        at2, p2 = self._split(entries[dut.o.valid])
        at1, _ = self._split(entries[dut.o.valid + st["s2_valid"]])
        with m.If(st["s2_valid"]):
            m.d.comb += Assert((st["prod"] == p2) & (st["t2"] == self._t(m, at2)[:OUT_BITS].as_signed())
                               & (st["shift2"] == at2.shift) & (st["final2"] == at2.final))
        with m.If(st["s1_valid"]):
            m.d.comb += Assert((st["t1"] == self._t(m, at1)) & (st["mult1"] == at1.multiplier)
                               & (st["shift1"] == at1.shift) & (st["final1"] == at1.final))
        # the stage-1 beat moves on (the RTL's stage-2 enable): record t * multiplier of the
        # registers just proven to be its spec t and multiplier, at its index after this edge
        product = Signal(self._prod_shape())
        m.d.comb += product.eq(st["t1"] * st["mult1"])
        moves = st["s1_valid"] & (~st["s2_valid"] | ~dut.o.valid | dut.o.ready)
        pop = dut.o.valid & dut.o.ready
        index = dut.o.valid + st["s2_valid"] - pop
        for n in range(self.capacity):
            with m.If(moves & (index == n)):
                m.d.sync += entries[n][self.beat_w:].eq(product)


class RegisterFileHarness(Elaboratable):
    """:class:`~remeco.rtl.axil.RegisterFile` against the AXI4-Lite rules (a bounded check).

    Every bus and core input, and ``rst``, is free in every cycle (any master, even one
    that breaks the protocol: the rules below hold regardless). Checked, for writes and
    reads alike:

    * **a response for every request:** once a write's ``AW`` and ``W`` (a read's ``AR``)
      are accepted, ``bvalid`` (``rvalid``) is high within two cycles;
    * **no response without a request**, and one transaction per direction in flight
      (no second ``AW`` / ``W`` / ``AR`` is taken before the response is taken);
    * **responses held:** ``bvalid`` / ``rvalid`` with ``bresp`` / ``rresp`` / ``rdata``
      stay unchanged until ``bready`` / ``rready`` (unless that edge resets);
    * **the response code:** a write answers ``OKAY`` exactly when its address is the
      offset of an ``rw`` or ``wo`` register, else ``SLVERR`` (holes, misaligned
      offsets, read-only registers); a read answers ``OKAY`` exactly at a register's
      offset, else ``SLVERR`` with data 0; a ``wo`` register reads 0.

    The expected codes come from the register table the block is built from.
    """

    def __init__(self, dut) -> None:
        self.dut = dut
        self.sync = ClockDomain("sync")
        self.ports = [self.sync.clk]

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = sync = self.sync
        dut = self.dut
        m.submodules.dut = dut
        bus = dut.bus
        m.d.comb += sync.rst.eq(AnySeq(1))
        for _path, member, value in dut.signature.flatten(dut):
            if member.flow == In:
                m.d.comb += value.eq(AnySeq(len(value)))

        def at(addr, regs):
            return Cat(addr == r.offset for r in regs).any() if regs else Const(0)

        writable = [r for r in dut.registers if r.access != "ro"]
        write_only = [r for r in dut.registers if r.access == "wo"]

        # write: the request recorded by the harness until its response is taken
        aw_pend, w_pend, b_late = Signal(), Signal(), Signal()
        aw_addr = Signal(dut.addr_bits)
        b_done = bus.bvalid & bus.bready
        m.d.comb += Assert(~(bus.awvalid & bus.awready & aw_pend) & ~(bus.wvalid & bus.wready & w_pend))
        with m.If(bus.awvalid & bus.awready):
            m.d.sync += [aw_pend.eq(1), aw_addr.eq(bus.awaddr)]
        with m.If(bus.wvalid & bus.wready):
            m.d.sync += w_pend.eq(1)
        with m.If(b_done):
            m.d.sync += [aw_pend.eq(0), w_pend.eq(0)]
        waiting = aw_pend & w_pend & ~bus.bvalid
        m.d.sync += b_late.eq(waiting)
        m.d.comb += Assert(~(waiting & b_late))
        with m.If(bus.bvalid):
            m.d.comb += Assert(aw_pend & w_pend & (bus.bresp == Mux(at(aw_addr, writable), OKAY, SLVERR)))
        b_stall, b_resp = Signal(), Signal(2)
        m.d.sync += [b_stall.eq(bus.bvalid & ~bus.bready), b_resp.eq(bus.bresp)]
        with m.If(b_stall):
            m.d.comb += Assert(bus.bvalid & (bus.bresp == b_resp))

        # read
        ar_pend, r_late = Signal(), Signal()
        ar_addr = Signal(dut.addr_bits)
        m.d.comb += Assert(~(bus.arvalid & bus.arready & ar_pend))
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += [ar_pend.eq(1), ar_addr.eq(bus.araddr)]
        with m.If(bus.rvalid & bus.rready):
            m.d.sync += ar_pend.eq(0)
        waiting = ar_pend & ~bus.rvalid
        m.d.sync += r_late.eq(waiting)
        m.d.comb += Assert(~(waiting & r_late))
        with m.If(bus.rvalid):
            hit = at(ar_addr, list(dut.registers))
            m.d.comb += [
                Assert(ar_pend & (bus.rresp == Mux(hit, OKAY, SLVERR))),
                Assert(~(~hit | at(ar_addr, write_only)) | (bus.rdata == 0)),
            ]
        r_stall, r_resp = Signal(), Signal(2)
        r_data = Signal(len(bus.rdata))
        m.d.sync += [r_stall.eq(bus.rvalid & ~bus.rready), r_resp.eq(bus.rresp), r_data.eq(bus.rdata)]
        with m.If(r_stall):
            m.d.comb += Assert(bus.rvalid & (bus.rresp == r_resp) & (bus.rdata == r_data))
        return m
