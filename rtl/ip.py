"""The accelerator as a Vivado IP: its VLNV and its instance name in a block design, defined once.

``boards/pynq_z2/block_design.tcl`` packages the AXI wrapper ``boards/pynq_z2/remeco_axi.v``
with the generated top (:mod:`remeco.rtl.top`) as an IP of :data:`VLNV` and instantiates it
as :data:`INSTANCE_NAME`. The overlay's ``.hwh`` then names the accelerator by that VLNV,
and pynq binds the driver class :class:`remeco.host.pynq_ip.RemecoIP` (``bindto =
[VLNV]``) to ``overlay.remeco_0``. The Tcl does not restate the VLNV: it sources
:data:`TCL_FILE`, which :func:`write_tcl` writes beside the Verilog (``python -m
remeco.rtl.top --out GEN_DIR`` writes both).

The version is the register map's, ``major.minor`` of
:data:`remeco.rtl.regmap.VERSION_VALUE`: pynq binds drivers by exact VLNV, so a bitstream
of another register map gets pynq's ``DefaultIP`` (with pynq's warning) instead of a
driver that speaks another map.

Plain data, no Amaranth: the board-side driver imports it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import regmap

__all__ = ["VENDOR", "LIBRARY", "NAME", "VERSION", "VLNV", "INSTANCE_NAME", "TCL_FILE", "to_tcl", "write_tcl"]

VENDOR = "remeco"
LIBRARY = "ip"
#: The packaged top module: the wrapper of ``boards/pynq_z2/remeco_axi.v``.
NAME = "remeco_axi"
VERSION = f"{regmap.VERSION_VALUE >> 16}.{regmap.VERSION_VALUE & 0xFFFF}"
#: ``vendor:library:name:version``, what the ``.hwh`` gives as the accelerator's ``type``.
VLNV = f"{VENDOR}:{LIBRARY}:{NAME}:{VERSION}"
#: The accelerator's cell in the block design, so ``overlay.remeco_0`` on the board.
INSTANCE_NAME = "remeco_0"
#: The Tcl the block-design script sources from the generator's output folder.
TCL_FILE = "remeco_ip.tcl"


def to_tcl() -> str:
    """Tcl setting ``remeco_ip_{vendor,library,name,version,vlnv,instance}`` to this module's values."""
    values = {"vendor": VENDOR, "library": LIBRARY, "name": NAME, "version": VERSION, "vlnv": VLNV,
              "instance": INSTANCE_NAME}
    lines = ["# The remeco accelerator's IP identity, written by remeco.rtl.ip (do not edit: it is defined there)."]
    lines += [f"set remeco_ip_{key} {{{value}}}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def write_tcl(out_dir: str | Path) -> Path:
    """Write :func:`to_tcl` to ``<out_dir>/``:data:`TCL_FILE`; returns the path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / TCL_FILE
    path.write_text(to_tcl())
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m remeco.rtl.ip [--out DIR]``: print the VLNV, or write the Tcl of the IP identity."""
    parser = argparse.ArgumentParser(prog="python -m remeco.rtl.ip", description=main.__doc__)
    parser.add_argument("--out", help=f"folder to write {TCL_FILE} into (default: print the VLNV)")
    args = parser.parse_args(argv)
    if args.out is None:
        print(VLNV)
    else:
        print(f"wrote {write_tcl(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
