"""A simulated Zynq-7000 plugged into pynq through pynq's own device extension point.

pynq finds hardware through :class:`pynq.Device`: its metaclass registers every subclass
that defines ``_probe_`` and a unique ``_probe_priority_``, and ``pynq.Device.devices``
calls each ``_probe_()`` (lowest priority first; ``active_device`` is the first device
found). Importing this module registers :class:`SimZynqDevice` (priority 7, ahead of
pynq's own embedded device at 50, which finds nothing on x86), so ``pynq.Overlay``,
``pynq.MMIO``, ``pynq.allocate`` and ``pynq.lib.dma.DMA`` use it unmodified.

What is simulated, and how faithfully:

* **Register access**: the device has pynq's ``REGISTER_RW`` capability (the one pynq's
  XRT/PCIe devices use): ``MMIO.read``/``MMIO.write`` reach :meth:`read_registers` /
  :meth:`write_registers` through pynq's tinynumpy hook. A real Zynq uses
  ``MEMORY_MAPPED`` (``/dev/mem``), i.e. ``MMIO.write_mm`` instead of ``MMIO.write_reg``;
  both are pynq's public ``MMIO.read/write``. An access the hardware would answer with
  ``SLVERR`` / ``DECERR`` raises :class:`SimDataAbort`, as the data abort kills the
  process on a board.
* **Programming**: :meth:`get_bitfile_metadata` parses the ``.hwh`` beside the ``.bit``
  with pynqmetadata's ``RuntimeMetadataParser``, the parser pynq's ``EmbeddedDevice``
  uses for a full bitstream (its XRT memory-topology merge is left out: it needs
  ``xclbinutil``). :meth:`download` checks the ``.bit`` header with pynq's own
  ``parse_bit_header`` and instantiates the PL from ``ip_dict``: an AXI DMA and the
  accelerator stand-in at the addresses the ``.hwh`` gives.
* **PS**: the SLCR clock registers ``pynq.Clocks`` programs (``arch`` is ``armv7l`` as on
  a PYNQ-Z2, PS_CLK 50 MHz, IO PLL 1000 MHz; FCLK0 boots at 50 MHz, so a download that
  sets the ``.hwh``'s 100 MHz is visible).
* **DDR**: :meth:`allocate` returns pynq ``PynqBuffer`` objects over host memory, with a
  separate "DDR" copy the DMA reads and writes: the memory is *not* coherent, so a missing
  ``flush`` before MM2S or ``invalidate`` after S2MM shows as wrong data. ``freebuffer()``
  reaches :meth:`SimMemory.return_pointer` (pynq's buffer-return hook), so freed buffers
  are counted.
* **AXI DMA v7.1, direct-register mode** (:class:`AxiDmaSim`, PG021): DMACR (RS, Reset),
  DMASR (Halted, Idle, error bits, IOC_Irq write-1-to-clear), SA/DA, LENGTH starting a
  transfer, S2MM LENGTH updated to the bytes received at TLAST, TLAST on the last MM2S
  beat, decode errors for unmapped buffer addresses, DMAIntErr for a packet longer than
  the S2MM buffer. Time advances by :data:`BEATS_PER_ACCESS` stream beats per channel
  per register access, so transfers take several polls; the S2MM channel takes words
  whenever the accelerator has some, so results that exist only after their MM2S
  inputs arrived flow as they would on the board.
* **The accelerator**, chosen by :attr:`SimZynqDevice.accelerator` (called at every
  download), with the stream interface ``accept(words, last) -> taken`` (MM2S, the
  rest back-pressured), ``emit(limit) -> (words, tlast)`` and ``ready()`` (S2MM):

  - :class:`EchoAccelerator` (default), a stand-in: the register file of
    :mod:`remeco.rtl.regmap` (ID, VERSION, access rules, widths) with ``STREAM_TARGET``
    ``0`` echoing every MM2S word (and its TLAST) to S2MM through a 64-word FIFO that
    back-pressures, other targets storing the words at ``LOAD_ADDRESS``
    (auto-incrementing); ``CONTROL.SOFT_RESET`` empties the FIFO.
  - :class:`ModelAccelerator`: the accelerator top itself as
    :class:`remeco.host.driver.ModelDevice` models it (register map, runs, loads, fault
    generator, stream rules), beat for beat through its ``send`` / ``receive`` sides;
    SLVERR becomes :class:`SimDataAbort`.
"""

from __future__ import annotations

import struct
from collections import deque
from pathlib import Path

import numpy as np
import pynq
from pynq.buffer import PynqBuffer

from remeco.host.device import BusError
from remeco.host.driver import ModelDevice
from remeco.models.fabric import FabricConfig
from remeco.rtl import regmap
from remeco.rtl.ip import VLNV

__all__ = [
    "SimDataAbort",
    "SimZynqDevice",
    "SimMemory",
    "AxiDmaSim",
    "EchoAccelerator",
    "ModelAccelerator",
    "BEATS_PER_ACCESS",
    "write_dummy_bit",
]

#: Stream beats each DMA channel may move per register access (the simulated clock).
BEATS_PER_ACCESS = 16
#: Depth of the accelerator stand-in's echo FIFO (words).
ECHO_FIFO_DEPTH = 64

SLCR_BASE = 0xF800_0000
SLCR_SIZE = 0x1000
# PYNQ-Z2 style PS clocks: PS_CLK 50 MHz, PLL_FDIV in bits [18:12], FPGAn divisors in
# [13:8] and [25:20], source (0 = IO PLL) in [5:4].
_SLCR_RESET = {
    0x100: 26 << 12,  # ARM_PLL_CTRL: 1300 MHz
    0x104: 21 << 12,  # DDR_PLL_CTRL: 1050 MHz
    0x108: 20 << 12,  # IO_PLL_CTRL: 1000 MHz
    0x120: 2 << 8,  # ARM_CLK_CTRL: ARM PLL / 2
    **{0x170 + 0x10 * i: (2 << 20) | (10 << 8) for i in range(4)},  # FPGAi_CLK_CTRL: 50 MHz
}
DDR_WINDOW = (0x0000_0000, 0x2000_0000)  # what HP0 reaches (512 MiB on a PYNQ-Z2)
_CMA_BASE = 0x1600_0000


class SimDataAbort(RuntimeError):
    """An access a Zynq answers with SLVERR/DECERR on the GP port: a data abort (SIGBUS) on a board."""


class _DecodeError(Exception):
    pass


class SimMemory:
    """The PS DDR as the DMA sees it, with host views that need flush/invalidate."""

    def __init__(self, device: "SimZynqDevice") -> None:
        self.device = device
        self._next = _CMA_BASE
        self._next_id = 1
        self.allocs: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}  # id -> (phys, host, ddr)
        self.allocated = 0
        self.freed = 0

    @property
    def live(self) -> int:
        """Buffers allocated and not yet freed."""
        return len(self.allocs)

    def allocate(self, shape, dtype, **kwargs) -> PynqBuffer:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape))
        nbytes = max(count * dtype.itemsize, 1)
        size = -(-nbytes // 4096) * 4096  # whole pages, like CMA
        phys = self._next
        if phys + size > DDR_WINDOW[1]:
            raise MemoryError("simulated CMA exhausted")
        self._next += size
        host = np.zeros(size, dtype=np.uint8)
        ddr = np.full(size, 0xA5, dtype=np.uint8)  # stale DDR: what an un-flushed buffer leaves
        alloc_id = self._next_id
        self._next_id += 1
        self.allocs[alloc_id] = (phys, host, ddr)
        self.allocated += 1
        buf = PynqBuffer(shape, dtype, buffer=host, device=self.device, device_address=phys,
                         bo=alloc_id, coherent=False)
        # pynq's buffer-return hook: freebuffer() calls return_to.return_pointer(pointer) once;
        # freed=True skips its munmap branch (host memory here is a NumPy array, not an mmap).
        buf.memory, buf.pointer, buf.return_to, buf.freed = self, alloc_id, self, True
        return buf

    def return_pointer(self, pointer) -> None:
        if self.allocs.pop(pointer, None) is not None:
            self.freed += 1

    def sync(self, alloc_id: int, offset: int, size: int, to_device: bool) -> None:
        _, host, ddr = self.allocs[alloc_id]
        if to_device:
            ddr[offset:offset + size] = host[offset:offset + size]
        else:
            host[offset:offset + size] = ddr[offset:offset + size]

    def _find(self, addr: int, nbytes: int) -> tuple[np.ndarray, int]:
        for phys, _, ddr in self.allocs.values():
            if phys <= addr and addr + nbytes <= phys + len(ddr):
                return ddr, addr - phys
        raise _DecodeError(f"no memory at {addr:#x}")

    def read_words(self, addr: int, count: int) -> np.ndarray:
        ddr, off = self._find(addr, 4 * count)
        return ddr[off:off + 4 * count].view("<u4").copy()

    def write_words(self, addr: int, words: np.ndarray) -> None:
        ddr, off = self._find(addr, 4 * len(words))
        ddr[off:off + 4 * len(words)] = np.asarray(words, dtype="<u4").view(np.uint8)


class EchoAccelerator:
    """Stand-in for ``remeco_top`` behind ``remeco_axi``: the regmap register file and a stream echo."""

    def __init__(self) -> None:
        self.regs = {r.offset: r.reset for r in regmap.REGISTERS}
        self.fifo: deque[tuple[int, bool]] = deque()
        self.loaded: dict[int, dict[int, int]] = {}  # STREAM_TARGET -> {address: word}
        self.accesses = 0

    def _reg(self, offset: int) -> regmap.Register:
        reg = regmap.by_offset(offset)
        if reg is None:
            raise SimDataAbort(f"SLVERR: the accelerator has no register at offset {offset:#x}")
        return reg

    def read(self, offset: int) -> int:
        self.accesses += 1
        reg = self._reg(offset)
        return 0 if reg.access == "wo" else self.regs[offset] & reg.mask

    def write(self, offset: int, value: int) -> None:
        self.accesses += 1
        reg = self._reg(offset)
        if reg.access == "ro":
            raise SimDataAbort(f"SLVERR: write to read-only register {reg.name}")
        value &= reg.mask
        if reg.name == "CONTROL":
            if value & reg.field("SOFT_RESET").mask:
                self.fifo.clear()
            return
        self.regs[offset] = value

    def accept(self, words: np.ndarray, last: bool) -> int:
        """Take MM2S beats (``last``: the final one carries TLAST); return how many were
        taken, the rest being back-pressure (TREADY low)."""
        target = self.regs[regmap.lookup("STREAM_TARGET").offset]
        if target == regmap.STREAM_INPUTS:
            taken = min(len(words), ECHO_FIFO_DEPTH - len(self.fifo))
            for i in range(taken):
                self.fifo.append((int(words[i]), last and i == len(words) - 1))
            return taken
        addr_off = regmap.lookup("LOAD_ADDRESS").offset
        for word in words:
            address = self.regs[addr_off]
            self.loaded.setdefault(target, {})[address] = int(word)
            self.regs[addr_off] = (address + 1) & 0xFFFFFFFF
        return len(words)

    def emit(self, limit: int) -> tuple[np.ndarray, bool]:
        """Up to ``limit`` S2MM beats, up to and including a TLAST one, and whether it came."""
        out = []
        while self.fifo and len(out) < limit:
            word, last = self.fifo.popleft()
            out.append(word)
            if last:
                return np.array(out, dtype=np.uint32), True
        return np.array(out, dtype=np.uint32), False

    def ready(self) -> bool:
        """An S2MM beat is waiting (TVALID)."""
        return bool(self.fifo)


class ModelAccelerator:
    """The accelerator top behind ``remeco_axi`` as :class:`remeco.host.driver.ModelDevice` models it.

    Parameters
    ----------
    cfg:
        The top's elaboration parameters (its ``CAP_*`` registers).
    """

    def __init__(self, cfg: FabricConfig = FabricConfig()) -> None:
        self.model = ModelDevice(cfg)
        self.accesses = 0
        self.words_in = self.words_out = 0

    def read(self, offset: int) -> int:
        self.accesses += 1
        try:
            return self.model.read(offset)
        except BusError as exc:
            raise SimDataAbort(str(exc)) from None

    def write(self, offset: int, value: int) -> None:
        self.accesses += 1
        try:
            self.model.write(offset, value)
        except BusError as exc:
            raise SimDataAbort(str(exc)) from None

    def accept(self, words: np.ndarray, last: bool) -> int:
        """MM2S beats: what the top takes (it ignores the input TLAST)."""
        taken = self.model.send(words)
        self.words_in += taken
        return taken

    def emit(self, limit: int) -> tuple[np.ndarray, bool]:
        """S2MM beats the top has ready, TLAST on a run's last word."""
        words, last = self.model.receive(limit)
        self.words_out += len(words)
        return words, last

    def ready(self) -> bool:
        return self.model.ready_words > 0


class _Channel:
    def __init__(self, name: str) -> None:
        self.name = name
        self.reset()

    def reset(self) -> None:
        self.dmacr = 0x0001_0002
        self.dmasr = 0x0001_0001  # halted
        self.addr = self.addr_msb = self.length = 0
        self.busy = False
        self.pos = 0

    @property
    def halted(self) -> bool:
        return bool(self.dmasr & 1)

    def fail(self, bit: int) -> None:
        self.dmasr |= bit | 0x4000 | 1  # error, Err_Irq, halted
        self.dmacr &= ~1
        self.busy = False

    def complete(self) -> None:
        self.busy = False
        self.dmasr |= 0x2 | 0x1000  # idle, IOC_Irq


class AxiDmaSim:
    """AXI DMA v7.1 in direct-register (simple) mode between the DDR and the accelerator."""

    def __init__(self, memory: SimMemory, accel: EchoAccelerator | ModelAccelerator, length_width: int) -> None:
        self.memory, self.accel = memory, accel
        self.length_mask = (1 << length_width) - 1
        self.mm2s, self.s2mm = _Channel("MM2S"), _Channel("S2MM")
        self._reset_countdown = 0
        self.accesses = 0

    def _channel(self, offset: int) -> tuple[_Channel | None, int]:
        if offset < 0x30:
            return self.mm2s, offset
        if offset < 0x60:
            return self.s2mm, offset - 0x30
        return None, offset

    def read(self, offset: int) -> int:
        self.accesses += 1
        ch, reg = self._channel(offset)
        if ch is None:
            return 0
        if reg == 0x00:
            return ch.dmacr | (0x4 if self._reset_countdown else 0)
        if reg == 0x04:
            return ch.dmasr
        if reg == 0x18:  # MM2S_SA / S2MM_DA
            return ch.addr
        if reg == 0x1C:
            return ch.addr_msb
        if reg == 0x28:
            return ch.length
        return 0

    def write(self, offset: int, value: int) -> None:
        self.accesses += 1
        ch, reg = self._channel(offset)
        if ch is None or self._reset_countdown:
            return
        if reg == 0x00:
            if value & 0x4:  # soft reset of the whole core; takes a couple of accesses
                self.mm2s.reset()
                self.s2mm.reset()
                self._reset_countdown = 2
                return
            was_running = bool(ch.dmacr & 1)
            ch.dmacr = (value & ~0x4) | 0x2
            if value & 1 and not was_running and not ch.dmasr & 0x70:
                ch.dmasr &= ~1
            elif not value & 1:
                ch.dmasr |= 1
                ch.busy = False
        elif reg == 0x04:
            ch.dmasr &= ~(value & 0x7000)  # IOC/Dly/Err_Irq: write 1 to clear
        elif reg == 0x18:
            ch.addr = value
        elif reg == 0x1C:
            ch.addr_msb = value
        elif reg == 0x28:
            length = value & self.length_mask
            if ch.halted or not length:
                return
            ch.length, ch.pos, ch.busy = length, 0, True
            ch.dmasr &= ~0x2

    def tick(self, beats: int) -> None:
        """Let each busy channel move up to ``beats`` words (MM2S first, then S2MM)."""
        if self._reset_countdown:
            self._reset_countdown -= 1
            return
        if self.mm2s.busy:
            self._tick_mm2s(beats)
        if self.s2mm.busy:
            self._tick_s2mm(beats)

    def _tick_mm2s(self, beats: int) -> None:
        ch = self.mm2s
        count = min(beats, -(-(ch.length - ch.pos) // 4))
        try:
            words = self.memory.read_words(ch.addr + ch.pos, count)
        except _DecodeError:
            return ch.fail(0x40)
        last = ch.pos + 4 * count >= ch.length
        taken = self.accel.accept(words, last)
        ch.pos += 4 * taken
        if taken == count and last:
            ch.complete()

    def _tick_s2mm(self, beats: int) -> None:
        ch = self.s2mm
        room = (ch.length - ch.pos) // 4
        if room <= 0:
            if self.accel.ready():  # the packet goes on past the buffer
                ch.fail(0x10)
            return
        words, last = self.accel.emit(min(beats, room))
        if not len(words):
            return
        try:
            self.memory.write_words(ch.addr + ch.pos, words)
        except _DecodeError:
            return ch.fail(0x40)
        ch.pos += 4 * len(words)
        if last:
            ch.length = ch.pos
            ch.complete()
        elif ch.pos >= ch.length and self.accel.ready():
            ch.fail(0x10)


def write_dummy_bit(path: Path, design: str = "remeco_wrapper", part: str = "7z020clg400") -> None:
    """Write a ``.bit`` with a valid Xilinx header and a few configuration words (no real bitstream)."""
    def field(key: bytes, text: str) -> bytes:
        data = text.encode("ascii") + b"\0"
        return key + struct.pack(">H", len(data)) + data

    payload = struct.pack(">8I", *([0xFFFFFFFF] * 4 + [0x000000BB, 0x11220044, 0xFFFFFFFF, 0xAA995566]))
    payload += struct.pack(">4I", 0x20000000, 0x20000000, 0x20000000, 0x20000000)  # NOOPs
    header = struct.pack(">H", 9) + bytes([0x0F, 0xF0] * 4 + [0x00]) + struct.pack(">H", 1)
    header += field(b"a", f"{design};UserID=0XFFFFFFFF;Version=2022.2")
    header += field(b"b", part) + field(b"c", "2026/11/22") + field(b"d", "09:00:00")
    Path(path).write_bytes(header + b"e" + struct.pack(">I", len(payload)) + payload)


class SimZynqDevice(pynq.Device):
    """A PYNQ-Z2-like Zynq-7000 for pynq: PS clocks, DDR, and the PL the ``.hwh`` describes."""

    _probe_priority_ = 7
    #: Makes the PL's accelerator at every download: :class:`EchoAccelerator` or, e.g.,
    #: ``lambda: ModelAccelerator(cfg)``.
    accelerator = EchoAccelerator

    @classmethod
    def _probe_(cls):
        return [cls()]

    def __init__(self) -> None:
        super().__init__("sim_zynq0")
        self.name = "sim-pynq-z2"
        self.arch = "armv7l"
        self.capabilities = {"REGISTER_RW": True, "MEMORY_MAPPED": False, "CALLABLE": False}
        self.timestamp = ""
        self.bitfile_name = ""
        self.memory = SimMemory(self)
        self.slcr = dict(_SLCR_RESET)
        self.regions: list[tuple[int, int, object]] = []  # (base, size, handler) of the loaded PL
        self.dma: AxiDmaSim | None = None
        self.accel: EchoAccelerator | ModelAccelerator | None = None
        self.downloads = 0
        self.bit_header: dict = {}

    # -- programming --------------------------------------------------------------------
    def get_bitfile_metadata(self, bitfile_name, partial: bool = False):
        from pynqmetadata.frontends import Metadata
        from pynqmetadata.views.runtime import RuntimeMetadataParser

        hwh = Path(bitfile_name).with_suffix(".hwh")
        if not hwh.is_file():
            raise RuntimeError("Unable to find metadata for bitstream")
        parser = RuntimeMetadataParser(Metadata(input=str(hwh)))
        parser.refresh_hierarchy_dict()
        return parser

    def download(self, bitstream, parser=None) -> None:
        from pynq.pl_server.embedded_device import parse_bit_header

        header = parse_bit_header(Path(bitstream.bitfile_name).read_bytes())
        if header["part"] != "7z020clg400":
            raise RuntimeError(f"bitstream is for {header['part']}, this is a 7z020clg400")
        parser = parser or self.get_bitfile_metadata(bitstream.bitfile_name)
        dma = accel = None
        regions = []
        for name, ip in parser.ip_dict.items():
            kind = str(ip.get("type", ""))
            if kind.startswith("xilinx.com:ip:axi_dma:"):
                params = ip["parameters"]
                if params.get("c_include_sg") != "0":
                    raise RuntimeError("the simulated AXI DMA supports direct-register mode only")
                dma = (ip, int(params["c_sg_length_width"]))
            elif kind == VLNV:
                accel = ip
        if dma is None or accel is None:
            raise RuntimeError(f"the .hwh has no AXI DMA or no accelerator of VLNV {VLNV}")
        self.accel = self.accelerator()
        self.dma = AxiDmaSim(self.memory, self.accel, dma[1])
        regions.append((dma[0]["phys_addr"], dma[0]["addr_range"], self.dma))
        regions.append((accel["phys_addr"], accel["addr_range"], self.accel))
        self.regions = regions
        self.bit_header = header
        self.downloads += 1
        self.post_download(bitstream, parser, self.name)

    # -- memory-mapped access (pynq's REGISTER_RW hook) -----------------------------------
    def _decode(self, address: int):
        if SLCR_BASE <= address < SLCR_BASE + SLCR_SIZE:
            return None, address - SLCR_BASE
        for base, size, handler in self.regions:
            if base <= address < base + size:
                return handler, address - base
        raise SimDataAbort(f"DECERR: nothing at {address:#010x}")

    def read_registers(self, address: int, length: int) -> bytes:
        if length != 4 or address % 4:
            raise SimDataAbort(f"unsupported access of {length} bytes at {address:#x}")
        handler, offset = self._decode(address)
        if self.dma is not None:
            self.dma.tick(BEATS_PER_ACCESS)
        value = self.slcr.get(offset, 0) if handler is None else handler.read(offset)
        return struct.pack("<I", value & 0xFFFFFFFF)

    def write_registers(self, address: int, data: bytes) -> None:
        if len(data) % 4 or address % 4:
            raise SimDataAbort(f"unsupported write of {len(data)} bytes at {address:#x}")
        for i in range(0, len(data), 4):
            (value,) = struct.unpack("<I", data[i:i + 4])
            handler, offset = self._decode(address + i)
            if handler is None:
                self.slcr[offset] = value
            else:
                handler.write(offset, value)
            if self.dma is not None:
                self.dma.tick(BEATS_PER_ACCESS)

    # -- buffers --------------------------------------------------------------------------
    @property
    def default_memory(self) -> SimMemory:
        return self.memory

    def flush(self, bo, offset, ptr, size) -> None:
        self.memory.sync(bo, offset, size, to_device=True)

    def invalidate(self, bo, offset, ptr, size) -> None:
        self.memory.sync(bo, offset, size, to_device=False)

    def fclk_mhz(self, index: int) -> float:
        """The PL clock ``index`` as the SLCR programs it (IO PLL source)."""
        ctrl = self.slcr[0x170 + 0x10 * index]
        fdiv = (self.slcr[0x108] >> 12) & 0x7F
        return 50.0 * fdiv / (((ctrl >> 8) & 0x3F) * ((ctrl >> 20) & 0x3F))

    def __repr__(self) -> str:
        return f"<SimZynqDevice {self.name}: {self.downloads} downloads, {self.memory.live} live buffers>"
