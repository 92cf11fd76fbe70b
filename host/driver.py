"""Synchronous, PYNQ-style host driver of the accelerator, written once over a small device.

The driver (:class:`Accelerator`) only talks to a :class:`Device`: 32-bit register reads
and writes at the offsets of :mod:`remeco.rtl.regmap` (the AXI4-Lite slave) and two
DMA-like calls, :meth:`Device.send` (MM2S, words into the fabric) and
:meth:`Device.receive` (S2MM, words out of it). :meth:`Device.configure` stands for
loading the overlay: the processing elements are elaborated for the mapped network (the
layer shapes and ADC shifts are elaboration parameters of :class:`remeco.rtl.pe.PE`).

Backends, chosen by name (:func:`make_device`):

``"model"``  :class:`ModelDevice`: the registers emulated in Python, the layer computed
             with :func:`remeco.models.emulation.emulate_matvec` on the (faulty) cell
             codes: the bit-exact contract, so :meth:`Accelerator.infer` equals
             ``remeco.models.network.infer(..., executor="emulation")``.
``"sim"``    Verilated RTL through a cocotb bridge (not available yet).
``"board"``  a PYNQ board (not available yet).

Work split (see :mod:`remeco.rtl.regmap`): the host does im2col, bias, ReLU,
requantization, pooling, layer sequencing and committee averaging
(:meth:`remeco.models.nn.QuantizedNetwork.forward_int` with the fabric as its
``matmul``); the fabric runs one layer slot at a time and returns the neurons'
accumulators. Every wait polls ``STATUS`` and raises :class:`TimeoutError` after
``timeout`` seconds.

Example::

    acc = Accelerator("model")
    acc.load(mapped, chip)
    acc.inject_faults(seed=7, rate=0.01, on_fraction=0.5)
    logits = acc.infer(images)
    print(acc.cycles)
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

import numpy as np

from ..models.emulation import emulate_matvec, round_shift, to_accumulator
from ..models.fault_lfsr import THRESHOLD_ONE, apply_fault_map, generate_fault_map, rate_threshold
from ..models.network import MappedNetwork, ProgrammedNetwork
from ..rtl import regmap
from ..rtl.regmap import STREAM_CODES, STREAM_FAULTS, STREAM_INPUTS, by_offset, lookup

__all__ = [
    "BACKENDS",
    "BusError",
    "Device",
    "ModelDevice",
    "make_device",
    "Accelerator",
    "expected_fault_maps",
]

BACKENDS = ("model", "sim", "board")

_MASK32 = 0xFFFFFFFF


def _off(name: str) -> int:
    return lookup(name).offset


def _bit(register: str, name: str) -> int:
    return lookup(register).field(name).mask


def _signed32(value: int) -> int:
    value &= _MASK32
    return value - (1 << 32) if value & 0x80000000 else value


class BusError(RuntimeError):
    """An AXI4-Lite access answered ``SLVERR`` (unknown offset or wrong direction)."""


@runtime_checkable
class Device(Protocol):
    """What the driver needs from a backend."""

    def configure(self, mapped: MappedNetwork) -> None:
        """Load the overlay for a mapped network (one layer slot per copy and layer)."""

    def write(self, offset: int, value: int) -> None:
        """32-bit register write (``BusError`` on ``SLVERR``)."""

    def read(self, offset: int) -> int:
        """32-bit register read (``BusError`` on ``SLVERR``)."""

    def send(self, words: np.ndarray) -> None:
        """MM2S DMA transfer of 32-bit words to ``STREAM_TARGET``."""

    def receive(self, count: int) -> np.ndarray:
        """S2MM DMA transfer of ``count`` 32-bit words (uint32); ``TimeoutError`` if
        the fabric does not deliver them."""


class ModelDevice:
    """The accelerator's registers and streams emulated on the bit-exact model.

    Cycle counter: an *estimate* (one cycle per register access and per stream word, and
    ``vectors * row_tiles * col_tiles * input_bits`` per layer run), not the RTL count.
    """

    def __init__(self) -> None:
        self._slots: list = []  # (MappedLayer, adc_shift)
        self._fmt = None
        self._regs = {r.offset: r.reset for r in regmap.REGISTERS}
        self._codes: list[np.ndarray | None] = []
        self._faults: list[np.ndarray] = []
        self._inputs: list[np.ndarray] = []
        self._out = np.zeros(0, dtype=np.uint32)
        self._cycles = 0
        self._latched_hi = 0

    # -- overlay ------------------------------------------------------------------
    def configure(self, mapped: MappedNetwork) -> None:
        if not isinstance(mapped, MappedNetwork):
            raise ValueError(f"mapped must be a MappedNetwork, got {type(mapped).__name__}")
        copies = 1 << mapped.plan.committee_log2
        self._fmt = mapped.fmt
        self._slots = [(layer, shift) for _ in range(copies) for layer, shift in zip(mapped.layers, mapped.adc_shifts)]
        self._codes = [None] * len(self._slots)
        self._faults = [
            np.zeros((m.row_tiles, m.col_tiles, self._fmt.rows, self._fmt.cols), dtype=np.uint8) for m, _ in self._slots
        ]
        self._soft_reset()
        self._regs = {r.offset: r.reset for r in regmap.REGISTERS}
        self._cycles = 0

    # -- registers ----------------------------------------------------------------
    def _soft_reset(self) -> None:
        self._inputs = []
        self._out = np.zeros(0, dtype=np.uint32)
        self._regs[_off("STATUS")] = 0
        self._regs[_off("ERROR_CODE")] = 0
        self._cycles = 0

    def _status(self, **bits: int) -> None:
        word = self._regs[_off("STATUS")]
        for name, on in bits.items():
            mask = _bit("STATUS", name)
            word = (word | mask) if on else (word & ~mask)
        self._regs[_off("STATUS")] = word

    def _fail(self, code: int) -> None:
        self._regs[_off("ERROR_CODE")] = code
        self._status(BUSY=0, DONE=1, ERROR=1)

    def write(self, offset: int, value: int) -> None:
        reg = by_offset(offset)
        if reg is None:
            raise BusError(f"SLVERR: no register at offset {offset:#x}")
        if reg.access == "ro":
            raise BusError(f"SLVERR: register {reg.name} at {offset:#x} is read-only")
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= _MASK32:
            raise ValueError(f"value must be a 32-bit unsigned integer, got {value!r}")
        self._cycles += 1
        value = int(value) & reg.mask
        if reg.name == "CONTROL":
            if value & _bit("CONTROL", "SOFT_RESET"):
                self._soft_reset()
            if value & _bit("CONTROL", "START"):
                self._run()
            return
        if reg.name == "FAULT_CONTROL":
            if value & _bit("FAULT_CONTROL", "CLEAR"):
                for f in self._faults:
                    f[...] = 0
            if value & _bit("FAULT_CONTROL", "GENERATE"):
                self._generate()
            value &= _bit("FAULT_CONTROL", "ENABLE")
        self._regs[offset] = value

    def read(self, offset: int) -> int:
        reg = by_offset(offset)
        if reg is None:
            raise BusError(f"SLVERR: no register at offset {offset:#x}")
        if reg.access == "wo":
            raise BusError(f"SLVERR: register {reg.name} at {offset:#x} is write-only")
        self._cycles += 1
        name = reg.name
        if name == "CYCLES_LO":
            self._latched_hi = (self._cycles >> 32) & _MASK32
            return self._cycles & _MASK32
        if name == "CYCLES_HI":
            return self._latched_hi
        if name == "LAYER_COUNT":
            return len(self._slots)
        slot = self._selected()
        if name.startswith("LAYER_") and name in _LAYER_INFO:
            return 0 if slot is None else _LAYER_INFO[name](*self._slots[slot], self._fmt)
        return self._regs[offset]

    def _selected(self) -> int | None:
        s = self._regs[_off("LAYER")]
        return s if s < len(self._slots) else None

    # -- streams ------------------------------------------------------------------
    def send(self, words: np.ndarray) -> None:
        w = np.asarray(words)
        if w.ndim != 1 or not np.issubdtype(w.dtype, np.integer):
            raise ValueError(f"words must be a 1-D integer array, got {w.dtype} {w.shape}")
        w = w.astype(np.int64) & _MASK32
        self._cycles += len(w)
        target = self._regs[_off("STREAM_TARGET")]
        slot = self._selected()
        if target == STREAM_INPUTS:
            self._inputs.append(w)
            return
        if slot is None:
            self._fail(3)
            return
        m, _ = self._slots[slot]
        shape = (m.row_tiles, m.col_tiles, self._fmt.rows, self._fmt.cols)
        if len(w) != int(np.prod(shape)):
            self._fail(2)
            return
        if target == STREAM_CODES:
            self._codes[slot] = np.where(w >= 1 << 31, w - (1 << 32), w).reshape(shape)
        elif target == STREAM_FAULTS:
            self._faults[slot] = (w & 3).astype(np.uint8).reshape(shape)
        else:
            self._fail(2)

    def receive(self, count: int) -> np.ndarray:
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise ValueError(f"count must be a non-negative integer, got {count!r}")
        if count > len(self._out):
            raise TimeoutError(f"S2MM transfer of {count} words did not complete: the fabric produced {len(self._out)}")
        out, self._out = self._out[:count], self._out[count:]
        self._cycles += count
        return out.copy()

    # -- the fabric -----------------------------------------------------------------
    def _run(self) -> None:
        self._status(BUSY=1, DONE=0, ERROR=0)
        self._regs[_off("ERROR_CODE")] = 0
        slot = self._selected()
        if slot is None:
            self._inputs = []
            return self._fail(3)
        if self._codes[slot] is None:
            self._inputs = []
            return self._fail(1)
        m, adc_shift = self._slots[slot]
        x = np.concatenate(self._inputs) if self._inputs else np.zeros(0, dtype=np.int64)
        self._inputs = []
        vectors = self._regs[_off("LAYER_VECTORS")]
        if len(x) != vectors * m.fan_in:
            return self._fail(2)
        codes = self._codes[slot]
        if self._regs[_off("FAULT_CONTROL")] & _bit("FAULT_CONTROL", "ENABLE"):
            codes = apply_fault_map(
                codes, self._faults[slot],
                _signed32(self._regs[_off("CODE_ON")]), _signed32(self._regs[_off("CODE_OFF")]),
            )
        fmt = self._fmt
        if np.any(x >= 1 << fmt.input_bits):
            return self._fail(2)
        z = emulate_matvec(x.reshape(vectors, m.fan_in), m, codes, adc_shift)
        acc = to_accumulator(z, fmt.code_frac).astype(np.int64)
        self._out = np.concatenate([self._out, (acc.reshape(-1) & _MASK32).astype(np.uint32)])
        self._cycles += vectors * m.row_tiles * m.col_tiles * fmt.input_bits
        self._status(BUSY=0, DONE=1)

    def _generate(self) -> None:
        if not self._slots:
            return
        maps = expected_fault_maps(
            [m for m, _ in self._slots], self._fmt, self._regs[_off("FAULT_SEED")],
            min(self._regs[_off("FAULT_RATE")], THRESHOLD_ONE),
            min(self._regs[_off("FAULT_ON_FRACTION")], THRESHOLD_ONE),
        )
        self._faults = maps
        self._cycles += sum(f.size for f in maps)


_LAYER_INFO = {
    "LAYER_FAN_IN": lambda m, s, fmt: m.fan_in,
    "LAYER_NEURONS": lambda m, s, fmt: m.neurons,
    "LAYER_ROW_TILES": lambda m, s, fmt: m.row_tiles,
    "LAYER_COL_TILES": lambda m, s, fmt: m.col_tiles,
    "LAYER_ADC_SHIFT": lambda m, s, fmt: s,
}


def expected_fault_maps(layers, fmt, seed: int, rate: int, on: int) -> list[np.ndarray]:
    """The maps the on-chip generator writes for layer slots ``layers`` (in slot order).

    One :func:`~remeco.models.fault_lfsr.generate_fault_map` run over all tiles of all
    slots (the generator state continues from slot to slot), split per slot into
    ``(row_tiles, col_tiles, rows, cols)``.
    """
    counts = [m.row_tiles * m.col_tiles for m in layers]
    flat = generate_fault_map(int(seed), int(rate), int(on), sum(counts), fmt.rows, fmt.cols)
    out, start = [], 0
    for m, n in zip(layers, counts):
        out.append(flat[start : start + n].reshape(m.row_tiles, m.col_tiles, fmt.rows, fmt.cols))
        start += n
    return out


def make_device(backend: str) -> Device:
    """A device for a backend name (see :data:`BACKENDS`)."""
    if backend == "model":
        return ModelDevice()
    if backend == "sim":
        raise ValueError(
            "backend 'sim' is not available yet: the Verilated AXI top and its cocotb bridge "
            "are not built; use backend 'model'"
        )
    if backend == "board":
        raise ValueError(
            "backend 'board' is not available yet: no PYNQ overlay (.bit/.hwh) of the AXI top "
            "exists; use backend 'model'"
        )
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


class Accelerator:
    """The accelerator, driven synchronously over a :class:`Device`.

    Parameters
    ----------
    device:
        A :class:`Device` or a backend name for :func:`make_device` (default ``"model"``).
    timeout:
        Seconds any wait on ``STATUS`` may take before ``TimeoutError``.
    """

    def __init__(self, device: Device | str = "model", *, timeout: float = 10.0) -> None:
        if isinstance(device, str):
            device = make_device(device)
        for method in ("configure", "write", "read", "send", "receive"):
            if not callable(getattr(device, method, None)):
                raise ValueError(f"device must implement {method}(), got {type(device).__name__}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.device = device
        self.timeout = float(timeout)
        self.mapped: MappedNetwork | None = None
        ident = device.read(_off("ID"))
        if ident != regmap.ID_VALUE:
            raise RuntimeError(f"device ID is {ident:#010x}, expected {regmap.ID_VALUE:#010x} (not a remeco accelerator)")

    # -- helpers ------------------------------------------------------------------
    def _wait(self, mask: int, value: int, what: str) -> int:
        """Poll ``STATUS`` until ``status & mask == value``; ``TimeoutError`` after ``timeout``."""
        deadline = time.monotonic() + self.timeout
        while True:
            status = self.device.read(_off("STATUS"))
            if status & mask == value:
                return status
            if time.monotonic() >= deadline:
                raise TimeoutError(f"timed out after {self.timeout:g} s waiting for {what} (STATUS={status:#x})")

    def _check_error(self, what: str) -> None:
        status = self.device.read(_off("STATUS"))
        if status & _bit("STATUS", "ERROR"):
            code = self.device.read(_off("ERROR_CODE"))
            raise RuntimeError(f"{what} failed: accelerator ERROR_CODE={code}")

    def _require_loaded(self) -> MappedNetwork:
        if self.mapped is None:
            raise RuntimeError("no network loaded: call load(mapped, programmed) first")
        return self.mapped

    # -- API ----------------------------------------------------------------------
    @property
    def cycles(self) -> int:
        """The 64-bit cycle counter (``CYCLES_LO`` latches ``CYCLES_HI``)."""
        lo = self.device.read(_off("CYCLES_LO"))
        hi = self.device.read(_off("CYCLES_HI"))
        return (hi << 32) | lo

    def reset(self) -> None:
        """Soft reset: status, cycle counter and stream state."""
        self.device.write(_off("CONTROL"), _bit("CONTROL", "SOFT_RESET"))

    def load(self, mapped: MappedNetwork, programmed: ProgrammedNetwork) -> None:
        """Configure the fabric for ``mapped`` and write the cell codes of chip ``programmed``."""
        if not isinstance(mapped, MappedNetwork):
            raise ValueError(f"mapped must be a MappedNetwork, got {type(mapped).__name__}")
        if not isinstance(programmed, ProgrammedNetwork):
            raise ValueError(f"programmed must be a ProgrammedNetwork, got {type(programmed).__name__}")
        copies = 1 << mapped.plan.committee_log2
        if len(programmed.codes) != copies or any(len(c) != len(mapped.layers) for c in programmed.codes):
            raise ValueError(
                f"programmed has {len(programmed.codes)} copies of {[len(c) for c in programmed.codes]} layers, "
                f"mapped needs {copies} copies of {len(mapped.layers)} layers"
            )
        fmt = mapped.fmt
        for c, codes in enumerate(programmed.codes):
            for i, (m, code) in enumerate(zip(mapped.layers, codes)):
                want = (m.row_tiles, m.col_tiles, fmt.rows, fmt.cols)
                if np.shape(code) != want:
                    raise ValueError(f"programmed copy {c} layer {i} codes have shape {np.shape(code)}, expected {want}")
        dev = self.device
        dev.configure(mapped)
        self.mapped = None
        count = dev.read(_off("LAYER_COUNT"))
        if count != copies * len(mapped.layers):
            raise RuntimeError(f"the fabric has {count} layer slots, the network needs {copies * len(mapped.layers)}")
        self.reset()
        dev.write(_off("FAULT_CONTROL"), _bit("FAULT_CONTROL", "CLEAR"))
        dev.write(_off("STREAM_TARGET"), STREAM_CODES)
        for c, codes in enumerate(programmed.codes):
            for i, code in enumerate(codes):
                dev.write(_off("LAYER"), c * len(mapped.layers) + i)
                dev.send((np.asarray(code, dtype=np.int64).reshape(-1) & _MASK32).astype(np.uint32))
                self._check_error(f"loading the codes of copy {c} layer {i}")
        dev.write(_off("STREAM_TARGET"), STREAM_INPUTS)
        self.mapped = mapped

    def inject_faults(
        self,
        seed: int,
        rate: float,
        on_fraction: float = 0.5,
        *,
        code_on: int | None = None,
        code_off: int | None = None,
    ) -> None:
        """Generate stuck-at faults on chip with the on-chip LFSR and enable them.

        Parameters
        ----------
        seed:
            32-bit generator seed.
        rate, on_fraction:
            Probabilities in ``[0, 1]``: fault rate and stuck-on share of the faults
            (thresholds :func:`~remeco.models.fault_lfsr.rate_threshold`).
        code_on, code_off:
            Codes read from stuck cells; default the ideal top and bottom levels
            ``(levels - 1) << code_frac`` and ``0``.
        """
        mapped = self._require_loaded()
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= _MASK32:
            raise ValueError(f"seed must be a 32-bit unsigned integer, got {seed!r}")
        thresholds = {}
        for name, p in (("rate", rate), ("on_fraction", on_fraction)):
            if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)) or not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
            thresholds[name] = rate_threshold(p)
        fmt = mapped.fmt
        codes = {"code_on": (fmt.levels - 1) << fmt.code_frac if code_on is None else code_on,
                 "code_off": 0 if code_off is None else code_off}
        for name, v in codes.items():
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not fmt.code_min <= v <= fmt.code_max:
                raise ValueError(f"{name} must be an integer in [{fmt.code_min}, {fmt.code_max}], got {v!r}")
        dev = self.device
        dev.write(_off("FAULT_SEED"), int(seed))
        dev.write(_off("FAULT_RATE"), thresholds["rate"])
        dev.write(_off("FAULT_ON_FRACTION"), thresholds["on_fraction"])
        dev.write(_off("CODE_ON"), int(codes["code_on"]) & _MASK32)
        dev.write(_off("CODE_OFF"), int(codes["code_off"]) & _MASK32)
        dev.write(_off("FAULT_CONTROL"), _bit("FAULT_CONTROL", "GENERATE") | _bit("FAULT_CONTROL", "ENABLE"))
        self._wait(_bit("STATUS", "GEN_BUSY"), 0, "the fault generator")

    def clear_faults(self) -> None:
        """Zero every fault map and disable fault application."""
        self._require_loaded()
        self.device.write(_off("FAULT_CONTROL"), _bit("FAULT_CONTROL", "CLEAR"))

    def run_layer(self, slot: int, rows: np.ndarray) -> np.ndarray:
        """Run layer slot ``slot`` on input vectors ``rows`` ``(R, fan_in)``: int64 accumulators ``(R, neurons)``."""
        mapped = self._require_loaded()
        m = mapped.layers[slot % len(mapped.layers)]
        x = np.asarray(rows)
        if x.ndim != 2 or x.shape[1] != m.fan_in or not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"rows must be integer (R, {m.fan_in}), got {x.dtype} {x.shape}")
        if x.size and (x.min() < 0 or x.max() >= 1 << mapped.fmt.input_bits):
            raise ValueError(f"rows must be in [0, {(1 << mapped.fmt.input_bits) - 1}]")
        dev = self.device
        dev.write(_off("LAYER"), slot)
        dev.write(_off("LAYER_VECTORS"), x.shape[0])
        dev.send(x.reshape(-1).astype(np.uint32))
        dev.write(_off("CONTROL"), _bit("CONTROL", "START"))
        self._wait(_bit("STATUS", "DONE"), _bit("STATUS", "DONE"), f"layer slot {slot}")
        self._check_error(f"layer slot {slot}")
        words = dev.receive(x.shape[0] * m.neurons)
        return np.asarray(words, dtype=np.uint32).view(np.int32).astype(np.int64).reshape(x.shape[0], m.neurons)

    def infer(self, images: np.ndarray, *, batch_size: int = 100) -> np.ndarray:
        """int32 logits ``(N, classes)`` of uint8 images ``(N, C, H, W)``.

        The host runs the integer network layer by layer with the fabric as its
        crossbar product; committee copies are averaged as in
        :func:`remeco.models.network.infer`.
        """
        mapped = self._require_loaded()
        net = mapped.network
        x = np.asarray(images)
        if x.dtype != np.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != tuple(net.input_shape):
            raise ValueError(f"images must be uint8 of shape (N, {tuple(net.input_shape)}), got {x.dtype} {x.shape}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        n_layers = len(mapped.layers)
        outputs = []
        for c in range(1 << mapped.plan.committee_log2):

            def matmul(index, layer, rows, c=c):
                return self.run_layer(c * n_layers + index, rows)

            outputs.append(net.forward_int(x, batch_size=int(batch_size), matmul=matmul).astype(np.int64))
        total = np.sum(outputs, axis=0)
        return round_shift(total, mapped.plan.committee_log2).astype(np.int32)
