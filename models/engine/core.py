"""The engine: a mapped network on a chip instance, evaluated fast and exactly.

Same inputs and the same int32 logits as the reference executor
(:func:`remeco.models.network.infer` with ``executor="emulation"``), for every plan and
any chip instance (faults, IR-drop, D2D enter only through the cell codes). Two paths:

``"native"``
    The fused C kernel (:mod:`.native`, ``kernel.c``): per input vector, bit planes made
    from the uint8 activations, exact int16 dot products on AVX-512 VNNI, ADC,
    shift-and-add, copy averaging by column index, slice recombination, offset
    correction, bias and requantization, all while the row's values are in registers
    or L1. Needs a CPU with AVX-512 VNNI and a C compiler at set-up.
``"torch"``
    Torch ops only (:mod:`.torch_ops`), on any torch device (``device="cuda"`` on a GPU
    machine): bit planes as float32 0/1 times float32 codes, exact because every
    column sum is an integer below 2**24; the rest in int64. Also the fallback when
    the kernel is unavailable.

im2col, max pooling and the committee average are those of the integer reference
network (:meth:`~remeco.models.quantized.QuantizedLayer.input_rows`,
:meth:`~remeco.models.quantized.QuantizedLayer.arrange_outputs`,
:func:`~remeco.models.emulation.round_shift`).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import sys
from dataclasses import dataclass

import numpy as np

from ..emulation import round_shift
from . import native
from .layout import (LUT_ROWS, amx_columns, amx_split, column_groups, lut_bytes, lut_tables, native_supported, pack_codes,
                     pack_codes_amx, tile_codes)

__all__ = ["ENGINES", "PATHS", "Engine", "PreparedChip", "infer", "resolve_path"]

#: Engine names a campaign accepts: the two fast paths and the reference executor.
ENGINES = ("native", "torch", "reference")
#: The fast paths of :class:`Engine`.
PATHS = ("native", "torch")

#: Largest column-sum table (bytes, as int32) of a layer for which the VNNI path sums table
#: entries of 8-row input patterns instead of running vpdpwssd per row pair (the table
#: should stay in the core's L2 cache); entries are int16 where every sum fits (half the
#: footprint). ``REMECO_NO_LUT=1`` turns the tables off, ``REMECO_LUT_I32=1`` keeps int32
#: entries. The same logits either way.
LUT_MAX_BYTES = 1 << 20

_WARNED: set[str] = set()
#: Environment variable naming the warnings this process (or the one that started it) has
#: printed: pool workers inherit it, so a fallback said once by the caller is not said
#: again by every worker (``--workers 8`` printed the same line eight times).
ENV_WARNED = "REMECO_ENGINE_WARNED"


def _warn_once(message: str) -> None:
    if message in _WARNED:
        return
    _WARNED.add(message)
    key = hashlib.sha256(message.encode()).hexdigest()[:12]
    said = [k for k in os.environ.get(ENV_WARNED, "").split(",") if k]
    if key in said:
        return
    os.environ[ENV_WARNED] = ",".join([*said, key])
    print(f"remeco engine: {message}", file=sys.stderr)


def resolve_path(path: str, mapped=None) -> str:
    """The path that will actually run: ``"native"`` falls back to ``"torch"`` (one warning line).

    Parameters
    ----------
    path:
        ``"native"`` or ``"torch"``.
    mapped:
        Optional :class:`~remeco.models.network.MappedNetwork`; a network the kernel
        cannot hold exactly (e.g. 16-bit inputs) also falls back.
    """
    if path not in PATHS:
        raise ValueError(f"engine path must be one of {PATHS}, got {path!r}")
    if path == "torch":
        return path
    try:
        native.load()
    except native.KernelUnavailable as exc:
        _warn_once(f"fused kernel unavailable ({exc}); using the torch path")
        return "torch"
    if mapped is not None:
        for i, (layer, shift) in enumerate(zip(mapped.layers, mapped.adc_shifts)):
            why = native_supported(layer, shift)
            if why:
                _warn_once(f"layer {i}: {why}; using the torch path")
                return "torch"
    return "native"


class _NativeLayer:
    """One layer of one chip instance, ready for the kernel (keeps its arrays alive)."""

    def __init__(self, mapped_layer, quantized_layer, adc_shift: int, codes: np.ndarray, groups, isa: str,
                 columns) -> None:
        fmt = mapped_layer.fmt
        self.isa = isa
        self.amx = isa == "amx"
        if self.amx:
            self.packed, self.tile_off = pack_codes_amx(mapped_layer, codes, columns, amx_split(fmt))
        else:
            self.packed, self.tile_off = pack_codes(mapped_layer, codes, columns.perm)
        self.groups = groups
        self.bias = np.ascontiguousarray(quantized_layer.bias, dtype=np.int32)
        self.neurons = mapped_layer.neurons
        self.relu = bool(quantized_layer.relu)
        s = native.LayerStruct()
        s.K = mapped_layer.fan_in
        s.rows = fmt.rows
        s.row_tiles = mapped_layer.row_tiles
        s.PB = -(-mapped_layer.physical_columns // 16)
        s.input_bits = fmt.input_bits
        s.adc_shift = adc_shift
        s.adc_max = fmt.adc_max
        s.N = mapped_layer.neurons
        s.n_slices = fmt.n_slices
        s.slice_bits = fmt.slice_bits
        s.code_frac = fmt.code_frac
        s.mode = 2 if self.relu else 1
        s.weight_offset = fmt.weight_offset
        s.multiplier = int(quantized_layer.multiplier) if self.relu else 0
        s.shift = int(quantized_layer.shift) if self.relu else 0
        # Both ISAs read the column order and copy tables of layout.amx_columns.
        self.columns = columns
        s.Npad = columns.npad
        s.ep_k, s.ep_half = native.pointer(columns.k), native.pointer(columns.half)
        s.n_extra = len(columns.ex_col)
        s.ex_dst, s.ex_col = native.pointer(columns.ex_dst), native.pointer(columns.ex_col)
        if self.amx:
            s.split = amx_split(fmt)
            s.wa, s.wa_off = native.pointer(self.packed), native.pointer(self.tile_off)
        else:
            s.w = native.pointer(self.packed)
            s.tile_off = native.pointer(self.tile_off)
            if lut_bytes(mapped_layer) <= LUT_MAX_BYTES and not os.environ.get("REMECO_NO_LUT"):
                self.lut, self.lut_off = lut_tables(mapped_layer, self.packed, self.tile_off)
                if self.lut.size and -(1 << 15) <= self.lut.min() and self.lut.max() < 1 << 15 and not os.environ.get("REMECO_LUT_I32"):
                    self.lut = self.lut.astype(np.int16)  # half the cache footprint, the same sums
                s.lut_rows, s.lut_i16 = LUT_ROWS, int(self.lut.dtype == np.int16)
                s.lut, s.lut_off = native.pointer(self.lut), native.pointer(self.lut_off)
        s.grp_start = native.pointer(groups.start)
        s.grp_cols = native.pointer(groups.cols)
        s.grp_k = native.pointer(groups.k)
        s.bias = native.pointer(self.bias)
        self.q = quantized_layer
        # Conv layers with ReLU gather their patches and pool inside the kernel.
        self.images = quantized_layer.kind == "conv" and self.relu
        self.output_shape = tuple(quantized_layer.output_shape)
        if self.images:
            c, h, w = quantized_layer.input_shape
            s.conv, s.C, s.H, s.W = 1, c, h, w
            s.kernel, s.stride, s.padding = quantized_layer.kernel, quantized_layer.stride, quantized_layer.padding
            s.Ho, s.Wo = quantized_layer.positions
            s.pool = quantized_layer.pool
        self.struct = s

    def forward(self, lib, x: np.ndarray, index: int) -> np.ndarray:
        """One batch through the layer: images ``(n, C, H, W)`` (conv) or ``(n, K)`` (dense) uint8.

        Returns the next layer's uint8 activations ``(n, *output_shape)``, or the
        last layer's int32 logits ``(n, N)``.
        """
        x = np.ascontiguousarray(x, dtype=np.uint8)
        n = len(x)
        if self.images:
            out = np.empty((n, *self.output_shape), dtype=np.uint8)
        else:
            x = np.ascontiguousarray(self.q.input_rows(x))
            out = np.empty((len(x), self.neurons), dtype=np.uint8 if self.relu else np.int32)
        call = lib.remeco_layer_images_amx if self.amx else lib.remeco_layer_images_vnni
        bad = ctypes.c_int64(-1)
        status = call(ctypes.byref(self.struct), x.ctypes.data, n if self.images else len(x), out.ctypes.data,
                      ctypes.byref(bad))
        if status == 1:
            raise OverflowError(f"layer {index}: accumulator outside int32")
        if status == 4:
            raise ValueError(f"layer {index}: inputs must be in [0, {(1 << self.struct.input_bits) - 1}]")
        if status:
            raise RuntimeError(f"layer {index}: fused kernel failed: {native.STATUS.get(status, status)}")
        if self.images or not self.relu:
            return out.reshape(n, -1) if not self.relu else out
        return self.q.arrange_outputs(out, n)


@dataclass(frozen=True)
class PreparedChip:
    """A chip instance's codes in the form one engine path consumes.

    Attributes
    ----------
    path:
        ``"native"`` or ``"torch"``.
    copies:
        Per committee copy, per layer, the path's prepared layer.
    """

    path: str
    copies: tuple[tuple[object, ...], ...]


class Engine:
    """Evaluates one mapped network on any of its chip instances.

    Parameters
    ----------
    mapped:
        The :class:`~remeco.models.network.MappedNetwork`.
    path:
        ``"native"`` (default; falls back to ``"torch"`` with one warning line when
        the kernel cannot run here) or ``"torch"``.
    device:
        Torch device for the torch path (``"cpu"``, ``"cuda"``, ...); default CPU.
    isa:
        Native path only: ``"amx"`` (AMX-INT8 tiles), ``"vnni"`` (AVX-512 VNNI) or None
        (default: AMX where the CPU and the operating system offer it). Both give the
        same logits; asking for ``"amx"`` where it cannot run is a ``ValueError``.
    """

    def __init__(self, mapped, path: str = "native", device: str | None = None, isa: str | None = None) -> None:
        self.mapped = mapped
        self.path = resolve_path(path, mapped)
        self.device = device
        if device not in (None, "cpu") and self.path == "native":
            self.path = "torch"  # an explicit device asks for the torch path
        self._groups = [column_groups(layer) for layer in mapped.layers]
        if isa not in (None, "amx", "vnni"):
            raise ValueError(f"isa must be 'amx', 'vnni' or None, got {isa!r}")
        self.isa = None
        if self.path == "native":
            fits = all(amx_split(layer.fmt) is not None for layer in mapped.layers)
            if isa == "amx" and not (native.amx_available() and fits):
                raise ValueError("the AMX-INT8 path cannot run here (CPU, operating system or code width)")
            self.isa = isa or ("amx" if native.amx_available() and fits else "vnni")
        self._columns = ([amx_columns(layer, g) for layer, g in zip(mapped.layers, self._groups)]
                         if self.path == "native" else [None] * len(mapped.layers))

    def prepare(self, codes) -> PreparedChip:
        """Prepare a chip instance: ``codes[c][layer]`` as in
        :attr:`~remeco.models.network.ProgrammedNetwork.codes` (or the ProgrammedNetwork)."""
        codes = getattr(codes, "codes", codes)
        net = self.mapped.network
        copies = []
        for per_layer in codes:
            if len(per_layer) != len(self.mapped.layers):
                raise ValueError(f"chip has {len(per_layer)} layers, the network {len(self.mapped.layers)}")
            if self.path == "native":
                layers = tuple(
                    _NativeLayer(m, q, shift, c, g, self.isa, a)
                    for m, q, shift, c, g, a in zip(self.mapped.layers, net.layers, self.mapped.adc_shifts, per_layer,
                                                    self._groups, self._columns)
                )
            else:
                from .torch_ops import TorchLayer

                layers = tuple(
                    TorchLayer(m, q, shift, tile_codes(m, c), g, self.device)
                    for m, q, shift, c, g in zip(self.mapped.layers, net.layers, self.mapped.adc_shifts, per_layer,
                                                 self._groups)
                )
            copies.append(layers)
        if len(copies) != 1 << self.mapped.plan.committee_log2:
            raise ValueError(f"chip has {len(copies)} committee copies, the plan {1 << self.mapped.plan.committee_log2}")
        return PreparedChip(self.path, tuple(copies))

    def infer(self, images: np.ndarray, chip, *, batch_size: int = 128) -> np.ndarray:
        """int32 logits ``(N, classes)`` of ``images`` (uint8 ``(N, C, H, W)``) on a chip instance.

        ``chip`` is a :class:`PreparedChip` or anything :meth:`prepare` accepts.
        """
        if not isinstance(chip, PreparedChip):
            chip = self.prepare(chip)
        net = self.mapped.network
        images = np.asarray(images)
        if images.dtype != np.uint8 or tuple(images.shape[1:]) != net.input_shape:
            raise ValueError(f"images must be uint8 of shape (N, {net.input_shape}), got {images.dtype} {images.shape}")
        if len(images) == 0:
            return np.zeros((0, net.num_classes), np.int32)
        if chip.path == "torch":
            from .torch_ops import forward_network

            total = sum(forward_network(net, layers, images, batch_size, self.device).astype(np.int64)
                        for layers in chip.copies)
        else:
            lib = native.load()
            total = 0
            for layers in chip.copies:
                outs = []
                for start in range(0, len(images), batch_size):
                    x = images[start : start + batch_size]
                    for index, layer in enumerate(layers):
                        x = layer.forward(lib, x, index)
                    outs.append(x)
                total = total + np.concatenate(outs).astype(np.int64)
        return round_shift(total, self.mapped.plan.committee_log2).astype(np.int32)


def infer(mapped, images: np.ndarray, programmed, *, engine: str = "native", device: str | None = None,
          batch_size: int = 128) -> np.ndarray:
    """Logits of a mapped network on one chip instance with the named engine.

    ``engine="reference"`` runs :func:`remeco.models.network.infer` (the readable
    executor); ``"native"`` / ``"torch"`` run :class:`Engine`. All three give the same
    int32 logits.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "reference":
        from ..network import infer as reference_infer

        return reference_infer(mapped, images, executor="emulation", programmed=programmed)
    return Engine(mapped, engine, device).infer(images, programmed, batch_size=batch_size)
