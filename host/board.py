"""The ``board`` backend: the accelerator on a PYNQ board, through the real ``pynq`` package.

:class:`PynqDevice` is the :class:`remeco.host.device.Device` of a Zynq running the
overlay of ``boards/pynq_z2`` (``remeco.bit`` with ``remeco.hwh`` beside it): the
accelerator's AXI4-Lite slave (the registers of :mod:`remeco.rtl.regmap`) behind
``M_AXI_GP0`` and an AXI DMA v7.1 in direct-register (simple) mode whose MM2S stream
feeds the accelerator and whose S2MM stream takes its results back to DDR through
``S_AXI_HP0``. Everything goes through pynq's own API: ``Overlay`` (the ``.hwh`` gives
``ip_dict`` and binds pynq's ``AxiDMA`` driver), ``MMIO``, ``allocate`` and the DMA
channels' ``transfer``.

Three things differ from the textbook pynq usage, on purpose:

* **No bus access that could fault.** On a Zynq an AXI ``SLVERR`` on the GP port is a
  data abort (the Python process dies with ``SIGBUS``), so :meth:`PynqDevice.read` and
  :meth:`PynqDevice.write` refuse offsets :func:`remeco.rtl.regmap.by_offset` does not
  know, and writes to read-only registers, with :class:`~remeco.host.device.BusError`
  *before* touching the bus. Reads of write-only registers go out (the RTL answers 0).
* **Every wait has a deadline.** pynq's ``_SDMAChannel.wait()`` spins until the channel
  is idle, forever if the accelerator never takes or gives the words; here DMASR is
  polled against a deadline, :class:`TimeoutError` names the channel, and the DMA is
  reset so the next round starts clean (the accelerator keeps its own state: the
  driver's soft reset clears that). ``wait()`` is called only once DMASR says idle, for
  pynq's cache invalidation and byte count.
* **PL clocks of a Zynq-7000.** pynq 4.0.0 with pynqmetadata 0.2.0 reads no PL clock
  frequency from a ``processing_system7`` (``ZynqProcSysCore`` has no
  ``clk_freq_param_name``, so ``clock_dict[i]["frequency"]`` is ``None``) and
  ``Overlay.download`` then fails in ``Clocks.set_pl_clk`` (``round(src / None)``). The
  overlay is therefore created with ``download=False``, missing frequencies are filled
  from the PS parameters ``PCW_ACT_FPGA<i>_PERIPHERAL_FREQMHZ`` of the same ``.hwh``,
  and then downloaded. With a pynq that reads them itself this changes nothing.

pynq pins ``numpy<2`` and ``setuptools<=80``: it lives in its own environment (the
``board`` extra on the board; ``.venv-board`` from ``scripts/setup.sh`` for the test
against a simulated Zynq, ``tests/board_env/check_board.py``), never in the main
``.venv``.

Example (on the board)::

    from remeco.host.driver import Accelerator

    with Accelerator("board", bitfile="/home/xilinx/remeco/remeco.bit") as acc:
        ...

or the PYNQ way, pynq binding the driver class to the accelerator by its VLNV
(:mod:`remeco.host.pynq_ip`, over :meth:`PynqDevice.from_ip`)::

    from remeco.host.pynq_ip import load_overlay

    logits = load_overlay("/home/xilinx/remeco/remeco.bit").remeco_0.infer(images)  # after load(...)
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ..rtl import regmap
from ..rtl.ip import INSTANCE_NAME
from .device import BusError

__all__ = ["PynqDevice", "load_overlay", "checked_register", "DmaError", "OverlayError", "DEFAULT_IP_NAME", "DEFAULT_DMA_NAME"]

#: Instance names in ``boards/pynq_z2/block_design.tcl`` (the accelerator's: :mod:`remeco.rtl.ip`).
DEFAULT_IP_NAME = INSTANCE_NAME
DEFAULT_DMA_NAME = "axi_dma_0"

_MASK32 = 0xFFFFFFFF
# AXI DMA v7.1 direct-register mode (PG021): channel register blocks and the bits used.
_CHANNELS = {"MM2S": 0x00, "S2MM": 0x30}
_DMACR, _DMASR = 0x00, 0x04
_CR_RS, _CR_RESET = 0x1, 0x4
_SR_HALTED, _SR_IDLE = 0x1, 0x2
_SR_ERRORS = (
    (0x10, "DMAIntErr: internal error (zero length, or a packet longer than the buffer)"),
    (0x20, "DMASlvErr: the memory answered SLVERR"),
    (0x40, "DMADecErr: the buffer address decodes to no memory"),
)
_RESET_TIMEOUT = 1.0  # seconds for the DMA's own reset and run/stop handshakes
_SPIN_POLLS = 1000  # polls before a wait starts yielding the CPU between polls
_MIN_BUFFER_WORDS = 1024

_PYNQ_MISSING = (
    "the board backend needs the 'pynq' package (pynq==4.0.0, the 'board' extra: "
    "pip install 'remeco[board]'), which pins numpy<2 and setuptools<=80 and so cannot share "
    "the main .venv: use it on the board's PYNQ image, or in .venv-board (made by "
    "scripts/setup.sh) against the simulated Zynq of tests/board_env"
)


class DmaError(RuntimeError):
    """The AXI DMA flagged an error (DMASR error bits) or an S2MM packet ended early."""


class OverlayError(ValueError):
    """pynq could not load a ``.bit`` / ``.hwh`` pair (damaged, foreign, or not matching the board)."""


def _import_pynq():
    try:
        import pynq
        import pynq.lib.dma
    except ImportError as exc:
        raise ImportError(_PYNQ_MISSING) from exc
    return pynq


def _is_int(v: object) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, np.integer))


def _describe_errors(status: int) -> str:
    return "; ".join(text for bit, text in _SR_ERRORS if status & bit)


class PynqDevice:
    """The accelerator on a PYNQ board: a :class:`remeco.host.device.Device` over pynq.

    Parameters
    ----------
    bitfile:
        The overlay's ``.bit``; its ``.hwh`` (same base name) must lie beside it.
    ip_name:
        The accelerator's name in ``overlay.ip_dict`` (``"hier/name"`` inside a hierarchy).
    dma_name:
        The AXI DMA's name in ``overlay.ip_dict``; it must be in simple mode (no
        scatter-gather) with both channels and 32-bit streams.
    download:
        Program the PL with ``bitfile`` (``False``: the bitstream is already loaded and
        only its ``.hwh`` is read).

    Raises
    ------
    ImportError
        pynq is not installed (see the module docstring).
    FileNotFoundError
        ``bitfile`` or its ``.hwh`` is missing.
    ValueError
        The overlay has no such IP, or the DMA is not configured as required.
    TimeoutError
        The DMA does not come out of reset or start within a second.
    """

    def __init__(
        self,
        bitfile: str | os.PathLike,
        *,
        ip_name: str = DEFAULT_IP_NAME,
        dma_name: str = DEFAULT_DMA_NAME,
        download: bool = True,
    ) -> None:
        self._closed = True  # until fully open: close() and the methods see a closed device
        self._buffers: dict[str, object] = {}
        overlay = load_overlay(bitfile, download=download)
        self.bitfile = Path(bitfile).expanduser().resolve()
        self.overlay = overlay
        accel = _ip_entry(overlay.ip_dict, ip_name, "the accelerator")
        dma = _ip_entry(overlay.ip_dict, dma_name, "the AXI DMA")
        self._open(accel, dma, overlay.device, ip_name, dma_name, lambda: _resolve(overlay, dma_name))

    @classmethod
    def from_ip(cls, accel: dict, dma: dict, *, device=None) -> PynqDevice:
        """The device of an overlay pynq has loaded already, from two of its ``ip_dict`` entries.

        ``accel`` is the accelerator's entry (the description pynq hands its driver,
        :class:`remeco.host.pynq_ip.RemecoIP`), ``dma`` the AXI DMA's; ``device`` is the
        pynq device (default: the entry's, else pynq's active device). Nothing is read
        from disk or downloaded; pynq's ``DMA`` driver is made from ``dma``. Raises as
        :class:`PynqDevice` does.
        """
        self = cls.__new__(cls)
        self._closed = True
        self._buffers = {}
        pynq = _import_pynq()
        self.bitfile = self.overlay = None
        device = device or accel.get("device") or pynq.Device.active_device
        names = [entry.get("fullpath", "?") for entry in (accel, dma)]
        self._open(accel, dma, device, *names, lambda: pynq.lib.dma.DMA({**dma, "device": device}))
        return self

    def _open(self, accel: dict, dma: dict, device, ip_name: str, dma_name: str, make_dma) -> None:
        """Map the accelerator's registers and the DMA's, reset and start the DMA, take its driver from ``make_dma()``."""
        pynq = self._pynq = _import_pynq()
        self._pl_device = device
        self.ip_name, self.dma_name = ip_name, dma_name
        _check_dma(dma_name, dma)
        if accel.get("addr_range") is None or accel["addr_range"] < 1 << regmap.ADDR_BITS:
            raise ValueError(
                f"{ip_name} maps {accel.get('addr_range')} bytes, the register map needs {1 << regmap.ADDR_BITS}"
            )
        self._mmio = pynq.MMIO(accel["phys_addr"], accel["addr_range"], device=device)
        self._dma_mmio = pynq.MMIO(dma["phys_addr"], dma["addr_range"], device=device)
        # A DMA left mid-transfer by an earlier process would refuse new transfers; reset it,
        # then set both channels running before pynq's driver does (its start() spins).
        self._reset_dma()
        driver = make_dma()
        if not isinstance(driver, pynq.lib.dma.DMA):
            raise ValueError(f"{dma_name} is bound to {type(driver).__name__}, not pynq's AXI DMA driver")
        self._dma = driver
        self._send, self._recv = driver.sendchannel, driver.recvchannel
        self._closed = False

    # -- registers --------------------------------------------------------------------
    def _register(self, offset: int, value: int | None = None) -> regmap.Register:
        if self._closed:
            raise RuntimeError("device is closed")
        return checked_register(offset, value)

    def read(self, offset: int) -> int:
        """32-bit AXI4-Lite read at ``offset``; :class:`BusError` for an unknown offset."""
        self._register(offset)
        return int(self._mmio.read(int(offset))) & _MASK32

    def write(self, offset: int, value: int) -> None:
        """32-bit AXI4-Lite write; :class:`BusError` for an unknown offset or a read-only register."""
        reg = self._register(offset, value)
        self._mmio.write(reg.offset, int(value))

    # -- streams ----------------------------------------------------------------------
    def stream(self, words: np.ndarray, receive: int = 0, *, timeout: float = 10.0) -> np.ndarray:
        """One DMA round: arm S2MM for ``receive`` words, send ``words`` on MM2S, return the received words.

        ``words`` (1-D, 32-bit unsigned values, may be empty) go out as one MM2S transfer,
        which ends with ``TLAST`` on its last word. The S2MM transfer is armed first, so the
        accelerator never stalls on its output. Returns a uint32 copy of the ``receive``
        words. :class:`TimeoutError` names the channel that did not finish within
        ``timeout`` seconds; :class:`DmaError` for a DMA error or a packet that ended
        (``TLAST``) before ``receive`` words. After either the DMA is reset.
        """
        if self._closed:
            raise RuntimeError("device is closed")
        w = np.asarray(words)
        if w.ndim != 1 or (w.size and not np.issubdtype(w.dtype, np.integer)):
            raise ValueError(f"words must be a 1-D integer array, got {w.dtype} {w.shape}")
        if w.size and (int(w.min()) < 0 or int(w.max()) > _MASK32):
            raise ValueError("words must be 32-bit unsigned integers")
        if not _is_int(receive) or receive < 0:
            raise ValueError(f"receive must be a non-negative integer, got {receive!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        send, receive = len(w), int(receive)
        limit = self._dma.buffer_max_size  # bytes one transfer may move (c_sg_length_width)
        for name, count in (("MM2S", send), ("S2MM", receive)):
            if 4 * count > limit:
                raise ValueError(f"{name} transfer of {count} words exceeds the DMA's {limit // 4} words per transfer")
        deadline = time.monotonic() + timeout
        rx = tx = None
        if receive:
            rx = self._buffer("rx", receive)
            self._recv.transfer(rx, nbytes=4 * receive)
        if send:
            tx = self._buffer("tx", send)
            tx[:send] = w
            self._send.transfer(tx, nbytes=4 * send)
        try:
            if send:
                self._finish("MM2S", send, deadline, timeout)
                self._send.wait()  # idle already: pynq's bookkeeping only
            if receive:
                self._finish("S2MM", receive, deadline, timeout)
                self._recv.wait()  # idle already: invalidates the buffer, reads the byte count
                got = int(self._recv.transferred)
                if got != 4 * receive:
                    raise DmaError(
                        f"S2MM received {got // 4} of {receive} words: the accelerator ended the packet (TLAST) early"
                    )
        except (TimeoutError, DmaError):
            self._reset_dma()
            raise
        if not receive:
            return np.zeros(0, dtype=np.uint32)
        return np.array(rx[:receive], dtype=np.uint32)

    def _finish(self, channel: str, count: int, deadline: float, timeout: float) -> None:
        """Poll a channel's DMASR until idle; :class:`DmaError` / :class:`TimeoutError` otherwise."""
        base = _CHANNELS[channel]
        polls = 0
        while True:
            status = int(self._dma_mmio.read(base + _DMASR))
            errors = _describe_errors(status)
            if errors:
                raise DmaError(f"{channel} DMA transfer of {count} words failed: {errors} (DMASR={status:#010x})")
            if status & _SR_IDLE:
                return
            if status & _SR_HALTED:
                raise DmaError(f"{channel} DMA channel halted during a transfer of {count} words (DMASR={status:#010x})")
            if time.monotonic() >= deadline:
                if channel == "MM2S":
                    why = "the accelerator did not take every word (no run busy, wrong STREAM_TARGET, or its output not drained)"
                else:
                    why = "the accelerator sent fewer words, or no TLAST"
                raise TimeoutError(
                    f"{channel} DMA transfer of {count} words did not finish within {timeout:g} s: {why} "
                    f"(DMASR={status:#010x})"
                )
            polls += 1
            if polls > _SPIN_POLLS:
                time.sleep(50e-6)

    def _reset_dma(self) -> None:
        """Soft-reset the AXI DMA (both channels) and set both running, each step with a deadline."""
        mmio = self._dma_mmio
        mmio.write(_CHANNELS["MM2S"] + _DMACR, _CR_RESET)  # resets the whole core (PG021)
        self._poll(lambda: all(not mmio.read(b + _DMACR) & _CR_RESET for b in _CHANNELS.values()),
                   "the AXI DMA to come out of reset")
        for base in _CHANNELS.values():
            mmio.write(base + _DMACR, _CR_RS)
        self._poll(lambda: all(not mmio.read(b + _DMASR) & _SR_HALTED for b in _CHANNELS.values()),
                   "the AXI DMA channels to start")
        # pynq's channels (once bound) restart their own bookkeeping; running already, so
        # their start() returns at once.
        for channel in (getattr(self, "_send", None), getattr(self, "_recv", None)):
            if channel is not None:
                channel.start()

    def _poll(self, done, what: str) -> None:
        deadline = time.monotonic() + _RESET_TIMEOUT
        while not done():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"timed out after {_RESET_TIMEOUT:g} s waiting for {what}")

    def _buffer(self, kind: str, count: int):
        """A reusable DMA buffer of at least ``count`` words (grown geometrically, old one freed)."""
        buf = self._buffers.get(kind)
        if buf is None or len(buf) < count:
            size = max(count, _MIN_BUFFER_WORDS, 0 if buf is None else 2 * len(buf))
            if buf is not None:
                self._buffers.pop(kind)
                buf.freebuffer()
            buf = self._pynq.allocate(shape=(size,), dtype=np.uint32, target=self._pl_device)
            self._buffers[kind] = buf
        return buf

    # -- life cycle -------------------------------------------------------------------
    def close(self) -> None:
        """Free the DMA buffers and release the overlay (later calls raise ``RuntimeError``)."""
        for buf in self._buffers.values():
            buf.freebuffer()
        self._buffers = {}
        if not self._closed:
            self._closed = True
            self._dma = self._send = self._recv = None
            self._mmio = self._dma_mmio = None

    def __enter__(self) -> PynqDevice:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        where = getattr(self, "bitfile", None) or "overlay loaded already"
        return f"PynqDevice({str(where)!r}, ip_name={getattr(self, 'ip_name', '?')!r}, {state})"


def checked_register(offset: int, value: int | None = None) -> regmap.Register:
    """The register at ``offset`` if the bus may be accessed there (a write of ``value``, a read if ``None``).

    :class:`BusError` for an offset :func:`remeco.rtl.regmap.by_offset` does not know and
    for a write to a read-only register, before any bus access: on a Zynq the accelerator's
    ``SLVERR`` on ``M_AXI_GP0`` is a data abort that kills the process. ``ValueError`` for
    a non-integer offset or a value that is not 32-bit unsigned.
    """
    if not _is_int(offset):
        raise ValueError(f"offset must be an integer, got {offset!r}")
    reg = regmap.by_offset(int(offset))
    if reg is None:
        raise BusError(
            f"SLVERR: no register at offset {int(offset):#x} (refused before the bus: "
            "on a Zynq an SLVERR on M_AXI_GP0 is a data abort)"
        )
    if value is not None:
        if not _is_int(value) or not 0 <= value <= _MASK32:
            raise ValueError(f"value must be a 32-bit unsigned integer, got {value!r}")
        if reg.access == "ro":
            raise BusError(f"SLVERR: register {reg.name} at {reg.offset:#x} is read-only (refused before the bus)")
    return reg


def load_overlay(bitfile: str | os.PathLike, *, download: bool = True):
    """``pynq.Overlay(bitfile)``, working around pynq 4.0.0's Zynq-7000 clocks (see the module docstring).

    The overlay is parsed without download, the PL clock frequencies pynq leaves ``None``
    are filled from the ``.hwh``'s PS parameters, then it is downloaded (unless
    ``download=False``). pynq binds the drivers registered when the overlay is parsed:
    import :mod:`remeco.host.pynq_ip` first for ``overlay.remeco_0`` to be
    :class:`~remeco.host.pynq_ip.RemecoIP` (it does so itself).

    Raises ``ImportError`` (pynq missing, one line), ``FileNotFoundError`` (``bitfile`` or
    its ``.hwh``) or :class:`OverlayError` (pynq could not load the pair).
    """
    pynq = _import_pynq()
    if not isinstance(bitfile, (str, os.PathLike)):
        raise ValueError(f"bitfile must be a path, got {bitfile!r}")
    path = Path(bitfile).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"bitstream {path} does not exist")
    hwh = path.with_suffix(".hwh")
    if not hwh.is_file():
        raise FileNotFoundError(f"{hwh} is missing: pynq reads the overlay from the .hwh beside the .bit")
    try:
        overlay = pynq.Overlay(str(path), download=False)
        _fill_pl_clock_frequencies(overlay)
        if download:
            overlay.download()
    except (OverlayError, ImportError):
        raise
    except Exception as exc:  # noqa: BLE001 - pynq raises RuntimeError, OSError, KeyError, ValueError ...
        # A damaged, foreign or mismatched .bit/.hwh pair is the user's to fix: name it in one line.
        first = (str(exc).strip().splitlines() or [""])[0]
        raise OverlayError(f"pynq could not load the overlay {path} with {hwh.name} "
                           f"({type(exc).__name__}: {first}); expected a .bit and the .hwh "
                           "Vivado wrote with it (boards/pynq_z2)") from exc
    return overlay


def _ip_entry(ip_dict: dict, name: str, what: str) -> dict:
    if not isinstance(name, str) or not name:
        raise ValueError(f"the name of {what} must be a non-empty string, got {name!r}")
    entry = ip_dict.get(name)
    if entry is None:
        known = ", ".join(f"{k} ({v.get('type')})" for k, v in ip_dict.items())
        raise ValueError(f"{what} {name!r} is not in the overlay's ip_dict; it has: {known}")
    return entry


def _check_dma(name: str, entry: dict) -> None:
    """Refuse a DMA the simple-mode, 32-bit, two-channel data path cannot use."""
    if not str(entry.get("type", "")).startswith("xilinx.com:ip:axi_dma:"):
        raise ValueError(f"{name} is a {entry.get('type')}, not an AXI DMA")
    params = entry.get("parameters", {})

    def param(key: str, default: str = "0") -> str:
        return str(params.get(key, params.get(key.upper(), default)))

    problems = []
    if param("c_include_sg") != "0":
        problems.append("scatter-gather is enabled (simple mode needed)")
    if param("c_micro_dma") != "0":
        problems.append("micro DMA mode is enabled")
    for channel, stream in (("mm2s", "c_m_axis_mm2s_tdata_width"), ("s2mm", "c_s_axis_s2mm_tdata_width")):
        if param(f"c_include_{channel}") != "1":
            problems.append(f"the {channel.upper()} channel is not included")
        elif param(stream, "32") != "32":
            problems.append(f"the {channel.upper()} stream is {param(stream)} bits wide (32 needed)")
    if problems:
        raise ValueError(f"AXI DMA {name}: " + "; ".join(problems))


def _resolve(overlay, name: str):
    """The driver pynq bound to ``name`` (``"hier/ip"`` walks the hierarchy)."""
    obj = overlay
    for part in name.split("/"):
        obj = getattr(obj, part)
    return obj


def _fill_pl_clock_frequencies(overlay) -> None:
    """Give every enabled PL clock of ``overlay.clock_dict`` a frequency before ``download()``.

    pynq 4.0.0 leaves ``frequency`` ``None`` for a Zynq-7000 (see the module docstring);
    the Zynq PS's achieved rate ``PCW_ACT_FPGA<i>_PERIPHERAL_FREQMHZ`` (or, failing that,
    the requested ``PCW_FPGA<i>_PERIPHERAL_FREQMHZ``) in the same ``.hwh`` fills it.
    """
    clocks = getattr(overlay, "clock_dict", None) or {}
    ps_params = [
        v.get("parameters", {}) for v in overlay.ip_dict.values() if ":processing_system7:" in str(v.get("type", ""))
    ]
    for index, clock in clocks.items():
        if not clock.get("enable") or clock.get("frequency") is not None:
            continue
        for params in ps_params:
            value = params.get(f"PCW_ACT_FPGA{index}_PERIPHERAL_FREQMHZ") or params.get(f"PCW_FPGA{index}_PERIPHERAL_FREQMHZ")
            if value:
                clock["frequency"] = float(value)
                break
        else:
            raise OverlayError(f"the overlay's .hwh gives no frequency for the enabled PL clock {index}")
