"""Register map of the accelerator top, defined once as plain data (no Amaranth import).

The RTL (:mod:`remeco.rtl.axil` register file and :mod:`remeco.rtl.top`), the host
driver (:mod:`remeco.host.driver`) and the generated documentation (:func:`to_markdown`,
:func:`to_c_header`) all read :data:`REGISTERS`; nothing restates an offset. The memory
layouts and stream word formats named here are defined in :mod:`remeco.models.fabric`.

Division of work for LeNet
--------------------------
* **Fabric** (one layer *run* at a time): the crossbar product of emulation steps 2-6
  and ``to_accumulator`` (:mod:`remeco.models.emulation`): cell codes with run-time
  stuck-at faults, bit-serial column accumulation, ADC, shift-and-add, redundancy
  averaging, slice recombination and offset correction, for ``VECTOR_LANES`` input
  vectors and ``COLUMN_LANES`` physical columns at a time; the on-chip fault generator
  (:mod:`remeco.models.fault_lfsr`) and the cycle counter.
* **Host**: data movement and the integer network's cheap elementwise steps: im2col of
  the uint8 activations, max pooling, bias, ReLU and requantization
  (:func:`remeco.models.emulation.requantize`), layer sequencing, committee averaging.
  This is :meth:`remeco.models.nn.QuantizedNetwork.forward_int` with the fabric as its
  ``matmul``.

The fabric is generic: its memories (codes, fault map, column descriptors) are sized at
elaboration (read back from the ``CAP_*`` registers) and the host places every layer of
every committee copy in them (:class:`remeco.models.fabric.MemoryPlan`); a run is
described by the ``LAYER_*`` registers. One bitstream therefore serves every plan that fits.

Streams (AXI4-Stream, 32-bit words, one AXI DMA)
------------------------------------------------
``STREAM_TARGET`` selects where the MM2S words go:

* ``0`` inputs of a run: accepted only while a run (``CONTROL.START``) is busy; group
  by group of ``VECTOR_LANES`` vectors, row by row, one word per row with vector ``i``
  of the group in byte ``i`` (:func:`remeco.models.fabric.pack_inputs`). The S2MM stream
  returns, group by group, neuron by neuron, ``VECTOR_LANES`` int32 accumulators
  (:func:`remeco.models.fabric.unpack_outputs`); ``TLAST`` marks the run's last word.
* ``1`` cell codes, ``2`` fault-map words, ``3`` column descriptors: written to the
  selected memory from word ``LOAD_ADDRESS`` on (it increments per memory word). A word
  beyond the memory is dropped and sets ``ERROR_CODE = 2``.

Fault generator: ``FAULT_CONTROL.GENERATE`` runs the xorshift32 generator seeded with
``FAULT_SEED`` over fault-memory words ``[0, FAULT_WORDS)``, lane by lane
(:func:`remeco.models.fabric.memory_fault_map`); ``FAULT_CONTROL.CLEAR`` zeroes the
whole fault memory. ``STATUS.GEN_BUSY`` is set while either runs; ``ENABLE`` applies the
map when cells are read.

Commands and errors (what the RTL and the model backend both do)
-----------------------------------------------------------------
* ``CONTROL.START`` latches the ``LAYER_*`` registers and checks them: ``1 <= FAN_IN <=
  CAP_MAX_FAN_IN``, ``COLUMNS``, ``NEURONS``, ``VECTORS >= 1``, ``CODE_BASE + ceil(COLUMNS /
  COLUMN_LANES) * FAN_IN <= CAP_CODE_WORDS``, ``DESC_BASE + COLUMNS <= CAP_DESC_WORDS`` and
  ``STREAM_TARGET == 0``; a failed check sets ``ERROR`` with ``ERROR_CODE = 1`` and starts
  nothing. Otherwise ``BUSY`` is set, ``DONE``/``ERROR``/``ERROR_CODE`` cleared, and the
  run consumes ``ceil(VECTORS / VECTOR_LANES) * FAN_IN`` input words and emits
  ``ceil(VECTORS / VECTOR_LANES) * VECTOR_LANES * NEURONS`` output words; after the last
  one is accepted ``BUSY`` drops and ``DONE`` is set. Descriptors that close fewer
  neurons than ``NEURONS`` leave the run busy (the driver's timeout reports it).
* The cycle counter counts every cycle with ``BUSY`` set; ``SOFT_RESET`` zeroes it.
* ``START``, ``GENERATE`` or ``CLEAR`` while ``BUSY`` or ``GEN_BUSY``: ``ERROR`` with
  ``ERROR_CODE = 3``, the command is ignored; ``GENERATE`` with ``FAULT_WORDS >
  CAP_CODE_WORDS``: ``ERROR_CODE = 1``.
* MM2S words are accepted for a run only while ``BUSY`` (with ``STREAM_TARGET = 0`` and
  not busy the stream is held off); with ``STREAM_TARGET`` 1-3 and not busy, always.
  Code words assemble from ``COLUMN_LANES / 2`` stream words; writing ``LOAD_ADDRESS``
  restarts the assembly.
* ``SOFT_RESET`` aborts a run and the fault generator, clears ``STATUS``, ``ERROR_CODE``,
  the cycle counter and all stream state; memories and other registers keep their contents.
* The model backend has no clock: its cycle counter stays 0.

An access to an offset that :func:`by_offset` does not know answers ``SLVERR``; a
write to a read-only register is ignored and also answers ``SLVERR``; a read of a
write-only register answers ``OKAY`` with 0.
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
    "STREAM_DESCRIPTORS",
    "ADDR_BITS",
    "ErrorCode",
    "ERRORS",
    "ERR_NONE",
    "ERR_BAD_RUN",
    "ERR_LOAD_RANGE",
    "ERR_BUSY",
    "error_meaning",
    "DESCRIPTOR_FIELDS",
    "DESCRIPTOR_BITS",
    "descriptor_field",
    "validate",
    "lookup",
    "by_offset",
    "field_value",
    "field_get",
    "to_markdown",
    "to_c_header",
    "main",
]

#: ``ID`` register value: ASCII ``"RMCO"``.
ID_VALUE = 0x524D434F
#: ``VERSION`` register value: major << 16 | minor.
VERSION_VALUE = 0x0002_0000

STREAM_INPUTS = 0
STREAM_CODES = 1
STREAM_FAULTS = 2
STREAM_DESCRIPTORS = 3
#: Bits of the AXI4-Lite address (the map spans offsets ``0 .. 2**ADDR_BITS - 1``).
ADDR_BITS = 8

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


@dataclass(frozen=True)
class ErrorCode:
    """One value of the ``ERROR_CODE`` register: what the RTL sets, the model backend
    sets and the driver reports."""

    name: str
    code: int
    description: str


#: Every ``ERROR_CODE`` value (:data:`ERR_NONE` .. :data:`ERR_BUSY`), in code order.
ERRORS: tuple[ErrorCode, ...] = (
    ErrorCode("NONE", 0, "none"),
    ErrorCode("BAD_RUN", 1, "bad run description"),
    ErrorCode("LOAD_RANGE", 2, "load beyond a memory"),
    ErrorCode("BUSY", 3, "command while busy"),
)
ERR_NONE, ERR_BAD_RUN, ERR_LOAD_RANGE, ERR_BUSY = (e.code for e in ERRORS)


def error_meaning(code: int) -> str:
    """The description of an ``ERROR_CODE`` value (``"unknown"`` for a value not in :data:`ERRORS`)."""
    for e in ERRORS:
        if e.code == code:
            return e.description
    return "unknown"


#: Fields of a column-descriptor word (one word per physical column, written with
#: ``STREAM_TARGET = 3``; :func:`remeco.models.fabric.descriptor_words` packs them from
#: :func:`remeco.models.periphery.column_descriptors`). Bits above :data:`DESCRIPTOR_BITS`
#: are ignored.
DESCRIPTOR_FIELDS: tuple[Field, ...] = (
    Field("SLICE", 0, 4, "weight slice of the column"),
    Field("K", 4, 4, "log2 of the copies averaged for this slice (2**K copies)"),
    Field("FIRST", 8, 1, "first copy: the slice's running sum restarts"),
    Field("LAST", 9, 1, "last copy: the slice's average is taken"),
    Field("END", 10, 1, "the neuron's last column (counts on a LAST column): the neuron is emitted"),
)
#: Bits of a descriptor word the fabric stores.
DESCRIPTOR_BITS = max(f.lsb + f.width for f in DESCRIPTOR_FIELDS)


def descriptor_field(name: str) -> Field:
    """The descriptor field called ``name`` (``KeyError`` naming it if unknown)."""
    for f in DESCRIPTOR_FIELDS:
        if f.name == name:
            return f
    raise KeyError(f"no descriptor field named {name!r}")


REGISTERS: tuple[Register, ...] = (
    Register("ID", 0x00, "ro", 32, ID_VALUE, "Identification, ASCII 'RMCO'"),
    Register("VERSION", 0x04, "ro", 32, VERSION_VALUE, "Register map version, major << 16 | minor"),
    Register("CONTROL", 0x08, "wo", 2, 0, "Commands (self-clearing)", (
        Field("START", 0, 1, "start a layer run described by the LAYER_* registers"),
        Field("SOFT_RESET", 1, 1, "abort a run, clear status, error, cycle counter and stream state"),
    )),
    Register("STATUS", 0x0C, "ro", 4, 0, "State of the accelerator", (
        Field("BUSY", 0, 1, "a layer run is in progress"),
        Field("DONE", 1, 1, "the last run finished (its last output word left); cleared by START"),
        Field("ERROR", 2, 1, "a command failed (see ERROR_CODE); cleared by START / SOFT_RESET"),
        Field("GEN_BUSY", 3, 1, "the fault generator or the fault-map clear is running"),
    )),
    Register("ERROR_CODE", 0x10, "ro", 4, 0,
             ", ".join(f"{e.code} {e.description}" for e in ERRORS)),
    Register("CYCLES_LO", 0x14, "ro", 32, 0, "Cycles spent in runs, low word (latches the high word)"),
    Register("CYCLES_HI", 0x18, "ro", 32, 0, "Cycle counter, high word as latched by CYCLES_LO"),
    Register("CAP_CODE_WORDS", 0x20, "ro", 32, 0, "Words of the code and fault memories (elaboration)"),
    Register("CAP_DESC_WORDS", 0x24, "ro", 32, 0, "Words of the column-descriptor memory (elaboration)"),
    Register("CAP_COLUMN_LANES", 0x28, "ro", 8, 0, "Physical columns computed at once, cells per memory word"),
    Register("CAP_VECTOR_LANES", 0x2C, "ro", 8, 0, "Input vectors computed at once"),
    Register("CAP_MAX_FAN_IN", 0x30, "ro", 16, 0, "Largest LAYER_FAN_IN (input buffer depth)"),
    Register("CAP_TILE_ROWS", 0x34, "ro", 16, 0, "Rows of a crossbar tile (rows converted together)"),
    Register("CAP_FORMAT", 0x38, "ro", 30, 0, "Numeric format the fabric was built for", (
        Field("INPUT_BITS", 0, 4, "bits of an input activation"),
        Field("CODE_BITS", 4, 5, "bits of a cell code"),
        Field("CODE_FRAC", 9, 4, "fractional bits of a cell code"),
        Field("ADC_BITS", 13, 5, "ADC resolution"),
        Field("SLICE_BITS", 18, 4, "bits per device (weight slice)"),
        Field("N_SLICES", 22, 4, "slices per weight"),
        Field("MAX_COPIES_LOG2", 26, 4, "largest k of 2**k averaged copies"),
    )),
    Register("LAYER_FAN_IN", 0x40, "rw", 16, 0, "Inputs per vector K of the run, 1..CAP_MAX_FAN_IN"),
    Register("LAYER_COLUMNS", 0x44, "rw", 16, 0, "Physical columns P of the layer (all copies, slices)"),
    Register("LAYER_NEURONS", 0x48, "rw", 16, 0, "Neurons N of the layer (outputs per vector)"),
    Register("LAYER_CODE_BASE", 0x4C, "rw", 32, 0, "First code-memory word of the layer"),
    Register("LAYER_DESC_BASE", 0x50, "rw", 32, 0, "First descriptor-memory word of the layer"),
    Register("LAYER_ADC_SHIFT", 0x54, "rw", 5, 0, "ADC shift of the layer, 0..31"),
    Register("LAYER_VECTORS", 0x58, "rw", 32, 0, "Input vectors V of the run (>= 1)"),
    Register("STREAM_TARGET", 0x60, "rw", 2, STREAM_INPUTS,
             "Destination of MM2S words: 0 run inputs, 1 codes, 2 fault map, 3 descriptors"),
    Register("LOAD_ADDRESS", 0x64, "rw", 32, 0, "Memory word the next loaded word goes to (auto-increments)"),
    Register("CODE_ON", 0x70, "rw", 32, 0, "Code read from stuck-on cells (signed, low code_bits used)"),
    Register("CODE_OFF", 0x74, "rw", 32, 0, "Code read from stuck-off cells (signed, low code_bits used)"),
    Register("FAULT_SEED", 0x78, "rw", 32, 1, "Fault generator seed (0 acts as 1)"),
    Register("FAULT_RATE", 0x7C, "rw", 17, 0, "Fault-rate threshold in [0, 65536] (65536 = always)"),
    Register("FAULT_ON_FRACTION", 0x80, "rw", 17, 0, "Stuck-on threshold in [0, 65536]"),
    Register("FAULT_WORDS", 0x84, "rw", 32, 0, "Fault-memory words [0, FAULT_WORDS) the generator covers"),
    Register("FAULT_CONTROL", 0x88, "rw", 3, 0, "Fault map commands and enable", (
        Field("GENERATE", 0, 1, "self-clearing: run the generator"),
        Field("CLEAR", 1, 1, "self-clearing: zero the whole fault memory"),
        Field("ENABLE", 2, 1, "apply the fault map when reading the cells"),
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
validate((Register("DESCRIPTOR", 0, "rw", DESCRIPTOR_BITS, 0, "column descriptor", DESCRIPTOR_FIELDS),))
_BY_NAME = {r.name: r for r in REGISTERS}
if [e.code for e in ERRORS] != list(range(len(ERRORS))) or len(ERRORS) > _BY_NAME["ERROR_CODE"].mask + 1:
    raise ValueError("ERRORS must be numbered 0, 1, ... and fit the ERROR_CODE register")
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


def field_get(register: str, field: str, word: int) -> int:
    """The value of ``field`` in a word of ``register``."""
    f = lookup(register).field(field)
    return (int(word) & f.mask) >> f.lsb


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
    lines += ["", "## ERROR_CODE values", "", "| code | name | meaning |", "|---|---|---|"]
    lines += [f"| {e.code} | {e.name} | {_md(e.description)} |" for e in ERRORS]
    lines += ["", "## Column-descriptor word (STREAM_TARGET 3)", "", "| bits | field | description |", "|---|---|---|"]
    for f in DESCRIPTOR_FIELDS:
        bits = f"[{f.lsb}]" if f.width == 1 else f"[{f.lsb + f.width - 1}:{f.lsb}]"
        lines.append(f"| {bits} | {f.name} | {_md(f.description)} |")
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
    lines.append("")
    for e in ERRORS:
        lines.append(f"#define {prefix}ERR_{e.name} {e.code}u /* {e.description} */")
    lines.append("")
    for f in DESCRIPTOR_FIELDS:
        lines.append(f"#define {prefix}DESC_{f.name}_SHIFT {f.lsb}u")
        lines.append(f"#define {prefix}DESC_{f.name}_MASK 0x{f.mask:X}u")
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
