"""Synchronous host driver of the accelerator top (register map 2.0), written once over a small device.

Work split (see :mod:`remeco.rtl.regmap`)
    The fabric runs one layer *run* at a time: the crossbar product with run-time
    stuck-at faults, ADC, shift-and-add, copy averaging, slice recombination and offset
    correction (:func:`remeco.models.fabric.run_layer`), returning every neuron's int32
    accumulator. The host does the rest of
    :meth:`remeco.models.nn.QuantizedNetwork.forward_int` with the fabric as its
    ``matmul``: im2col, bias, ReLU, requantization, pooling, layer sequencing, and the
    committee average (:func:`remeco.models.emulation.round_shift`), exactly as
    :func:`remeco.models.network.infer` does.

Device (:class:`~remeco.host.device.Device`, in its own module so backends need not import the driver)
    What the driver needs from a backend: 32-bit AXI4-Lite ``read``/``write`` at the
    offsets of :mod:`remeco.rtl.regmap` (:class:`BusError` on ``SLVERR``) and one DMA call,
    ``stream(words, receive)``, which arms an S2MM receive of ``receive`` words, sends
    ``words`` on MM2S and returns what came back (:class:`TimeoutError` if either side
    does not complete). Stream word formats and memory layouts: :mod:`remeco.models.fabric`.

Backends, by name (:func:`make_device`)
    ``"model"``  :class:`ModelDevice`, the accelerator top emulated in NumPy by the rules
                 of the regmap docstring; bit-exact with ``network.infer(executor="emulation")``.
    ``"sim"``    the Verilated RTL (:meth:`remeco.host.sim.SimDevice.for_fabric`).
    ``"board"``  a PYNQ board (:class:`remeco.host.board.PynqDevice`).

:class:`Accelerator` reads the capacities (``CAP_*``) back, places every layer of every
committee copy in the fabric's memories (:func:`remeco.models.fabric.plan_memory`),
loads codes and column descriptors, injects faults on chip (or loads explicit fault
maps) and runs inference. Every wait polls ``STATUS`` against a deadline and raises
:class:`TimeoutError` naming what it waited for; a command the fabric rejects raises
:class:`AcceleratorError` with its ``ERROR_CODE``.

This module and what it imports need NumPy only (no torch, no SciPy), so it runs on a board
image; :mod:`remeco.models.network` is imported for its plain-data classes.

Example::

    from remeco.host.driver import Accelerator
    from remeco.models.fabric import FabricConfig

    with Accelerator("model", cfg=FabricConfig(fmt=mapped.fmt)) as acc:
        acc.load(mapped, chip)
        acc.inject_faults(seed=7, rate=0.01)
        logits = acc.infer(images)
        maps = acc.fault_maps(seed=7, rate=0.01)  # reproduce the faulty chip offline
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from ..models.emulation import EmulationFormat, round_shift
from ..models.fabric import (
    FabricConfig,
    LayerPlacement,
    MemoryPlan,
    descriptor_words,
    layer_code_words,
    memory_fault_map,
    output_words,
    pack_codes,
    pack_faults,
    pack_inputs,
    plan_memory,
    run_layer,
    unpack_codes,
    unpack_faults,
    unpack_outputs,
)
from ..models.fault_lfsr import THRESHOLD_ONE, rate_threshold
from ..models.faults import STUCK_ON_FRACTION
from ..rtl import regmap
from ..rtl.regmap import STREAM_CODES, STREAM_DESCRIPTORS, STREAM_FAULTS, STREAM_INPUTS, by_offset, lookup

from ..models.network import MappedNetwork, ProgrammedNetwork
from .device import BusError, Device  # the backends' contract; re-exported: it was defined here

__all__ = [
    "BACKENDS",
    "DEFAULT_TIMEOUT",
    "MAX_RUN_WORDS",
    "BusError",
    "AcceleratorError",
    "Device",
    "ModelDevice",
    "make_device",
    "Accelerator",
]

BACKENDS = ("model", "sim", "board")
#: Seconds any single wait of the driver may take by default, per backend: on sim, the first
#: layer's DMA round for a batch of 100 images moves about 700,000 words at ~25 us each.
DEFAULT_TIMEOUT = {"model": 10.0, "sim": 300.0, "board": 10.0}
#: Largest input or output word count of one run; :meth:`Accelerator.run_layer` splits above it.
MAX_RUN_WORDS = 1 << 22

_MASK32 = 0xFFFFFFFF
# What this driver speaks; captured at import so a device is compared with it.
_ID_VALUE = regmap.ID_VALUE
_VERSION_MAJOR = regmap.VERSION_VALUE >> 16


def _off(name: str) -> int:
    return lookup(name).offset


def _bit(register: str, name: str) -> int:
    return lookup(register).field(name).mask


def _is_int(v: object) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, np.integer))


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


class AcceleratorError(RuntimeError):
    """The accelerator set ``STATUS.ERROR``; :attr:`code` is its ``ERROR_CODE``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# -- the model backend ------------------------------------------------------------------


@dataclasses.dataclass
class _Run:
    """A run's ``LAYER_*`` registers and fault settings as latched at ``START``, and its progress."""

    fan_in: int
    columns: int
    neurons: int
    code_base: int
    desc_base: int
    adc_shift: int
    vectors: int
    faults: bool
    code_on: int
    code_off: int
    groups_left: int
    pending: np.ndarray  # input words of the group being received
    stuck: str = ""  # why the run can never finish (the hardware would stay busy)


class ModelDevice:
    """The accelerator top emulated in NumPy, by the rules of the :mod:`remeco.rtl.regmap` docstring.

    A run's outputs are :func:`remeco.models.fabric.run_layer` of the memory contents,
    computed as soon as a group of ``vector_lanes`` vectors has arrived. The model has
    no clock: ``GEN_BUSY`` is never seen set and the cycle counter stays 0. A stream
    round that cannot complete raises :class:`TimeoutError` at once (nothing would
    change while waiting), naming the cause.

    Where the regmap docstring is silent the model follows the RTL
    (:mod:`remeco.rtl.top`): while ``BUSY`` every MM2S word is a run input whatever
    ``STREAM_TARGET`` says; ``ENABLE``, ``CODE_ON`` and ``CODE_OFF`` are latched at
    ``START``; ``SOFT_RESET`` together with ``START`` only resets; ``CLEAR`` together
    with ``GENERATE`` only clears; a load word beyond a memory still advances
    ``LOAD_ADDRESS``; input bytes use their low ``input_bits``.

    Parameters
    ----------
    cfg:
        Elaboration parameters (``CAP_*`` registers, memory sizes, numeric format).

    Members
    -------
    code_memory:
        ``(code_words, column_lanes)`` int32 cell codes.
    fault_memory:
        ``(code_words, column_lanes)`` uint8 fault entries (0..3).
    desc_memory:
        ``(desc_words,)`` uint32 column descriptors.
    """

    def __init__(self, cfg: FabricConfig = FabricConfig()) -> None:
        if not isinstance(cfg, FabricConfig):
            raise ValueError(f"cfg must be a FabricConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        lanes = cfg.column_lanes
        self.code_memory = np.zeros((cfg.code_words, lanes), dtype=np.int32)
        self.fault_memory = np.zeros((cfg.code_words, lanes), dtype=np.uint8)
        self.desc_memory = np.zeros(cfg.desc_words, dtype=np.uint32)
        self._regs = {r.name: r.reset for r in regmap.REGISTERS if r.access == "rw"}
        self._closed = False
        self._cycles_hi = 0
        self._soft_reset()

    # -- registers --------------------------------------------------------------------
    def _soft_reset(self) -> None:
        self._busy = self._done = self._error = False
        self._error_code = 0
        self._pair = np.zeros(0, dtype=np.int64)  # stream words of the code word being assembled
        self._run: _Run | None = None
        self._out = np.zeros(0, dtype=np.uint32)
        self._out_left = 0  # output words of the run not yet taken by S2MM; TLAST on the last

    def _fail(self, code: int) -> None:
        self._error, self._error_code = True, code

    def _register(self, offset: int) -> regmap.Register:
        if self._closed:
            raise RuntimeError("device is closed")
        if not _is_int(offset):
            raise ValueError(f"offset must be an integer, got {offset!r}")
        reg = by_offset(int(offset))
        if reg is None:
            raise BusError(f"SLVERR: no register at offset {int(offset):#x}")
        return reg

    def read(self, offset: int) -> int:
        """32-bit register read; ``BusError`` for an unknown offset, 0 for a write-only register."""
        reg = self._register(offset)
        if reg.access == "wo":
            return 0
        cfg = self.cfg
        name = reg.name
        if name == "STATUS":
            return int(self._busy) | int(self._done) << 1 | int(self._error) << 2  # GEN_BUSY: never seen
        if name == "CYCLES_LO":
            self._cycles_hi = 0  # no clock: the counter stays 0
            return 0
        fixed = {
            "ID": regmap.ID_VALUE,
            "VERSION": regmap.VERSION_VALUE,
            "ERROR_CODE": self._error_code,
            "CYCLES_HI": self._cycles_hi,
            "CAP_CODE_WORDS": cfg.code_words,
            "CAP_DESC_WORDS": cfg.desc_words,
            "CAP_COLUMN_LANES": cfg.column_lanes,
            "CAP_VECTOR_LANES": cfg.vector_lanes,
            "CAP_MAX_FAN_IN": cfg.max_fan_in,
            "CAP_TILE_ROWS": cfg.fmt.rows,
            "CAP_FORMAT": cfg.format_word(),
        }
        value = fixed[name] if name in fixed else self._regs[name]
        return int(value) & reg.mask

    def write(self, offset: int, value: int) -> None:
        """32-bit register write; ``BusError`` for an unknown offset or a read-only register."""
        reg = self._register(offset)
        if not _is_int(value) or not 0 <= value <= _MASK32:
            raise ValueError(f"value must be a 32-bit unsigned integer, got {value!r}")
        if reg.access == "ro":
            raise BusError(f"SLVERR: register {reg.name} at {reg.offset:#x} is read-only (write ignored)")
        value = int(value) & reg.mask
        if reg.name == "CONTROL":
            if value & _bit("CONTROL", "SOFT_RESET"):
                self._soft_reset()  # wins over a START in the same write
            elif value & _bit("CONTROL", "START"):
                self._start()
            return
        if reg.name == "FAULT_CONTROL":
            self._regs["FAULT_CONTROL"] = value & _bit("FAULT_CONTROL", "ENABLE")  # commands self-clear
            generate = bool(value & _bit("FAULT_CONTROL", "GENERATE"))
            clear = bool(value & _bit("FAULT_CONTROL", "CLEAR"))
            if generate or clear:
                self._fault_command(generate, clear)
            return
        self._regs[reg.name] = value
        if reg.name == "LOAD_ADDRESS":
            self._pair = np.zeros(0, dtype=np.int64)

    def _fault_command(self, generate: bool, clear: bool) -> None:
        if self._busy:
            return self._fail(regmap.ERR_BUSY)
        words = self._regs["FAULT_WORDS"]
        if generate and words > self.cfg.code_words:
            return self._fail(regmap.ERR_BAD_RUN)
        if clear:
            self.fault_memory[...] = 0
            return
        rate = min(self._regs["FAULT_RATE"], THRESHOLD_ONE)  # a threshold above 65536 is "always" too
        on = min(self._regs["FAULT_ON_FRACTION"], THRESHOLD_ONE)
        self.fault_memory[:words] = memory_fault_map(self._regs["FAULT_SEED"], rate, on, words, self.cfg)

    def _start(self) -> None:
        if self._busy:
            return self._fail(regmap.ERR_BUSY)
        cfg, r = self.cfg, self._regs
        k, p, n, v = r["LAYER_FAN_IN"], r["LAYER_COLUMNS"], r["LAYER_NEURONS"], r["LAYER_VECTORS"]
        blocks = -(-p // cfg.column_lanes)
        ok = (
            1 <= k <= cfg.max_fan_in
            and p >= 1
            and n >= 1
            and v >= 1
            and r["LAYER_CODE_BASE"] + blocks * k <= cfg.code_words
            and r["LAYER_DESC_BASE"] + p <= cfg.desc_words
            and r["STREAM_TARGET"] == STREAM_INPUTS
        )
        if not ok:
            return self._fail(regmap.ERR_BAD_RUN)
        bits = cfg.fmt.code_bits
        self._busy, self._done, self._error, self._error_code = True, False, False, 0
        self._run = _Run(
            fan_in=k, columns=p, neurons=n, code_base=r["LAYER_CODE_BASE"], desc_base=r["LAYER_DESC_BASE"],
            adc_shift=r["LAYER_ADC_SHIFT"], vectors=v,
            faults=bool(r["FAULT_CONTROL"] & _bit("FAULT_CONTROL", "ENABLE")),
            code_on=_signed(r["CODE_ON"], bits), code_off=_signed(r["CODE_OFF"], bits),
            groups_left=-(-v // cfg.vector_lanes), pending=np.zeros(0, dtype=np.int64),
        )
        self._out = np.zeros(0, dtype=np.uint32)
        self._out_left = -(-v // cfg.vector_lanes) * cfg.vector_lanes * n

    # -- streams ----------------------------------------------------------------------
    def stream(self, words: np.ndarray, receive: int = 0, *, timeout: float = 10.0) -> np.ndarray:
        """One DMA round (see :class:`Device`); ``TimeoutError`` naming the cause if it cannot complete."""
        w = self._check_words(words)
        if not _is_int(receive) or receive < 0:
            raise ValueError(f"receive must be a non-negative integer, got {receive!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        held, why_held = self._accept(w)
        got, _ = self._take(int(receive))
        if held:
            raise TimeoutError(f"MM2S transfer incomplete: {held} of {len(w)} words held off ({why_held})")
        if len(got) < receive:
            raise TimeoutError(f"S2MM transfer incomplete: {len(got)} of {receive} words received ({self._why_silent()})")
        return got.astype(np.uint32)

    def send(self, words: np.ndarray) -> int:
        """The MM2S side alone (``s_axis``): offer ``words``, return how many the top accepts.

        The rest would be held off (``TREADY`` low) until something changes, e.g. a run
        starts. With :meth:`receive` and :attr:`ready_words` this lets a bus model (the
        simulated Zynq's AXI DMA in ``tests/board_env``) move words beat by beat;
        :meth:`stream` is both sides at once.
        """
        w = self._check_words(words)
        held, _ = self._accept(w)
        return len(w) - held

    def receive(self, count: int) -> tuple[np.ndarray, bool]:
        """The S2MM side alone (``m_axis``): take up to ``count`` output words that are ready.

        Returns the uint32 words and whether the last of them carries ``TLAST`` (the
        run's last output word).
        """
        if self._closed:
            raise RuntimeError("device is closed")
        if not _is_int(count) or count < 0:
            raise ValueError(f"count must be a non-negative integer, got {count!r}")
        return self._take(int(count))

    @property
    def ready_words(self) -> int:
        """Output words the top holds ready for S2MM (``TVALID`` while nonzero)."""
        return len(self._out)

    def _check_words(self, words: np.ndarray) -> np.ndarray:
        if self._closed:
            raise RuntimeError("device is closed")
        w = np.asarray(words)
        if w.ndim != 1 or (w.size and not np.issubdtype(w.dtype, np.integer)):
            raise ValueError(f"words must be a 1-D integer array, got {w.dtype} {w.shape}")
        w = w.astype(np.int64)
        if w.size and (w.min() < 0 or w.max() > _MASK32):
            raise ValueError("words must be 32-bit unsigned integers")
        return w

    def _take(self, count: int) -> tuple[np.ndarray, bool]:
        """Pop up to ``count`` output words; the run ends (``DONE``) once its last word is taken."""
        got, self._out = self._out[:count], self._out[count:]
        last = bool(len(got)) and self._out_left == len(got)
        self._out_left = max(self._out_left - len(got), 0)
        self._settle()
        return got.astype(np.uint32), last

    def _why_silent(self) -> str:
        run = self._run
        if run is None:
            return "no run is busy"
        if run.stuck:
            return f"the run stays busy: {run.stuck}"
        missing = run.groups_left * run.fan_in - len(run.pending)
        return f"the run still waits for {missing} input words"

    def _settle(self) -> None:
        run = self._run
        if run is not None and not run.stuck and run.groups_left == 0 and not len(self._out):
            self._busy, self._done, self._run = False, True, None

    def _accept(self, w: np.ndarray) -> tuple[int, str]:
        """Take MM2S words; return how many are held off and why."""
        if not len(w):
            return 0, ""
        if self._busy:
            run = self._run
            need = run.groups_left * run.fan_in - len(run.pending)
            self._feed(w[:need])
            return max(len(w) - need, 0), f"the run took the {need} input words it still needed"
        target = self._regs["STREAM_TARGET"]
        if target == STREAM_INPUTS:
            return len(w), "STREAM_TARGET=0 and no run is busy"
        cfg = self.cfg
        if target == STREAM_CODES:
            words = np.concatenate([self._pair, w])
            n = len(words) // cfg.words_per_code_word
            cut = n * cfg.words_per_code_word
            self._pair = words[cut:]
            self._store(self.code_memory, unpack_codes(words[:cut], cfg))
        elif target == STREAM_FAULTS:
            self._store(self.fault_memory, unpack_faults(w, cfg))
        else:
            self._store(self.desc_memory, w)
        return 0, ""

    def _store(self, memory: np.ndarray, rows: np.ndarray) -> None:
        """Write ``rows`` from ``LOAD_ADDRESS`` on; words beyond the memory are dropped (``ERROR_CODE = 2``)."""
        n = len(rows)
        if not n:
            return
        start = self._regs["LOAD_ADDRESS"]
        addr = (start + np.arange(n, dtype=np.int64)) & _MASK32
        inside = addr < len(memory)
        memory[addr[inside]] = rows[inside]
        if not inside.all():
            self._fail(regmap.ERR_LOAD_RANGE)
        self._regs["LOAD_ADDRESS"] = (start + n) & _MASK32

    def _feed(self, w: np.ndarray) -> None:
        """Input words of the busy run: every complete group of vectors is computed at once."""
        run, cfg = self._run, self.cfg
        words = np.concatenate([run.pending, w])
        groups = len(words) // run.fan_in
        run.pending = words[groups * run.fan_in :]
        run.groups_left -= groups
        if not groups or run.stuck:
            return
        vl = cfg.vector_lanes
        lanes = words[: groups * run.fan_in].reshape(groups, run.fan_in, 1) >> (8 * np.arange(vl, dtype=np.int64))
        x = (lanes & ((1 << cfg.fmt.input_bits) - 1)).transpose(0, 2, 1).reshape(groups * vl, run.fan_in)
        blocks = -(-run.columns // cfg.column_lanes)
        code = slice(run.code_base, run.code_base + blocks * run.fan_in)
        try:
            acc = run_layer(
                x, self.code_memory[code], self.fault_memory[code] if run.faults else None,
                self.desc_memory[run.desc_base : run.desc_base + run.columns],
                run.neurons, run.adc_shift, cfg, run.code_on, run.code_off,
            )
        except ValueError as exc:  # descriptors that never close the run: the hardware stays busy
            run.stuck = str(exc)
            return
        out = (acc.reshape(groups, vl, run.neurons).transpose(0, 2, 1).reshape(-1) & _MASK32).astype(np.uint32)
        self._out = np.concatenate([self._out, out])

    def close(self) -> None:
        """Release the model (later accesses raise ``RuntimeError``)."""
        self._closed = True


def make_device(backend: str, **kwargs) -> Device:
    """A device for a backend name in :data:`BACKENDS`; ``kwargs`` go to its constructor."""
    if backend == "model":
        return ModelDevice(**kwargs)
    if backend == "sim":
        from .sim import SimDevice

        return SimDevice.for_fabric(**kwargs)
    if backend == "board":
        from .board import PynqDevice

        return PynqDevice(**kwargs)
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


# -- the driver -------------------------------------------------------------------------


def _check_instance(arg: str, value: object, cls: type) -> None:
    if not isinstance(value, cls):
        raise ValueError(f"{arg} must be a {cls.__name__}, got {type(value).__name__}")


def _to_tiles(words: np.ndarray, mapped, cfg: FabricConfig) -> np.ndarray:
    """Inverse of :func:`~remeco.models.fabric.layer_code_words`: memory words -> tile layout (padding 0)."""
    fmt = mapped.fmt
    k, p, lanes = mapped.fan_in, mapped.physical_columns, cfg.column_lanes
    blocks = -(-p // lanes)
    full = np.zeros((mapped.row_tiles * fmt.rows, mapped.col_tiles * fmt.cols), dtype=words.dtype)
    full[:k, :p] = words.reshape(blocks, k, lanes).transpose(1, 0, 2).reshape(k, blocks * lanes)[:, :p]
    return full.reshape(mapped.row_tiles, fmt.rows, mapped.col_tiles, fmt.cols).transpose(0, 2, 1, 3).copy()


class Accelerator:
    """The accelerator, driven synchronously over a :class:`Device`.

    Parameters
    ----------
    device:
        A :class:`Device`, or a backend name for :func:`make_device` (default ``"model"``).
    timeout:
        Seconds any wait (``STATUS`` polls, stream rounds) may take before ``TimeoutError``;
        default :data:`DEFAULT_TIMEOUT` of the backend (that of ``"board"`` for a device).
    device_kwargs:
        Passed to :func:`make_device` with a backend name, e.g. ``cfg=FabricConfig(...)``.

    Members
    -------
    device:
        The device.
    config:
        :class:`~remeco.models.fabric.FabricConfig` from the ``CAP_*`` registers; its
        ``fmt`` is the numeric format the fabric was built for (``CAP_TILE_ROWS``, ``CAP_FORMAT``; ``cols = rows``).
    mapped, programmed, plan:
        The loaded network, chip instance and :class:`~remeco.models.fabric.MemoryPlan`
        (``None`` before :meth:`load`).
    """

    def __init__(self, device: Device | str = "model", *, timeout: float | None = None, **device_kwargs) -> None:
        if timeout is None:
            timeout = DEFAULT_TIMEOUT.get(device, DEFAULT_TIMEOUT["board"]) if isinstance(device, str) else DEFAULT_TIMEOUT["board"]
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        owned = isinstance(device, str)
        if owned:
            device = make_device(device, **device_kwargs)
        elif device_kwargs:
            raise ValueError(f"device_kwargs {sorted(device_kwargs)} only apply with a backend name")
        for method in ("read", "write", "stream", "close"):
            if not callable(getattr(device, method, None)):
                raise ValueError(f"device must implement {method}(), got {type(device).__name__}")
        self.device = device
        self.timeout = float(timeout)
        self.mapped: MappedNetwork | None = None
        self.programmed: ProgrammedNetwork | None = None
        self.plan: MemoryPlan | None = None
        try:
            self.config = self._identify()
        except BaseException:
            if owned:
                device.close()
            raise

    def _identify(self) -> FabricConfig:
        dev = self.device
        ident = dev.read(_off("ID"))
        if ident != _ID_VALUE:
            raise RuntimeError(f"device ID is {ident:#010x}, expected {_ID_VALUE:#010x} ('RMCO'): not a remeco accelerator")
        version = dev.read(_off("VERSION"))
        if version >> 16 != _VERSION_MAJOR:
            raise RuntimeError(
                f"the accelerator has register map {version >> 16}.{version & 0xFFFF}, this driver speaks "
                f"{_VERSION_MAJOR}.x: rebuild the bitstream or use the driver of that version"
            )
        caps = {name: dev.read(_off(f"CAP_{name.upper()}")) for name in
                ("code_words", "desc_words", "column_lanes", "vector_lanes", "max_fan_in", "tile_rows", "format")}
        rows, word = caps.pop("tile_rows"), caps.pop("format")
        try:
            fmt, max_k = FabricConfig.format_from_word(word, rows)
            return FabricConfig(fmt=fmt, max_copies_log2=max_k, **caps)
        except ValueError as exc:
            raise RuntimeError(f"the accelerator reports capacities the driver cannot use ({exc}): {caps}") from exc

    # -- plumbing ---------------------------------------------------------------------
    def __enter__(self) -> Accelerator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the device."""
        self.device.close()

    def _write(self, name: str, value: int) -> None:
        self.device.write(_off(name), int(value) & _MASK32)

    def _wait(self, mask: int, value: int, what: str) -> int:
        """Poll ``STATUS`` until ``status & mask == value``; ``TimeoutError`` naming ``what`` after ``timeout``."""
        deadline = time.monotonic() + self.timeout
        while True:
            status = self.device.read(_off("STATUS"))
            if status & mask == value:
                return status
            if time.monotonic() >= deadline:
                raise TimeoutError(f"timed out after {self.timeout:g} s waiting for {what} (STATUS={status:#x})")

    def _check_error(self, what: str) -> None:
        if self.device.read(_off("STATUS")) & _bit("STATUS", "ERROR"):
            code = self.device.read(_off("ERROR_CODE"))
            meaning = regmap.error_meaning(code)
            raise AcceleratorError(f"{what} failed: ERROR_CODE={code} ({meaning})", code)

    def _stream(self, words: np.ndarray, receive: int, what: str) -> np.ndarray:
        try:
            return self.device.stream(words, receive, timeout=self.timeout)
        except TimeoutError as exc:
            raise TimeoutError(f"{what}: {exc}") from exc

    def _require_loaded(self) -> MappedNetwork:
        if self.mapped is None:
            raise RuntimeError("no network loaded: call load(mapped, programmed) first")
        return self.mapped

    def _clear_fault_memory(self) -> None:
        self._write("FAULT_CONTROL", _bit("FAULT_CONTROL", "CLEAR"))
        self._wait(_bit("STATUS", "GEN_BUSY"), 0, "the fault-map clear")
        self._check_error("clearing the fault map")

    def _load_memory(self, target: int, what: str, blocks) -> None:
        """Stream ``(copy, layer, address, words)`` blocks to memory ``target``, then back to inputs."""
        self._write("STREAM_TARGET", target)
        for c, i, address, words in blocks:
            self._write("LOAD_ADDRESS", address)
            label = f"loading the {what} of copy {c} layer {i}"
            self._stream(words, 0, label)
            self._check_error(label)
        self._write("STREAM_TARGET", STREAM_INPUTS)

    def _placements(self):
        for c, row in enumerate(self.plan.layers):
            for i, place in enumerate(row):
                yield c, i, place

    # -- API --------------------------------------------------------------------------
    @property
    def cycles(self) -> int:
        """The 64-bit cycle counter: cycles spent in runs since the last :meth:`reset`."""
        lo = self.device.read(_off("CYCLES_LO"))  # latches the high word
        hi = self.device.read(_off("CYCLES_HI"))
        return (hi << 32) | lo

    def reset(self) -> None:
        """Soft reset: abort a run, clear status, error, cycle counter and stream state."""
        self._write("CONTROL", _bit("CONTROL", "SOFT_RESET"))

    def load(self, mapped: MappedNetwork, programmed: ProgrammedNetwork) -> None:
        """Place every (copy, layer) of ``mapped`` in the fabric and load the codes of chip ``programmed``.

        Writes codes and column descriptors, clears the fault map (faults off) and sets
        ``FAULT_WORDS`` to the code words used. ``ValueError`` if the network does not fit.
        """
        _check_instance("mapped", mapped, MappedNetwork)
        _check_instance("programmed", programmed, ProgrammedNetwork)
        fmt = mapped.fmt
        built = dataclasses.replace(self.config.fmt, cols=fmt.cols)  # the fabric is tile-width agnostic
        if fmt != built:
            diff = {k: (v, getattr(built, k)) for k, v in fmt.to_dict().items() if getattr(built, k) != v}
            raise ValueError(
                "mapped: the network's numeric format differs from the one the fabric was built for "
                "(CAP_TILE_ROWS / CAP_FORMAT): " + ", ".join(f"{k} {a} vs {b}" for k, (a, b) in diff.items())
            )
        try:
            cfg = dataclasses.replace(self.config, fmt=fmt)
        except ValueError as exc:
            raise ValueError(f"mapped: the network's format does not fit the fabric: {exc}") from exc
        copies = 1 << mapped.plan.committee_log2
        plan = plan_memory(mapped.layers, mapped.adc_shifts, copies, cfg)
        for m in mapped.layers:
            for name, v in (("columns", m.physical_columns), ("neurons", m.neurons)):
                width = lookup(f"LAYER_{name.upper()}").width
                if v >= 1 << width:
                    raise ValueError(f"mapped: a layer has {v} {name}, LAYER_{name.upper()} holds {width} bits")
        shape = [len(c) for c in programmed.codes]
        if shape != [len(mapped.layers)] * copies:
            raise ValueError(
                f"programmed has copies of {shape} layers, mapped needs {copies} copies of {len(mapped.layers)} layers"
            )
        code_words = []
        for c, codes in enumerate(programmed.codes):
            for i, (m, code) in enumerate(zip(mapped.layers, codes)):
                want = (m.row_tiles, m.col_tiles, fmt.rows, fmt.cols)
                if np.shape(code) != want:
                    raise ValueError(f"programmed copy {c} layer {i}: codes have shape {np.shape(code)}, expected {want}")
                try:
                    code_words.append(pack_codes(layer_code_words(code, m, cfg), cfg))
                except ValueError as exc:
                    raise ValueError(f"programmed copy {c} layer {i}: {exc}") from exc
        self.mapped = self.programmed = self.plan = None
        self.reset()
        self.config, self.plan = cfg, plan
        self._load_memory(STREAM_CODES, "codes", (
            (c, i, place.code_base, words) for (c, i, place), words in zip(self._placements(), code_words)))
        self._load_memory(STREAM_DESCRIPTORS, "descriptors", (
            (c, i, place.desc_base, descriptor_words(mapped.layers[i])) for c, i, place in self._placements()))
        self._clear_fault_memory()
        self._write("FAULT_WORDS", plan.code_words)
        self._check_error("loading the network")
        self.mapped, self.programmed = mapped, programmed

    def _thresholds(self, seed: int, rate: float, on_fraction: float) -> tuple[int, int, int]:
        if not _is_int(seed) or not 0 <= seed <= _MASK32:
            raise ValueError(f"seed must be a 32-bit unsigned integer, got {seed!r}")
        out = [int(seed)]
        for name, p in (("rate", rate), ("on_fraction", on_fraction)):
            if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)) or not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
            out.append(rate_threshold(p))
        return tuple(out)

    def _stuck_codes(self, code_on: int | None, code_off: int | None) -> None:
        fmt = self._require_loaded().fmt
        codes = {"code_on": (fmt.levels - 1) << fmt.code_frac if code_on is None else code_on,
                 "code_off": 0 if code_off is None else code_off}
        for name, v in codes.items():
            if not _is_int(v) or not fmt.code_min <= v <= fmt.code_max:
                raise ValueError(f"{name} must be an integer in [{fmt.code_min}, {fmt.code_max}], got {v!r}")
        self._write("CODE_ON", codes["code_on"])
        self._write("CODE_OFF", codes["code_off"])

    def inject_faults(
        self,
        seed: int,
        rate: float,
        on_fraction: float = STUCK_ON_FRACTION,
        *,
        code_on: int | None = None,
        code_off: int | None = None,
    ) -> None:
        """Generate stuck-at faults with the on-chip generator and enable them.

        Parameters
        ----------
        seed:
            32-bit generator seed (0 acts as 1).
        rate, on_fraction:
            Probabilities in ``[0, 1]``: fault rate and stuck-on share of the faults
            (:func:`~remeco.models.fault_lfsr.rate_threshold`); the share defaults to the
            chip model's (:data:`remeco.models.faults.STUCK_ON_FRACTION`).
        code_on, code_off:
            Codes read from stuck cells; default the ideal top and bottom levels
            ``(levels - 1) << code_frac`` and ``0``.
        """
        seed, rate_t, on_t = self._thresholds(seed, rate, on_fraction)
        self._stuck_codes(code_on, code_off)
        self._write("FAULT_SEED", seed)
        self._write("FAULT_RATE", rate_t)
        self._write("FAULT_ON_FRACTION", on_t)
        self._write("FAULT_WORDS", self.plan.code_words)
        self._write("FAULT_CONTROL", _bit("FAULT_CONTROL", "GENERATE") | _bit("FAULT_CONTROL", "ENABLE"))
        self._wait(_bit("STATUS", "GEN_BUSY"), 0, "the fault generator")
        self._check_error("generating the fault map")

    def fault_maps(self, seed: int, rate: float, on_fraction: float = STUCK_ON_FRACTION) -> list[list[np.ndarray]]:
        """The maps :meth:`inject_faults` produces on chip, ``maps[copy][layer]`` in tile layout.

        Each is ``(row_tiles, col_tiles, rows, cols)`` uint8 of ``{0, 1, 3}`` (padding 0),
        so ``network.infer`` on ``apply_fault_map(codes, map, code_on, code_off)``
        reproduces the faulty chip.
        """
        self._require_loaded()
        seed, rate_t, on_t = self._thresholds(seed, rate, on_fraction)
        words = memory_fault_map(seed, rate_t, on_t, self.plan.code_words, self.config)
        maps = [[None] * len(row) for row in self.plan.layers]
        for c, i, place in self._placements():
            block = words[place.code_base : place.code_base + place.code_words]
            maps[c][i] = _to_tiles(block, self.mapped.layers[i], self.config)
        return maps

    def load_fault_maps(self, maps, *, code_on: int | None = None, code_off: int | None = None) -> None:
        """Write explicit fault maps ``maps[copy][layer]`` (tile layout, entries ``{0, 1, 3}``) and enable them.

        ``code_on`` and ``code_off`` as in :meth:`inject_faults`.
        """
        mapped = self._require_loaded()
        cfg = self.config
        shape = [len(row) for row in maps] if isinstance(maps, (list, tuple)) else None
        if shape != [len(row) for row in self.plan.layers]:
            raise ValueError(f"maps must be maps[copy][layer] for {len(self.plan.layers)} copies of {len(mapped.layers)} layers")
        words = []
        for c, i, _ in self._placements():
            m = mapped.layers[i]
            f = np.asarray(maps[c][i])
            want = (m.row_tiles, m.col_tiles, cfg.fmt.rows, cfg.fmt.cols)
            if f.shape != want or not np.issubdtype(f.dtype, np.integer):
                raise ValueError(f"maps[{c}][{i}] must be an integer array of shape {want}, got {f.dtype} {f.shape}")
            if not np.isin(f, (0, 1, 3)).all():
                raise ValueError(f"maps[{c}][{i}] entries must be 0 (healthy), 1 (stuck off) or 3 (stuck on)")
            words.append(pack_faults(layer_code_words(f, m, cfg), cfg))
        self._stuck_codes(code_on, code_off)
        self._load_memory(STREAM_FAULTS, "fault map", (
            (c, i, place.code_base, w) for (c, i, place), w in zip(self._placements(), words)))
        self._write("FAULT_CONTROL", _bit("FAULT_CONTROL", "ENABLE"))

    def clear_faults(self) -> None:
        """Zero the fault map and stop applying it."""
        self._clear_fault_memory()

    def run_layer(self, copy: int, layer: int, rows: np.ndarray) -> np.ndarray:
        """Layer ``layer`` of committee copy ``copy`` on inputs ``rows`` ``(R, fan_in)``: int64 ``(R, neurons)``.

        Rows are split into runs of at most :data:`MAX_RUN_WORDS` input and output words.
        """
        mapped = self._require_loaded()
        copies, n_layers = len(self.plan.layers), len(mapped.layers)
        if not _is_int(copy) or not 0 <= copy < copies:
            raise ValueError(f"copy must be in [0, {copies}), got {copy!r}")
        if not _is_int(layer) or not 0 <= layer < n_layers:
            raise ValueError(f"layer must be in [0, {n_layers}), got {layer!r}")
        place: LayerPlacement = self.plan.layers[copy][layer]
        x = np.asarray(rows)
        top = (1 << self.config.fmt.input_bits) - 1
        if x.ndim != 2 or x.shape[1] != place.fan_in or not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"rows must be an integer (R, {place.fan_in}) array, got {x.dtype} {x.shape}")
        if x.size and (x.min() < 0 or x.max() > top):
            raise ValueError(f"rows must be in [0, {top}]")
        vl = self.config.vector_lanes
        per_run = vl * max(1, min(MAX_RUN_WORDS // place.fan_in, MAX_RUN_WORDS // (vl * place.neurons)))
        out = [np.zeros((0, place.neurons), dtype=np.int64)]
        for lo in range(0, len(x), per_run):
            out.append(self._run(copy, layer, place, x[lo : lo + per_run]))
        return np.concatenate(out)

    def _run(self, copy: int, layer: int, place: LayerPlacement, x: np.ndarray) -> np.ndarray:
        what = f"the run of copy {copy} layer {layer}"
        for name, value in (
            ("LAYER_FAN_IN", place.fan_in), ("LAYER_COLUMNS", place.columns), ("LAYER_NEURONS", place.neurons),
            ("LAYER_CODE_BASE", place.code_base), ("LAYER_DESC_BASE", place.desc_base),
            ("LAYER_ADC_SHIFT", place.adc_shift), ("LAYER_VECTORS", len(x)),
        ):
            self._write(name, value)
        self._write("CONTROL", _bit("CONTROL", "START"))
        self._check_error(f"starting {what}")
        cfg = self.config
        words = self._stream(pack_inputs(x, cfg), output_words(len(x), place.neurons, cfg), what)
        self._wait(_bit("STATUS", "DONE") | _bit("STATUS", "BUSY"), _bit("STATUS", "DONE"), what)
        return unpack_outputs(words, len(x), place.neurons, cfg)

    def infer(self, images: np.ndarray, *, batch_size: int = 100) -> np.ndarray:
        """int32 logits ``(N, classes)`` of uint8 images ``(N, C, H, W)``, as ``network.infer`` computes them.

        Every committee copy runs the integer network with the fabric as its crossbar
        product; the copies' logits are averaged with ``round_shift``.
        """
        mapped = self._require_loaded()
        net = mapped.network
        x = np.asarray(images)
        if x.dtype != np.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != tuple(net.input_shape):
            raise ValueError(f"images must be uint8 of shape (N, {tuple(net.input_shape)}), got {x.dtype} {x.shape}")
        if not _is_int(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        outputs = []
        for c in range(len(self.plan.layers)):

            def matmul(index, layer, rows, c=c):
                return self.run_layer(c, index, rows)

            outputs.append(net.forward_int(x, batch_size=int(batch_size), matmul=matmul).astype(np.int64))
        return round_shift(np.sum(outputs, axis=0), mapped.plan.committee_log2).astype(np.int32)
