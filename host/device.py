"""What the host driver needs from a backend: the :class:`Device` protocol and :class:`BusError`.

A device is the accelerator top behind one of three backends (the NumPy model of
:mod:`remeco.host.driver`, the Verilated RTL of :mod:`remeco.host.sim`, a PYNQ board in
:mod:`remeco.host.board`): 32-bit AXI4-Lite ``read``/``write`` at the offsets of
:mod:`remeco.rtl.regmap` and one DMA call, ``stream``. The contract lives here, apart
from the driver, so that every backend imports it without importing the driver (which
imports the backends by name): the backends and the driver form no import cycle.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["BusError", "Device"]


class BusError(RuntimeError):
    """An AXI4-Lite access answered ``SLVERR`` (unknown offset, or a write to a read-only register)."""


@runtime_checkable
class Device(Protocol):
    """What the driver needs from a backend (model, simulator, board)."""

    def read(self, offset: int) -> int:
        """32-bit AXI4-Lite read (:class:`BusError` on ``SLVERR``)."""

    def write(self, offset: int, value: int) -> None:
        """32-bit AXI4-Lite write (:class:`BusError` on ``SLVERR``)."""

    def stream(self, words: np.ndarray, receive: int = 0, *, timeout: float = 10.0) -> np.ndarray:
        """One DMA round: arm an S2MM receive of ``receive`` words, send ``words`` (uint32,
        may be empty) on MM2S, return the received uint32 words; :class:`TimeoutError` if
        the round does not complete within ``timeout`` seconds."""

    def close(self) -> None:
        """Release the backend."""
