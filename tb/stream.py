"""Drive and monitor Amaranth ``lib.stream`` ports from cocotb (shared by every bench).

Amaranth flattens a stream member ``i`` into the Verilog ports ``i__valid``,
``i__ready`` and ``i__payload``; a ``StructLayout`` payload is one vector with the first
field in the least significant bits. :class:`Payload` packs and unpacks such vectors
from the component's own signature (so field names, widths and signedness are never
restated in a bench); :class:`StreamSource` and :class:`StreamSink` are the bus models,
with random idle cycles (valid) and random backpressure (ready).

Transfer rule (Amaranth streams): a beat moves on a rising edge where ``valid`` and
``ready`` are both 1; once ``valid`` is raised it stays up, payload unchanged, until
the beat moves. Every beat is time-stamped; a :class:`ResetMonitor` records the first
clock edge that samples ``rst`` low after each reset, so each beat gets an *epoch* (the
number of resets completed before it moved) and a bench can check what happened
before and after a reset in the middle of a transfer. Beats that move on an edge where
``rst`` is 1 belong to the epoch before the reset. Create the models after the initial
reset, so that epoch 0 is the first one the bench uses.

Sampling: a model decides whether a beat moved from the ``ready`` / ``valid`` /
``payload`` values the rising edge sampled (:func:`remeco.tb.common.sampled`: the ports
themselves with the bench's own clock, registered copies when the clock is in the HDL)
and waits for changes on the ports themselves.

Cost: a source runs every cycle only while it has beats to send and sleeps otherwise,
so idle programming ports cost nothing; with ``valid_prob = 1`` it also sleeps while the
DUT holds ``ready`` low (until ``ready`` rises). A sink runs every cycle while it draws
random ``ready``, and with ``ready_prob = 1`` sleeps until the DUT raises ``valid``. Long
runs at full rate therefore cost Python per beat, not per cycle.
"""

from __future__ import annotations

import bisect
import random
from collections import deque

from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = ["Payload", "stream_payload", "quiet_inputs", "ResetMonitor", "StreamSource", "StreamSink"]


class Payload:
    """Packs field values into a flat payload vector and back.

    Parameters
    ----------
    shape:
        The payload shape: a plain shape (one unnamed field, key ``None``) or a
        ``StructLayout`` (flat fields only).
    """

    def __init__(self, shape) -> None:
        fields: list[tuple[str | None, int, int, bool]] = []
        if isinstance(shape, data.Layout):
            layout = shape
            for name, field in layout:
                s = Shape.cast(field.shape)
                fields.append((name, field.offset, s.width, s.signed))
            self.width = layout.size
        else:
            s = Shape.cast(shape)
            fields.append((None, 0, s.width, s.signed))
            self.width = s.width
        self.fields = fields

    @property
    def names(self) -> list[str | None]:
        """Field names, least significant first."""
        return [f[0] for f in self.fields]

    def field(self, name: str | None) -> tuple[int, int, bool]:
        """``(offset, width, signed)`` of a field."""
        for n, off, w, sg in self.fields:
            if n == name:
                return off, w, sg
        raise KeyError(name)

    def pack(self, values=None, **kw) -> int:
        """One payload vector from a value (plain shape) or field values (struct)."""
        if self.fields[0][0] is None:
            _, off, w, _ = self.fields[0]
            return int(values) & ((1 << w) - 1)
        vals = dict(values or {}, **kw)
        word = 0
        for name, off, w, _ in self.fields:
            word |= (int(vals.get(name, 0)) & ((1 << w) - 1)) << off
        return word

    def unpack(self, word: int):
        """A value (plain shape) or a ``dict`` of field values (struct), signed as declared."""
        out = {}
        for name, off, w, sg in self.fields:
            v = (int(word) >> off) & ((1 << w) - 1)
            if sg and w and v >> (w - 1):
                v -= 1 << w
            if name is None:
                return v
            out[name] = v
        return out

    def pack_many(self, columns) -> list[int]:
        """Payload vectors from a sequence of values or a ``dict`` of equal-length columns."""
        if self.fields[0][0] is None:
            return [self.pack(v) for v in columns]
        names = list(columns)
        n = len(columns[names[0]])
        cols = [[int(x) for x in columns[k]] for k in names]
        return [self.pack(dict(zip(names, (c[i] for c in cols)))) for i in range(n)]

    def unpack_many(self, words) -> dict | list:
        """Columns (``dict`` of lists) for a struct, a list of values for a plain shape."""
        if self.fields[0][0] is None:
            return [self.unpack(w) for w in words]
        out: dict[str, list[int]] = {f[0]: [] for f in self.fields}
        for w in words:
            for k, v in self.unpack(w).items():
                out[k].append(v)
        return out


def stream_payload(component, member: str) -> Payload:
    """The :class:`Payload` of a stream member of an Amaranth component."""
    sig = component.signature.members[member].signature
    return Payload(sig.members["payload"].shape)


def quiet_inputs(dut, component) -> None:
    """Drive every input port of ``component`` to 0 (valids low, settings 0).

    Call before the first reset: an undriven input is X in four-state simulators
    (Icarus), and an X ``valid`` during reset can write X into memories, which the
    synchronous reset does not clear.
    """
    from amaranth.lib.wiring import Flow

    for path, member, _ in component.signature.flatten(component):
        if member.flow == Flow.In:
            getattr(dut, "__".join(map(str, path))).value = 0


class ResetMonitor:
    """Records the time of the first clock edge that samples ``rst`` low after a reset.

    Event driven (it waits for ``rst`` to rise and fall), so it costs nothing per cycle.
    Only resets that start after the monitor is created count.
    """

    def __init__(self, dut) -> None:
        import cocotb

        self.clk, self.rst = dut.clk, dut.rst
        self.deasserts: list[int] = []
        self._task = cocotb.start_soon(self._run())

    async def _run(self) -> None:
        from cocotb.triggers import FallingEdge, RisingEdge
        from cocotb.simtime import get_sim_time

        while True:
            # Rise first: the initial reset may still be ending when the monitor starts.
            await RisingEdge(self.rst)
            await FallingEdge(self.rst)
            await RisingEdge(self.clk)
            self.deasserts.append(get_sim_time())

    def epoch(self, time: int) -> int:
        """Resets completed before a beat that moved at ``time`` (sim steps)."""
        return bisect.bisect_right(self.deasserts, time)


def _int(signal) -> int:
    """``int(signal.value)``, with a message naming the signal when it is X or Z."""
    try:
        return int(signal.value)
    except ValueError:
        from cocotb.simtime import get_sim_time

        raise AssertionError(f"{signal!r} is {signal.value} at {get_sim_time('ns')} ns") from None


class _Port:
    def __init__(self, dut, name: str, rng: random.Random | int | None, prob: float) -> None:
        from .common import sampled

        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        # The DUT's side of the handshake as the last rising edge sampled it (see the module doc).
        out = ("ready",) if isinstance(self, StreamSource) else ("valid", "payload")
        self._at_edge = {f: sampled(dut, f"{name}__{f}") for f in out}
        # Reads in an edge callback return the sampled values themselves (bench-driven clock).
        self._edge_reads_sample = all(h is getattr(self, f) for f, h in self._at_edge.items())
        self.rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        self.prob = float(prob)
        self.resets = ResetMonitor(dut)
        self._moved: list[tuple[int, int]] = []  # (sim time, word)

    @property
    def count(self) -> int:
        """Beats that moved so far (all epochs)."""
        return len(self._moved)

    def _beats(self) -> list[tuple[int, int]]:
        return [(self.resets.epoch(t), w) for t, w in self._moved]

    def words(self, epoch: int | None = None) -> list[int]:
        """Words that moved (in one epoch, or all)."""
        if epoch is None:
            return [w for _, w in self._moved]
        return [w for e, w in self._beats() if e == epoch]


class StreamSource(_Port):
    """Drives a stream into the DUT (``<name>__valid``/``__payload``, reads ``__ready``).

    Parameters
    ----------
    dut:
        cocotb handle of the top level.
    name:
        Stream member name (``"i"``).
    rng:
        ``random.Random`` or seed for the idle pattern.
    valid_prob:
        Probability of offering the next beat on a cycle (``1.0``: no idle cycles).

    Attributes
    ----------
    sent:
        ``[(epoch, word), ...]`` of every beat that moved.
    """

    def __init__(self, dut, name: str, rng=None, valid_prob: float = 1.0) -> None:
        import cocotb
        from cocotb.triggers import Event

        super().__init__(dut, name, rng, valid_prob)
        self.queue: deque[int] = deque()
        self._flush = False
        self._offering = False
        self._wake = Event()
        self.valid.value = 0
        self._task = cocotb.start_soon(self._run())

    @property
    def sent(self) -> list[tuple[int, int]]:
        """``[(epoch, word), ...]`` of every beat that moved into the DUT."""
        return self._beats()

    def send(self, words) -> None:
        """Queue payload words (ints) for sending."""
        self.queue.extend(int(w) for w in words)
        self._wake.set()

    def flush(self) -> None:
        """Drop the queue and, after the next edge, the beat being offered (for resets)."""
        self._flush = True
        self._wake.set()

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing being offered."""
        return not self.queue and not self._offering

    async def _run(self) -> None:
        from cocotb.simtime import get_sim_time
        from cocotb.triggers import First, RisingEdge

        word = 0
        driven = False
        edge = RisingEdge(self.clk)
        rise = RisingEdge(self.ready)
        ready_at_edge = self._at_edge["ready"]
        reuse = self._edge_reads_sample
        ready = None  # ready as sampled at the last edge (None: not read)
        while True:
            if not self._offering and not self.queue and not self._flush:
                self._wake.clear()
                await self._wake.wait()
            elif self._offering and self.prob >= 1.0 and not self._flush:
                # A beat on offer that the DUT does not take: sleep until ready rises (or
                # flush() is called) instead of waking every cycle. With the bench's own
                # clock, reads in the edge callback return the sampled value, so the
                # transfer check's is reused, and the callbacks run before the design
                # evaluates the edge, so a rise caused by this edge is still seen. With
                # the clock in the HDL the callbacks run after the edge: the port shows
                # the value of the coming cycle.
                if not (ready if reuse and ready is not None else _int(self.ready)):
                    self._wake.clear()
                    await First(rise, self._wake.wait())
            await edge
            ready = None
            if self._offering:
                ready = _int(ready_at_edge)
            if self._offering and ready:
                self._moved.append((get_sim_time(), word))
                self._offering = False
            if self._flush:
                self._flush = False
                self.queue.clear()
                self._offering = False
            if not self._offering and self.queue and (self.prob >= 1.0 or self.rng.random() < self.prob):
                word = self.queue.popleft()
                self.payload.value = word
                self._offering = True
            if self._offering != driven:
                driven = self._offering
                self.valid.value = int(driven)


class StreamSink(_Port):
    """Accepts a stream from the DUT (reads ``<name>__valid``/``__payload``, drives ``__ready``).

    With ``ready_prob = 1`` the sink sleeps while the DUT offers nothing (it wakes on
    ``valid`` rising), so long runs with sparse outputs cost no Python per cycle.

    Parameters
    ----------
    dut:
        cocotb handle of the top level.
    name:
        Stream member name (``"o"``).
    rng:
        ``random.Random`` or seed for the backpressure pattern.
    ready_prob:
        Probability of ``ready`` on a cycle (``1.0``: never back-pressure).
    period_ns:
        Clock period (for :meth:`wait_for` timeouts).
    """

    def __init__(self, dut, name: str, rng=None, ready_prob: float = 1.0, period_ns: int = 10) -> None:
        import cocotb
        from cocotb.triggers import Event

        super().__init__(dut, name, rng, ready_prob)
        self.period_ns = period_ns
        self._paused = False
        self._ready = 0
        self._target: int | None = None
        self._reached = Event()
        self.ready.value = 0
        self._task = cocotb.start_soon(self._run())

    @property
    def paused(self) -> bool:
        """Hold ``ready`` low (e.g. to keep an output pending across a reset)."""
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        self._paused = bool(value)
        if self._paused and self._ready:
            self._ready = 0
            self.ready.value = 0

    @property
    def received(self) -> list[tuple[int, int]]:
        """``[(epoch, word), ...]`` of every beat that moved out of the DUT."""
        return self._beats()

    async def wait_for(self, count: int, timeout_cycles: int) -> None:
        """Wait until ``count`` beats (all epochs) have arrived; fail after the timeout."""
        from cocotb.triggers import First, Timer

        if self.count >= count:
            return
        self._target = count
        self._reached.clear()
        await First(self._reached.wait(), Timer(timeout_cycles * self.period_ns, "ns"))
        self._target = None
        if self.count < count:
            raise AssertionError(f"timeout: {self.count} of {count} output beats after {timeout_cycles} cycles")

    async def _run(self) -> None:
        from cocotb.simtime import get_sim_time
        from cocotb.triggers import RisingEdge

        edge = RisingEdge(self.clk)
        rise = RisingEdge(self.valid)
        valid_at_edge, payload_at_edge = self._at_edge["valid"], self._at_edge["payload"]
        reuse = self._edge_reads_sample
        valid = None  # valid as sampled at the last edge (None: not read); see StreamSource
        while True:
            if self._ready and self.prob >= 1.0 and not (valid if reuse and valid is not None else _int(self.valid)):
                await rise  # nothing offered: sleep until the DUT raises valid
            await edge
            valid = _int(valid_at_edge) if self._ready else None
            if valid:
                self._moved.append((get_sim_time(), _int(payload_at_edge)))
                if self._target is not None and len(self._moved) >= self._target:
                    self._reached.set()
            if self._paused:
                nxt = 0
            else:
                nxt = 1 if self.prob >= 1.0 else int(self.rng.random() < self.prob)
            if nxt != self._ready:
                self._ready = nxt
                self.ready.value = nxt
