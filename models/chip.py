"""A chip instance: programming a mapped layer onto physical, non-ideal crossbars.

Everything random about a chip instance comes from ``(seed, instance)`` only (see
:mod:`remeco.models.random`): the wire resistance of the instance's circuit model, and per
tile (keyed by layer and tile index) the stuck-at map and the device-to-device variation
met while programming. Programming a layer gives, per tile, the programmed conductances
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
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .crossbar import NodalCrossbar
from .device import DeviceParams, clear_draw_cache, program_tiles
from .emulation import EmulationFormat, quantize_codes
from .faults import STUCK_AT_RATE, STUCK_ON_FRACTION
from .random import rng_for

__all__ = ["ChipParams", "ProgrammedLayer", "wire_resistances", "program_layer", "program_layers", "ideal_transfer",
           "clear_tile_cache", "set_tile_cache_size"]

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
    """Forget every memoised programmed tile and device draw of this process."""
    _TILE_CACHE.clear()
    clear_draw_cache()


def _levels_digest(levels: np.ndarray, device: DeviceParams) -> tuple:
    """Content key of a tile's target levels (shape and values)."""
    a = np.ascontiguousarray(levels, dtype=np.uint8 if device.levels <= 256 else np.int64)
    return a.shape, hashlib.blake2b(a.data, digest_size=16).digest()


def program_layer(
    mapped, params: ChipParams, *, seed: int, instance: int, layer: int = 0
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
    """
    return program_layers([mapped], params, seed=seed, instance=instance, layers=[layer])[0]


def program_layers(
    mapped_layers, params: ChipParams, *, seed: int, instance: int, layers
) -> list[ProgrammedLayer]:
    """:func:`program_layer` of several layers of one chip instance, ``layers[i]`` the index of
    ``mapped_layers[i]``; the results are identical, the devices of all layers are
    simulated in one vectorized pass and tiles already programmed in this process (same
    levels, parameters and keys) are taken from a memo.
    """
    if len(mapped_layers) != len(layers):
        raise ValueError(f"got {len(mapped_layers)} mapped layers and {len(layers)} layer indices")
    for mapped in mapped_layers:
        if mapped.fmt.levels != params.device.levels:
            raise ValueError(
                f"device levels ({params.device.levels}) must equal 2**slice_bits of the format ({mapped.fmt.levels})"
            )
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or layer < 0:
            raise ValueError(f"layer must be a non-negative integer, got {layer!r}")
    r_w, r_b = wire_resistances(params, seed=seed, instance=instance)
    out_levels = [mapped.target_levels() for mapped in mapped_layers]
    # Every tile: (layer slot, rt, ct, tile key, memo key), then the missing ones at once.
    jobs, missing = [], {}
    for slot, (mapped, layer, levels) in enumerate(zip(mapped_layers, layers, out_levels)):
        for rt in range(mapped.row_tiles):
            for ct in range(mapped.col_tiles):
                tile = int(layer) * 1_000_000 + rt * mapped.col_tiles + ct
                key = (_levels_digest(levels[rt, ct], params.device), params, seed, instance, tile)
                jobs.append((slot, rt, ct, tile, key))
                if key not in _TILE_CACHE and key not in missing:
                    missing[key] = (levels[rt, ct], tile)
    fresh = {}
    if missing:
        results = program_tiles(
            [lv for lv, _ in missing.values()],
            params.device,
            seed=seed,
            instance=instance,
            tiles=[tile for _, tile in missing.values()],
            d2d_sigma=params.d2d_sigma,
            write_verify=params.write_verify,
            stuck_at_rate=params.stuck_at_rate,
            stuck_on_fraction=params.stuck_on_fraction,
        )
        for key, result in zip(missing, results):
            g = result.conductance
            if params.ir_drop == "none" or (r_w == 0 and r_b == 0):
                transfer = g
            else:
                transfer = NodalCrossbar(g, r_w, r_b, method=params.ir_drop).transfer_matrix
            fresh[key] = (g, result.fault_map, result.pulses, transfer)
    shapes = [levels.shape for levels in out_levels]
    transfer = [np.empty(shape) for shape in shapes]
    conductance = [np.empty(shape) for shape in shapes]
    fault_map = [np.zeros(shape, dtype=np.int8) for shape in shapes]
    pulses = [np.zeros(shape, dtype=np.int64) for shape in shapes]
    for slot, rt, ct, _, key in jobs:
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
