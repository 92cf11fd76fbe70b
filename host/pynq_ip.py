"""The PYNQ driver class of the accelerator: ``overlay.remeco_0`` is a :class:`RemecoIP`.

pynq binds a driver class to an IP by its VLNV (the class's ``bindto``) when it parses an
overlay. Importing this module registers :class:`RemecoIP` for
:data:`remeco.rtl.ip.VLNV`, the VLNV ``boards/pynq_z2/block_design.tcl`` packages the
accelerator with, so on the board::

    from remeco.host.bundle import load_bundle
    from remeco.host.pynq_ip import load_overlay

    bundle = load_bundle("/home/xilinx/remeco/lenet.npz")
    overlay = load_overlay("/home/xilinx/remeco/remeco.bit")   # or pynq.Overlay(...), after this import
    acc = overlay.remeco_0                                     # a RemecoIP
    acc.load(bundle.mapped["base"], bundle.chip("base", 0))
    acc.inject_faults(seed=1, rate=0.01)
    logits = acc.infer(bundle.images)

A :class:`RemecoIP` is the host driver, :class:`remeco.host.driver.Accelerator`, over the
board backend, :class:`remeco.host.board.PynqDevice`, opened on the overlay pynq has
loaded: the same methods, and the same logits as the ``model`` and ``sim`` backends. The
accelerator's streams go through an AXI DMA, which pynq's description of an IP does not
name: :meth:`RemecoIP.open` takes the one called ``axi_dma_0`` beside the accelerator
(same hierarchy), else the overlay's only AXI DMA, or the one given. Register access
through pynq's ``read`` / ``write`` is guarded as the backend's is
(:func:`remeco.host.board.checked_register`).

pynq binds by exact VLNV, and the VLNV's version is the register map's: a bitstream of
another register map gets pynq's ``DefaultIP`` (pynq warns) rather than this driver.

Without pynq (the main ``.venv``; pynq pins numpy<2) the module imports all the same, and
making a :class:`RemecoIP` raises a one-line ``ImportError`` naming what to install.
"""

from __future__ import annotations

import functools

from ..rtl.ip import VLNV
from .board import DEFAULT_DMA_NAME, PynqDevice, _import_pynq, _ip_entry, checked_register, load_overlay
from .driver import Accelerator

__all__ = ["RemecoIP", "load_overlay", "VLNV"]

try:
    from pynq import DefaultIP as _DefaultIP
except ImportError:  # the main .venv: the class exists, making one says what is missing

    class _DefaultIP:  # type: ignore[no-redef]
        def __init__(self, description: dict) -> None:
            _import_pynq()  # raises the one-line ImportError of the board backend


def _delegate(method):
    """A method of :class:`RemecoIP` that calls the same method of its :class:`Accelerator`."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        return method(self.accelerator, *args, **kwargs)

    return call


class RemecoIP(_DefaultIP):
    """pynq driver of the remeco accelerator (``bindto`` :data:`remeco.rtl.ip.VLNV`).

    pynq makes it from the accelerator's ``ip_dict`` entry; the driver opens on first use
    (or :meth:`open`). :meth:`load`, :meth:`inject_faults`, :meth:`fault_maps`,
    :meth:`load_fault_maps`, :meth:`clear_faults`, :meth:`reset`, :meth:`run_layer` and
    :meth:`infer` are :class:`~remeco.host.driver.Accelerator`'s.

    Members
    -------
    accelerator:
        The :class:`~remeco.host.driver.Accelerator` over :class:`~remeco.host.board.PynqDevice`.
    config:
        The fabric's :class:`~remeco.models.fabric.FabricConfig`, read from its ``CAP_*`` registers.
    cycles:
        The accelerator's cycle counter.
    """

    bindto = [VLNV]

    def __init__(self, description: dict) -> None:
        super().__init__(description)
        self._description = description
        self._accelerator: Accelerator | None = None

    def open(self, *, dma_name: str | None = None, timeout: float | None = None) -> Accelerator:
        """Open the driver (again): reset and start the AXI DMA ``dma_name`` (default: see the
        module docstring), identify the accelerator; returns the :class:`Accelerator`.

        ``timeout`` bounds every wait, as in :class:`Accelerator` (default: the ``board``
        backend's). A loaded network is forgotten (:meth:`load` it again).
        """
        self.close()
        device = PynqDevice.from_ip(self._description, self._dma_entry(dma_name), device=self.device)
        try:
            self._accelerator = Accelerator(device, timeout=timeout)
        except BaseException:
            device.close()
            raise
        return self._accelerator

    def _dma_entry(self, dma_name: str | None) -> dict:
        ip_dict = getattr(self.device, "ip_dict", None) or {}
        here = str(self._description.get("fullpath", ""))
        if dma_name is None:
            hierarchy = here.rpartition("/")[0]
            dma_name = f"{hierarchy}/{DEFAULT_DMA_NAME}" if hierarchy else DEFAULT_DMA_NAME
            if dma_name not in ip_dict:
                dmas = [k for k, v in ip_dict.items() if str(v.get("type", "")).startswith("xilinx.com:ip:axi_dma:")]
                if len(dmas) != 1:
                    raise ValueError(f"cannot tell which AXI DMA streams to {here}: the overlay has "
                                     f"{', '.join(dmas) or 'none'}; name it with open(dma_name=...)")
                dma_name = dmas[0]
        return _ip_entry(ip_dict, dma_name, "the AXI DMA")

    @property
    def accelerator(self) -> Accelerator:
        """The driver, opened with the defaults of :meth:`open` on first use."""
        return self._accelerator if self._accelerator is not None else self.open()

    @property
    def config(self):
        """The fabric's :class:`~remeco.models.fabric.FabricConfig` (``CAP_*`` registers)."""
        return self.accelerator.config

    @property
    def cycles(self) -> int:
        """The accelerator's 64-bit cycle counter (see :attr:`Accelerator.cycles`)."""
        return self.accelerator.cycles

    load = _delegate(Accelerator.load)
    inject_faults = _delegate(Accelerator.inject_faults)
    fault_maps = _delegate(Accelerator.fault_maps)
    load_fault_maps = _delegate(Accelerator.load_fault_maps)
    clear_faults = _delegate(Accelerator.clear_faults)
    reset = _delegate(Accelerator.reset)
    run_layer = _delegate(Accelerator.run_layer)
    infer = _delegate(Accelerator.infer)

    def read(self, offset: int = 0) -> int:
        """pynq's register read, refused (:class:`~remeco.host.device.BusError`) at offsets the register map lacks."""
        checked_register(offset)
        return super().read(offset)

    def write(self, offset: int, value: int) -> None:
        """pynq's register write, refused at unknown offsets and read-only registers (see :meth:`read`)."""
        checked_register(offset, value)
        super().write(offset, value)

    def close(self) -> None:
        """Free the DMA buffers; the next use opens the driver again."""
        if self._accelerator is not None:
            self._accelerator.close()
            self._accelerator = None

    def __enter__(self) -> RemecoIP:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
