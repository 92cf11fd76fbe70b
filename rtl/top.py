"""Accelerator top: AXI4-Lite registers, AXI4-Stream in/out and the layer engine.

What it computes is stated in :mod:`remeco.models.fabric` (memory layout, stream words,
the run rule) and :mod:`remeco.rtl.regmap` (registers, commands, errors); the arithmetic
is :mod:`remeco.models.emulation`. ``tests/rtl/test_top.py`` proves it bit for bit
against :class:`remeco.host.driver.ModelDevice`.

Engine (one run = one layer on ``V`` input vectors)
---------------------------------------------------
``VL`` vector lanes x ``L`` column lanes x ``input_bits`` bit planes of accumulators.
Each cycle the *issue* stage takes one row ``r`` of one column block ``b``: the input
word of row ``r`` (the ``VL`` vectors' bytes; from the MM2S stream for block 0, which
also stores it in the input buffer, from the buffer for later blocks) and the code and
fault words at ``code_base + b * K + r``. One cycle later every accumulator adds its cell
code when its vector's bit is 1 (emulation step 2). The last row of a tile (``tile_rows``
rows) or of the layer hands the accumulators to a *shadow* bank and the next pass starts
at once; the *drain* then walks the ``L`` columns of the shadow, one per cycle, through a
pipeline: ADC of every bit plane and shift-and-add into a per-column ``y`` summed over row
tiles (steps 3-4), then for the layer's last tile the copy average (step 5, per the
column descriptor), the slice recombination and offset correction (step 6) and
``to_accumulator``; each closed neuron pushes ``VL`` results into the output FIFO,
which the S2MM stream empties one word per cycle. Back-pressure on S2MM stops the drain,
which stops the issue stage at the next pass end, which holds off MM2S: nothing is lost.

Cycle cost of a run: ``ceil(V / VL) * ceil(P / L) * K`` issue cycles when the drain
keeps up (a pass of ``>= L`` rows hides its drain), plus a pipeline tail.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.hdl import ResetInserter
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..models.fabric import FabricConfig, K_BITS_FIELD, SLICE_BITS_FIELD
from ..models.fault_lfsr import THRESHOLD_ONE
from . import regmap
from .axil import AxiLiteSignature, RegisterFile
from .axis import AxiStreamSignature
from .crossbar import xorshift32_expr
from .fixed import bits_for, round_shift_const, round_shift_var

__all__ = ["AcceleratorTop", "TOP_NAME", "generate_top", "main"]

#: Verilog module name of the top.
TOP_NAME = "remeco_top"

ERR_BAD_RUN = 1
ERR_LOAD_RANGE = 2
ERR_BUSY = 3


def _log2_exact(n: int, name: str) -> int:
    if n < 1 or n & (n - 1):
        raise ValueError(f"{name} must be a power of two for the top, got {n}")
    return n.bit_length() - 1


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

    def elaborate(self, platform):  # noqa: C901 - one datapath, kept in one place on purpose
        m = Module()
        cfg = self.cfg
        fmt = cfg.fmt
        L, VL, IB = cfg.column_lanes, cfg.vector_lanes, fmt.input_bits
        log_l, log_vl = _log2_exact(L, "column_lanes"), _log2_exact(VL, "vector_lanes")
        rows = fmt.rows
        widths = fmt.widths(cfg.max_fan_in, cfg.max_copies_log2, 31)
        acc_w = widths["acc"]
        y_w = widths["y"]
        sum_w = y_w + cfg.max_copies_log2
        nsum_w = y_w + fmt.slice_bits * (fmt.n_slices - 1) + bits_for(fmt.n_slices - 1) + 1
        xs_w = bits_for(cfg.max_fan_in * ((1 << IB) - 1))
        code_aw = bits_for(cfg.code_words - 1)
        desc_aw = bits_for(cfg.desc_words - 1)
        k_w = bits_for(cfg.max_fan_in)
        row_w = bits_for(rows - 1)
        cb = fmt.code_bits

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

        # -- memories -------------------------------------------------------------------
        m.submodules.code_mem = code_mem = Memory(shape=unsigned(L * cb), depth=cfg.code_words, init=[])
        m.submodules.fault_mem = fault_mem = Memory(shape=unsigned(2 * L), depth=cfg.code_words, init=[])
        m.submodules.desc_mem = desc_mem = Memory(shape=unsigned(11), depth=cfg.desc_words, init=[])
        m.submodules.in_buf = in_buf = Memory(shape=unsigned(32), depth=cfg.max_fan_in, init=[])
        code_rd, fault_rd, desc_rd, buf_rd = (mem.read_port() for mem in (code_mem, fault_mem, desc_mem, in_buf))
        code_wr, fault_wr, desc_wr, buf_wr = (mem.write_port() for mem in (code_mem, fault_mem, desc_mem, in_buf))

        # -- loader (STREAM_TARGET 1..3, not busy) ---------------------------------------
        target = regs.stream_target
        load_addr = regs.load_address
        pair = Signal(range(max(L // 2, 2)))
        staged = Signal(L * cb - 2 * cb if L > 2 else 1)
        loading = ~busy & (target != regmap.STREAM_INPUTS)
        in_beat = self.s_axis.tvalid & self.s_axis.tready
        word = self.s_axis.tdata
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
                        code_wr.addr.eq(load_addr),
                        code_wr.data.eq(Cat(staged, pair_bits) if L > 2 else pair_bits),
                        code_wr.en.eq(store & in_range),
                    ]
                with m.Case(regmap.STREAM_FAULTS):
                    m.d.comb += store.eq(~gen_busy)
                with m.Case(regmap.STREAM_DESCRIPTORS):
                    m.d.comb += [
                        store.eq(1),
                        desc_wr.addr.eq(load_addr),
                        desc_wr.data.eq(word[:11]),
                        desc_wr.en.eq(in_range),
                    ]
            with m.If(store):
                m.d.comb += [regs.load_address_set.eq(1), regs.load_address_next.eq(load_addr + 1)]
                with m.If(~in_range):
                    fail(ERR_LOAD_RANGE)

        # -- fault generator and clear -----------------------------------------------------
        gen_clear = Signal()
        gen_addr = Signal(code_aw + 1)
        gen_lane = Signal(range(L))
        gen_state = Signal(32)
        gen_word = Signal(2 * L)
        gen_last = Signal(code_aw + 2)
        fault_cmd = regs.fault_control_written
        generate_cmd = fault_cmd & regs.fault_control[0]
        clear_cmd = fault_cmd & regs.fault_control[1]
        nxt = xorshift32_expr(gen_state)
        faulty = nxt[:16] < regs.fault_rate
        stuck_on = nxt[16:] < regs.fault_on_fraction
        entry = Mux(faulty, Mux(stuck_on, 3, 1), 0)
        new_word = Cat(gen_word[2:], entry)  # lane 0 enters first, ends in the low bits
        with m.If(gen_busy):
            with m.If(gen_addr >= gen_last):
                m.d.sync += gen_busy.eq(0)
            with m.Elif(gen_clear):
                m.d.comb += [fault_wr.addr.eq(gen_addr), fault_wr.data.eq(0), fault_wr.en.eq(1)]
                m.d.sync += gen_addr.eq(gen_addr + 1)
            with m.Else():
                m.d.sync += [gen_state.eq(nxt), gen_word.eq(new_word), gen_lane.eq(gen_lane + 1)]
                with m.If(gen_lane == L - 1):
                    m.d.comb += [fault_wr.addr.eq(gen_addr), fault_wr.data.eq(new_word), fault_wr.en.eq(1)]
                    m.d.sync += [gen_addr.eq(gen_addr + 1), gen_lane.eq(0)]
        with m.Elif(loading & in_beat & (target == regmap.STREAM_FAULTS)):
            m.d.comb += [
                fault_wr.addr.eq(load_addr),
                fault_wr.data.eq(word[:2 * L]),
                fault_wr.en.eq(load_addr < cfg.code_words),
            ]
        with m.If(generate_cmd | clear_cmd):
            with m.If(busy | gen_busy):
                fail(ERR_BUSY)
            with m.Elif(generate_cmd & (regs.fault_words > cfg.code_words)):
                fail(ERR_BAD_RUN)
            with m.Else():
                seed = regs.fault_seed
                m.d.sync += [
                    gen_busy.eq(1),
                    gen_clear.eq(clear_cmd),
                    gen_addr.eq(0),
                    gen_lane.eq(0),
                    gen_state.eq(Mux(seed == 0, 1, seed)),
                    gen_last.eq(Mux(clear_cmd, cfg.code_words, regs.fault_words)),
                ]

        # -- run parameters, latched at START ------------------------------------------
        k_reg = Signal(k_w)
        p_reg = Signal(16)
        n_reg = Signal(16)
        code_base = Signal(code_aw + 1)
        desc_base = Signal(desc_aw + 1)
        adc_shift = Signal(5)
        blocks = Signal(16 - log_l + 1)
        enable_faults = Signal()
        code_on = Signal(signed(cb))
        code_off = Signal(signed(cb))

        want_blocks = (regs.layer_columns + (L - 1)) >> log_l
        code_end = regs.layer_code_base + want_blocks * regs.layer_fan_in
        run_ok = (
            (regs.layer_fan_in >= 1) & (regs.layer_fan_in <= cfg.max_fan_in)
            & (regs.layer_columns >= 1) & (regs.layer_neurons >= 1) & (regs.layer_vectors >= 1)
            & (code_end <= cfg.code_words)
            & (regs.layer_desc_base + regs.layer_columns <= cfg.desc_words)
            & (target == regmap.STREAM_INPUTS)
        )

        # issue stage state
        a_active = Signal()
        a_cb = Signal.like(blocks)
        a_r = Signal(k_w)
        a_tile_row = Signal(row_w)
        a_addr = Signal(code_aw + 1)
        a_vectors_left = Signal(32)
        reserved = Signal()  # the shadow bank is promised to the pass in flight
        # output side
        out_vectors_left = Signal(32)
        out_neuron = Signal(16)
        out_lane = Signal(range(VL))
        fresh = Signal(init=1)

        # -- issue stage ------------------------------------------------------------------
        from_stream = a_cb == 0
        pass_last = (a_tile_row == rows - 1) | (a_r == k_reg - 1)
        can_issue = a_active & (~from_stream | self.s_axis.tvalid) & ~(pass_last & reserved)
        with m.If(busy):
            m.d.comb += self.s_axis.tready.eq(a_active & from_stream & ~(pass_last & reserved))
        with m.Else():
            # held off while the generator owns the fault memory, and in the cycle a new
            # LOAD_ADDRESS takes effect (the word assembly restarts then)
            m.d.comb += self.s_axis.tready.eq(
                loading & ~((target == regmap.STREAM_FAULTS) & gen_busy) & ~regs.load_address_written
            )
        m.d.comb += [
            code_rd.addr.eq(a_addr),
            fault_rd.addr.eq(a_addr),
            buf_rd.addr.eq(a_r),
        ]
        b_valid = Signal()
        b_fresh = Signal()
        b_last = Signal()
        b_first_tile = Signal()
        b_last_tile = Signal()
        b_cb = Signal.like(blocks)
        b_stream = Signal()
        b_word = Signal(32)
        x_sum = [Signal(xs_w, name=f"x_sum{i}") for i in range(VL)]
        m.d.sync += b_valid.eq(can_issue)
        with m.If(can_issue):
            m.d.sync += [
                b_fresh.eq(a_tile_row == 0),
                b_last.eq(pass_last),
                b_first_tile.eq(a_r < rows),
                b_last_tile.eq(a_r == k_reg - 1),
                b_cb.eq(a_cb),
                b_stream.eq(from_stream),
                b_word.eq(word),
            ]
            with m.If(from_stream):
                m.d.comb += [buf_wr.addr.eq(a_r), buf_wr.data.eq(word), buf_wr.en.eq(1)]
                for i in range(VL):
                    byte = word[8 * i: 8 * i + IB]
                    m.d.sync += x_sum[i].eq(Mux(a_r == 0, byte, x_sum[i] + byte))
            with m.If(pass_last):
                m.d.sync += reserved.eq(1)
            with m.If(a_r == k_reg - 1):
                m.d.sync += [a_r.eq(0), a_tile_row.eq(0)]
                with m.If(a_cb == blocks - 1):
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

        # -- accumulate stage (B) --------------------------------------------------------
        x_word = Mux(b_stream, b_word, buf_rd.data)
        codes = []
        for lane in range(L):
            raw = code_rd.data[lane * cb:(lane + 1) * cb].as_signed()
            f = fault_rd.data[2 * lane:2 * lane + 2]
            stuck = enable_faults & f[0]
            codes.append(Mux(stuck, Mux(f[1], code_on, code_off), raw))
        acc = [[[Signal(signed(acc_w), name=f"acc_{i}_{lane}_{b}") for b in range(IB)] for lane in range(L)] for i in range(VL)]
        shadow = [[[Signal(signed(acc_w), name=f"sh_{i}_{lane}_{b}") for b in range(IB)] for lane in range(L)] for i in range(VL)]
        shadow_full = Signal()
        sh_cb = Signal.like(blocks)
        sh_first_tile = Signal()
        sh_last_tile = Signal()
        sh_x_sum = [Signal(xs_w, name=f"sh_x_sum{i}") for i in range(VL)]
        for i in range(VL):
            for lane in range(L):
                for b in range(IB):
                    bit = x_word[8 * i + b]
                    nxt_acc = Mux(b_fresh, 0, acc[i][lane][b]) + Mux(bit, codes[lane], 0)
                    with m.If(b_valid):
                        m.d.sync += acc[i][lane][b].eq(nxt_acc)
                        with m.If(b_last):
                            m.d.sync += shadow[i][lane][b].eq(nxt_acc)
        with m.If(b_valid & b_last):
            m.d.sync += [shadow_full.eq(1), sh_cb.eq(b_cb), sh_first_tile.eq(b_first_tile), sh_last_tile.eq(b_last_tile)]
            m.d.sync += [sh_x_sum[i].eq(x_sum[i]) for i in range(VL)]

        # -- drain pipeline (advances together while the output FIFO has room) -------------
        fifo_clear = Signal()
        m.d.comb += fifo_clear.eq(soft | (start & ~busy & ~gen_busy))
        m.submodules.out_fifo = out_fifo = ResetInserter({"sync": fifo_clear})(
            SyncFIFOBuffered(width=32 * VL, depth=8)
        )
        adv = out_fifo.w_rdy
        d_lane = Signal(range(L))
        col = Cat(d_lane, sh_cb)  # sh_cb * L + d_lane
        m.d.comb += desc_rd.addr.eq(desc_base + col)
        m.d.comb += desc_rd.en.eq(adv)
        s1_valid = Signal()
        s1_lane = Signal(range(L))
        s1_col_ok = Signal()
        s1_first_tile = Signal()
        s1_last_tile = Signal()
        s1_acc = [[Signal(signed(acc_w), name=f"s1_acc_{i}_{b}") for b in range(IB)] for i in range(VL)]
        s1_x_sum = [Signal(xs_w, name=f"s1_x_sum{i}") for i in range(VL)]
        with m.If(adv):
            m.d.sync += s1_valid.eq(shadow_full)
            with m.If(shadow_full):
                m.d.sync += [
                    s1_lane.eq(d_lane),
                    s1_col_ok.eq(col < p_reg),
                    s1_first_tile.eq(sh_first_tile),
                    s1_last_tile.eq(sh_last_tile),
                    d_lane.eq(d_lane + 1),
                ]
                for i in range(VL):
                    m.d.sync += s1_x_sum[i].eq(sh_x_sum[i])
                    for b in range(IB):
                        m.d.sync += s1_acc[i][b].eq(Array(shadow[i][lane][b] for lane in range(L))[d_lane])
                with m.If(d_lane == L - 1):
                    m.d.sync += [shadow_full.eq(0), reserved.eq(0), d_lane.eq(0)]

        # S1: ADC, shift-and-add, y over row tiles
        ymem = [Array(Signal(y_w, name=f"y_{i}_{lane}") for lane in range(L)) for i in range(VL)]
        s2_valid = Signal()
        s2_y = [Signal(y_w, name=f"s2_y{i}") for i in range(VL)]
        s2_desc = Signal(11)
        s2_x_sum = [Signal(xs_w, name=f"s2_x_sum{i}") for i in range(VL)]
        top_code = (1 << fmt.adc_bits) - 1
        for i in range(VL):
            terms = []
            for b in range(IB):
                rounded = round_shift_var(s1_acc[i][b], adc_shift)
                code = Mux(rounded < 0, 0, Mux(rounded > top_code, top_code, rounded))[:fmt.adc_bits]
                terms.append(code << b)
            ysum = sum(terms[1:], terms[0])
            y_new = (Mux(s1_first_tile, 0, ymem[i][s1_lane]) + ysum)[:y_w]
            with m.If(adv & s1_valid):
                m.d.sync += ymem[i][s1_lane].eq(y_new)
            with m.If(adv):
                m.d.sync += [s2_y[i].eq(y_new), s2_x_sum[i].eq(s1_x_sum[i])]
        with m.If(adv):
            m.d.sync += [s2_valid.eq(s1_valid & s1_last_tile & s1_col_ok), s2_desc.eq(desc_rd.data)]

        # S2: copy averaging (step 5)
        d_slice = s2_desc[:SLICE_BITS_FIELD]
        d_k = s2_desc[SLICE_BITS_FIELD:SLICE_BITS_FIELD + K_BITS_FIELD]
        d_first, d_last, d_end = s2_desc[8], s2_desc[9], s2_desc[10]
        sums = [Array(Signal(sum_w, name=f"sum_{i}_{s}") for s in range(fmt.n_slices)) for i in range(VL)]
        s3_valid = Signal()
        s3_a = [Signal(y_w, name=f"s3_a{i}") for i in range(VL)]
        s3_slice = Signal(bits_for(fmt.n_slices - 1))
        s3_end = Signal()
        s3_x_sum = [Signal(xs_w, name=f"s3_x_sum{i}") for i in range(VL)]
        k_sig = Signal(bits_for(cfg.max_copies_log2))
        m.d.comb += k_sig.eq(d_k)
        for i in range(VL):
            total = Signal(sum_w, name=f"total{i}")
            m.d.comb += total.eq(Mux(d_first, 0, sums[i][d_slice]) + s2_y[i])
            with m.If(adv & s2_valid):
                m.d.sync += sums[i][d_slice].eq(total)
            with m.If(adv):
                m.d.sync += [s3_a[i].eq(round_shift_var(total, k_sig)), s3_x_sum[i].eq(s2_x_sum[i])]
        with m.If(adv):
            m.d.sync += [s3_valid.eq(s2_valid & d_last), s3_slice.eq(d_slice), s3_end.eq(d_end)]

        # S3: slice recombination, offset correction, to_accumulator (step 6, 7a)
        offset_shift = fmt.weight_bits - 1 + fmt.code_frac
        nsum = [Signal(nsum_w, name=f"nsum{i}") for i in range(VL)]
        s4_valid = Signal()
        s4_out = [Signal(32, name=f"s4_out{i}") for i in range(VL)]
        for i in range(VL):
            ntotal = Signal(nsum_w, name=f"ntotal{i}")
            m.d.comb += ntotal.eq(Mux(fresh, 0, nsum[i]) + (s3_a[i] << (s3_slice * fmt.slice_bits)))
            with m.If(adv & s3_valid):
                m.d.sync += nsum[i].eq(ntotal)
            z = (ntotal << adc_shift) - (s3_x_sum[i] << offset_shift)
            with m.If(adv):
                m.d.sync += s4_out[i].eq(round_shift_const(z, fmt.code_frac)[:32])
        with m.If(adv):
            m.d.sync += s4_valid.eq(s3_valid & s3_end)
            with m.If(s3_valid):
                m.d.sync += fresh.eq(s3_end)
        m.d.comb += [out_fifo.w_data.eq(Cat(*s4_out)), out_fifo.w_en.eq(adv & s4_valid)]

        # -- S2MM serializer ---------------------------------------------------------------
        lanes_out = Array(out_fifo.r_data[32 * i:32 * (i + 1)] for i in range(VL))
        last_word = (out_lane == VL - 1) & (out_neuron == n_reg - 1) & (out_vectors_left <= VL)
        m.d.comb += [
            self.m_axis.tvalid.eq(out_fifo.r_rdy & busy),
            self.m_axis.tdata.eq(lanes_out[out_lane]),
            self.m_axis.tlast.eq(last_word),
        ]
        out_beat = self.m_axis.tvalid & self.m_axis.tready
        with m.If(out_beat):
            m.d.sync += out_lane.eq(out_lane + 1)
            with m.If(out_lane == VL - 1):
                m.d.comb += out_fifo.r_en.eq(1)
                m.d.sync += [out_lane.eq(0), out_neuron.eq(out_neuron + 1)]
                with m.If(out_neuron == n_reg - 1):
                    m.d.sync += [out_neuron.eq(0), out_vectors_left.eq(out_vectors_left - VL)]
            with m.If(last_word):
                m.d.sync += [busy.eq(0), done.eq(1)]

        # -- START ---------------------------------------------------------------------
        with m.If(start):
            with m.If(busy | gen_busy):
                fail(ERR_BUSY)
            with m.Elif(~run_ok):
                fail(ERR_BAD_RUN)
            with m.Else():
                m.d.sync += [
                    busy.eq(1), done.eq(0), error.eq(0), error_code.eq(0),
                    k_reg.eq(regs.layer_fan_in), p_reg.eq(regs.layer_columns), n_reg.eq(regs.layer_neurons),
                    code_base.eq(regs.layer_code_base), desc_base.eq(regs.layer_desc_base),
                    adc_shift.eq(regs.layer_adc_shift), blocks.eq(want_blocks),
                    enable_faults.eq(regs.fault_control[2]),
                    code_on.eq(regs.code_on[:cb]), code_off.eq(regs.code_off[:cb]),
                    a_active.eq(1), a_cb.eq(0), a_r.eq(0), a_tile_row.eq(0),
                    a_addr.eq(regs.layer_code_base), a_vectors_left.eq(regs.layer_vectors),
                    out_vectors_left.eq(regs.layer_vectors), out_neuron.eq(0), out_lane.eq(0),
                    fresh.eq(1), reserved.eq(0), shadow_full.eq(0), d_lane.eq(0),
                    b_valid.eq(0), s1_valid.eq(0), s2_valid.eq(0), s3_valid.eq(0), s4_valid.eq(0),
                ]

        # -- SOFT_RESET (last: wins over everything above) ---------------------------------
        with m.If(soft):
            m.d.sync += [
                busy.eq(0), done.eq(0), error.eq(0), error_code.eq(0), gen_busy.eq(0), cycles.eq(0),
                a_active.eq(0), reserved.eq(0), shadow_full.eq(0), d_lane.eq(0), pair.eq(0),
                b_valid.eq(0), s1_valid.eq(0), s2_valid.eq(0), s3_valid.eq(0), s4_valid.eq(0),
                fresh.eq(1), out_lane.eq(0), out_neuron.eq(0),
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
    """``python -m remeco.rtl.top --out DIR``: write the accelerator top's Verilog."""
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
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
