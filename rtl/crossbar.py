"""Behavioral crossbar tile: cell codes in block RAM, bit-serial column accumulation,
run-time stuck-at fault injection (emulation step 2 + :mod:`remeco.models.fault_lfsr`).

Implements :func:`remeco.models.emulation.column_accumulate` on the codes as
:func:`remeco.models.fault_lfsr.apply_fault_map` makes them read, with the fault map
written by the host or by the on-chip generator of :func:`remeco.models.fault_lfsr.generate_fault_map`.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..models.fault_lfsr import THRESHOLD_ONE
from .fixed import bits_for, pipelined_tree_sum

__all__ = ["CrossbarTile", "programming_members", "xorshift32_expr"]


def programming_members(rows: int, cols: int, tiles: int, code_bits: int) -> dict:
    """The ``load``, ``fault`` and ``gen`` ports of a tile (shared with the PE, which passes them through)."""
    tile_w, row_w, col_w = bits_for(tiles - 1), bits_for(rows - 1), bits_for(cols - 1)
    thr_w = bits_for(THRESHOLD_ONE)
    return {
        "load": In(stream.Signature(data.StructLayout({
            "tile": unsigned(tile_w), "row": unsigned(row_w), "col": unsigned(col_w), "code": signed(code_bits)}))),
        "fault": In(stream.Signature(data.StructLayout({
            "tile": unsigned(tile_w), "row": unsigned(row_w), "col": unsigned(col_w), "kind": unsigned(2)}))),
        "gen": In(stream.Signature(data.StructLayout({
            "seed": unsigned(32), "rate": unsigned(thr_w), "on": unsigned(thr_w)}))),
    }


def xorshift32_expr(s):
    """One xorshift32 step as logic (same steps as :func:`remeco.models.fault_lfsr.xorshift32`)."""
    a = s ^ (s << 13)[:32]
    b = a ^ (a >> 17)
    return (b ^ (b << 5)[:32])[:32]


class CrossbarTile(wiring.Component):
    """``tiles`` crossbars of ``rows x cols`` cells, evaluated one column per cycle.

    Storage: the codes of all tiles in one memory, one word per (tile, column) holding
    the column's ``rows`` codes; the fault map in a second memory of the same shape
    (2 bits per cell). Because the map is separate, faults are injected, changed and
    cleared without reloading the weights; a stuck cell reads as ``code_on`` /
    ``code_off`` whatever was programmed.

    Cycle behaviour: a bit-plane beat on ``i`` selects a tile and drives its rows whose
    bit is 1; the tile then emits ``cols`` accumulator beats on ``o``, column 0 first, one
    per cycle while ``o`` is ready (latency ``4 + (ceil(log2(rows)) - 1) // 2`` cycles: memory
    read, the read data registered, fault substitution and row masking registered, then the
    adder tree over the rows with a register every two adder levels, the last stage being
    the output register; this is what lets the tile close timing at 100 MHz). The next plane is accepted in the cycle the last column is read,
    so back-to-back planes stream without bubbles. Output stalls stop the column counter
    and hold the memory read, nothing is dropped.

    Writes (``load``, ``fault`` and the generator) go straight to the memories; they
    should not overlap a sweep of the same tile (a column read in the same cycle may see
    the old or the new value). ``rst`` clears the sweep and the generator, not the
    memories.

    Fault generator: a beat on ``gen`` (``seed``, ``rate``, ``on``: thresholds in
    ``[0, 65536]``) starts a run that rewrites the whole fault map, one cell per cycle
    (``tiles * cols * rows`` cycles, in the order of the model: tile, column, row);
    ``gen_busy`` is high meanwhile, and ``fault`` and ``gen`` are not ready.

    Parameters
    ----------
    rows, cols:
        Tile size.
    tiles:
        Number of tiles held (the PE keeps every tile of a layer, ``t = rt * col_tiles + ct``).
    code_bits:
        Width of the signed cell codes.
    acc_width:
        Width of the signed column sums (``EmulationFormat.widths(...)["acc"]``).
    tag_width:
        Width of a side-band tag copied from each plane to its ``cols`` outputs (>= 1).

    Members
    -------
    i : ``In(stream.Signature(StructLayout({bits, tile, tag})))``
        Bit planes: ``bits[r]`` drives row ``r`` of tile ``tile``.
    o : ``Out(stream.Signature(StructLayout({acc, col, tag})))``
        Column sums of the faulty codes.
    load : ``In(stream.Signature(StructLayout({tile, row, col, code})))``
        Programs one cell's code per beat (always ready).
    fault : ``In(stream.Signature(StructLayout({tile, row, col, kind})))``
        Writes one fault-map entry (``kind``: 0 healthy, 1 stuck off, 3 stuck on).
    gen : ``In(stream.Signature(StructLayout({seed, rate, on})))``
        Starts the on-chip fault generator.
    gen_busy : ``Out(1)``
        The generator is rewriting the fault map.
    code_on, code_off : ``In(signed(code_bits))``
        Codes read from stuck-on / stuck-off cells.
    """

    def __init__(self, rows: int, cols: int, tiles: int, code_bits: int, acc_width: int, tag_width: int = 1) -> None:
        if min(rows, cols, tiles, tag_width) < 1:
            raise ValueError("rows, cols, tiles and tag_width must be >= 1")
        if acc_width < code_bits + bits_for(rows - 1) + 1:
            raise ValueError(f"acc_width={acc_width} cannot hold a column sum of {rows} {code_bits}-bit codes")
        self.rows, self.cols, self.tiles = rows, cols, tiles
        self.code_bits, self.acc_width, self.tag_width = code_bits, acc_width, tag_width
        tile_w, col_w = bits_for(tiles - 1), bits_for(cols - 1)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "bits": unsigned(rows), "tile": unsigned(tile_w), "tag": unsigned(tag_width)}))),
            "o": Out(stream.Signature(data.StructLayout({
                "acc": signed(acc_width), "col": unsigned(col_w), "tag": unsigned(tag_width)}))),
            **programming_members(rows, cols, tiles, code_bits),
            "gen_busy": Out(1),
            "code_on": In(signed(code_bits)),
            "code_off": In(signed(code_bits)),
        })

    def _word(self, tile, col):
        return tile * self.cols + col

    def elaborate(self, platform):
        m = Module()
        R, C, T, cb = self.rows, self.cols, self.tiles, self.code_bits
        depth = T * C
        m.submodules.codes = codes = Memory(shape=unsigned(R * cb), depth=depth, init=[])
        m.submodules.faults = faults = Memory(shape=unsigned(2 * R), depth=depth, init=[])
        code_rd = codes.read_port()
        fault_rd = faults.read_port()
        code_wr = codes.write_port(granularity=cb)
        fault_wr = faults.write_port(granularity=2)

        # -- programming: one cell per beat ------------------------------------------
        ld = self.load.payload
        m.d.comb += [
            self.load.ready.eq(1),
            code_wr.addr.eq(self._word(ld.tile, ld.col)),
            code_wr.data.eq(Cat(*([ld.code] * R))),
            code_wr.en.eq(Mux(self.load.valid, Const(1, R) << ld.row, 0)),
        ]

        # -- fault map: host writes or the generator ------------------------------------
        busy = Signal()
        state = Signal(32)
        rate = Signal.like(self.gen.payload.rate)
        on = Signal.like(self.gen.payload.on)
        g_word = Signal(range(max(depth, 2)))
        g_row = Signal(range(max(R, 2)))
        nxt = xorshift32_expr(state)
        faulty = nxt[:16] < rate
        stuck_on = nxt[16:32] < on
        g_kind = Cat(faulty, faulty & stuck_on)

        fp = self.fault.payload
        m.d.comb += [
            self.gen_busy.eq(busy),
            self.gen.ready.eq(~busy),
            self.fault.ready.eq(~busy),
        ]
        with m.If(busy):
            m.d.comb += [
                fault_wr.addr.eq(g_word),
                fault_wr.data.eq(Cat(*([g_kind] * R))),
                fault_wr.en.eq(Const(1, R) << g_row),
            ]
            m.d.sync += [state.eq(nxt), g_row.eq(g_row + 1)]
            with m.If(g_row == R - 1):
                m.d.sync += [g_row.eq(0), g_word.eq(g_word + 1)]
                with m.If(g_word == depth - 1):
                    m.d.sync += busy.eq(0)
        with m.Else():
            m.d.comb += [
                fault_wr.addr.eq(self._word(fp.tile, fp.col)),
                fault_wr.data.eq(Cat(*([fp.kind] * R))),
                fault_wr.en.eq(Mux(self.fault.valid, Const(1, R) << fp.row, 0)),
            ]
            with m.If(self.gen.valid):
                gp = self.gen.payload
                m.d.sync += [
                    busy.eq(1),
                    state.eq(Mux(gp.seed == 0, 1, gp.seed)),
                    rate.eq(gp.rate),
                    on.eq(gp.on),
                    g_word.eq(0),
                    g_row.eq(0),
                ]

        # -- evaluation: one column per cycle ---------------------------------------------
        sweeping = Signal()
        plane = Signal.like(self.i.payload)
        col = Signal(range(max(C, 2)))
        adv = ~self.o.valid | self.o.ready  # the output register takes a value this cycle
        last_col = col == C - 1
        m.d.comb += self.i.ready.eq(~sweeping | (adv & last_col))

        # stage 1: memory read of (plane.tile, col); the read data belongs to s1_*
        s1_valid = Signal()
        s1_bits = Signal(R)
        s1_col = Signal.like(col)
        s1_tag = Signal(self.tag_width)
        for rd in (code_rd, fault_rd):
            m.d.comb += [rd.en.eq(adv), rd.addr.eq(self._word(plane.tile, col))]
        with m.If(adv):
            m.d.sync += [
                s1_valid.eq(sweeping),
                s1_bits.eq(plane.bits),
                s1_col.eq(col),
                s1_tag.eq(plane.tag),
            ]
            with m.If(sweeping):
                m.d.sync += col.eq(col + 1)
                with m.If(last_col):
                    m.d.sync += [col.eq(0), sweeping.eq(0)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [plane.eq(self.i.payload), sweeping.eq(1), col.eq(0)]

        # stage 2: the memories' outputs, registered (a block RAM's clock-to-output is most of
        # a cycle on its own)
        s2_valid, s2_bits = Signal(), Signal(R)
        s2_col, s2_tag = Signal.like(col), Signal(self.tag_width)
        s2_codes, s2_faults = Signal(R * cb), Signal(2 * R)
        with m.If(adv):
            m.d.sync += [
                s2_valid.eq(s1_valid), s2_bits.eq(s1_bits), s2_col.eq(s1_col), s2_tag.eq(s1_tag),
                s2_codes.eq(code_rd.data), s2_faults.eq(fault_rd.data),
            ]

        # stage 3: stuck cells and driven rows -> the adder tree's terms, registered
        terms = []
        for r in range(R):
            code = s2_codes[r * cb:(r + 1) * cb].as_signed()
            f = s2_faults[2 * r:2 * r + 2]
            eff = Mux(f[0], Mux(f[1], self.code_on, self.code_off), code)
            term = Signal(signed(cb), name=f"term{r}")
            with m.If(adv):
                m.d.sync += term.eq(Mux(s2_bits[r], eff, 0))
            terms.append(term)
        s3_valid, s3_col, s3_tag = Signal(), Signal.like(col), Signal(self.tag_width)
        with m.If(adv):
            m.d.sync += [s3_valid.eq(s2_valid), s3_col.eq(s2_col), s3_tag.eq(s2_tag)]

        # stages 4..: the adder tree over the rows, two adder levels per stage -> output register
        total, stages = pipelined_tree_sum(m, terms, adv, levels_per_stage=2, name="rowsum")
        valid, col_d, tag_d = s3_valid, s3_col, s3_tag
        for k in range(stages):
            nv, nc, nt = Signal(name=f"t{k}_valid"), Signal.like(col, name=f"t{k}_col"), \
                Signal(self.tag_width, name=f"t{k}_tag")
            with m.If(adv):
                m.d.sync += [nv.eq(valid), nc.eq(col_d), nt.eq(tag_d)]
            valid, col_d, tag_d = nv, nc, nt
        with m.If(adv):
            m.d.sync += [
                self.o.valid.eq(valid),
                self.o.payload.acc.eq(total),
                self.o.payload.col.eq(col_d),
                self.o.payload.tag.eq(tag_d),
            ]
        return m
