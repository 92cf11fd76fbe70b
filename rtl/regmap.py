"""Register map of the accelerator top, defined once as plain data (no Amaranth import).

The RTL generator (AXI4-Lite slave of the accelerator top), the host driver
(:mod:`remeco.host.driver`) and the generated documentation (:func:`to_markdown`,
:func:`to_c_header`) all read :data:`REGISTERS`; nothing restates an offset.

Division of work for LeNet (first step of the AXI top)
-------------------------------------------------------
* **Host**: im2col of the uint8 activations, max pooling, layer sequencing, committee
  averaging (:func:`remeco.models.emulation.round_shift` of the summed logits), bias,
  ReLU and requantization (the integer reference network,
  :meth:`remeco.models.nn.QuantizedNetwork.forward_int`). In this first step the
  fabric returns the accumulator of every neuron (``round_shift(z, code_frac)``, int32)
  and the host applies bias and requantization; the processing element
  (:mod:`remeco.rtl.pe`) can do both, and ``LAYER_MULTIPLIER`` / ``LAYER_SHIFT`` /
  ``CONTROL.LAST_LAYER`` are reserved for that.
* **Fabric**: one layer at a time (``LAYER`` selects the layer slot, ``copy * layers +
  layer`` for committee copies): crossbar tiles with run-time stuck-at faults, ADC,
  shift-and-add, redundancy averaging and slice recombination (emulation steps 2-6,
  :mod:`remeco.models.emulation`), and the on-chip fault generator
  (:mod:`remeco.models.fault_lfsr`).

Streams (AXI4-Stream, 32-bit words, one AXI DMA)
------------------------------------------------
``STREAM_TARGET`` selects where the MM2S words go:

* ``0`` inputs: one unsigned input element per word, ``LAYER_VECTORS`` vectors of
  ``LAYER_FAN_IN`` elements each, row-major. ``CONTROL.START`` then runs the layer; the
  S2MM stream returns ``LAYER_VECTORS x LAYER_NEURONS`` signed 32-bit accumulators.
* ``1`` cell codes of the selected layer: one two's-complement code per word, in the
  order ``(row_tile, col_tile, row, col)`` (row-major), i.e. the ``codes`` array of
  :func:`remeco.models.emulation.emulate_matvec` flattened.
* ``2`` fault map of the selected layer: one 2-bit entry per word, same order
  (:func:`remeco.models.fault_lfsr.apply_fault_map` encoding).

Fault generator: ``FAULT_CONTROL.GENERATE`` runs the xorshift32 generator of
:func:`remeco.models.fault_lfsr.generate_fault_map` seeded with ``FAULT_SEED`` over the
tiles of every loaded layer slot in slot order, as *one* map of ``sum(row_tiles *
col_tiles)`` tiles (the generator state continues from slot to slot). ``FAULT_RATE``
and ``FAULT_ON_FRACTION`` are thresholds in ``[0, 65536]``
(:func:`remeco.models.fault_lfsr.rate_threshold`). ``STATUS.GEN_BUSY`` is set while it
runs. ``FAULT_CONTROL.CLEAR`` zeroes every map.

An access to an offset that :func:`by_offset` does not know answers ``SLVERR``; a
write to a read-only register is ignored and also answers ``SLVERR``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Field",
    "Register",
    "REGISTERS",
    "ID_VALUE",
    "VERSION_VALUE",
    "STREAM_INPUTS",
    "STREAM_CODES",
    "STREAM_FAULTS",
    "validate",
    "lookup",
    "by_offset",
    "field_value",
    "to_markdown",
    "to_c_header",
    "main",
]

#: ``ID`` register value: ASCII ``"RMCO"``.
ID_VALUE = 0x524D434F
#: ``VERSION`` register value: major << 16 | minor.
VERSION_VALUE = 0x0001_0000

STREAM_INPUTS = 0
STREAM_CODES = 1
STREAM_FAULTS = 2

_ACCESS = ("ro", "rw", "wo")


@dataclass(frozen=True)
class Field:
    """A bit field of a register: bits ``[lsb, lsb + width)``."""

    name: str
    lsb: int
    width: int = 1
    description: str = ""

    @property
    def mask(self) -> int:
        """The field's mask in register position."""
        return ((1 << self.width) - 1) << self.lsb


@dataclass(frozen=True)
class Register:
    """One 32-bit AXI4-Lite register.

    Attributes
    ----------
    name:
        Upper-case identifier (used in the C header as ``<prefix><name>``).
    offset:
        Byte offset from the base address, 4-byte aligned.
    access:
        ``"ro"``, ``"rw"`` or ``"wo"``.
    width:
        Implemented bits (``1..32``); upper bits read 0 and are ignored on write.
    reset:
        Value after reset.
    description:
        One line for the docs.
    fields:
        Named bit fields (empty: the whole register is one value).
    """

    name: str
    offset: int
    access: str
    width: int = 32
    reset: int = 0
    description: str = ""
    fields: tuple[Field, ...] = field(default=())

    @property
    def mask(self) -> int:
        """Mask of the implemented bits."""
        return (1 << self.width) - 1

    def field(self, name: str) -> Field:
        """The field called ``name`` (``KeyError`` if none)."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"register {self.name} has no field {name!r}")


REGISTERS: tuple[Register, ...] = (
    Register("ID", 0x00, "ro", 32, ID_VALUE, "Identification, ASCII 'RMCO'"),
    Register("VERSION", 0x04, "ro", 32, VERSION_VALUE, "Register map version, major << 16 | minor"),
    Register("CONTROL", 0x08, "wo", 3, 0, "Commands (self-clearing)", (
        Field("START", 0, 1, "run the selected layer on the streamed inputs"),
        Field("SOFT_RESET", 1, 1, "clear status, cycle counter and stream state"),
        Field("LAST_LAYER", 2, 1, "reserved: final layer, logits instead of requantized outputs"),
    )),
    Register("STATUS", 0x0C, "ro", 4, 0, "State of the accelerator", (
        Field("BUSY", 0, 1, "a layer is running"),
        Field("DONE", 1, 1, "the last START finished; cleared by START / SOFT_RESET"),
        Field("ERROR", 2, 1, "the last command failed (see ERROR_CODE)"),
        Field("GEN_BUSY", 3, 1, "the fault generator is running"),
    )),
    Register("ERROR_CODE", 0x10, "ro", 8, 0,
             "0 none, 1 no layer loaded, 2 stream length mismatch, 3 bad layer slot"),
    Register("CYCLES_LO", 0x14, "ro", 32, 0, "Cycle counter, low word (latches the high word)"),
    Register("CYCLES_HI", 0x18, "ro", 32, 0, "Cycle counter, high word as latched by CYCLES_LO"),
    Register("LAYER", 0x20, "rw", 8, 0, "Selected layer slot: copy * layers + layer"),
    Register("LAYER_COUNT", 0x24, "ro", 8, 0, "Layer slots configured in the fabric"),
    Register("LAYER_FAN_IN", 0x28, "ro", 16, 0, "Inputs per vector of the selected layer"),
    Register("LAYER_NEURONS", 0x2C, "ro", 16, 0, "Neurons (outputs per vector) of the selected layer"),
    Register("LAYER_ROW_TILES", 0x30, "ro", 8, 0, "Row tiles of the selected layer"),
    Register("LAYER_COL_TILES", 0x34, "ro", 8, 0, "Column tiles of the selected layer"),
    Register("LAYER_ADC_SHIFT", 0x38, "ro", 6, 0, "ADC shift of the selected layer (elaboration parameter)"),
    Register("LAYER_MULTIPLIER", 0x3C, "rw", 15, 0, "Reserved: requantization multiplier in [1, 2**15)"),
    Register("LAYER_SHIFT", 0x40, "rw", 6, 0, "Reserved: requantization shift in [0, 62]"),
    Register("LAYER_VECTORS", 0x44, "rw", 32, 0, "Input vectors in the next input stream"),
    Register("STREAM_TARGET", 0x48, "rw", 2, STREAM_INPUTS,
             "Destination of MM2S words: 0 inputs, 1 cell codes, 2 fault map"),
    Register("CODE_ON", 0x50, "rw", 32, 0, "Code read from stuck-on cells (signed, code_bits)"),
    Register("CODE_OFF", 0x54, "rw", 32, 0, "Code read from stuck-off cells (signed, code_bits)"),
    Register("FAULT_SEED", 0x60, "rw", 32, 1, "Fault generator seed (0 acts as 1)"),
    Register("FAULT_RATE", 0x64, "rw", 17, 0, "Fault-rate threshold in [0, 65536] (65536 = always)"),
    Register("FAULT_ON_FRACTION", 0x68, "rw", 17, 0, "Stuck-on threshold in [0, 65536]"),
    Register("FAULT_CONTROL", 0x6C, "rw", 3, 0, "Fault map commands and enable", (
        Field("GENERATE", 0, 1, "self-clearing: run the generator over every slot"),
        Field("CLEAR", 1, 1, "self-clearing: zero every fault map"),
        Field("ENABLE", 2, 1, "apply the fault maps when reading the cells"),
    )),
)


def validate(registers: tuple[Register, ...] | list[Register]) -> None:
    """Raise ``ValueError`` for a bad table: misaligned or overlapping offsets, duplicate
    names, bad access, widths, reset values or fields."""
    names: set[str] = set()
    seen: dict[int, str] = {}
    for r in registers:
        if not r.name or not r.name.replace("_", "").isalnum() or r.name.upper() != r.name:
            raise ValueError(f"register name must be an upper-case identifier, got {r.name!r}")
        if r.name in names:
            raise ValueError(f"duplicate register name {r.name}")
        names.add(r.name)
        if r.access not in _ACCESS:
            raise ValueError(f"register {r.name}: access must be one of {_ACCESS}, got {r.access!r}")
        if not isinstance(r.offset, int) or r.offset < 0 or r.offset % 4:
            raise ValueError(f"register {r.name}: offset {r.offset!r} is not 4-byte aligned")
        if r.offset in seen:
            raise ValueError(f"register {r.name} overlaps {seen[r.offset]} at offset {r.offset:#x}")
        seen[r.offset] = r.name
        if not 1 <= r.width <= 32:
            raise ValueError(f"register {r.name}: width must be in [1, 32], got {r.width}")
        if not 0 <= r.reset <= r.mask:
            raise ValueError(f"register {r.name}: reset {r.reset:#x} does not fit {r.width} bits")
        used = 0
        for f in r.fields:
            if f.width < 1 or f.lsb < 0 or f.lsb + f.width > r.width:
                raise ValueError(f"register {r.name}: field {f.name} outside bits [0, {r.width})")
            if used & f.mask:
                raise ValueError(f"register {r.name}: field {f.name} overlaps another field")
            used |= f.mask


validate(REGISTERS)
_BY_NAME = {r.name: r for r in REGISTERS}
_BY_OFFSET = {r.offset: r for r in REGISTERS}


def lookup(name: str) -> Register:
    """The register called ``name`` (``KeyError`` naming it if unknown)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no register named {name!r}") from None


def by_offset(offset: int) -> Register | None:
    """The register at byte ``offset``, or ``None`` (the RTL answers ``SLVERR``)."""
    return _BY_OFFSET.get(offset)


def field_value(register: str, **fields: int) -> int:
    """A register word with the named fields set, e.g. ``field_value("CONTROL", START=1)``."""
    reg = lookup(register)
    word = 0
    for name, value in fields.items():
        f = reg.field(name)
        if not 0 <= int(value) < (1 << f.width):
            raise ValueError(f"{register}.{name} must fit {f.width} bits, got {value}")
        word |= int(value) << f.lsb
    return word


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(registers: tuple[Register, ...] = REGISTERS) -> str:
    """The register map as a Markdown table (fields listed under their register)."""
    lines = [
        "# remeco accelerator register map",
        "",
        "Generated from `remeco.rtl.regmap`; do not edit. Other offsets answer SLVERR.",
        "",
        "| offset | name | access | width | reset | description |",
        "|---|---|---|---|---|---|",
    ]
    for r in registers:
        lines.append(f"| `0x{r.offset:03X}` | {r.name} | {r.access} | {r.width} | `0x{r.reset:X}` | {_md(r.description)} |")
        for f in r.fields:
            bits = f"[{f.lsb}]" if f.width == 1 else f"[{f.lsb + f.width - 1}:{f.lsb}]"
            lines.append(f"| | {r.name}.{f.name} {bits} | | {f.width} | | {_md(f.description)} |")
    return "\n".join(lines) + "\n"


def to_c_header(prefix: str = "REMECO_", registers: tuple[Register, ...] = REGISTERS) -> str:
    """The register map as a C header: offsets, reset values, field shifts and masks."""
    guard = f"{prefix}REGMAP_H".upper()
    lines = [
        "/* Generated from remeco.rtl.regmap; do not edit. */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
    ]
    for r in registers:
        lines.append(f"#define {prefix}{r.name} 0x{r.offset:03X}u /* {r.access}: {r.description} */")
        lines.append(f"#define {prefix}{r.name}_RESET 0x{r.reset:X}u")
        for f in r.fields:
            lines.append(f"#define {prefix}{r.name}_{f.name}_SHIFT {f.lsb}u")
            lines.append(f"#define {prefix}{r.name}_{f.name}_MASK 0x{f.mask:X}u")
    lines += ["", f"#endif /* {guard} */", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Write ``regmap.md`` and ``regmap.h`` to a folder (default: current directory)."""
    parser = argparse.ArgumentParser(prog="python -m remeco.rtl.regmap", description=main.__doc__)
    parser.add_argument("out", nargs="?", default=".", help="output folder")
    parser.add_argument("--prefix", default="REMECO_", help="C macro prefix")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "regmap.md").write_text(to_markdown())
    (out / "regmap.h").write_text(to_c_header(args.prefix))
    print(f"wrote {out / 'regmap.md'} and {out / 'regmap.h'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
