"""Verilog generation for the RTL blocks, and the one list of Verilator lint waivers.

Amaranth emits Verilog through Yosys; its output is correct but trips a few of
Verilator's width/style warnings by construction. Those warnings are waived here, once,
with the reason for each, and every Verilator invocation of the project (the simulation
builds in :mod:`remeco.tb.runner` and the ``--lint-only`` check) uses this list.
"""

from __future__ import annotations

from amaranth.back import verilog as _amaranth_verilog
from amaranth.lib import wiring

__all__ = ["VERILATOR_WAIVERS", "verilator_waiver_flags", "to_verilog"]


#: Verilator warnings that Amaranth's generated Verilog trips by construction.
#: ``{warning: why it is safe to waive}``; every entry is turned into ``-Wno-<warning>``.
VERILATOR_WAIVERS: dict[str, str] = {
    "WIDTHEXPAND": (
        "Yosys writes operands at their natural width and relies on Verilog's implicit "
        "zero/sign extension (e.g. comparisons of a narrow counter with a wider constant); "
        "Amaranth has already sized every result, so the extension is the intended one."
    ),
    "WIDTHTRUNC": (
        "Yosys assigns wide intermediate cells (arithmetic carried at the Amaranth result "
        "width + 1) to narrower wires; Amaranth's own shape rules decided the truncation."
    ),
    "CASEINCOMPLETE": (
        "Amaranth lowers FSMs and indexed assignments to case statements over the reachable "
        "encodings only (a 3-state FSM in a 2-bit register); every generated always-block "
        "starts with a default assignment, so the missing items keep that value and no "
        "latch is inferred."
    ),
    "UNOPTFLAT": (
        "Amaranth flattens struct payloads into one vector whose bits are driven by "
        "different always-blocks; Verilator sees a false combinational loop on the vector "
        "(a scheduling-performance note, not a real loop: the Amaranth netlist is acyclic)."
    ),
}


def verilator_waiver_flags() -> list[str]:
    """The waivers as Verilator command-line flags (``-Wno-...``)."""
    return [f"-Wno-{name}" for name in VERILATOR_WAIVERS]


def to_verilog(component: wiring.Component, name: str) -> str:
    """Verilog text of ``component`` as a top-level module called ``name``.

    Ports are the component's signature members; Amaranth joins nested names with
    ``__`` (``i__valid``, ``i__payload``); struct payloads are flat vectors, first
    field in the least significant bits. ``clk`` and ``rst`` (synchronous, active high)
    belong to the ``sync`` domain.
    """
    return _amaranth_verilog.convert(component, name=name, emit_src=False)
