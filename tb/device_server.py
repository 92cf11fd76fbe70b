"""The simulator side of :class:`remeco.host.sim.SimDevice`: AXI bus models served to the host.

:class:`~remeco.host.sim.SimDevice` starts the simulation of a top with the ports in
:data:`PORTS` through the cocotb runner, with this module as the cocotb test module (its
name must not start with ``test_``). The one test, :func:`serve`, starts the clock,
resets the design, creates the bus models (cocotbext-axi: an ``AxiLiteMaster`` on
``s_axil``, an ``AxiStreamSource`` on ``s_axis`` for MM2S and an ``AxiStreamSink`` on
``m_axis`` for S2MM), connects to the host's Unix socket (``$REMECO_SIM_SOCKET``) and
answers requests until the host says ``close`` or goes away.

The request loop runs in a :func:`cocotb.task.bridge` thread: while it waits for the
host, the simulator is paused (no clock edge happens while the host thinks); each request
is run in the simulator with :func:`cocotb.task.resume` and simulated time advances only
while it runs. Nothing here polls per cycle: the clock is cocotb's GPI clock, the bus
models run per beat, requests await events, and one watchdog coroutine checks the
running request's wall-clock and simulated-time budget every :data:`CHUNK_CYCLES` cycles.

Wire protocol (pickled tuples on a :class:`multiprocessing.connection.Connection`):

* hello, simulator to host: ``("ready", {"pid", "addr_width", "clock_ns"})`` or
  ``("error", message)`` (missing or mis-sized ports);
* requests: ``("read", offset, timeout)``, ``("write", offset, value, timeout)``,
  ``("stream", words, receive, timeout)`` (``words`` a uint32 array), ``("close",)``;
* replies: ``("ok", result)`` or ``(kind, message)`` with ``kind`` one of ``"bus"``
  (SLVERR/DECERR), ``"timeout"``, ``"tlast"`` and ``"error"`` (anything else; the
  traceback is in the simulator log).

S2MM like an AXI DMA: the sink's ``tready`` is high only while a receive is armed, so
words the design offers outside a transfer stay in the design. ``TLAST`` reaches the
sink as a sideband bit (the bus maps it to ``tuser``), so every beat is its own frame and
the TLAST of each word can be checked; the sink stops after the armed number of words or
at the first word with TLAST.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Client

import cocotb
import numpy as np
from cocotb.queue import Queue
from cocotb.simtime import get_sim_time
from cocotb.task import bridge, resume
from cocotb.triggers import Event, Timer
from cocotbext.axi import (
    AxiLiteBus,
    AxiLiteMaster,
    AxiResp,
    AxiStreamBus,
    AxiStreamFrame,
    AxiStreamSink,
    AxiStreamSource,
)

from .common import reset, start_clock

__all__ = ["PORTS", "ENV_SOCKET", "ENV_CLOCK_NS", "CHUNK_CYCLES", "DeviceServer", "S2MM", "RequestFailed", "serve"]

#: Environment variables set by the host: the socket path and the clock period (ns).
ENV_SOCKET = "REMECO_SIM_SOCKET"
ENV_CLOCK_NS = "REMECO_SIM_CLOCK_NS"

_AXIL = ("awaddr", "awprot", "awvalid", "awready", "wdata", "wstrb", "wvalid", "wready", "bresp", "bvalid",
         "bready", "araddr", "arprot", "arvalid", "arready", "rdata", "rresp", "rvalid", "rready")
#: The ports a top must have (Amaranth's flattening: member ``s_axil``, field ``awaddr``).
PORTS = (
    ("clk", "rst")
    + tuple(f"s_axil__{s}" for s in _AXIL)
    + tuple(f"s_axis__{s}" for s in ("tdata", "tvalid", "tready", "tlast"))
    + tuple(f"m_axis__{s}" for s in ("tdata", "tvalid", "tready", "tlast"))
)
_WIDTHS = {"s_axil__wdata": 32, "s_axil__rdata": 32, "s_axis__tdata": 32, "m_axis__tdata": 32}

#: Longest stretch of simulated clock cycles between two wall-clock checks of a request.
CHUNK_CYCLES = 20_000

_RESET_CYCLES = 4


class RequestFailed(Exception):
    """A request that failed in a way the host reports as ``kind`` (see the module docs)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _TlastAsUser(AxiStreamBus):
    """The S2MM bus with ``tlast`` seen as ``tuser``: one frame per beat, TLAST kept per word."""

    _signals = {"tdata": "tdata"}
    _optional_signals = {"tvalid": "tvalid", "tready": "tready", "tuser": "tlast"}


class _Beats(Queue):
    """The S2MM sink's frame queue: complete after ``armed`` beats or at a TLAST beat."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = 0
        self.open = False
        self.done = Event()

    def _put(self, beat) -> None:
        super()._put(beat)
        if self._size() >= self.armed or beat.tuser[-1]:
            self.open = False
            self.done.set()


class S2MM(AxiStreamSink):
    """An ``AxiStreamSink`` that takes words only while a receive is armed (a DMA S2MM channel)."""

    def __init__(self, dut, clock, rst) -> None:
        super().__init__(_TlastAsUser.from_prefix(dut, "m_axis_"), clock, rst, byte_lanes=1)
        self.queue = _Beats()

    def full(self) -> bool:  # holds tready low unless a receive is armed and not complete
        return not self.queue.open

    def arm(self, count: int) -> None:
        """Accept ``count`` words from the next clock edge on (0: none)."""
        self.queue.armed = count
        self.queue.open = count > 0
        self.queue.done.clear()
        self.wake_event.set()

    def take(self) -> tuple[list[int], list[int]]:
        """Disarm; the words received since :meth:`arm` and their TLAST bits."""
        self.queue.open = False
        beats = [self.recv_nowait(compact=False) for _ in range(self.count())]
        return [b.tdata[0] for b in beats], [b.tuser[0] for b in beats]


@dataclass
class _Guard:
    """A running request: its task, wall-clock deadline, simulated-time limit (ns) and,
    once cancelled, which budget it spent."""

    task: object
    wall: float
    limit: float
    spent: str | None = None


class DeviceServer:
    """Bus models on a top with :data:`PORTS`, and the requests the host can make."""

    def __init__(self, dut, clock_ns: int) -> None:
        self.dut = dut
        self.clock_ns = clock_ns
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_"), dut.clk, dut.rst)
        self.mm2s = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_"), dut.clk, dut.rst, byte_lanes=1)
        self.s2mm = S2MM(dut, dut.clk, dut.rst)
        self.addr_width = len(dut.s_axil__awaddr)
        self._guard: _Guard | None = None  # the running request
        cocotb.start_soon(self._watchdog())
        # The bus models log every transaction at INFO; that would cost more than the beats.
        logging.getLogger(f"cocotb.{dut._name}").setLevel(logging.WARNING)

    async def _watchdog(self) -> None:
        """Cancel the running request once its wall-clock or simulated-time budget is spent.

        One wake-up per :data:`CHUNK_CYCLES` cycles while the simulator runs (it does not
        run while the host thinks), so requests themselves await plain events.
        """
        while True:
            await Timer(CHUNK_CYCLES * self.clock_ns, "ns")
            guard = self._guard
            if guard is None:
                continue
            if get_sim_time("ns") >= guard.limit:
                guard.spent = "simulated time"
            elif time.monotonic() >= guard.wall:
                guard.spent = "wall-clock time"
            else:
                continue
            guard.task.cancel()

    async def _bounded(self, op, timeout: float, what: str):
        """Run coroutine ``op``; ``RequestFailed("timeout")`` after ``timeout`` seconds of
        wall-clock time or of simulated time (the budget a board's clock would have)."""
        guard = _Guard(cocotb.start_soon(op), time.monotonic() + timeout, get_sim_time("ns") + timeout * 1e9)
        self._guard = guard
        try:
            await guard.task.complete
        finally:
            self._guard = None
        if guard.task.cancelled():
            raise RequestFailed("timeout", f"{what} did not complete within {timeout:g} s of {guard.spent}")
        return guard.task.result()

    async def _access(self, op, what: str, timeout: float):
        try:
            result = await self._bounded(op, timeout, what)
        except RequestFailed:
            # A hung AXI4-Lite slave: flush the master so that later accesses start clean.
            self.axil.write_if.assert_reset()
            self.axil.read_if.assert_reset()
            raise
        if result.resp != AxiResp.OKAY:
            raise RequestFailed("bus", f"{AxiResp(result.resp).name} response to the {what}")
        return result

    async def read(self, offset: int, timeout: float) -> int:
        """One 32-bit AXI4-Lite read."""
        resp = await self._access(self.axil.read(offset, 4), f"read of offset {offset:#x}", timeout)
        return int.from_bytes(resp.data, "little")

    async def write(self, offset: int, value: int, timeout: float) -> None:
        """One 32-bit AXI4-Lite write."""
        await self._access(self.axil.write(offset, int(value).to_bytes(4, "little")),
                           f"write of {value:#x} to offset {offset:#x}", timeout)

    async def stream(self, words: np.ndarray, receive: int, timeout: float) -> np.ndarray:
        """One DMA round: arm the S2MM receive, send ``words`` (TLAST on the last), wait for both."""
        self.s2mm.arm(receive)
        if len(words):
            self.mm2s.send_nowait(AxiStreamFrame(words.tolist()))
        sent, got = self.mm2s.idle_event, self.s2mm.queue.done

        async def transfer():
            await sent.wait()
            if receive:
                await got.wait()

        try:
            await self._bounded(transfer(), timeout, f"DMA round (MM2S {len(words)} words, S2MM {receive} words)")
        except RequestFailed as exc:
            # Stop both channels like a DMA reset: unsent words are dropped (tvalid falls),
            # received words are discarded; the design itself is not reset.
            n = self.s2mm.count()
            self.s2mm.take()
            mm2s_done = sent.is_set()
            self.mm2s.clear()
            self.mm2s.assert_reset()
            raise RequestFailed("timeout", (
                f"{exc}: MM2S {'sent all' if mm2s_done else 'did not send all'} {len(words)} words, "
                f"S2MM received {n} of {receive} words"
            )) from None
        data, tlast = self.s2mm.take()
        if receive:
            ends = [i for i, t in enumerate(tlast) if t]
            if ends and ends[0] < receive - 1:
                raise RequestFailed("tlast", (
                    f"the device ended its S2MM packet early: TLAST on word {ends[0] + 1} of {receive} "
                    f"(the rest stays in the device)"))
            if not tlast[-1]:
                raise RequestFailed("tlast", f"the last word ({receive}) of the S2MM transfer came without TLAST")
        return np.asarray(data, dtype=np.uint32)


def _check_ports(dut) -> str | None:
    missing = [p for p in PORTS if not hasattr(dut, p)]
    if missing:
        return f"toplevel {dut._name} lacks the ports {', '.join(missing)}"
    wrong = [f"{p} is {len(getattr(dut, p))} bits" for p, w in _WIDTHS.items() if len(getattr(dut, p)) != w]
    if wrong:
        return f"toplevel {dut._name}: {', '.join(wrong)} (expected 32)"
    return None


def _serve_host(server: DeviceServer | None, problem: str | None) -> None:
    """The request loop (a bridge thread; the simulator is paused while it waits)."""
    conn = Client(os.environ[ENV_SOCKET], family="AF_UNIX")
    try:
        if server is None:
            conn.send(("error", problem))
            return
        conn.send(("ready", {"pid": os.getpid(), "addr_width": server.addr_width, "clock_ns": server.clock_ns}))
        ops = {name: resume(getattr(server, name)) for name in ("read", "write", "stream")}
        while True:
            try:
                request = conn.recv()
            except EOFError:  # the host went away without saying close
                return
            if request[0] == "close":
                conn.send(("ok", None))
                return
            try:
                reply = ("ok", ops[request[0]](*request[1:]))
            except RequestFailed as exc:
                reply = (exc.kind, str(exc))
            except Exception as exc:  # noqa: BLE001 - reported to the host, traceback to the log
                traceback.print_exc()
                reply = ("error", f"{type(exc).__name__}: {exc}")
            conn.send(reply)
    finally:
        conn.close()


@cocotb.test()
async def serve(dut):
    """Serve the host's register and DMA requests until it closes the device."""
    problem = _check_ports(dut)
    server = None
    if problem is None:
        clock_ns = int(os.environ.get(ENV_CLOCK_NS, "10"))
        dut.rst.value = 1
        start_clock(dut, clock_ns)
        server = DeviceServer(dut, clock_ns)
        await reset(dut, _RESET_CYCLES)
    await bridge(_serve_host)(server, problem)
