"""AXI4-Stream port signature (the subset an AXI DMA in simple mode uses).

Named ``tdata``/``tvalid``/``tready``/``tlast`` so that a member ``s_axis`` becomes the
Verilog ports ``s_axis__tdata`` ... and cocotbext-axi's ``AxiStreamBus.from_prefix(dut,
"s_axis_")`` finds them.
"""

from __future__ import annotations

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AxiStreamSignature"]


class AxiStreamSignature(wiring.Signature):
    """Master view of an AXI4-Stream of ``width``-bit words with ``tlast``.

    Use ``Out(AxiStreamSignature(32))`` for a master port and ``In(...)`` for a slave.
    """

    def __init__(self, width: int) -> None:
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}")
        self.width = width
        super().__init__({
            "tdata": Out(width),
            "tvalid": Out(1),
            "tready": In(1),
            "tlast": Out(1),
        })

    def __eq__(self, other):
        return isinstance(other, AxiStreamSignature) and other.width == self.width

    def __hash__(self):
        return hash(("AxiStreamSignature", self.width))
