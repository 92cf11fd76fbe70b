"""Accelerator top: AXI4-Lite registers, AXI4-Stream in/out and the layer engine.

What it computes is stated in :mod:`remeco.models.fabric` (memory layout, stream words,
the run rule) and :mod:`remeco.rtl.regmap` (registers, commands, error codes, descriptor
fields); the arithmetic is :mod:`remeco.models.emulation`. ``tests/rtl/test_top.py``
proves it bit for bit against :class:`remeco.host.driver.ModelDevice`.

Engine (one run = one layer on ``V`` input vectors)
---------------------------------------------------
``VL`` vector lanes x ``L`` column lanes x ``input_bits`` bit planes of accumulators.
Each cycle the *issue* stage takes one row ``r`` of one column block ``b``: the input
word of row ``r`` (the ``VL`` vectors' bytes; from the MM2S stream for block 0, which
also stores it in the input buffer, from the buffer for later blocks) and the code and
fault words at ``code_base + b * K + r``. The memories answer :data:`ISSUE_LATENCY`
cycles later (banked block RAMs with registered outputs, :mod:`remeco.rtl.bram`, then
the stuck-cell substitution, registered); there every accumulator of the pass's bank
adds its cell code when its vector's bit is 1 (emulation step 2). A pass (``tile_rows``
rows, or the rest of the layer) fills one of two accumulator banks; the next pass fills
the other once the drain has emptied it.

The *drain* shifts the ``L`` columns of a full bank out of its lane 0, one per cycle
(zeros shift in, so an emptied bank is clear for its next pass), through a pipeline of
fixed latency (it never stalls inside; a column enters only while the output FIFO has
room for everything in flight): the run-time ADC shift, the ADC quantizers
(:class:`~remeco.rtl.adc.ADCQuantizer`, one per vector and bit plane, saturating),
the bit-plane sum, the shift-and-add over row tiles (:class:`~remeco.rtl.shift_add.ShiftAdd`,
one per vector lane), the copy averaging (:class:`~remeco.rtl.averager.Averager`, per the
column descriptor), the slice recombination and offset correction
(:class:`~remeco.rtl.combine.SliceCombiner`; the ADC shift is applied to the averaged
slices before it, which is exact modulo the 32-bit result) and ``to_accumulator``; each
closed neuron pushes ``VL`` results into the output FIFO, which the S2MM stream empties
one word per cycle. Back-pressure on S2MM stops the drain at its entry, which stops the
issue stage at the next pass start, which holds off MM2S: nothing is lost.

Timing: no control net reaches the whole accumulator array. Row validity and the bank
travel in the per-bank copy of the input word (zero when the row is not the bank's), the
drain's shift enables are one per bank, lane and vector lane, a START is decoded into a
register and clears nothing wide, and the data registers take no reset. Registers that
fan out across the array are copied per group of accumulators (the substituted codes
per bank and vector lane, a bank's input word per :data:`LANE_GROUP` lanes, the drained
bank and the ADC shift per vector lane; marked ``keep``, see :data:`KEEP`). The S2MM
and MM2S streams pass through register slices (:class:`~remeco.rtl.skid.SkidBuffer`).

The on-chip fault generator is :class:`~remeco.rtl.fault_gen.FaultGenerator`.

Cycle cost of a run: ``ceil(V / VL) * ceil(P / L) * K`` issue cycles when the drain
keeps up (a pass of ``>= L`` rows hides its drain), plus a pipeline tail of about
:data:`ISSUE_LATENCY` + the drain's latency.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from amaranth import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.hdl import ResetInserter
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..models.fabric import FabricConfig
from . import regmap
from .adc import ADCQuantizer
from .averager import Averager
from .axil import AxiLiteSignature, RegisterFile
from .axis import AxiStreamSignature
from .bram import READ_LATENCY, BankedMemory
from .combine import SliceCombiner
from .fault_gen import FaultGenerator
from .fixed import bits_for, round_shift_const, round_shift_var
from .ip import write_tcl
from .shift_add import ShiftAdd
from .skid import SkidBuffer

__all__ = ["AcceleratorTop", "TOP_NAME", "ISSUE_LATENCY", "LANE_GROUP", "generate_top", "main"]

#: Verilog module name of the top.
TOP_NAME = "remeco_top"

#: Cycles from issuing a row to accumulating it: the memories' read latency, then the
#: stuck-cell substitution's register.
ISSUE_LATENCY = READ_LATENCY + 1
#: Depth of the output FIFO (words of ``VL`` results); the drain admits a column while
#: the FIFO can take everything the drain holds.
OUT_FIFO_DEPTH = 32
#: Column lanes served by one copy of a bank's input word (its bits are the accumulators'
#: add enables: one copy per group keeps each bit's fan-out to ``LANE_GROUP * acc`` LUTs).
LANE_GROUP = 4

#: Attributes of a register that is a deliberate copy of another (for fan-out): Yosys'
#: ``opt_merge`` would fold identical flip-flops into one; the timing flow
#: (:mod:`remeco.rtl.timing`) marks the flip-flops driving ``keep`` wires ``keep``, which
#: it respects.
KEEP = {"keep": 1}


def _log2_exact(n: int, name: str) -> int:
    if n < 1 or n & (n - 1):
        raise ValueError(f"{name} must be a power of two for the top, got {n}")
    return n.bit_length() - 1


def _delay(m: Module, value, cycles: int, name: str, clear=None):
    """``value`` as it was ``cycles`` clock edges ago (a shift register without enable:
    the pipelines of the top never stall inside). With ``clear`` the stages reset to 0
    (valid bits); without, they are data and take no reset at all (a reset net into
    every data flip-flop is what kept the top from closing timing)."""
    for k in range(cycles):
        reg = Signal(value.shape(), name=f"{name}_d{k + 1}", reset_less=clear is None)
        m.d.sync += reg.eq(value)
        if clear is not None:
            with m.If(clear):
                m.d.sync += reg.eq(0)
        value = reg
    return value


class AcceleratorTop(wiring.Component):
    """The accelerator for a :class:`~remeco.models.fabric.FabricConfig`.

    Members
    -------
    s_axil : ``In(AxiLiteSignature(regmap.ADDR_BITS))``
        Control and status registers (:mod:`remeco.rtl.regmap`).
    s_axis : ``In(AxiStreamSignature(32))``
        MM2S words: run inputs, codes, fault-map words or descriptors (``STREAM_TARGET``).
    m_axis : ``Out(AxiStreamSignature(32))``
        S2MM words: run outputs, ``tlast`` on a run's last word.
    """

    def __init__(self, cfg: FabricConfig = FabricConfig()) -> None:
        try:
            if not isinstance(cfg, FabricConfig):
                raise ValueError(f"cfg must be a FabricConfig, got {type(cfg).__name__}")
            _log2_exact(cfg.column_lanes, "column_lanes")
            _log2_exact(cfg.vector_lanes, "vector_lanes")
        except ValueError:
            self._MustUse__silence = True  # a refused configuration is not an unused design
            raise
        self.cfg = cfg
        super().__init__({
            "s_axil": In(AxiLiteSignature(regmap.ADDR_BITS)),
            "s_axis": In(AxiStreamSignature(32)),
            "m_axis": Out(AxiStreamSignature(32)),
        })

    def elaborate(self, platform):  # noqa: C901 - the engine's stages, kept in one place on purpose
        m = Module()
        cfg = self.cfg
        fmt = cfg.fmt
        L, VL, IB = cfg.column_lanes, cfg.vector_lanes, fmt.input_bits
        log_l = _log2_exact(L, "column_lanes")
        _log2_exact(VL, "vector_lanes")
        rows = fmt.rows
        widths = fmt.widths(cfg.max_fan_in, cfg.max_copies_log2, 31)
        acc_w = widths["acc"]
        y_w = widths["y"]
        xs_w = bits_for(cfg.max_fan_in * ((1 << IB) - 1))
        top_code = (1 << fmt.adc_bits) - 1
        ys_w = bits_for(top_code * ((1 << IB) - 1))  # one tile's sum over the bit planes
        k_w = bits_for(cfg.max_fan_in)
        row_w = bits_for(rows - 1)
        cb = fmt.code_bits
        blocks_w = 16 - log_l + 1
        desc = {f.name: f for f in regmap.DESCRIPTOR_FIELDS}

        # -- registers ------------------------------------------------------------------
        m.submodules.regs = regs = RegisterFile(
            registers=regmap.REGISTERS, addr_bits=regmap.ADDR_BITS,
            self_clearing={"FAULT_CONTROL": 0b011}, core_writable=("LOAD_ADDRESS",),
        )
        wiring.connect(m, wiring.flipped(self.s_axil), regs.bus)

        soft = Signal()  # SOFT_RESET strobe
        start = Signal()
        m.d.comb += [
            start.eq(regs.control[0]),
            soft.eq(regs.control[1]),
        ]
        busy = Signal()
        done = Signal()
        error = Signal()
        error_code = Signal(4)
        gen_busy = Signal()
        cycles = Signal(64)
        cycles_hi = Signal(32)
        m.d.comb += [
            regs.id.eq(regmap.ID_VALUE),
            regs.version.eq(regmap.VERSION_VALUE),
            regs.status.eq(Cat(busy, done, error, gen_busy)),
            regs.error_code.eq(error_code),
            regs.cycles_lo.eq(cycles[:32]),
            regs.cycles_hi.eq(cycles_hi),
            regs.cap_code_words.eq(cfg.code_words),
            regs.cap_desc_words.eq(cfg.desc_words),
            regs.cap_column_lanes.eq(L),
            regs.cap_vector_lanes.eq(VL),
            regs.cap_max_fan_in.eq(cfg.max_fan_in),
            regs.cap_tile_rows.eq(rows),
            regs.cap_format.eq(cfg.format_word()),
        ]
        with m.If(regs.cycles_lo_read):
            m.d.sync += cycles_hi.eq(cycles[32:])
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)

        def fail(code):
            m.d.sync += [error.eq(1), error_code.eq(code)]

        # -- memories (banked block RAMs, registered read data) ------------------------------
        m.submodules.code_mem = code_mem = BankedMemory(L * cb, cfg.code_words)
        m.submodules.fault_mem = fault_mem = BankedMemory(2 * L, cfg.code_words)
        m.submodules.desc_mem = desc_mem = BankedMemory(regmap.DESCRIPTOR_BITS, cfg.desc_words)
        # unregistered write: block 1 reads row r one pass after block 0 wrote it, even for K = 1
        m.submodules.in_buf = in_buf = BankedMemory(32, cfg.max_fan_in, registered_write=False)

        # -- loader (STREAM_TARGET 1..3, not busy) ---------------------------------------
        target = regs.stream_target
        load_addr = regs.load_address
        pair = Signal(range(max(L // 2, 2)))
        staged = Signal(L * cb - 2 * cb if L > 2 else 1)
        loading = ~busy & (target != regmap.STREAM_INPUTS)
        # MM2S words enter through a register slice (rtl/skid.py): TREADY is its flip-flop,
        # and the loader's and the issue stage's ready logic ends at the slice, not at a port.
        # SOFT_RESET drops the (at most two) words it holds, with the rest of the stream state.
        m.submodules.in_slice = in_slice = ResetInserter({"sync": soft})(SkidBuffer(32))
        m.d.comb += [
            in_slice.i.valid.eq(self.s_axis.tvalid),
            in_slice.i.payload.eq(self.s_axis.tdata),
            self.s_axis.tready.eq(in_slice.i.ready),
        ]
        s_in = in_slice.o
        in_beat = s_in.valid & s_in.ready
        word = s_in.payload
        with m.If(regs.load_address_written):
            m.d.sync += pair.eq(0)
        with m.Elif(loading & in_beat):
            store = Signal()
            depth = Mux(target == regmap.STREAM_DESCRIPTORS, cfg.desc_words, cfg.code_words)
            in_range = load_addr < depth
            with m.Switch(target):
                with m.Case(regmap.STREAM_CODES):
                    pair_bits = Cat(word[:cb], word[16:16 + cb])
                    if L > 2:
                        m.d.sync += staged.eq(Cat(staged[2 * cb:], pair_bits))
                    m.d.comb += store.eq(pair == L // 2 - 1)
                    m.d.sync += pair.eq(Mux(pair == L // 2 - 1, 0, pair + 1))
                    m.d.comb += [
                        code_mem.w_addr.eq(load_addr),
                        code_mem.w_data.eq(Cat(staged, pair_bits) if L > 2 else pair_bits),
                        code_mem.w_en.eq(store & in_range),
                    ]
                with m.Case(regmap.STREAM_FAULTS):
                    m.d.comb += [
                        store.eq(~gen_busy),
                        fault_mem.w_addr.eq(load_addr),
                        fault_mem.w_data.eq(word[:2 * L]),
                        fault_mem.w_en.eq(~gen_busy & in_range),
                    ]
                with m.Case(regmap.STREAM_DESCRIPTORS):
                    m.d.comb += [
                        store.eq(1),
                        desc_mem.w_addr.eq(load_addr),
                        desc_mem.w_data.eq(word[:regmap.DESCRIPTOR_BITS]),
                        desc_mem.w_en.eq(in_range),
                    ]
            with m.If(store):
                m.d.comb += [regs.load_address_set.eq(1), regs.load_address_next.eq(load_addr + 1)]
                with m.If(~in_range):
                    fail(regmap.ERR_LOAD_RANGE)

        # -- fault generator and clear (rtl/fault_gen.py) ----------------------------------
        m.submodules.fault_gen = gen = ResetInserter({"sync": soft})(FaultGenerator(L, cfg.code_words))
        fault_cmd = regs.fault_control_written
        generate_cmd = fault_cmd & regs.fault_control[0]
        clear_cmd = fault_cmd & regs.fault_control[1]
        m.d.comb += [
            gen_busy.eq(gen.busy),
            gen.i.payload.seed.eq(regs.fault_seed),
            gen.i.payload.rate.eq(regs.fault_rate),
            gen.i.payload.on.eq(regs.fault_on_fraction),
            gen.i.payload.words.eq(Mux(clear_cmd, cfg.code_words, regs.fault_words)),
            gen.i.payload.clear.eq(clear_cmd),
            gen.o.ready.eq(1),
        ]
        with m.If(gen.o.valid):  # the stream is held off meanwhile: no host write competes
            m.d.comb += [
                fault_mem.w_addr.eq(gen.o.payload.addr),
                fault_mem.w_data.eq(gen.o.payload.data),
                fault_mem.w_en.eq(1),
            ]
        with m.If(generate_cmd | clear_cmd):
            with m.If(busy | gen_busy):
                fail(regmap.ERR_BUSY)
            with m.Elif(generate_cmd & (regs.fault_words > cfg.code_words)):
                fail(regmap.ERR_BAD_RUN)
            with m.Else():
                m.d.comb += gen.i.valid.eq(1)  # the generator is idle, so it takes the command now

        # -- run checks: registered from the LAYER_* registers over three cycles -------------
        # (a register written by AXI4-Lite takes effect >= 3 cycles before the next write, the
        # START, can: the slave holds AWREADY low until the B response has been taken)
        want_blocks = Signal(blocks_w)
        fan_in_q = Signal(16)
        code_base_q = Signal(32)
        simple_ok = Signal()
        code_words_used = Signal(blocks_w + 16)
        simple_ok2 = Signal()
        code_base_q2 = Signal(32)
        run_ok = Signal()
        m.d.sync += [
            want_blocks.eq((regs.layer_columns + (L - 1)) >> log_l),
            fan_in_q.eq(regs.layer_fan_in),
            code_base_q.eq(regs.layer_code_base),
            simple_ok.eq(
                (regs.layer_fan_in >= 1) & (regs.layer_fan_in <= cfg.max_fan_in)
                & (regs.layer_columns >= 1) & (regs.layer_neurons >= 1) & (regs.layer_vectors >= 1)
                & (regs.layer_desc_base + regs.layer_columns <= cfg.desc_words)
                & (target == regmap.STREAM_INPUTS)
            ),
            code_words_used.eq(want_blocks * fan_in_q),
            code_base_q2.eq(code_base_q),
            simple_ok2.eq(simple_ok),
            run_ok.eq(simple_ok2 & (code_base_q2 + code_words_used <= cfg.code_words)),
        ]

        # -- run parameters, latched at START ------------------------------------------
        k_last = Signal(k_w)  # FAN_IN - 1
        p_reg = Signal(16)
        n_last = Signal(16)  # NEURONS - 1
        code_base = Signal(bits_for(cfg.code_words))
        desc_base = Signal(bits_for(cfg.desc_words))
        # ADC_SHIFT once per vector lane, for the drain's shifters (input_bits + 1 each)
        adc_shift_v = [Signal(5, name=f"adc_shift_v{i}", attrs=KEEP) for i in range(VL)]
        shift_zero_v = [Signal(name=f"shift_zero_v{i}", attrs=KEEP) for i in range(VL)]
        blocks_last = Signal(blocks_w)
        enable_faults = Signal()
        code_on = Signal(signed(cb))
        code_off = Signal(signed(cb))
        # The START decode is registered: its checks (busy, the fault generator, run_ok)
        # end in a flip-flop and the run starts the cycle after (nothing can write a
        # register in between, see the run checks above).
        start_ok = Signal()  # START accepted: the run starts this cycle
        start_busy = Signal()  # START refused: busy
        start_bad = Signal()  # START refused: a check failed
        m.d.sync += [
            start_ok.eq(start & ~busy & ~gen_busy & run_ok),
            start_busy.eq(start & (busy | gen_busy)),
            start_bad.eq(start & ~busy & ~gen_busy & ~run_ok),
        ]
        # Only SOFT_RESET clears the pipelines: at START the previous run has drained
        # (BUSY drops after its last word; columns still in flight are padding, dropped
        # by the averager's column check as before), so a START clears nothing wide.
        drain_clear = soft

        # issue stage state
        a_active = Signal()
        a_cb = Signal(blocks_w)
        a_r = Signal(k_w)
        a_tile_row = Signal(row_w)
        a_addr = Signal(bits_for(cfg.code_words))
        a_vectors_left = Signal(32)
        # Two accumulator banks take turns: a pass accumulates into one while the drain
        # shifts the other out. A bank is *used* from its pass's first issued row until the
        # drain has emptied it, *full* from its pass's last accumulated row until then. After
        # reset and SOFT_RESET both are *flushed*: shifted out like a pass, without results.
        a_bank = Signal()  # the bank the issue stage fills
        bank_used = [Signal(init=1, name=f"bank_used{x}") for x in range(2)]
        bank_full = [Signal(init=1, name=f"bank_full{x}") for x in range(2)]
        bank_flush = [Signal(init=1, name=f"bank_flush{x}") for x in range(2)]
        d_bank = Signal()  # the bank the drain empties
        d_lane = Signal(range(L))  # its columns drained so far
        # output side
        out_vectors_left = Signal(32)
        out_neuron = Signal(16)
        out_lane = Signal(range(VL))

        # -- issue stage ------------------------------------------------------------------
        from_stream = a_cb == 0
        row_last = a_r == k_last
        pass_first = a_tile_row == 0
        pass_last = (a_tile_row == rows - 1) | row_last
        bank_wait = pass_first & Mux(a_bank, bank_used[1], bank_used[0])  # its bank not drained yet
        can_issue = a_active & (~from_stream | s_in.valid) & ~bank_wait
        with m.If(busy):
            m.d.comb += s_in.ready.eq(a_active & from_stream & ~bank_wait)
        with m.Else():
            # held off while the generator owns the fault memory, and in the cycle a new
            # LOAD_ADDRESS takes effect (the word assembly restarts then)
            m.d.comb += s_in.ready.eq(
                loading & ~((target == regmap.STREAM_FAULTS) & gen_busy) & ~regs.load_address_written
            )
        m.d.comb += [
            code_mem.r_addr.eq(a_addr),
            fault_mem.r_addr.eq(a_addr),
            in_buf.r_addr.eq(a_r),
        ]
        with m.If(can_issue):
            with m.If(from_stream):
                m.d.comb += [in_buf.w_addr.eq(a_r), in_buf.w_data.eq(word), in_buf.w_en.eq(1)]
            for x in range(2):
                with m.If(pass_first & (a_bank == x)):
                    m.d.sync += bank_used[x].eq(1)
            with m.If(pass_last):
                m.d.sync += a_bank.eq(~a_bank)
            with m.If(row_last):
                m.d.sync += [a_r.eq(0), a_tile_row.eq(0)]
                with m.If(a_cb == blocks_last):
                    m.d.sync += [a_cb.eq(0), a_addr.eq(code_base), a_vectors_left.eq(a_vectors_left - VL)]
                    with m.If(a_vectors_left <= VL):
                        m.d.sync += a_active.eq(0)
                with m.Else():
                    m.d.sync += [a_cb.eq(a_cb + 1), a_addr.eq(a_addr + 1)]
            with m.Else():
                m.d.sync += [
                    a_r.eq(a_r + 1),
                    a_tile_row.eq(Mux(a_tile_row == rows - 1, 0, a_tile_row + 1)),
                    a_addr.eq(a_addr + 1),
                ]

        # the row's side-band, delayed to the accumulate stage (ISSUE_LATENCY cycles)
        q_valid = _delay(m, can_issue, ISSUE_LATENCY, "q_valid", clear=drain_clear)
        q_last = _delay(m, pass_last, ISSUE_LATENCY, "q_last")
        q_bank = _delay(m, a_bank, ISSUE_LATENCY, "q_bank")
        q_first_tile = _delay(m, a_r < rows, ISSUE_LATENCY, "q_first_tile")
        q_last_tile = _delay(m, row_last, ISSUE_LATENCY, "q_last_tile")
        q_cb = _delay(m, a_cb, ISSUE_LATENCY, "q_cb")
        q_row0 = _delay(m, a_r == 0, ISSUE_LATENCY, "q_row0")
        q_stream = _delay(m, from_stream, ISSUE_LATENCY, "q_stream")
        r_stream = _delay(m, from_stream, READ_LATENCY, "r_stream")
        r_word = _delay(m, word, READ_LATENCY, "r_word")
        r_into = [_delay(m, can_issue & (a_bank == x), READ_LATENCY, f"r_into{x}", clear=drain_clear)
                  for x in range(2)]

        # -- substitution stage: stuck cells, the input word (registered) --------------------
        # The substituted code is registered once per bank and vector lane (kept apart from
        # synthesis' register merging): each copy feeds the input_bits accumulators of its
        # lane in one bank and vector, placed with them, instead of one register feeding
        # 2 * VL * input_bits accumulators across the array.
        eff = [[[Signal(signed(cb), name=f"eff{x}_{i}_{lane}", reset_less=True, attrs=KEEP) for lane in range(L)]
                for i in range(VL)] for x in range(2)]
        for lane in range(L):
            raw = code_mem.r_data[lane * cb:(lane + 1) * cb].as_signed()
            f = fault_mem.r_data[2 * lane:2 * lane + 2]
            sub = Mux(enable_faults & f[0], Mux(f[1], code_on, code_off), raw)
            m.d.sync += [eff[x][i][lane].eq(sub) for x in range(2) for i in range(VL)]
        x_now = Mux(r_stream, r_word, in_buf.r_data)
        x_word = Signal(32, reset_less=True)
        m.d.sync += x_word.eq(x_now)
        # The input word once more per bank, zero unless the row goes into that bank: row
        # validity and the bank choice ride on these 2 x 32 bits instead of an enable into
        # every accumulator. Zero after SOFT_RESET, so the flush shifts nothing in. One copy
        # per group of LANE_GROUP column lanes (kept apart like the codes').
        groups = max(L // LANE_GROUP, 1)
        x_bank = [[Signal(32, name=f"x_bank{x}_{g}", attrs=KEEP) for g in range(groups)] for x in range(2)]
        for x in range(2):
            for g in range(groups):
                m.d.sync += x_bank[x][g].eq(Mux(r_into[x], x_now, 0))
                with m.If(drain_clear):
                    m.d.sync += x_bank[x][g].eq(0)

        # -- accumulate stage ------------------------------------------------------------------
        # Every accumulator adds its cell term every cycle (0 unless its bank takes the row).
        # While the drain empties a bank, the bank shifts down one lane per drained column
        # (the drain reads lane 0) and zeros come in from the top, so a drained bank is clear
        # with no clear net. Only lanes still holding columns shift: one shift enable per
        # bank and lane (VL * IB accumulators each), none into the whole bank. The drain
        # never shifts a bank that takes rows, so the term is 0 whenever it shifts. The take
        # and the shift enables are registers, decided a cycle ahead (below), one copy per
        # vector lane (input_bits accumulators each).
        take = Signal()  # the drain takes lane 0 of bank d_bank this cycle
        shifts = [[[Signal(name=f"shift{x}_{lane}_{i}", attrs=KEEP) for i in range(VL)] for lane in range(L)]
                  for x in range(2)]
        banks = [[[[Signal(signed(acc_w), name=f"acc{x}_{i}_{lane}_{b}", reset_less=True) for b in range(IB)]
                   for lane in range(L)] for i in range(VL)] for x in range(2)]
        for x in range(2):
            for lane in range(L):
                for i in range(VL):
                    shift = shifts[x][lane][i]
                    for b in range(IB):
                        acc = banks[x][i][lane][b]
                        above = banks[x][i][lane + 1][b] if lane + 1 < L else 0
                        term = Mux(x_bank[x][lane // LANE_GROUP][8 * i + b], eff[x][i][lane], 0)
                        m.d.sync += acc.eq((Mux(shift, above, acc) + term)[:acc_w])
        x_sum = [Signal(xs_w, name=f"x_sum{i}", reset_less=True) for i in range(VL)]
        x_sum_next = []
        for i in range(VL):
            byte = x_word[8 * i:8 * i + IB]
            nxt = Signal(xs_w, name=f"x_sum_next{i}")
            m.d.comb += nxt.eq(Mux(q_stream, Mux(q_row0, byte, x_sum[i] + byte), x_sum[i]))
            with m.If(q_valid):
                m.d.sync += x_sum[i].eq(nxt)
            x_sum_next.append(nxt)
        # a pass's side-band, per bank, taken with its last row
        sh_cb = [Signal(blocks_w, name=f"sh_cb{x}") for x in range(2)]
        sh_first_tile = [Signal(name=f"sh_first_tile{x}") for x in range(2)]
        sh_last_tile = [Signal(name=f"sh_last_tile{x}") for x in range(2)]
        sh_x_sum = [[Signal(xs_w, name=f"sh_x_sum{x}_{i}", reset_less=True) for i in range(VL)] for x in range(2)]
        for x in range(2):
            with m.If(q_valid & q_last & (q_bank == x)):
                m.d.sync += [bank_full[x].eq(1), sh_cb[x].eq(q_cb), sh_first_tile[x].eq(q_first_tile),
                             sh_last_tile[x].eq(q_last_tile)]
                m.d.sync += [sh_x_sum[x][i].eq(x_sum_next[i]) for i in range(VL)]

        def of_drained(pair):
            return Mux(d_bank, pair[1], pair[0])

        # -- drain: a fixed-latency pipeline, entered one column per cycle ---------------------
        fifo_clear = Signal()
        m.d.comb += fifo_clear.eq(soft | start_ok)
        m.submodules.out_fifo = out_fifo = ResetInserter({"sync": fifo_clear})(
            SyncFIFOBuffered(width=32 * VL, depth=OUT_FIFO_DEPTH)
        )
        tree_stages = (IB - 1).bit_length()  # adder levels of the bit-plane sum, one per stage
        drain_latency = 10 + tree_stages  # entry to FIFO write, counted below stage by stage
        room = Signal()  # registered: the FIFO can take all the drain may hold
        m.d.sync += room.eq(out_fifo.level <= OUT_FIFO_DEPTH - drain_latency - 4)
        # The take of the next cycle, its shift enables and its descriptor address are
        # registers, from this cycle's state (a bank full only from this edge on starts a
        # cycle later; room is a cycle older, hence one more word of margin above).
        ending = take & (d_lane == L - 1)
        next_bank = d_bank ^ ending
        next_lane = Mux(take, d_lane + 1, d_lane)[:log_l]  # wraps to 0 after lane L - 1
        go = Mux(next_bank, bank_full[1], bank_full[0]) & room
        m.d.sync += take.eq(go)
        # Which lanes still hold columns, as a thermometer register beside d_lane
        # (hold[lane] = d_lane <= L - 1 - lane): each lane's next value depends on its own
        # bit and its neighbour's, not on a comparison of the whole lane counter.
        hold = Signal(L, name="hold", init=(1 << L) - 1)
        hold_next = Signal(L, name="hold_next")
        for lane in range(L):
            above = hold[lane + 1] if lane + 1 < L else 0
            m.d.comb += hold_next[lane].eq(ending | Mux(take, above, hold[lane]))  # next_lane <= L - 1 - lane
        m.d.sync += hold.eq(hold_next)
        for x in range(2):
            for lane in range(L):
                holds = hold_next[lane] if lane else 1  # lane 0 holds a column until the end
                m.d.sync += [sh.eq(go & (next_bank == x) & holds) for sh in shifts[x][lane]]
        with m.If(drain_clear):
            m.d.sync += [take.eq(0), *(sh.eq(0) for bank in shifts for row in bank for sh in row)]
        # the drained bank once more per vector lane, for the stage-1 multiplexers below
        d_bank_v = [Signal(name=f"d_bank_v{i}", attrs=KEEP) for i in range(VL)]
        m.d.sync += [c.eq(next_bank) for c in d_bank_v]
        with m.If(drain_clear):
            m.d.sync += [c.eq(0) for c in d_bank_v]
        desc_addr = Signal.like(desc_mem.r_addr)
        m.d.sync += desc_addr.eq(desc_base + Cat(next_lane, Mux(next_bank, sh_cb[1], sh_cb[0])))
        m.d.comb += desc_mem.r_addr.eq(desc_addr)
        col = Cat(d_lane, of_drained(sh_cb))  # sh_cb * L + d_lane
        with m.If(take):
            m.d.sync += d_lane.eq(d_lane + 1)
            with m.If(d_lane == L - 1):
                m.d.sync += [d_lane.eq(0), d_bank.eq(~d_bank)]
                for x in range(2):
                    with m.If(d_bank == x):
                        m.d.sync += [bank_full[x].eq(0), bank_used[x].eq(0), bank_flush[x].eq(0)]

        # stage 1: the column's accumulators (registered), side-band
        v1 = Signal()
        m.d.sync += v1.eq(take & ~of_drained(bank_flush))
        with m.If(drain_clear):
            m.d.sync += v1.eq(0)
        s1_acc = [[Signal(signed(acc_w), name=f"s1_acc_{i}_{b}", reset_less=True) for b in range(IB)]
                  for i in range(VL)]
        for i in range(VL):
            for b in range(IB):
                m.d.sync += s1_acc[i][b].eq(Mux(d_bank_v[i], banks[1][i][0][b], banks[0][i][0][b]))
        s1_lane = Signal(range(L))
        s1_col_ok = Signal()
        s1_first_tile = Signal()
        s1_last_tile = Signal()
        s1_x_sum = [Signal(xs_w, name=f"s1_x_sum{i}", reset_less=True) for i in range(VL)]
        m.d.sync += [
            s1_lane.eq(d_lane), s1_col_ok.eq(col < p_reg),
            s1_first_tile.eq(of_drained(sh_first_tile)), s1_last_tile.eq(of_drained(sh_last_tile)),
        ]
        m.d.sync += [s1_x_sum[i].eq(of_drained([sh_x_sum[0][i], sh_x_sum[1][i]])) for i in range(VL)]

        # stages 2-3: the run-time ADC shift's rounding (fixed.round_shift_var, split over two
        # registers: the arithmetic shift, then the rounding add)
        v2 = _delay(m, v1, 1, "v2", clear=drain_clear)
        v3 = _delay(m, v2, 1, "v3", clear=drain_clear)
        rounded = [[None] * IB for _ in range(VL)]
        for i in range(VL):
            for b in range(IB):
                pre = Signal(signed(acc_w), name=f"pre_{i}_{b}", reset_less=True)
                m.d.sync += pre.eq(Mux(shift_zero_v[i], s1_acc[i][b], s1_acc[i][b] >> (adc_shift_v[i] - 1)[:5]))
                r = Signal(signed(acc_w), name=f"rounded_{i}_{b}", reset_less=True)
                m.d.sync += r.eq(Mux(shift_zero_v[i], pre, (pre + 1) >> 1))
                rounded[i][b] = r

        # stage 4: the ADC quantizers saturate (rtl/adc.py, shift 0: the shift is done above)
        codes = [[None] * IB for _ in range(VL)]
        adcs = []
        for i in range(VL):
            for b in range(IB):
                adc = ResetInserter({"sync": drain_clear})(ADCQuantizer(acc_w, fmt.adc_bits, 0))
                m.submodules[f"adc_{i}_{b}"] = adc
                m.d.comb += [adc.i.valid.eq(v3), adc.i.payload.eq(rounded[i][b]), adc.o.ready.eq(1)]
                codes[i][b] = adc.o.payload
                adcs.append(adc)
        v4 = adcs[0].o.valid  # the quantizers run in lock step

        # stages 5..: sum over the bit planes, code << bit, one adder level per stage
        ysum = []
        for i in range(VL):
            level = [codes[i][b] << b for b in range(IB)]
            for s in range(tree_stages):
                nxt = []
                for j in range(0, len(level), 2):
                    reg = Signal(ys_w, name=f"ysum_{i}_s{s}_{j // 2}", reset_less=True)
                    m.d.sync += reg.eq(level[j] + level[j + 1] if j + 1 < len(level) else level[j])
                    nxt.append(reg)
                level = nxt
            ysum.append(level[0])
        v_sa = _delay(m, v4, tree_stages, "v_sa", clear=drain_clear)
        lag = 3 + tree_stages  # stage 1 -> shift-and-add input
        sa_lane = _delay(m, s1_lane, lag, "sa_lane")
        sa_first = _delay(m, s1_first_tile, lag, "sa_first")
        sa_last = _delay(m, s1_last_tile, lag, "sa_last")

        # next stage: y summed over row tiles (rtl/shift_add.py), emitted at the last tile
        sas = []
        for i in range(VL):
            sa = ResetInserter({"sync": drain_clear})(ShiftAdd(ys_w, 1, L, y_w))
            m.submodules[f"shift_add_{i}"] = sa
            m.d.comb += [
                sa.i.valid.eq(v_sa),
                sa.i.payload.code.eq(ysum[i]),
                sa.i.payload.bit.eq(0),
                sa.i.payload.col.eq(sa_lane),
                sa.i.payload.first.eq(sa_first),
                sa.i.payload.last.eq(sa_last),
                sa.o.ready.eq(1),
            ]
            sas.append(sa)

        # next stage: copy averaging (rtl/averager.py) per the column's descriptor; padding
        # columns (past LAYER_COLUMNS) stop here
        av_desc = _delay(m, desc_mem.r_data, lag, "av_desc")  # desc_mem answers in stage 2
        av_col_ok = _delay(m, s1_col_ok, lag + 1, "av_col_ok")
        field = lambda name: av_desc[desc[name].lsb:desc[name].lsb + desc[name].width]  # noqa: E731
        avs = []
        for i in range(VL):
            av = ResetInserter({"sync": drain_clear})(Averager(y_w, fmt.n_slices, cfg.max_copies_log2))
            m.submodules[f"averager_{i}"] = av
            m.d.comb += [
                av.i.valid.eq(sas[0].o.valid & av_col_ok),
                av.i.payload.y.eq(sas[i].o.payload.y),
                av.i.payload.slice.eq(field("SLICE")),
                av.i.payload.k.eq(field("K")),
                av.i.payload.first.eq(field("FIRST")),
                av.i.payload.last.eq(field("LAST")),
                av.i.payload.end.eq(field("END")),
                av.o.ready.eq(1),
            ]
            avs.append(av)

        # next stage: the ADC shift applied to the averaged slice. Only the low 32 bits of
        # to_accumulator(z) leave the chip, and they depend only on z mod 2**(32 + code_frac),
        # so the slices are kept to that many bits.
        a_w = 32 + fmt.code_frac
        cb_valid = Signal()
        cb_a = [Signal(a_w, name=f"cb_a{i}", reset_less=True) for i in range(VL)]
        cb_slice = Signal(avs[0].o.payload.slice.shape())
        cb_end = Signal()
        m.d.sync += [cb_valid.eq(avs[0].o.valid), cb_slice.eq(avs[0].o.payload.slice), cb_end.eq(avs[0].o.payload.end)]
        with m.If(drain_clear):
            m.d.sync += cb_valid.eq(0)
        m.d.sync += [cb_a[i].eq((avs[i].o.payload.a << adc_shift_v[i])[:a_w]) for i in range(VL)]
        cb_x_sum = [_delay(m, s1_x_sum[i], lag + 3, f"cb_x_sum{i}") for i in range(VL)]

        # next stage: slice recombination and offset correction (rtl/combine.py, shift 0)
        c_acc_w = a_w + fmt.slice_bits * (fmt.n_slices - 1) + bits_for(fmt.n_slices - 1)
        offset_shift = fmt.weight_bits - 1 + fmt.code_frac
        z_w = max(c_acc_w, xs_w + offset_shift) + 2
        cbs = []
        for i in range(VL):
            c = ResetInserter({"sync": drain_clear})(SliceCombiner(fmt, a_w, xs_w, z_w, 0))
            m.submodules[f"combine_{i}"] = c
            m.d.comb += [
                c.i.valid.eq(cb_valid),
                c.i.payload.a.eq(cb_a[i]),
                c.i.payload.slice.eq(cb_slice),
                c.i.payload.end.eq(cb_end),
                c.i.payload.x_sum.eq(cb_x_sum[i]),
                c.o.ready.eq(1),
            ]
            cbs.append(c)

        # last stage: to_accumulator, registered, into the FIFO
        out_valid = Signal()
        out_words = [Signal(32, name=f"out_word{i}", reset_less=True) for i in range(VL)]
        m.d.sync += out_valid.eq(cbs[0].o.valid)
        with m.If(drain_clear):
            m.d.sync += out_valid.eq(0)
        m.d.sync += [out_words[i].eq(round_shift_const(cbs[i].o.payload, fmt.code_frac)[:32]) for i in range(VL)]
        m.d.comb += [out_fifo.w_data.eq(Cat(*out_words)), out_fifo.w_en.eq(out_valid)]

        # -- S2MM serializer, then a register slice (rtl/skid.py) to m_axis ------------------
        # The slice ends the S2MM handshake at flip-flops on both sides: TREADY reaches only
        # the slice's registers, and the serializer's beat (its FIFO read enable) sees the
        # slice's registered ready. BUSY drops when the run's last word leaves on m_axis.
        m.submodules.out_slice = out_slice = ResetInserter({"sync": soft})(
            SkidBuffer(data.StructLayout({"data": 32, "last": 1}))
        )
        lanes_out = Array(out_fifo.r_data[32 * i:32 * (i + 1)] for i in range(VL))
        last_group = Signal()  # out_vectors_left <= VL, kept in a register beside it
        last_word = (out_lane == VL - 1) & (out_neuron == n_last) & last_group
        m.d.comb += [
            out_slice.i.valid.eq(out_fifo.r_rdy & busy),
            out_slice.i.payload.data.eq(lanes_out[out_lane]),
            out_slice.i.payload.last.eq(last_word),
            self.m_axis.tvalid.eq(out_slice.o.valid),
            self.m_axis.tdata.eq(out_slice.o.payload.data),
            self.m_axis.tlast.eq(out_slice.o.payload.last),
            out_slice.o.ready.eq(self.m_axis.tready),
        ]
        with m.If(self.m_axis.tvalid & self.m_axis.tready & self.m_axis.tlast):
            m.d.sync += [busy.eq(0), done.eq(1)]
        out_beat = out_slice.i.valid & out_slice.i.ready
        with m.If(out_beat):
            m.d.sync += out_lane.eq(out_lane + 1)
            with m.If(out_lane == VL - 1):
                m.d.comb += out_fifo.r_en.eq(1)
                m.d.sync += [out_lane.eq(0), out_neuron.eq(out_neuron + 1)]
                with m.If(out_neuron == n_last):
                    m.d.sync += [out_neuron.eq(0), out_vectors_left.eq(out_vectors_left - VL),
                                 last_group.eq(out_vectors_left <= 2 * VL)]

        # -- START ---------------------------------------------------------------------
        with m.If(start_busy):
            fail(regmap.ERR_BUSY)
        with m.If(start_bad):
            fail(regmap.ERR_BAD_RUN)
        with m.If(start_ok):
            # the banks and the drain are idle and empty between runs (every pass was
            # drained), or still being flushed after a SOFT_RESET: left alone here
            m.d.sync += [
                busy.eq(1), done.eq(0), error.eq(0), error_code.eq(regmap.ERR_NONE),
                k_last.eq(regs.layer_fan_in - 1), p_reg.eq(regs.layer_columns),
                n_last.eq(regs.layer_neurons - 1),
                code_base.eq(regs.layer_code_base), desc_base.eq(regs.layer_desc_base),
                *(c.eq(regs.layer_adc_shift) for c in adc_shift_v),
                *(c.eq(regs.layer_adc_shift == 0) for c in shift_zero_v),
                blocks_last.eq(want_blocks - 1),
                enable_faults.eq(regs.fault_control[2]),
                code_on.eq(regs.code_on[:cb]), code_off.eq(regs.code_off[:cb]),
                a_active.eq(1), a_cb.eq(0), a_r.eq(0), a_tile_row.eq(0),
                a_addr.eq(regs.layer_code_base), a_vectors_left.eq(regs.layer_vectors),
                out_vectors_left.eq(regs.layer_vectors), last_group.eq(regs.layer_vectors <= VL),
                out_neuron.eq(0), out_lane.eq(0),
            ]

        # -- SOFT_RESET (last: wins over everything above) ---------------------------------
        with m.If(soft):
            m.d.sync += [
                busy.eq(0), done.eq(0), error.eq(0), error_code.eq(regmap.ERR_NONE), cycles.eq(0),
                a_active.eq(0), pair.eq(0), out_lane.eq(0), out_neuron.eq(0),
                # both banks may hold partial sums: the drain shifts them out unused
                a_bank.eq(0), d_bank.eq(0), d_lane.eq(0), hold.eq((1 << L) - 1),
                *(flag[x].eq(1) for flag in (bank_used, bank_full, bank_flush) for x in range(2)),
            ]
        return m


def generate_top(out_dir: str | Path, cfg: FabricConfig = FabricConfig()) -> Path:
    """Write ``<out_dir>/remeco_top.v`` for ``cfg``; returns the path."""
    from .verilog import to_verilog

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{TOP_NAME}.v"
    path.write_text(to_verilog(AcceleratorTop(cfg), TOP_NAME))
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m remeco.rtl.top --out DIR``: write the accelerator top's Verilog and its IP identity
    (:mod:`remeco.rtl.ip`), what ``boards/pynq_z2/block_design.tcl`` packages."""
    parser = argparse.ArgumentParser(prog="python -m remeco.rtl.top", description=main.__doc__)
    parser.add_argument("--out", default=".", help="output folder")
    parser.add_argument("--code-words", type=int, default=FabricConfig.code_words)
    parser.add_argument("--desc-words", type=int, default=FabricConfig.desc_words)
    args = parser.parse_args(argv)
    try:
        cfg = FabricConfig(code_words=args.code_words, desc_words=args.desc_words)
    except ValueError as exc:
        parser.error(str(exc))
    path = generate_top(args.out, cfg)
    print(f"wrote {path} and {write_tcl(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
