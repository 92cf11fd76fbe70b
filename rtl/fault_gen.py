"""On-chip fault generator of the accelerator top: fault-memory words from xorshift32.

Implements :func:`remeco.models.fabric.memory_fault_map`, i.e. the rule of
:func:`remeco.models.fault_lfsr.generate_fault_map` laid out over fault-memory words: the
generator steps once per cell, lane 0 of word 0 first, and each new state decides its
cell (faulty iff ``s & 0xFFFF < rate``, stuck on iff ``s >> 16 < on``; entry ``0``, ``1``
stuck off or ``3`` stuck on, 2 bits per lane, lane ``l`` in bits ``[2l+1:2l]``). A clear
command writes zero words instead.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, ResetSignal, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..models.fault_lfsr import FAULT_OFF, FAULT_ON, THRESHOLD_ONE
from .crossbar import xorshift32_expr
from .fixed import bits_for

__all__ = ["FaultGenerator"]


class FaultGenerator(wiring.Component):
    """Writes fault-memory words ``[0, words)``: generated (xorshift32) or zero (clear).

    A command beat on ``i`` is taken while the generator is idle; it then emits one
    write beat per memory word on ``o``, in address order. Generating takes ``lanes``
    cycles per word (one xorshift32 step per cell); the next word is assembled while
    the previous one waits on ``o``, so a ready sink sees a word every ``lanes`` cycles.
    Clearing emits a word per cycle. ``busy`` is high from the command until the last
    word is taken. Reset aborts a command (nothing is taken in reset).

    Parameters
    ----------
    lanes:
        Cells per memory word (2 bits each).
    depth:
        Words of the fault memory (largest ``words``).

    Members
    -------
    i : ``In(stream.Signature(StructLayout({seed, rate, on, words, clear})))``
        ``seed`` (0 acts as 1), thresholds ``rate`` and ``on`` in ``[0, 65536]``, the
        word count ``words`` (``0 .. depth``; 0 does nothing) and ``clear``.
    o : ``Out(stream.Signature(StructLayout({addr, data})))``
        Fault-memory writes.
    busy : ``Out(1)``
        A command is in progress.
    """

    def __init__(self, lanes: int, depth: int) -> None:
        if lanes < 1 or depth < 1:
            self._MustUse__silence = True  # a refused configuration is not an unused design
            raise ValueError(f"lanes and depth must be >= 1, got {lanes}, {depth}")
        self.lanes, self.depth = lanes, depth
        thr_w = bits_for(THRESHOLD_ONE)
        self.cmd_layout = data.StructLayout({
            "seed": unsigned(32), "rate": unsigned(thr_w), "on": unsigned(thr_w),
            "words": unsigned(bits_for(depth)), "clear": unsigned(1),
        })
        self.out_layout = data.StructLayout({"addr": unsigned(bits_for(depth - 1)), "data": unsigned(2 * lanes)})
        super().__init__({
            "i": In(stream.Signature(self.cmd_layout)),
            "o": Out(stream.Signature(self.out_layout)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        L = self.lanes
        running = Signal()  # words are still being assembled
        clear = Signal()
        state = Signal(32)
        rate = Signal.like(self.i.payload.rate)
        on = Signal.like(self.i.payload.on)
        words = Signal.like(self.i.payload.words)
        addr = Signal(bits_for(self.depth))  # the word being assembled
        lane = Signal(range(max(L, 2)))
        word = Signal(2 * L)

        nxt = xorshift32_expr(state)
        faulty = nxt[:16] < rate
        entry = Mux(faulty, Mux(nxt[16:32] < on, FAULT_ON, FAULT_OFF), 0)
        new_word = Cat(word[2:], entry) if L > 1 else entry  # lane 0 enters first, ends in the low bits

        out_free = ~self.o.valid | self.o.ready
        m.d.comb += [
            self.i.ready.eq(~ResetSignal() & ~running & ~self.o.valid),
            self.busy.eq(running | self.o.valid),
        ]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        def emit(value):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.addr.eq(addr), self.o.payload.data.eq(value),
                         addr.eq(addr + 1)]
            with m.If(addr + 1 == words):
                m.d.sync += running.eq(0)

        with m.If(running & out_free):
            with m.If(clear):
                emit(0)
            with m.Else():
                m.d.sync += [state.eq(nxt), word.eq(new_word), lane.eq(lane + 1)]
                with m.If(lane == L - 1):
                    m.d.sync += lane.eq(0)
                    emit(new_word)

        with m.If(self.i.valid & self.i.ready):
            c = self.i.payload
            m.d.sync += [
                running.eq(c.words != 0),
                clear.eq(c.clear),
                state.eq(Mux(c.seed == 0, 1, c.seed)),
                rate.eq(c.rate),
                on.eq(c.on),
                words.eq(c.words),
                addr.eq(0),
                lane.eq(0),
            ]
        return m
