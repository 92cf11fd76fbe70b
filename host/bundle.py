"""A bundle: what a board needs to run a mapped network, in one plain-data file.

Training, sensitivity analysis and device programming need torch and SciPy; a PYNQ-Z2
(32-bit ARM) has neither. A bundle carries their results to the board: the integer
network (weights, biases, scales, multipliers and shifts, layer shapes), the numeric
format, the calibrated ADC shifts, one redundancy plan per mapping, the cell codes of
one or more programmed chip instances per plan, test images with their labels, and the
model's expected int32 logits of every chip instance on those images (computed on the PC
with a campaign engine, :mod:`remeco.host.engines`), so a board run can say whether it
matched the model. Loading it needs NumPy only; the mapped networks are rebuilt with
:func:`remeco.models.network.map_network` (deterministic plain NumPy), so a loaded
bundle gives the same logits as the network it was saved from, on every backend.

File format (version :data:`BUNDLE_VERSION`)
    One ``.npz`` (zip, compressed; read with ``allow_pickle=False``):

    * ``bundle.meta``: JSON text (a 0-d unicode array) with ``kind`` (``"remeco-bundle"``),
      ``version``, ``fmt`` (:meth:`~remeco.models.emulation.EmulationFormat.to_dict`),
      ``adc_shifts``, ``plans`` (name and ``committee_log2`` of each, in order),
      ``chips`` (plan, instance and committee copies of each) and ``info`` (free
      JSON provenance: seed, epochs, data set ...);
    * ``qnet.*``: the integer network (:meth:`~remeco.models.quantized.QuantizedNetwork.to_arrays`);
    * ``plan.<p>.<layer>``: ``copies_log2`` of plan number ``p``;
    * ``chip.<p>.<instance>.<copy>.<layer>``: cell codes ``(row_tiles, col_tiles, rows, cols)``;
    * ``expected.<p>.<instance>``: int32 ``(N, classes)`` logits of the model on that chip
      instance and ``images``, present where the instance's ``chips`` entry has
      ``"expected": true`` (optional: bundles written before these entries existed have
      none and load as before);
    * ``images`` (uint8 ``(N, C, H, W)``) and ``labels`` (int64 ``(N,)``).

    A reader refuses another ``version`` rather than guessing; every problem with a
    file is a :class:`BundleError` that names it.

Example (``remeco bundle`` writes one on a PC; ``remeco run --bundle`` reads it)::

    from remeco.host.bundle import load_bundle
    from remeco.host.driver import Accelerator

    bundle = load_bundle("lenet.npz")
    with Accelerator("board", bitfile="/home/xilinx/remeco/remeco.bit") as acc:
        acc.load(bundle.mapped["base"], bundle.chip("base", 0))
        logits = acc.infer(bundle.images[:100])
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..models.emulation import EmulationFormat
from ..models.network import MappedNetwork, ProgrammedNetwork, map_network
from ..models.quantized import QuantizedNetwork, atomic_savez
from ..models.redundancy import RedundancyPlan

__all__ = ["BUNDLE_VERSION", "BundleError", "Bundle", "save_bundle", "load_bundle"]

#: Version of the file layout; :func:`load_bundle` reads this version only.
BUNDLE_VERSION = 1
_KIND = "remeco-bundle"


class BundleError(ValueError):
    """A bundle file that cannot be used: unreadable, not a bundle, another version, or inconsistent."""


@dataclass(frozen=True, eq=False)
class Bundle:
    """Mapped networks, chip instances and test data: everything inference on a board needs.

    Parameters
    ----------
    mapped:
        Plan name -> :class:`~remeco.models.network.MappedNetwork`; all of one integer
        network, numeric format and ADC calibration, each under its own plan (whose
        ``name`` is the key).
    chips:
        ``(plan name, instance)`` -> :class:`~remeco.models.network.ProgrammedNetwork`
        of that mapping (only its ``codes`` are stored).
    images, labels:
        uint8 ``(N, C, H, W)`` images of the network's input shape and their integer labels.
    info:
        JSON-serialisable provenance (how the network was trained, the chip seed ...).
    expected:
        ``(plan name, instance)`` of ``chips`` -> int32 ``(N, num_classes)`` logits of the
        model (:mod:`remeco.models.emulation`, no run-time faults) on ``images``: what a
        backend must return for that chip instance. May be empty (an older bundle).

    Raises
    ------
    ValueError
        If the parts do not fit together (each message names the part).
    """

    mapped: Mapping[str, MappedNetwork]
    chips: Mapping[tuple[str, int], ProgrammedNetwork]
    images: np.ndarray
    labels: np.ndarray
    info: Mapping[str, object] = field(default_factory=dict)
    expected: Mapping[tuple[str, int], np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.mapped, Mapping) or not self.mapped:
            raise ValueError("mapped must be a non-empty mapping of plan name -> MappedNetwork")
        first = next(iter(self.mapped.values()))
        for name, m in self.mapped.items():
            if not isinstance(m, MappedNetwork):
                raise ValueError(f"mapped[{name!r}] must be a MappedNetwork, got {type(m).__name__}")
            if not isinstance(name, str) or name != m.plan.name:
                raise ValueError(f"mapped[{name!r}] holds plan {m.plan.name!r}: the key must be the plan's name")
            if m.network != first.network or m.fmt != first.fmt or m.adc_shifts != first.adc_shifts:
                raise ValueError(f"mapped[{name!r}] maps another network, format or ADC calibration than the others")
        if not isinstance(self.chips, Mapping) or not self.chips:
            raise ValueError("chips must be a non-empty mapping of (plan, instance) -> ProgrammedNetwork")
        for key, chip in self.chips.items():
            if not (isinstance(key, tuple) and len(key) == 2 and key[0] in self.mapped and _is_index(key[1])):
                raise ValueError(f"chips key {key!r} must be (plan name of mapped, non-negative instance)")
            if not isinstance(chip, ProgrammedNetwork):
                raise ValueError(f"chips[{key!r}] must be a ProgrammedNetwork, got {type(chip).__name__}")
            _check_codes(key, chip, self.mapped[key[0]])
        net = first.network
        images, labels = np.asarray(self.images), np.asarray(self.labels)
        if images.dtype != np.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != net.input_shape:
            raise ValueError(f"images must be uint8 (N, {net.input_shape}), got {images.dtype} {images.shape}")
        if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (len(images),):
            raise ValueError(f"labels must be integers of shape ({len(images)},), got {labels.dtype} {labels.shape}")
        if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= net.num_classes):
            # An out-of-range label would only show up as a silent accuracy of 0.
            raise ValueError(f"labels must be classes in [0, {net.num_classes - 1}] (the network's outputs), "
                             f"got [{int(labels.min())}, {int(labels.max())}]")
        try:
            json.dumps(dict(self.info))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"info must be JSON-serialisable: {exc}") from None
        if not isinstance(self.expected, Mapping):
            raise ValueError("expected must be a mapping of (plan, instance) -> int32 logits")
        want = (len(images), net.num_classes)
        for key, logits in self.expected.items():
            if key not in self.chips:
                raise ValueError(f"expected key {key!r} must be a (plan, instance) of chips")
            logits = np.asarray(logits)
            if logits.dtype != np.int32 or logits.shape != want:
                raise ValueError(f"expected[{key!r}] must be int32 logits {want} (images x classes), "
                                 f"got {logits.dtype} {logits.shape}")

    @property
    def network(self) -> QuantizedNetwork:
        """The integer network (shared by every mapping)."""
        return next(iter(self.mapped.values())).network

    @property
    def fmt(self) -> EmulationFormat:
        """The numeric format (shared by every mapping)."""
        return next(iter(self.mapped.values())).fmt

    @property
    def adc_shifts(self) -> tuple[int, ...]:
        """The calibrated ADC shift of every layer (shared by every mapping)."""
        return next(iter(self.mapped.values())).adc_shifts

    @property
    def plans(self) -> tuple[str, ...]:
        """Plan names, in the order they were given."""
        return tuple(self.mapped)

    def instances(self, plan: str) -> tuple[int, ...]:
        """Chip instances stored for ``plan``, ascending."""
        return tuple(sorted(i for p, i in self.chips if p == plan))

    def chip(self, plan: str, instance: int) -> ProgrammedNetwork:
        """The chip instance ``instance`` of ``plan``; ``ValueError`` listing what the bundle has."""
        if plan not in self.mapped:
            raise ValueError(f"the bundle has no plan {plan!r}; it has {', '.join(self.plans)}")
        chip = self.chips.get((plan, instance))
        if chip is None:
            have = ", ".join(map(str, self.instances(plan)))
            raise ValueError(f"the bundle has no chip instance {instance!r} of plan {plan!r}; it has {have}")
        return chip

    def expected_logits(self, plan: str, instance: int) -> np.ndarray | None:
        """The model's int32 logits of chip instance ``instance`` of ``plan`` on :attr:`images`,
        or ``None`` where the bundle has none (written before bundles carried them)."""
        self.chip(plan, instance)  # a plan or instance the bundle lacks: ValueError naming what it has
        return self.expected.get((plan, instance))


def _is_index(v: object) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, np.integer)) and v >= 0


def _check_codes(key: tuple[str, int], chip: ProgrammedNetwork, mapped: MappedNetwork) -> None:
    copies = 1 << mapped.plan.committee_log2
    if len(chip.codes) != copies or any(len(c) != len(mapped.layers) for c in chip.codes):
        raise ValueError(f"chips[{key!r}] must hold {copies} copies of {len(mapped.layers)} layers of codes")
    fmt = mapped.fmt
    for c, codes in enumerate(chip.codes):
        for i, (m, code) in enumerate(zip(mapped.layers, codes)):
            want = (m.row_tiles, m.col_tiles, fmt.rows, fmt.cols)
            code = np.asarray(code)
            if code.shape != want or not np.issubdtype(code.dtype, np.integer):
                raise ValueError(f"chips[{key!r}] copy {c} layer {i}: codes must be integers {want}, "
                                 f"got {code.dtype} {code.shape}")
            if code.size and (int(code.min()) < fmt.code_min or int(code.max()) > fmt.code_max):
                raise ValueError(f"chips[{key!r}] copy {c} layer {i}: codes must lie in [{fmt.code_min}, "
                                 f"{fmt.code_max}] (the format's {fmt.code_bits}-bit cell codes), "
                                 f"got [{int(code.min())}, {int(code.max())}]")


def save_bundle(path: str | os.PathLike, bundle: Bundle) -> Path:
    """Write ``bundle`` to ``path`` (``.npz``), atomically: a temporary file, then a rename.

    Parameters
    ----------
    path:
        Destination; its folder is created if needed. NumPy appends nothing: name it
        ``*.npz`` yourself.
    bundle:
        What to write.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    if not isinstance(bundle, Bundle):
        raise ValueError(f"bundle must be a Bundle, got {type(bundle).__name__}")
    path = Path(path)
    plans = list(bundle.plans)
    arrays = dict(bundle.network.to_arrays())
    for p, name in enumerate(plans):
        for i, k in enumerate(bundle.mapped[name].plan.copies_log2):
            arrays[f"plan.{p}.{i}"] = np.asarray(k)
    chips = []
    for (name, instance), chip in bundle.chips.items():
        p = plans.index(name)
        expected = bundle.expected.get((name, instance))
        chips.append({"plan": name, "instance": int(instance), "copies": len(chip.codes),
                      "expected": expected is not None})
        for c, codes in enumerate(chip.codes):
            for i, code in enumerate(codes):
                arrays[f"chip.{p}.{int(instance)}.{c}.{i}"] = np.asarray(code)
        if expected is not None:
            arrays[f"expected.{p}.{int(instance)}"] = np.asarray(expected)
    arrays["images"] = np.ascontiguousarray(bundle.images)
    arrays["labels"] = np.asarray(bundle.labels, dtype=np.int64)
    meta = {
        "kind": _KIND,
        "version": BUNDLE_VERSION,
        "fmt": bundle.fmt.to_dict(),
        "adc_shifts": [int(v) for v in bundle.adc_shifts],
        "plans": [{"name": n, "committee_log2": int(bundle.mapped[n].plan.committee_log2)} for n in plans],
        "chips": chips,
        "info": dict(bundle.info),
    }
    arrays["bundle.meta"] = np.array(json.dumps(meta))
    atomic_savez(path, arrays, compressed=True)
    return path


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Read a bundle written by :func:`save_bundle` (NumPy only, no pickle).

    Parameters
    ----------
    path:
        The ``.npz`` file.

    Returns
    -------
    Bundle

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    BundleError
        If the file is not a readable zip, not a bundle, of another :data:`BUNDLE_VERSION`,
        lacks an entry, or its parts do not fit together.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"bundle {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise BundleError(f"{path} is not a bundle: not an .npz (zip) file, or a truncated one")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise BundleError(f"{path} is not a readable bundle ({type(exc).__name__}: {exc})") from None
    if "bundle.meta" not in arrays:
        raise BundleError(f"{path} is not a remeco bundle (no bundle.meta entry): write one with `remeco bundle`")
    try:
        meta = json.loads(str(arrays["bundle.meta"][()]))
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{path}: bundle.meta is not JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("kind") != _KIND:
        raise BundleError(f"{path} is not a remeco bundle (kind {meta.get('kind') if isinstance(meta, dict) else None!r})")
    if meta.get("version") != BUNDLE_VERSION:
        raise BundleError(
            f"{path} is bundle version {meta.get('version')!r}; this remeco reads version {BUNDLE_VERSION}: "
            "write it again with this version's `remeco bundle`"
        )
    try:
        return _from_arrays(meta, arrays)
    except KeyError as exc:
        raise BundleError(f"{path}: entry {exc.args[0]!r} is missing (a damaged or hand-edited bundle)") from None
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{path}: {exc}") from None


def _int(value: object, what: str) -> int:
    """A JSON integer of the metadata (``int("3")`` or ``int(4.7)`` would quietly make one)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return value


def _from_arrays(meta: dict, arrays: dict[str, np.ndarray]) -> Bundle:
    network = QuantizedNetwork.from_arrays(arrays)
    fmt = EmulationFormat(**meta["fmt"])
    shifts = tuple(_int(v, "adc_shifts entry") for v in meta["adc_shifts"])
    mapped, names = {}, []
    for p, entry in enumerate(meta["plans"]):
        name = str(entry["name"])
        k = tuple(np.asarray(arrays[f"plan.{p}.{i}"]) for i in range(len(network.layers)))
        plan = RedundancyPlan(name, k, _int(entry["committee_log2"], f"plan {name!r} committee_log2"))
        mapped[name] = map_network(network, plan, fmt, shifts)
        names.append(name)
    chips, expected = {}, {}
    for entry in meta["chips"]:
        name, instance = str(entry["plan"]), _int(entry["instance"], "chip instance")
        p = names.index(name) if name in names else -1
        if p < 0:
            raise ValueError(f"chip instance {instance} belongs to plan {name!r}, which the bundle does not map")
        codes = tuple(
            tuple(np.array(arrays[f"chip.{p}.{instance}.{c}.{i}"]) for i in range(len(network.layers)))
            for c in range(_int(entry["copies"], f"chip instance {instance} copies"))
        )
        chips[(name, instance)] = ProgrammedNetwork(copies=(), codes=codes)
        has_expected = entry.get("expected", False)  # absent in bundles older than the expected logits
        if not isinstance(has_expected, bool):
            raise ValueError(f"chip instance {instance} of plan {name!r}: 'expected' must be true or false, "
                             f"got {has_expected!r}")
        if has_expected:
            expected[(name, instance)] = np.array(arrays[f"expected.{p}.{instance}"])
    return Bundle(mapped, chips, np.array(arrays["images"]), np.array(arrays["labels"]), dict(meta.get("info", {})),
                  expected)
