"""A chip instance: programming a mapped layer onto physical, non-ideal crossbars.

Everything random about a chip instance comes from ``(seed, instance)`` only (see
:mod:`remeco.models.random`): the wire resistance of the instance's circuit model, and per
device the stuck-at state and the device-to-device variation met while programming.

Paired chip instances: a device is keyed by its *logical position* (layer, committee
copy, copy of the neuron, slice, neuron, row), not by where a plan's layout puts it
(:func:`layer_draws`). So on one chip instance the first copy of every weight is the same
device under every redundancy plan, each redundant copy has its own device (the same one
in every plan that has that copy), and the difference between two plans on an instance
is the plans' effect, not a new chip's. What still depends on the layout is physics:
the IR-drop a cell sees at its place in its crossbar, and the padding cells.

Programming a layer gives, per tile, the programmed conductances
and the *transfer matrix* ``T`` (effective conductance of every cell including IR-drop and
sneak paths, :class:`remeco.models.crossbar.NodalCrossbar`), from which the physics model
computes currents and the emulation model takes its integer cell codes.

Wire resistance: ReMeCo draws the source-line and bit-line resistance of every circuit
model from N(mu = 2 ohm, sigma^2 = 0.5 ohm^2) (paper text; its Table 2 writes sigma = 0.5,
selectable with ``wire_std``). One draw for word lines and one for bit lines per chip
instance, truncated at ``wire_min`` so that a segment never has a non-physical resistance.
"""

from __future__ import annotations

import hashlib
import math
import os
import weakref
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .crossbar import NodalCrossbar, fast_transfer_stack
from .device import D2DParams, DeviceDraws, DeviceParams, clear_draw_cache, draw_devices, program_drawn
from .emulation import EmulationFormat, quantize_codes
from .faults import STUCK_AT_RATE, STUCK_ON_FRACTION
from .random import rng_for

__all__ = ["ChipParams", "ProgrammedLayer", "DEVICE_KEYING", "wire_resistances", "layer_draws", "program_layer", "program_layers",
           "ideal_transfer",
           "clear_tile_cache", "set_tile_cache_size", "set_outcome_cache_bytes"]

_IR_METHODS = ("exact", "fast", "none")


@dataclass(frozen=True)
class ChipParams:
    """Non-idealities of a chip (plain data, JSON-friendly via :meth:`to_dict`).

    Attributes
    ----------
    device:
        Device parameters (levels, conductance range, Yakopcic dynamics, write-verify).
    stuck_at_rate:
        Fraction of devices stuck (ReMeCo: 1 %).
    stuck_on_fraction:
        Of the stuck devices, the fraction stuck at on / LRS (ReMeCo: 83.8 %).
    d2d_sigma:
        Relative standard deviation of the device-to-device variation of A_p / A_n.
    write_verify:
        Program with write-and-verify (True, the paper's assumption) or open loop.
    wire_mean, wire_std:
        Per-segment wire resistance distribution in ohms (see module docstring).
    wire_resistance:
        If set, a fixed per-segment resistance for both line kinds (DSE sweeps).
    wire_min:
        Lower truncation of drawn resistances (ohms).
    ir_drop:
        ``"exact"`` (nodal analysis), ``"fast"`` (approximation) or ``"none"``.
    datapath:
        Tile size, weight slices, input and ADC bits, cell codes
        (:class:`~remeco.models.emulation.EmulationFormat`); what a network is mapped with
        on this chip. ``device.levels`` must equal ``2**datapath.slice_bits``.

    The defaults are the ReMeCo paper's chip (preset ``"paper"``). A configuration is a
    file: :meth:`load` reads a preset name or a JSON / TOML file, :meth:`save` writes one
    (format in :mod:`remeco.models.chipfile`).
    """

    device: DeviceParams = field(default_factory=DeviceParams)
    stuck_at_rate: float = STUCK_AT_RATE
    stuck_on_fraction: float = STUCK_ON_FRACTION
    d2d_sigma: float = 0.1
    write_verify: bool = True
    wire_mean: float = 2.0
    wire_std: float = math.sqrt(0.5)
    wire_resistance: float | None = None
    wire_min: float = 0.0
    ir_drop: str = "fast"
    datapath: EmulationFormat = field(default_factory=EmulationFormat)

    def __post_init__(self) -> None:
        for name in ("stuck_at_rate", "stuck_on_fraction"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise ValueError(f"{name} must be in [0, 1], got {v!r}")
        for name in ("d2d_sigma", "wire_mean", "wire_std", "wire_min"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite value >= 0, got {v!r}")
        if self.wire_resistance is not None and not (
            math.isfinite(self.wire_resistance) and self.wire_resistance >= 0
        ):
            raise ValueError(f"wire_resistance must be None or a finite value >= 0, got {self.wire_resistance!r}")
        if self.ir_drop not in _IR_METHODS:
            raise ValueError(f"ir_drop must be one of {_IR_METHODS}, got {self.ir_drop!r}")

    @classmethod
    def ideal(cls, device: DeviceParams | None = None) -> "ChipParams":
        """No faults, no variation, no wire resistance."""
        return cls(
            device=device or DeviceParams(),
            stuck_at_rate=0.0,
            d2d_sigma=0.0,
            wire_resistance=0.0,
            ir_drop="none",
        )

    def with_(self, **changes) -> "ChipParams":
        """A copy with some fields changed (validated)."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain-data view."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, origin: str = "chip parameters") -> "ChipParams":
        """Inverse of :meth:`to_dict`; keys left out take their defaults, the metadata keys
        ``name`` and ``source`` are ignored.

        Raises
        ------
        remeco.models.chipfile.ChipConfigError
            One line naming ``origin`` and the first unknown key, value of a wrong type or
            out of range (a ``ValueError``).
        """
        from .chipfile import METADATA, ChipConfigError, check_chip_dict

        data = check_chip_dict(cls, data, origin, nested={"device": DeviceParams, "datapath": EmulationFormat})
        data = {k: v for k, v in data.items() if k not in METADATA}
        try:
            device = DeviceParams(**data.pop("device", {}))
        except ValueError as exc:
            raise ChipConfigError(f"{origin}: device.{exc}") from None
        try:
            datapath = EmulationFormat(**data.pop("datapath", {}))
        except ValueError as exc:
            raise ChipConfigError(f"{origin}: datapath.{exc}") from None
        if device.levels != datapath.levels:
            raise ChipConfigError(f"{origin}: device.levels ({device.levels}) must equal 2**datapath.slice_bits "
                                  f"({datapath.levels})")
        try:
            return cls(device=device, datapath=datapath, **data)
        except ValueError as exc:
            raise ChipConfigError(f"{origin}: {exc}") from None

    @classmethod
    def load(cls, source: str | os.PathLike) -> "ChipParams":
        """A chip from a preset name (``"paper"``, ``"isaac"``) or a ``.json`` / ``.toml`` file.

        Raises
        ------
        remeco.models.chipfile.ChipConfigError
            One line: unknown preset, unreadable or invalid file, unknown key, bad value.
        """
        from .chipfile import read_chip_file

        data, origin = read_chip_file(source)
        return cls.from_dict(data, origin)

    def save(self, path: str | os.PathLike, *, source: str | None = None) -> None:
        """Write this chip to ``path``, JSON or TOML by its suffix (``source``: an optional
        note on where the numbers come from, kept as metadata)."""
        import json
        from pathlib import Path

        from .chipfile import ChipConfigError, to_toml

        path = Path(path)
        data = ({"source": source} if source else {}) | self.to_dict()
        if path.suffix.lower() == ".json":
            text = json.dumps(data, indent=2) + "\n"
        elif path.suffix.lower() == ".toml":
            text = to_toml(data, "remeco chip configuration (remeco.models.chipfile)")
        else:
            raise ChipConfigError(f"chip file {path}: the name must end in .json or .toml")
        path.write_text(text, encoding="utf-8")

    def describe(self) -> str:
        """One line with the parameters a reader of a result needs."""
        d, dev = self.datapath, self.device
        wires = (f"{self.wire_resistance:g} ohm" if self.wire_resistance is not None
                 else f"N({self.wire_mean:g}, {self.wire_std:.3g}) ohm")
        return (f"stuck-at {100 * self.stuck_at_rate:g} % ({100 * self.stuck_on_fraction:g} % on), "
                f"D2D {self.d2d_sigma:g}, {'write-and-verify' if self.write_verify else 'open-loop'}, "
                f"wires {wires}, IR-drop {self.ir_drop}, {d.rows}x{d.cols} tiles, "
                f"{d.n_slices}x{d.slice_bits}-bit cells ({dev.levels} levels), {d.adc_bits}-bit ADC, "
                f"{d.input_bits}-bit inputs")


@dataclass(frozen=True)
class ProgrammedLayer:
    """One layer of one chip instance after programming (plain data).

    Attributes
    ----------
    transfer:
        Effective conductances ``(row_tiles, col_tiles, rows, cols)`` in siemens.
    conductance:
        Programmed device conductances (after stuck-at override), same shape.
    fault_map:
        int8, 0 healthy, +1 stuck-at-on, -1 stuck-at-off, same shape.
    pulses:
        Programming pulses per device, same shape (write energy).
    r_word_line, r_bit_line:
        Per-segment wire resistances of this instance (ohms).
    """

    transfer: np.ndarray
    conductance: np.ndarray
    fault_map: np.ndarray
    pulses: np.ndarray
    r_word_line: float
    r_bit_line: float

    def codes(self, device: DeviceParams, fmt: EmulationFormat) -> np.ndarray:
        """Integer cell codes for the emulation model / RTL."""
        return quantize_codes(self.transfer, device.g_off, device.g_on, fmt)


def network_datapath_problem(params: ChipParams) -> str | None:
    """Why a chip cannot run remeco's 8-bit networks, or None: its device levels must match
    the datapath's slices, and its inputs carry the networks' uint8 codes bit-serially
    (narrower inputs fail deep in the mapping)."""
    fmt = params.datapath
    if params.device.levels != fmt.levels:
        return f"device.levels ({params.device.levels}) must equal 2**datapath.slice_bits ({fmt.levels})"
    if fmt.input_bits < 8:
        return (f"datapath.input_bits ({fmt.input_bits}) must be >= 8: the network's inputs and activations "
                "are 8-bit codes")
    return None


def wire_resistances(params: ChipParams, *, seed: int, instance: int) -> tuple[float, float]:
    """Per-segment (word line, bit line) resistance of one chip instance, in ohms."""
    if params.wire_resistance is not None:
        return float(params.wire_resistance), float(params.wire_resistance)
    r = rng_for(seed, instance, "wires").normal(params.wire_mean, params.wire_std, size=2)
    r = np.maximum(r, params.wire_min)
    return float(r[0]), float(r[1])


def ideal_transfer(levels: np.ndarray, device: DeviceParams) -> np.ndarray:
    """Transfer matrix of an ideal crossbar: the level conductances themselves."""
    return device.level_conductance(levels)


# Programmed tiles of this process, keyed by everything that determines them: identical
# work (a committee's copy 0 and the base plan, plans that map a layer like the base)
# is done once. Entries hold read-only arrays: (conductance, fault_map, pulses, transfer).
_TILE_CACHE: OrderedDict = OrderedDict()
_TILE_CACHE_SIZE = 128


def set_tile_cache_size(tiles: int) -> None:
    """Bound the memo of programmed tiles (LRU; about 0.4 MB per 128 x 128 tile; 0 disables it)."""
    global _TILE_CACHE_SIZE
    if isinstance(tiles, bool) or not isinstance(tiles, int) or tiles < 0:
        raise ValueError(f"tiles must be an integer >= 0, got {tiles!r}")
    _TILE_CACHE_SIZE = tiles
    while len(_TILE_CACHE) > tiles:
        _TILE_CACHE.popitem(last=False)


def clear_tile_cache() -> None:
    """Forget every memoised programmed tile, device outcome and device draw of this process."""
    global _OUTCOME_CACHE_HELD
    _TILE_CACHE.clear()
    _OUTCOME_CACHE.clear()
    _OUTCOME_CACHE_HELD = 0
    clear_draw_cache()


# Programming outcomes of devices, per drawn device array (one copy of one layer's logical
# devices, or the padding cells of one crossbar): write-and-verify of a device depends only
# on its own draws, its target level and the device parameters (a chip has no verify-read
# noise), so a device that another plan of the instance already programmed to the same
# level is not simulated again. The plans of a campaign task share most devices (copy 0
# of every plan, the redundant copies of the plans that have them). LRU bounded by bytes.
_OUTCOME_CACHE: OrderedDict = OrderedDict()
_OUTCOME_CACHE_BYTES = 256 << 20
_OUTCOME_CACHE_HELD = 0  # bytes held by _OUTCOME_CACHE


def set_outcome_cache_bytes(nbytes: int) -> None:
    """Bound the memo of device programming outcomes (LRU, bytes; about 19 bytes per
    device; 0 disables it). The default, 256 MB, holds the devices of all six plans of a
    paper-LeNet chip instance several times over."""
    global _OUTCOME_CACHE_BYTES, _OUTCOME_CACHE_HELD
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
        raise ValueError(f"nbytes must be an integer >= 0, got {nbytes!r}")
    _OUTCOME_CACHE_BYTES = nbytes
    while _OUTCOME_CACHE_HELD > nbytes:
        _OUTCOME_CACHE_HELD -= _OUTCOME_CACHE.popitem(last=False)[1].nbytes


class _Outcomes:
    """What programming gave the devices of one drawn array, filled in as plans program them.

    Element ``i`` of ``conductance`` / ``pulses`` is the outcome of programming device
    ``i`` of the draw to ``level[i]`` (-1: not programmed yet). With ``by_row``, a draw
    of shape ``(slices, rows, neurons)`` is held as ``(rows, slices * neurons)``
    (device ``[s, r, j]`` at ``[r, s * neurons + j]``), so that the devices of a
    crossbar's rows are gathered row by row, in memory order.
    """

    __slots__ = ("draw_args", "fault_map", "level", "conductance", "pulses", "fresh", "pending", "key")

    def __init__(self, draw_args: tuple, draw_kw: dict, write_verify: bool, by_row: bool = False) -> None:
        self.draw_args = (draw_args, draw_kw)
        faults = self.draws().fault_map
        if by_row:
            n_slices, k, n = faults.shape
            faults = np.ascontiguousarray(faults.transpose(1, 0, 2)).reshape(k, n_slices * n)
        self.fault_map = faults
        shape = faults.shape
        self.level = np.full(shape, -1, dtype=np.int16 if draw_kw["params"].levels <= 1 << 15 else np.int64)
        self.conductance = np.empty(shape)
        # write-and-verify stops at max_pulses; an open-loop train has no such bound
        small = write_verify and draw_kw["params"].max_pulses < 1 << 31
        self.pulses = np.empty(shape, dtype=np.int32 if small else np.int64)
        self.fresh = True  # no device programmed yet (every level is -1)
        # outcomes not written into the arrays yet: (flat, conductance, pulses, levels);
        # settle() writes them (a record read by nobody else is never written). Their
        # conductances and pulses count in nbytes, so the memo's bound holds.
        self.pending: list = []
        self.key = None  # the memo key, while in the memo

    def add_pending(self, flat: np.ndarray, g: np.ndarray, n: np.ndarray, lv: np.ndarray) -> None:
        self.pending.append((flat, g, n, lv))
        _memo_grew(self, g.nbytes + n.nbytes)

    def settle(self) -> "_Outcomes":
        """Write the pending outcomes into the arrays; returns self."""
        if self.pending:
            freed = 0
            for flat, g, n, lv in self.pending:
                np.put(self.conductance, flat, g)
                np.put(self.pulses, flat, n)
                np.put(self.level, flat, lv)
                freed += g.nbytes + n.nbytes
            self.pending = []
            _memo_grew(self, -freed)
        return self

    def draws(self) -> DeviceDraws:
        """The devices' draws (memoised by :func:`~remeco.models.device.draw_devices`)."""
        (shape, seed, instance, more), kw = self.draw_args
        return draw_devices(shape, seed, instance, *more, **kw)

    @property
    def nbytes(self) -> int:
        return int(self.fault_map.nbytes + self.level.nbytes + self.conductance.nbytes + self.pulses.nbytes
                   + sum(g.nbytes + n.nbytes for _, g, n, _ in self.pending))


def _memo_grew(rec: _Outcomes, delta: int) -> None:
    """Account ``delta`` more bytes held by ``rec`` (if it is in the outcome memo) and
    keep the memo within its bound."""
    global _OUTCOME_CACHE_HELD
    if rec.key is None or _OUTCOME_CACHE.get(rec.key) is not rec:
        return
    _OUTCOME_CACHE_HELD += delta
    while _OUTCOME_CACHE_HELD > _OUTCOME_CACHE_BYTES:
        old = _OUTCOME_CACHE.popitem(last=False)[1]
        old.key = None
        _OUTCOME_CACHE_HELD -= old.nbytes


def _outcomes(shape: tuple, seed: int, instance: int, more: tuple, draw_kw: dict, write_verify: bool,
              by_row: bool = False) -> _Outcomes:
    """The outcome record of the devices ``draw_devices(shape, seed, instance, *more, **draw_kw)``."""
    global _OUTCOME_CACHE_HELD
    key = (shape, seed, instance, more, write_verify, by_row, *sorted(draw_kw.items()))
    hit = _OUTCOME_CACHE.get(key)
    if hit is not None:
        _OUTCOME_CACHE.move_to_end(key)
        return hit
    entry = _Outcomes((shape, seed, instance, more), draw_kw, write_verify, by_row)
    if entry.nbytes <= _OUTCOME_CACHE_BYTES:
        _OUTCOME_CACHE[key] = entry
        entry.key = key
        _OUTCOME_CACHE_HELD += entry.nbytes
        while _OUTCOME_CACHE_HELD > _OUTCOME_CACHE_BYTES:
            old = _OUTCOME_CACHE.popitem(last=False)[1]
            old.key = None
            _OUTCOME_CACHE_HELD -= old.nbytes
    return entry


def _levels_digest(levels: np.ndarray, device: DeviceParams) -> tuple:
    """Content key of a tile's target levels (shape and values)."""
    a = np.ascontiguousarray(levels, dtype=np.uint8 if device.levels <= 256 else np.int64)
    return a.shape, hashlib.blake2b(a.data, digest_size=16).digest()


#: How the devices of a chip instance are keyed (:func:`layer_draws`). Campaign specs
#: carry it, so results stored under another keying are never served as this one's.
DEVICE_KEYING = "logical-position-v1"

# Stream keys of device draws (after seed, instance): the kind of devices first, so that
# the logical devices of a layer and the padding cells of its crossbars never share a stream.
_LOGICAL, _PADDING = 0, 1


def _layout_digest(mapped) -> bytes:
    """Content key of a layer's layout: which logical device every physical cell holds."""
    fmt = mapped.fmt
    h = hashlib.blake2b(digest_size=16)
    h.update(np.array([mapped.fan_in, mapped.neurons, fmt.n_slices, fmt.rows, fmt.cols], dtype=np.int64).data)
    for a in (mapped.col_neuron, mapped.col_slice, mapped.col_copy):
        h.update(np.ascontiguousarray(a, dtype=np.int64).data)
    return h.digest()


def layer_draws(mapped, params: ChipParams, *, seed: int, instance: int, layer: int = 0,
                committee_copy: int = 0) -> DeviceDraws:
    """The devices of a mapped layer on chip instance ``(seed, instance)``, tile by tile.

    Devices are drawn by *logical position*, not by where the layout puts them: the device
    holding row ``r`` of slice ``s`` of neuron ``j``, copy ``c`` of layer ``layer`` in
    committee copy ``committee_copy`` is element ``[s, r, j]`` of the draw keyed
    ``(layer, committee_copy, c)`` (:func:`remeco.models.device.draw_devices`). So copy 0
    of every plan sees the very same devices as the base plan, each redundant copy
    has its own (the same ones in every plan that has that copy), and a plan's effect on a
    chip instance is measured on the same chip. Padding cells (level 0, unused rows and
    columns) hold no logical device; their stuck-at states are drawn per physical tile
    from streams of their own (they are never pulsed, so D2D variation does not apply).

    Returns
    -------
    DeviceDraws
        Arrays of shape ``(row_tiles, col_tiles, rows, cols)`` like the layer's levels.
    """
    fmt = mapped.fmt
    kw = _draw_kwargs(params)
    k, p = mapped.fan_in, mapped.physical_columns
    full = (mapped.row_tiles * fmt.rows, mapped.col_tiles * fmt.cols)
    faults = np.empty(full, dtype=np.int8)
    up, down = np.empty(full), np.empty(full)
    for c in np.unique(mapped.col_copy):
        drawn = draw_devices((fmt.n_slices, k, mapped.neurons), seed, instance, _LOGICAL, int(layer),
                             int(committee_copy), int(c), **kw)
        cols = np.flatnonzero(mapped.col_copy == c)
        s, j = mapped.col_slice[cols], mapped.col_neuron[cols]
        for dst, src in ((faults, drawn.fault_map), (up, drawn.rate_up), (down, drawn.rate_down)):
            dst[:k, cols] = src[s, :, j].T  # (columns, rows) -> (rows, columns)
    # Padding: the unused rows below the fan-in and the unused columns of the last column
    # tile, drawn per physical tile (so plans that have that tile share them). A padding
    # cell is programmed to level 0 from the reset state, which it already holds, so it
    # is never pulsed and its D2D variation cannot matter: only its stuck-at state is drawn.
    pad_kw = dict(kw, d2d=D2DParams.none())
    for rt, ct, pad in _padding(mapped):
        r0, c0 = rt * fmt.rows, ct * fmt.cols
        drawn = draw_devices((fmt.rows, fmt.cols), seed, instance, _PADDING, int(layer),
                             int(committee_copy), rt, ct, **pad_kw)
        for dst, src in ((faults, drawn.fault_map), (up, drawn.rate_up), (down, drawn.rate_down)):
            block = dst[r0:r0 + fmt.rows, c0:c0 + fmt.cols]
            block[pad] = src[pad]
    shape = (mapped.row_tiles, fmt.rows, mapped.col_tiles, fmt.cols)
    return DeviceDraws(*(a.reshape(shape).transpose(0, 2, 1, 3) for a in (faults, up, down)))


def _draw_kwargs(params: ChipParams) -> dict:
    """Keyword arguments of :func:`draw_devices` for the logical devices of a chip."""
    d2d_v = 0.08 if params.d2d_sigma > 0 else 0.0  # as program_tile's default
    return dict(params=params.device, d2d=D2DParams(sigma_rel=float(params.d2d_sigma), v_sigma=d2d_v),
                stuck_at_rate=params.stuck_at_rate, stuck_on_fraction=params.stuck_on_fraction)


def _padding(mapped):
    """``(rt, ct, mask)`` of every crossbar of a layer with padding cells (``mask``
    ``(rows, cols)`` True on them: rows below the fan-in, columns after the last used one)."""
    fmt, k, p = mapped.fmt, mapped.fan_in, mapped.physical_columns
    for rt in range(mapped.row_tiles):
        for ct in range(mapped.col_tiles):
            r0, c0 = rt * fmt.rows, ct * fmt.cols
            pad = np.ones((fmt.rows, fmt.cols), dtype=bool)
            pad[: max(0, min(k - r0, fmt.rows)), : max(0, min(p - c0, fmt.cols))] = False
            if pad.any():
                yield rt, ct, pad


class _Layout:
    """What programming needs from a mapped layer alone, computed once per layer object
    (a campaign programs the same mapped layers on every chip instance): the target
    levels, the memo keys of the layout and of every tile's levels, and per copy the
    record columns of the crossbar columns and the devices a fresh record programs
    (every one of them, in the order the general path finds them)."""

    __slots__ = ("levels", "full", "layout", "digests", "copies", "padding", "__weakref__")

    def __init__(self, mapped) -> None:
        fmt = mapped.fmt
        k, n = mapped.fan_in, mapped.neurons
        self.levels = mapped.target_levels()
        self.levels.flags.writeable = False
        self.full = self.levels.transpose(0, 2, 1, 3).reshape(mapped.row_tiles * fmt.rows, mapped.col_tiles * fmt.cols)
        self.layout = _layout_digest(mapped)
        self.digests: dict = {}
        self.copies = []
        for c in np.unique(mapped.col_copy):
            cols = np.flatnonzero(mapped.col_copy == c)
            s, j = mapped.col_slice[cols], mapped.col_neuron[cols]
            at = s * n + j  # the record's column of each crossbar column
            want = self.full[:k].take(cols, axis=1)
            dup = np.unique(at).size < at.size
            for a in (cols, s, j, at, want):
                a.flags.writeable = False
            self.copies.append([int(c), cols, s, j, at, want, dup, None])
        self.padding = []
        for rt, ct, pad in _padding(mapped):
            block = self.full[rt * fmt.rows:(rt + 1) * fmt.rows, ct * fmt.cols:(ct + 1) * fmt.cols]
            flat = np.flatnonzero(pad)
            lv = block.ravel()[flat]
            for a in (pad, flat, lv):
                a.flags.writeable = False
            self.padding.append((rt, ct, pad, block, (flat, lv)))

    def fresh(self, entry: list, k: int, n: int, n_slices: int) -> tuple:
        """``(flat, drawn, lv)`` of the devices a fresh record (levels -1) programs for copy
        ``entry`` of :attr:`copies`: all of them, in np.nonzero's order (made once)."""
        if entry[7] is None:
            _, cols, s, j, at, want, dup, _ = entry
            row, col = np.divmod(np.arange(k * cols.size), cols.size)
            flat, lv = row * (n_slices * n) + at[col], want.ravel()
            drawn = (s[col] * k + row) * n + j[col]
            if dup:  # a device in two columns (same level): once
                flat, first = np.unique(flat, return_index=True)
                lv, drawn = lv[first], drawn[first]
            for a in (flat, drawn, lv):
                a.flags.writeable = False
            entry[7] = (flat, drawn, lv)
        return entry[7]

    def tile_digest(self, rt: int, ct: int, device: DeviceParams) -> tuple:
        key = (rt, ct, device.levels <= 256)
        hit = self.digests.get(key)
        if hit is None:
            hit = self.digests[key] = _levels_digest(self.levels[rt, ct], device)
        return hit


# Layouts of the mapped layers this process programs, by object identity (mapped layers
# are frozen plain data); an entry leaves with its layer. A layout holds ~50 bytes per
# cell, so only layers of up to _LAYOUT_MAX_CELLS cells are kept (all of LeNet-5's; the
# large layers of the paper LeNet or AlexNet get a new one per call, as before).
_LAYOUTS: dict = {}
_LAYOUT_MAX_CELLS = 1 << 18


def _layout(mapped) -> _Layout:
    key = id(mapped)
    hit = _LAYOUTS.get(key)
    if hit is not None and hit[0]() is mapped:
        return hit[1]
    lay = _Layout(mapped)
    fmt = mapped.fmt
    if mapped.row_tiles * mapped.col_tiles * fmt.rows * fmt.cols > _LAYOUT_MAX_CELLS:
        return lay
    try:
        ref = weakref.ref(mapped, lambda _, key=key: _LAYOUTS.pop(key, None))
    except TypeError:  # not weak-referenceable: not memoised
        return lay
    _LAYOUTS[key] = (ref, lay)
    return lay


def _program_devices(mapped_layers, levels_of, params: ChipParams, *, seed: int, instance: int,
                     layers, copies) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Conductance, pulses and fault map of every cell of some layers, each
    ``(row_tiles * rows, col_tiles * cols)`` (the layer's crossbars side by side).

    The devices are those of :func:`layer_draws`; each is programmed to its cell's level
    in ``levels_of[i]`` (``(row_tiles, col_tiles, rows, cols)``), exactly as programming
    the cells together would (every device is simulated on its own data), except that a
    device whose outcome for that level is in the outcome memo is not simulated again.
    The ``(layers[i], copies[i])`` must be distinct.
    """
    kw = _draw_kwargs(params)
    pad_kw = dict(kw, d2d=D2DParams.none())
    wv = bool(params.write_verify)
    # 1. Per layer, the record of every device array its cells use, and the devices
    # whose outcome for their cell's level is not known yet.
    # todo: (record, flat indices in the record, flat indices in the draw, levels)
    records, todo = [], []
    direct: dict = {}  # id(record) -> its outcomes in crossbar order (step 3), when programmed whole here
    for mapped, levels, layer, copy in zip(mapped_layers, levels_of, layers, copies):
        fmt = mapped.fmt
        k, n = mapped.fan_in, mapped.neurons
        lay = _layout(mapped)
        if levels is not lay.levels and not np.array_equal(levels, lay.levels):
            raise ValueError("levels_of must be the mapped layers' target levels")
        logical, padding = [], []
        for entry in lay.copies:
            c, cols, s, j, at, want, dup, _ = entry
            rec = _outcomes((fmt.n_slices, k, n), seed, instance, (_LOGICAL, int(layer), int(copy), c), kw, wv,
                            by_row=True)
            logical.append((rec, cols, at))
            if rec.fresh:
                todo.append((rec, *lay.fresh(entry, k, n, fmt.n_slices)))
                if len(lay.copies) == 1 and not dup and cols.size == mapped.physical_columns:
                    # every device of the one copy, in the crossbar's (row, column) order
                    direct[id(rec)] = None
                continue
            row, col = np.nonzero(rec.settle().level.take(at, axis=1) != want)
            if row.size:
                flat, lv = row * rec.level.shape[1] + at[col], want[row, col]
                drawn = (s[col] * k + row) * n + j[col]
                if dup:  # a device in two columns (same level): once
                    flat, first = np.unique(flat, return_index=True)
                    lv, drawn = lv[first], drawn[first]
                todo.append((rec, flat, drawn, lv))
        for rt, ct, pad, block, fresh in lay.padding:
            rec = _outcomes((fmt.rows, fmt.cols), seed, instance, (_PADDING, int(layer), int(copy), rt, ct), pad_kw, wv)
            padding.append((rec, rt, ct, pad))
            if rec.fresh:
                todo.append((rec, fresh[0], fresh[0], fresh[1]))
                continue
            flat = np.flatnonzero(pad & (rec.settle().level != block))
            if flat.size:
                todo.append((rec, flat, flat, block.ravel()[flat]))
        records.append((logical, padding))
    # 2. Program the new ones in one vectorized pass; remember their outcomes.
    if todo:
        draws = [rec.draws() for rec, _, _, _ in todo]
        gathered = DeviceDraws(*(np.concatenate([getattr(d, name).ravel().take(at) for d, (_, _, at, _) in zip(draws, todo)])
                                 for name in ("fault_map", "rate_up", "rate_down")))
        res = program_drawn(np.concatenate([lv for _, _, _, lv in todo]), gathered, params.device, write_verify=wv)
        a = 0
        for rec, flat, _, lv in todo:
            b = a + flat.size
            rec.add_pending(flat, res.conductance[a:b], res.pulses[a:b], lv)
            rec.fresh = False
            if id(rec) in direct:
                direct[id(rec)] = (res.conductance[a:b], res.pulses[a:b], gathered.fault_map[a:b])
            a = b
    # 3. Lay the outcomes out as the cells of the crossbars.
    out = []
    for mapped, (logical, padding) in zip(mapped_layers, records):
        fmt, k, p = mapped.fmt, mapped.fan_in, mapped.physical_columns
        shape = (mapped.row_tiles * fmt.rows, mapped.col_tiles * fmt.cols)
        g, pulses, faults = np.empty(shape), np.empty(shape, dtype=np.int64), np.empty(shape, dtype=np.int8)
        # Every used column from the records of all copies side by side, in one take.
        width = logical[0][0].level.shape[1]
        source = np.empty(p, dtype=np.int64)
        for i, (_, cols, at) in enumerate(logical):
            source[cols] = i * width + at
        whole = direct.get(id(logical[0][0])) if len(logical) == 1 else None
        if whole is not None:  # the outcomes as programmed, already in crossbar order
            for dst, src in zip((g, pulses, faults), whole):
                dst[:k, :p] = src.reshape(k, p)
        else:
            for rec, _, _ in logical:
                rec.settle()
            for dst, name in ((g, "conductance"), (pulses, "pulses"), (faults, "fault_map")):
                held = [getattr(rec, name) for rec, _, _ in logical]
                dst[:k, :p] = (held[0] if len(held) == 1 else np.concatenate(held, axis=1)).take(source, axis=1)
        for rec, rt, ct, pad in padding:
            rec.settle()
            for dst, src in ((g, rec.conductance), (pulses, rec.pulses), (faults, rec.fault_map)):
                block = dst[rt * fmt.rows:(rt + 1) * fmt.rows, ct * fmt.cols:(ct + 1) * fmt.cols]
                block[pad] = src[pad]
        out.append((g, pulses, faults))
    return out


def program_layer(
    mapped, params: ChipParams, *, seed: int, instance: int, layer: int = 0, committee_copy: int = 0
) -> ProgrammedLayer:
    """Program every tile of a mapped layer on chip instance ``(seed, instance)``.

    Parameters
    ----------
    mapped:
        The :class:`~remeco.models.mapping.MappedLayer`.
    params:
        Chip non-idealities.
    seed, instance:
        Identify the chip instance; all randomness derives from them.
    layer:
        Layer index, so different layers of one chip use independent devices.
    committee_copy:
        Which whole-network copy of a committee the layer belongs to (its own devices).

    The devices are drawn by logical position (:func:`layer_draws`), so the same layer on
    the same chip instance under two plans shares the devices of its first copy.
    """
    return program_layers([mapped], params, seed=seed, instance=instance, layers=[layer],
                          committee_copies=[committee_copy])[0]


def _check_key(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def program_layers(
    mapped_layers, params: ChipParams, *, seed: int, instance: int, layers, committee_copies=None
) -> list[ProgrammedLayer]:
    """:func:`program_layer` of several layers of one chip instance, ``layers[i]`` (and
    ``committee_copies[i]``, default 0) the keys of ``mapped_layers[i]``; the results are
    identical, the devices of all layers are simulated in one vectorized pass and tiles
    already programmed in this process (same levels, layout, parameters and keys) are
    taken from a memo. So are devices already programmed in this process to the same
    level (another plan of the same instance that has them): their write-and-verify is
    not run again, only the steps that depend on the layout (IR-drop, read-out).
    """
    copies = [0] * len(layers) if committee_copies is None else list(committee_copies)
    if len(mapped_layers) != len(layers) or len(copies) != len(layers):
        raise ValueError(f"got {len(mapped_layers)} mapped layers, {len(layers)} layer indices and "
                         f"{len(copies)} committee copies")
    for mapped in mapped_layers:
        if mapped.fmt.levels != params.device.levels:
            raise ValueError(
                f"device levels ({params.device.levels}) must equal 2**slice_bits of the format ({mapped.fmt.levels})"
            )
    for layer, copy in zip(layers, copies):
        _check_key("layer", layer)
        _check_key("committee_copy", copy)
    if len({(int(layer), int(copy)) for layer, copy in zip(layers, copies)}) < len(layers):
        # Layers on the same devices: one after the other, each as if alone (the outcome
        # memo holds one level per device).
        return [program_layers([m], params, seed=seed, instance=instance, layers=[layer], committee_copies=[copy])[0]
                for m, layer, copy in zip(mapped_layers, layers, copies)]
    r_w, r_b = wire_resistances(params, seed=seed, instance=instance)
    lays = [_layout(mapped) for mapped in mapped_layers]
    out_levels = [lay.levels for lay in lays]
    # Every tile: (layer slot, rt, ct, memo key), then the missing ones at once.
    jobs, missing = [], {}
    for slot, (mapped, layer, copy, lay) in enumerate(zip(mapped_layers, layers, copies, lays)):
        for rt in range(mapped.row_tiles):
            for ct in range(mapped.col_tiles):
                key = (lay.tile_digest(rt, ct, params.device), lay.layout, params, seed, instance,
                       int(layer), int(copy), rt, ct)
                jobs.append((slot, rt, ct, key))
                if key not in _TILE_CACHE and key not in missing:
                    missing[key] = (slot, rt, ct)
    fresh = {}
    if missing:
        slots = sorted({slot for slot, _, _ in missing.values()})
        cells = dict(zip(slots, _program_devices(
            [mapped_layers[i] for i in slots], [out_levels[i] for i in slots], params, seed=seed,
            instance=instance, layers=[layers[i] for i in slots], copies=[copies[i] for i in slots])))
        for key, (slot, rt, ct) in missing.items():
            rows, cols = out_levels[slot].shape[2:]
            g, n, f = (np.array(a[rt * rows:(rt + 1) * rows, ct * cols:(ct + 1) * cols]) for a in cells[slot])
            if params.ir_drop == "none" or (r_w == 0 and r_b == 0):
                transfer = g
            elif params.ir_drop == "fast":
                transfer = None  # below, all tiles of one shape at once
            else:
                transfer = NodalCrossbar(g, r_w, r_b, method=params.ir_drop).transfer_matrix
            fresh[key] = (g, f, n, transfer)
        by_shape: dict = {}
        for key, entry in fresh.items():
            if entry[3] is None:
                by_shape.setdefault(entry[0].shape, []).append(key)
        for keys in by_shape.values():
            # fast_transfer_stack: NodalCrossbar(g, r_w, r_b, "fast") of every tile, bit for bit
            stack = fast_transfer_stack(np.stack([fresh[key][0] for key in keys]), r_w, r_b)
            for key, transfer in zip(keys, stack):
                fresh[key] = (*fresh[key][:3], transfer)
    shapes = [levels.shape for levels in out_levels]
    transfer = [np.empty(shape) for shape in shapes]
    conductance = [np.empty(shape) for shape in shapes]
    fault_map = [np.zeros(shape, dtype=np.int8) for shape in shapes]
    pulses = [np.zeros(shape, dtype=np.int64) for shape in shapes]
    for slot, rt, ct, key in jobs:
        entry = fresh.get(key)
        if entry is None:
            entry = _TILE_CACHE[key]
            _TILE_CACHE.move_to_end(key)
        conductance[slot][rt, ct], fault_map[slot][rt, ct], pulses[slot][rt, ct], transfer[slot][rt, ct] = entry
    if _TILE_CACHE_SIZE > 0:
        for key, entry in fresh.items():
            for a in entry:
                a.flags.writeable = False
            _TILE_CACHE[key] = entry
        while len(_TILE_CACHE) > _TILE_CACHE_SIZE:
            _TILE_CACHE.popitem(last=False)
    return [ProgrammedLayer(transfer[i], conductance[i], fault_map[i], pulses[i], r_w, r_b)
            for i in range(len(mapped_layers))]
