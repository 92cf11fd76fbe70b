"""A quantized network on crossbars: mapping, chip instances, and the executors.

The walk of DESIGN.md for a whole network:

``calibrate_adc_shifts``  per-layer ADC ranges, once per network and format, offline,
                     on the ideal crossbar and calibration images (never on the batch
                     being evaluated).
``map_network``      quantized network + redundancy plan + numeric format + ADC shifts
                     -> per-layer :class:`~remeco.models.mapping.MappedLayer`.
``program_network``  one chip instance ``(seed, instance)``: every layer of every
                     committee copy programmed on its own tiles
                     (:func:`remeco.models.chip.program_layer`), devices drawn by
                     logical position so that plans share the chip.
``infer``            images -> int32 logits with an executor:
                     ``"emulation"`` (fixed point, the RTL contract), ``"physics"``
                     (float currents + ADC), or ``"reference"`` (exact integer network,
                     no crossbar). Committee copies' logits are averaged with
                     :func:`~remeco.models.emulation.round_shift`.

Each layer's crossbar product ``z`` (units ``2**-code_frac``) is turned into integer
accumulator units with ``round_shift(z, code_frac)``; bias, requantization, ReLU and
pooling are then exactly those of the integer reference network
(:meth:`remeco.models.quantized.QuantizedNetwork.forward_int`), so an ideal crossbar with a
wide ADC reproduces the reference logits bit for bit.

Everything here but programming (:func:`program_network`, which simulates the devices
with SciPy) and the ``physics`` executor needs NumPy only: a mapped network and a chip
instance's cell codes can be loaded and run without torch or SciPy (on a board, from a
bundle: :mod:`remeco.host.bundle`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .emulation import EmulationFormat, calibrate_adc_shift, emulate_matvec, round_shift, to_accumulator
from .mapping import MappedLayer, map_layer
from .physics import physics_matvec
from .quantized import QuantizedNetwork
from .redundancy import RedundancyPlan

if TYPE_CHECKING:  # .chip simulates devices with SciPy; imported where a chip is programmed
    from .chip import ChipParams, ProgrammedLayer

__all__ = ["EXECUTORS", "MappedNetwork", "ProgrammedNetwork", "calibrate_adc_shifts", "map_network", "program_network", "infer"]

EXECUTORS = ("emulation", "physics", "reference")


@dataclass(frozen=True)
class MappedNetwork:
    """A network laid out on crossbars under a redundancy plan (plain data).

    Attributes
    ----------
    network:
        The integer network.
    plan:
        The redundancy plan.
    fmt:
        Numeric format.
    layers:
        One :class:`MappedLayer` per network layer.
    adc_shifts:
        Calibrated ADC shift per layer.
    """

    network: QuantizedNetwork
    plan: RedundancyPlan
    fmt: EmulationFormat
    layers: tuple[MappedLayer, ...]
    adc_shifts: tuple[int, ...]


@dataclass(frozen=True)
class ProgrammedNetwork:
    """One chip instance of a mapped network, per committee copy ``c`` and layer.

    Attributes
    ----------
    copies:
        ``copies[c][layer]``: the programmed :class:`~remeco.models.chip.ProgrammedLayer`
        (transfer matrices, for the ``physics`` executor); empty when only the codes are
        known (a chip instance loaded from a bundle).
    codes:
        ``codes[c][layer]``: integer cell codes ``(row_tiles, col_tiles, rows, cols)``,
        what the ``emulation`` executor and the accelerator use.
    """

    copies: tuple[tuple[ProgrammedLayer, ...], ...]
    codes: tuple[tuple[np.ndarray, ...], ...]


def _layer_inputs(network: QuantizedNetwork, images: np.ndarray) -> list[np.ndarray]:
    """Crossbar input rows each layer sees on the exact integer network (for calibration)."""
    seen: list[np.ndarray] = [np.zeros(0)] * len(network.layers)

    def spy(index, layer, rows):
        seen[index] = rows
        return (rows.astype(np.float64) @ layer.weight.astype(np.float64)).astype(np.int64)

    network.forward_int(images, batch_size=len(images) or 1, matmul=spy)
    return seen


def calibrate_adc_shifts(
    network: QuantizedNetwork,
    fmt: EmulationFormat,
    calibration_images: np.ndarray,
    *,
    adc_quantile: float = 0.9999,
    max_calibration_rows: int = 20_000,
) -> tuple[int, ...]:
    """Every layer's ADC range, set once per network and format (the same for all plans).

    The ADC is part of the hardware design, so its range is calibrated on the ideal
    crossbar of the plain (copy-free) mapping with calibration images (training data):
    the smallest shift for which the ``adc_quantile`` of the bit-plane column sums does
    not clip (:func:`~remeco.models.emulation.calibrate_adc_shift`).

    Parameters
    ----------
    network, fmt:
        The integer network and the numeric format.
    calibration_images:
        uint8 images whose layer inputs are used.
    adc_quantile:
        Quantile of the ideal accumulators that must not clip.
    max_calibration_rows:
        Cap on input vectors per layer (evenly subsampled).
    """
    if len(calibration_images) == 0:
        raise ValueError("calibration_images must not be empty")
    inputs = _layer_inputs(network, np.asarray(calibration_images))
    shifts = []
    for layer, rows in zip(network.layers, inputs):
        mapped = map_layer(layer.weight.astype(np.int64), fmt)
        if len(rows) > max_calibration_rows:
            rows = rows[np.linspace(0, len(rows) - 1, max_calibration_rows).astype(np.int64)]
        shifts.append(calibrate_adc_shift(rows, mapped, mapped.target_levels() << fmt.code_frac, adc_quantile))
    return tuple(shifts)


def map_network(
    network: QuantizedNetwork,
    plan: RedundancyPlan,
    fmt: EmulationFormat,
    adc_shifts: tuple[int, ...] | np.ndarray,
) -> MappedNetwork:
    """Lay a network out on crossbars under a redundancy plan.

    Parameters
    ----------
    network:
        The integer network (:func:`remeco.models.nn.export`).
    plan:
        Redundancy plan with one ``copies_log2`` array per layer.
    fmt:
        Numeric format (tile size, slices, ADC bits).
    adc_shifts:
        Per-layer ADC shifts from :func:`calibrate_adc_shifts`.
    """
    if len(plan.copies_log2) != len(network.layers):
        raise ValueError(f"plan has {len(plan.copies_log2)} layers, the network {len(network.layers)}")
    if len(adc_shifts) != len(network.layers):
        raise ValueError(f"adc_shifts has {len(adc_shifts)} entries, the network {len(network.layers)} layers")
    layers = []
    for index, (layer, k) in enumerate(zip(network.layers, plan.copies_log2)):
        if np.asarray(k).shape != (layer.out_features, fmt.n_slices):
            raise ValueError(
                f"plan layer {index} has shape {np.asarray(k).shape}, expected ({layer.out_features}, {fmt.n_slices})"
            )
        layers.append(map_layer(layer.weight.astype(np.int64), fmt, np.asarray(k)))
    return MappedNetwork(network, plan, fmt, tuple(layers), tuple(int(v) for v in adc_shifts))


def program_network(mapped: MappedNetwork, params: ChipParams, *, seed: int, instance: int) -> ProgrammedNetwork:
    """Program every layer (and every committee copy) on chip instance ``(seed, instance)``.

    Devices are drawn by logical position (:func:`remeco.models.chip.layer_draws`): the
    first copy of every (layer, neuron, slice, row) is the same device under every plan,
    so plans are compared on the same chip; redundant copies within a layer and committee
    copy ``c > 0`` have devices of their own, keyed by their copy index.
    """
    from .chip import program_layers

    n_copies, n_layers = 1 << mapped.plan.committee_log2, len(mapped.layers)
    # All layers of all copies in one call: one vectorized programming pass, and tiles
    # identical to ones already programmed in this process (copy 0 of a committee and the
    # base plan, say) come from the tile memo.
    progs = program_layers(
        list(mapped.layers) * n_copies, params, seed=seed, instance=instance,
        layers=[i for _ in range(n_copies) for i in range(n_layers)],
        committee_copies=[c for c in range(n_copies) for _ in range(n_layers)],
    )
    copies = tuple(tuple(progs[c * n_layers:(c + 1) * n_layers]) for c in range(n_copies))
    codes = tuple(tuple(p.codes(params.device, mapped.fmt) for p in progs) for progs in copies)
    return ProgrammedNetwork(copies, codes)


def infer(
    mapped: MappedNetwork,
    images: np.ndarray,
    *,
    executor: str = "emulation",
    programmed: ProgrammedNetwork | None = None,
    params: ChipParams | None = None,
    batch_size: int = 100,
) -> np.ndarray:
    """Logits ``(N, classes)`` int32 of a mapped network on one chip instance.

    Parameters
    ----------
    mapped:
        The mapped network.
    images:
        uint8 images ``(N, C, H, W)``.
    executor:
        ``"emulation"``, ``"physics"`` or ``"reference"`` (see the module docstring).
    programmed:
        The chip instance (required unless ``executor="reference"``).
    params:
        Chip parameters (device range for the physics executor); default ``ChipParams()``.
    batch_size:
        Images per chunk.

    Raises
    ------
    ValueError
        For an unknown executor, no chip instance, or a ``physics`` run on a chip
        instance known by its codes only.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    net = mapped.network
    if executor == "reference":
        return net.forward_int(images, batch_size=batch_size)
    if programmed is None:
        raise ValueError(f"programmed (a chip instance) is required for executor {executor!r}")
    device = None
    if executor == "physics":
        if len(programmed.copies) != len(programmed.codes):
            raise ValueError("the physics executor needs the programmed layers (transfer matrices); "
                             "this chip instance has its cell codes only")
        from .chip import ChipParams

        device = (params or ChipParams()).device
    fmt = mapped.fmt
    outputs = []
    for c, codes in enumerate(programmed.codes):
        progs = programmed.copies[c] if device is not None else None

        def matmul(index, layer, rows, progs=progs, codes=codes):
            m = mapped.layers[index]
            if executor == "emulation":
                z = emulate_matvec(rows, m, codes[index], mapped.adc_shifts[index])
            else:
                z = physics_matvec(
                    rows, m, progs[index].transfer, mapped.adc_shifts[index],
                    g_off=device.g_off, g_on=device.g_on, v_read=device.v_read,
                )
            return to_accumulator(z, fmt.code_frac)

        outputs.append(net.forward_int(images, batch_size=batch_size, matmul=matmul).astype(np.int64))
    total = np.sum(outputs, axis=0)
    return round_shift(total, mapped.plan.committee_log2).astype(np.int32)
