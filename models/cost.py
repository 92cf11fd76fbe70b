"""Area and energy of running a mapped network on crossbars, from counted quantities.

Two steps, kept apart so that each can be checked on its own:

1. **Counting** (:func:`count_layer`, :func:`count_network`): integers that follow from
   the layout of :class:`~remeco.models.mapping.MappedLayer` and the datapath of
   :mod:`remeco.models.emulation` -- crossbars, devices, ADC conversions, DAC
   activations, digital bytes, device reads. No physics constants enter here.
2. **Costing** (:func:`cost_from_counts`, :func:`estimate`): every count times one
   per-event energy or per-instance area of a :class:`CostPreset`. Area and energy are
   linear in the counts, so a preset can be re-derived or swapped without recounting.

Counting rules (per layer; ``V`` = input vectors one image produces: 1 for a dense layer,
the number of output positions for a convolution lowered to a matrix)
------------------------------------------------------------------------------------------
* ``crossbars`` = ``row_tiles * col_tiles`` (every (row tile, column tile) pair is one
  physical crossbar, see :mod:`remeco.models.mapping`).
* ``crossbar_columns`` = ``physical_columns * row_tiles`` (a used column in each row tile
  it spans), ``crossbar_columns_physical`` = ``crossbars * cols``.
* ``devices_programmed`` = ``fan_in * physical_columns`` (every redundant copy has its
  own devices); ``devices_physical`` = ``crossbars * rows * cols`` (padding included: a
  crossbar is fabricated whole, so crossbar *area* is charged on physical devices).
* ``macs_per_image`` = ``fan_in * neurons * V``: the logical multiply-accumulates of the
  network, independent of slicing and copies.
* ``device_reads_per_image`` = ``devices_programmed * V``: each programmed device takes
  part once in every input vector's dot product (one "4-bit device MAC").
  ``device_cycles_per_image`` = ``device_reads * input_bits`` with the bit-serial 1-bit DAC
  of the emulation contract (one analog cycle per input bit plane), ``device_reads`` with
  a multi-level DAC. Padding cells (level 0, input 0 or never converted) are not charged;
  the small ``g_off`` current of padding columns on driven rows is neglected.
* ``adc_conversions_per_image`` = ``input_bits * physical_columns * row_tiles * V``
  (bit-serial: every used column of every row tile is converted once per input bit) or
  ``physical_columns * row_tiles * V`` with ``dac="multi_level"``. Unused (padding)
  columns are not converted.
* ``dac_activations_per_image`` = ``fan_in * col_tiles * V`` per DAC cycle (``* input_bits``
  bit-serial): every crossbar has its own row drivers, so a used input row is driven once
  in each column tile it spans. All used rows are counted every cycle (data independent:
  a 0 bit still occupies the driver's cycle), so this is the worst case.
* Digital **bytes**: a byte is 8 bits of an operand entering a digital stage; an operand
  of ``w`` bits counts ``ceil(w / 8)`` bytes. Widths are the register widths of the RTL,
  :meth:`~remeco.models.emulation.EmulationFormat.widths` (``y`` after shift-and-add,
  ``z`` after offset correction; ``adc_shift = 0``, so counts do not depend on ADC
  calibration). Stages, per image:

  - ``shift_add``: every ADC code enters the shift-and-add accumulator once:
    ``adc_conversions * ceil(adc_bits / 8)`` (covers accumulation over input bits and row
    tiles);
  - ``averaging``: every physical column of a (neuron, slice) with ``2**k > 1`` copies
    enters the copy sum: ``V * sum_{k > 0} 2**k * ceil(y / 8)``; single copies pass
    through for free;
  - ``offset``: slice recombination and offset correction, per neuron the ``n_slices``
    averaged slice values and the offset term, plus the input sum ``sum_k x_k`` once per
    vector: ``V * (neurons * (n_slices * ceil(y / 8) + ceil(z / 8)) + fan_in * ceil(input_bits / 8))``;
  - ``requant``: bias, ReLU and rescale (or the final logit rounding), one ``z``-wide
    operand per neuron: ``V * neurons * ceil(z / 8)``.
* ``devices_written`` = ``devices_programmed`` (each programmed once, before inference);
  ``write_pulses`` is the sum of the per-device pulse counts of a programming result
  (``ProgrammingResult.pulses``) when one is given, else ``None``. It is reported, not
  costed: Table 2 gives write energy per device written, not per pulse.

Costing (:func:`cost_from_counts`)
-----------------------------------
* area: ``devices_physical / density`` (crossbar) + ``analog_periphery_area_um2`` per
  crossbar, layer or network + ``digital_periphery_area_um2`` per crossbar, layer or network
  (the preset says which, ``*_area_per``);
* energy per image: ``compute_energy_per_device_read_j * device_reads +
  compute_energy_per_device_cycle_j * device_cycles`` (compute) +
  ``analog_periphery_energy_per_cycle_j * adc_conversions + dac_energy_per_activation_j *
  dac_activations`` (analog periphery; a "cycle" is one ADC conversion of one column) +
  ``digital_energy_per_byte_j * digital_bytes`` (digital periphery);
* ``energy_j`` = ``images *`` energy per image ``+ write_energy_per_device_j *
  devices_written`` (programming once, reported separately as ``write``).

Area models (``area_model``, :data:`AREA_MODELS`)
--------------------------------------------------
* ``tiles`` (the default of :func:`estimate`): whole crossbars, as fabricated --
  ``devices_physical`` and one periphery per crossbar; a plan that adds a few columns
  pays for a whole new crossbar (area ratios are crossbar-count ratios).
* ``columns`` (the paper's accounting; ``remeco reproduce``'s default): the devices and
  the per-column periphery a plan uses -- ``devices_programmed``, and every per-crossbar
  periphery charged for the share of its columns in use, ``crossbars * crossbar_columns
  / crossbar_columns_physical`` per layer (``crossbar_columns = physical_columns *
  row_tiles``). Per-layer and per-network periphery is the same in both models. On the
  paper-size LeNet below this gives area / base 1.994 (committee), 1.792 (S-neuron),
  1.396 (MSB), 1.017 (S-layer) against Table 4's 1.885, 1.708, 1.354, 1.041.

Presets (JSON data in :mod:`remeco.models.presets`)
---------------------------------------------------
``remeco_table2`` is Table 2 of the ReMeCo paper read as follows. Compute 80 fJ per 4-bit
device per input vector (160 fJ per 8-bit weight MAC); write 80 pJ per device (160 pJ per
8-bit weight); 1e10 devices / cm^2 (0.01 um^2 per device). "Analog components: 2.1 pJ /
cycle at 1.2 GHz, 1252 um^2" is read as *one ADC conversion* and *one crossbar*: ISAAC's
IMA (the tile table in ``REFERENCE.md``) spends (16 + 4 + 0.01) mW of ADC + DAC + S&H on
8 ADCs at 1.2 GS/s, i.e. 2.08 pJ per conversion, and its ADC + DAC + S&H + array area
(0.0096 + 0.00017 + 0.00004 + 0.0002) mm^2 over 8 crossbars is 1251 um^2 per crossbar;
a per-column reading (1252 um^2 for each of 128 columns) would make the ADCs 1000x larger
than the array and matches nothing. The DAC is therefore inside the 2.1 pJ
(``dac_energy_per_activation_j = 0``). "Digital components: 1.1 pJ / byte, 865 um^2"
has no stated scope; the preset charges **one** digital block per network, because
Table 4's committee machine is 1.885x, not 2x, the base area, which leaves about
0.83e-3 mm^2 that the paper did not duplicate -- the size of one 865 um^2 block.

``isaac`` is derived from the ISAAC tile table alone. Its per-IMA component rows are
totals over the IMA: 8 ADCs draw 16 mW together (16 mW each would be 128 mW, more than
the 289 mW / 12 = 24 mW the whole IMA draws), and one ADC serves one 128 x 128 crossbar,
so a crossbar is read at 1.2e9 / 128 = 9.375 MHz. Hence: ADC + S&H (16 mW + 10 uW) / 9.6 GS/s =
1.668 pJ per conversion; DAC 4 mW / (1024 DACs * 9.375 MHz) = 0.417 pJ per activation;
array 2.4 mW / (8 * 16384 cells * 9.375 MHz) = 1.95 fJ per device per cycle; S+A 0.2 mW
/ 9.6 G bytes/s = 20.8 fJ per byte; areas per crossbar (IMA rows / 8): ADC + DAC + S&H
1226.25 um^2, S+A 30 um^2; density 8 * 16384 cells / 0.0002 mm^2 = 6.55e10 / cm^2. ISAAC's
cells are 2-bit, ours 4-bit; the preset charges per device regardless. The table has no
write energy, so ``write_energy_per_device_j`` is 0 there.

Calibration against Table 4 (LeNet, 10 K images, ``remeco_table2``, bit-serial 8-bit inputs)
--------------------------------------------------------------------------------------------
The paper does not give LeNet's layer shapes. Assumed here (and built in
``tests/models/test_cost.py``): conv1 1->20 5x5 valid (24x24 = 576 positions, K = 25),
conv2 20->64 5x5 valid (20x20 = 400 positions, K = 500), 2x2 pooling, dense 6400->128,
128->100, 100->10; 865,822 parameters and 13.92 M MACs (27.8 M FLOPs), the closest match to
Table 3's "866 K" and "28 M" in a small search over common LeNet variants (3x3 / 5x5
kernels, same / valid padding, usual channel and width choices). 8-bit weights on
2 x 4-bit devices, 128 x 128 crossbars (108 crossbars for the base). Redundancy as in the
paper: committee machine = 2 copies of every column; S-neuron = 2 copies of all slices of
80 % of each layer's neurons; MSB (80 %) = 2 copies of only the MSB slice of 80 % of the
neurons; S-layer = MSB (80 %) in layers 1, 2, 5 and no copies in layers 3, 4. Which
neurons are "sensitive" does not change any count (columns are packed in order), so the
first 80 % are taken.

=======================  =======  ========  ========  =======  =======
quantity                 base     CM        S-neuron  MSB 80%  S-layer
=======================  =======  ========  ========  =======  =======
area mm^2, Table 4       7.23e-3  13.63e-3  12.35e-3  9.79e-3  7.53e-3
area mm^2, ours          0.1538   0.3039    0.3024    0.2316   0.1594
area / base, Table 4     1        1.885     1.708     1.354    1.041
area / base, ours        1        1.976     1.967     1.506    1.037
crossbars, ours          108      214       213       163      112
devices programmed, M    1.731    3.462     3.110     2.421    1.758
energy mJ, Table 4       897.1    1791.2    1612.7    1254.9   1211.1
energy mJ, ours          91.9     180.2     162.3     127.1    125.2
energy / base, Table 4   1        1.997     1.798     1.399    1.350
energy / base, ours      1        1.962     1.767     1.383    1.363
device reads / image, M  27.84    55.68     50.03     38.94    38.27
"paper reading", mJ      890.9    1781.9    1601.0    1246.0   1224.7
=======================  =======  ========  ========  =======  =======

Our energies exclude the one-time write (0.14 mJ for the base, 0.28 mJ for the committee
machine). Base split: compute 22.3 mJ, analog periphery 40.5 mJ (1.93 M conversions per
image), digital 29.1 mJ (2.65 M bytes per image); area: devices 0.0177 mm^2, analog
periphery 0.1352 mm^2 (108 x 1252 um^2), digital 0.000865 mm^2.

What matches. The relative pattern: the committee machine about doubles area and energy;
MSB redundancy adds less than S-neuron redundancy (one of two slices copied); dropping the
copies of the two large dense layers brings the area to within 4 % of the base (paper: 4 %)
while the energy stays 36 % above it (paper: 35 %), because LeNet's energy is spent in the
convolutions (reused at every output position) and its area in the 6400 x 128 dense layer.
Energy: S-neuron and MSB overheads are 0.80 and 0.40 of the committee's (paper: 0.80 and
0.40). The paper's **energy** is reproduced to 1.1 % in every column by one reading of
Table 2: every device read (one 4-bit device in one input vector's MAC; for the base,
with two slices, the same number as FLOPs) is charged one analog cycle and one digital byte,
``device_reads * (2.1 + 1.1) pJ * 1e4`` (row "paper reading"). That is one ADC conversion
per device read, as if every product were converted on its own.

What does not match, and why. (1) Energy: our counts convert a column once per input bit
and row tile, i.e. once per 128 / 8 = 16 device reads, and charge 1.1 pJ per byte of
converted data, so our base energy is 9.8x below Table 4. We keep the physical count; the
paper reading is shown for comparison only. Our committee machine is 1.96x, not 2x,
because slice recombination and requantisation happen once per neuron, after averaging.
The paper's AlexNet energy does not follow the same reading (1.84 J / 1e4 images / 1.5 G
FLOPs = 0.12 pJ per FLOP against LeNet's 3.2 pJ), so we did not use it. (2) Area: Table 4
cannot follow from Table 2 for 866 K weights: the devices alone occupy
2 * 865,822 / 1e10 cm^-2 = 17.3e-3 mm^2, 2.4x the reported total. Fitting
``a * devices_programmed + b`` (our device counts) to Table 4's base and committee areas
gives a = 3.70e-9 mm^2 per device (2.7e10 devices / cm^2, 2.7x Table 2's density) and
b = 0.83e-3 mm^2 unduplicated, about one 865 um^2 digital block; that fit then predicts
S-neuron 12.33e-3 (paper 12.35e-3) and MSB 9.78e-3 (9.79e-3), so the paper's area is
evidently proportional to programmed devices, at a density we cannot derive from Table 2.
It predicts 7.33e-3 for the S-layer (paper 7.53e-3): layers 3-4 hold 96 % of the devices
with our shapes, the paper's numbers imply 88 %. We did not rescale the density to hit
the numbers. Our area is instead dominated by one
1252 um^2 analog periphery per crossbar, so our area ratios are crossbar-count ratios
and round up per layer: S-neuron redundancy of 80 % of the 128 neurons of the 6400 x 128
layer needs 460 columns, four column tiles like the committee's 512, hence 1.967x instead
of ~1.8x. (3) Our committee machine is also the paper's "layer averaging" column: the
emulation contract averages copies in every layer; the paper's 0.4 mJ between the two is
below this model's resolution.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path

import numpy as np

from .mapping import MappedLayer

__all__ = [
    "DAC_MODES",
    "AREA_SCOPES",
    "AREA_MODELS",
    "Counts",
    "NetworkCounts",
    "CostPreset",
    "CostReport",
    "count_layer",
    "count_network",
    "cost_from_counts",
    "estimate",
    "load_preset",
    "available_presets",
]

DAC_MODES = ("bit_serial", "multi_level")
AREA_SCOPES = ("crossbar", "layer", "network")
#: How area is charged (see the module docstring, "Area models"): ``"columns"`` the
#: devices and per-column periphery a plan uses (the paper's accounting), ``"tiles"``
#: whole crossbars with their full periphery.
AREA_MODELS = ("columns", "tiles")

_UM2_PER_MM2 = 1e6
_MM2_PER_CM2 = 100.0
_PRESET_PACKAGE = "remeco.models.presets"


def _nbytes(bits: int) -> int:
    """Bytes of a ``bits``-wide operand: ``ceil(bits / 8)``."""
    return -(-int(bits) // 8)


def _require_count(name: str, value: object, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- counts


@dataclass(frozen=True)
class Counts:
    """Counted quantities of one layer, or summed over a network (plain integers).

    Attributes
    ----------
    layers:
        Layers counted (1 for a layer).
    crossbars:
        Physical crossbars (tiles), redundant copies included.
    devices_programmed, devices_physical:
        Devices holding a weight slice (all copies) and all devices of the crossbars
        (padding included).
    physical_columns:
        Used crossbar columns (neurons x slices x copies).
    crossbar_columns, crossbar_columns_physical:
        Used columns summed over the crossbars they span (``physical_columns *
        row_tiles``) and all columns of the crossbars (``crossbars * cols``); their ratio
        is the share of the crossbars' periphery the ``"columns"`` area model charges.
    macs_per_image:
        Logical multiply-accumulates (``fan_in * neurons * V``), independent of mapping.
    device_reads_per_image, device_cycles_per_image:
        Programmed devices times input vectors; times DAC cycles per vector.
    adc_conversions_per_image, dac_activations_per_image:
        ADC conversions of used columns; row-driver activations.
    shift_add_bytes_per_image, averaging_bytes_per_image, offset_bytes_per_image,
    requant_bytes_per_image:
        Digital bytes per stage (see the module docstring for the byte rule).
    devices_written:
        Devices programmed once before inference.
    write_pulses:
        Total programming pulses when programming results were given, else ``None``.
    """

    layers: int
    crossbars: int
    devices_programmed: int
    devices_physical: int
    physical_columns: int
    crossbar_columns: int
    crossbar_columns_physical: int
    macs_per_image: int
    device_reads_per_image: int
    device_cycles_per_image: int
    adc_conversions_per_image: int
    dac_activations_per_image: int
    shift_add_bytes_per_image: int
    averaging_bytes_per_image: int
    offset_bytes_per_image: int
    requant_bytes_per_image: int
    devices_written: int
    write_pulses: int | None = None

    @property
    def digital_bytes_per_image(self) -> int:
        """All digital bytes per image (sum of the four stages)."""
        return (
            self.shift_add_bytes_per_image
            + self.averaging_bytes_per_image
            + self.offset_bytes_per_image
            + self.requant_bytes_per_image
        )

    def __add__(self, other: "Counts") -> "Counts":
        if not isinstance(other, Counts):
            return NotImplemented
        values = {}
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            # A pulse total over layers is only meaningful if every layer has one.
            values[f.name] = None if a is None or b is None else a + b
        return Counts(**values)

    def to_dict(self) -> dict[str, int | None]:
        """Plain-data view (JSON-friendly), with the derived byte total."""
        d = asdict(self)
        d["digital_bytes_per_image"] = self.digital_bytes_per_image
        return d


@dataclass(frozen=True)
class NetworkCounts:
    """Per-layer counts and their total.

    Attributes
    ----------
    per_layer:
        One :class:`Counts` per layer, in network order.
    vectors_per_image:
        Input vectors one image produces, per layer.
    dac:
        DAC mode the counts were made for (one of :data:`DAC_MODES`).
    """

    per_layer: tuple[Counts, ...]
    vectors_per_image: tuple[int, ...]
    dac: str

    @property
    def total(self) -> Counts:
        """Sum over all layers."""
        total = self.per_layer[0]
        for c in self.per_layer[1:]:
            total = total + c
        return total

    def to_dict(self) -> dict:
        """Plain-data view (JSON-friendly)."""
        return {
            "dac": self.dac,
            "vectors_per_image": list(self.vectors_per_image),
            "per_layer": [c.to_dict() for c in self.per_layer],
            "total": self.total.to_dict(),
        }


def count_layer(
    mapped: MappedLayer,
    vectors_per_image: int = 1,
    *,
    dac: str = "bit_serial",
    write_pulses: np.ndarray | int | None = None,
) -> Counts:
    """Count crossbars, devices, conversions and digital work of one mapped layer.

    Parameters
    ----------
    mapped:
        The layer's layout (copies included).
    vectors_per_image:
        Input vectors one image produces: 1 for a dense layer, output positions for a
        convolution.
    dac:
        ``"bit_serial"`` (1-bit DAC, ``input_bits`` cycles per vector, the emulation
        contract) or ``"multi_level"`` (one cycle per vector).
    write_pulses:
        Optional per-device pulse counts of the layer's programming (e.g. the ``pulses``
        of every tile's programming result) or their total.

    Returns
    -------
    Counts
        Per-image counts for one image; device counts for the whole layer.
    """
    if not isinstance(mapped, MappedLayer):
        raise ValueError(f"mapped must be a MappedLayer, got {type(mapped).__name__}")
    v = _require_count("vectors_per_image", vectors_per_image, 1)
    if dac not in DAC_MODES:
        raise ValueError(f"dac must be one of {DAC_MODES}, got {dac!r}")
    fmt = mapped.fmt
    cycles = fmt.input_bits if dac == "bit_serial" else 1
    k = np.asarray(mapped.copies_log2, dtype=np.int64)
    widths = fmt.widths(mapped.fan_in, int(k.max()), 0)
    y_bytes, z_bytes = _nbytes(widths["y"]), _nbytes(widths["z"])
    n, p = mapped.neurons, mapped.physical_columns

    conversions = cycles * p * mapped.row_tiles * v
    # Copies that are summed before the averaging shift; k = 0 columns pass through.
    averaged_columns = int(np.where(k > 0, np.left_shift(1, k), 0).sum())

    pulses = None
    if write_pulses is not None:
        arr = np.asarray(write_pulses)
        if not np.issubdtype(arr.dtype, np.integer) or (arr.size and arr.min() < 0):
            raise ValueError("write_pulses must be non-negative integers")
        pulses = int(arr.sum())

    return Counts(
        layers=1,
        crossbars=mapped.tiles,
        devices_programmed=mapped.devices,
        devices_physical=mapped.tiles * fmt.rows * fmt.cols,
        physical_columns=p,
        crossbar_columns=p * mapped.row_tiles,
        crossbar_columns_physical=mapped.tiles * fmt.cols,
        macs_per_image=mapped.fan_in * n * v,
        device_reads_per_image=mapped.devices * v,
        device_cycles_per_image=mapped.devices * v * cycles,
        adc_conversions_per_image=conversions,
        dac_activations_per_image=mapped.fan_in * mapped.col_tiles * v * cycles,
        shift_add_bytes_per_image=conversions * _nbytes(fmt.adc_bits),
        averaging_bytes_per_image=v * averaged_columns * y_bytes,
        offset_bytes_per_image=v * (n * (fmt.n_slices * y_bytes + z_bytes)
                                    + mapped.fan_in * _nbytes(fmt.input_bits)),
        requant_bytes_per_image=v * n * z_bytes,
        devices_written=mapped.devices,
        write_pulses=pulses,
    )


def count_network(
    layers: Sequence[MappedLayer],
    vectors_per_image: Sequence[int] | None = None,
    *,
    dac: str = "bit_serial",
    write_pulses: Sequence[np.ndarray | int | None] | None = None,
) -> NetworkCounts:
    """Count every layer of a network (see :func:`count_layer`).

    Parameters
    ----------
    layers:
        Mapped layers in network order.
    vectors_per_image:
        Per layer, input vectors one image produces; ``None`` means 1 for every layer.
    dac:
        DAC mode (one of :data:`DAC_MODES`).
    write_pulses:
        Optional per-layer pulse counts (``None`` entries allowed).
    """
    layers = list(layers)
    if not layers:
        raise ValueError("layers must not be empty")
    vectors = [1] * len(layers) if vectors_per_image is None else list(vectors_per_image)
    pulses = [None] * len(layers) if write_pulses is None else list(write_pulses)
    if len(vectors) != len(layers):
        raise ValueError(f"vectors_per_image has {len(vectors)} entries for {len(layers)} layers")
    if len(pulses) != len(layers):
        raise ValueError(f"write_pulses has {len(pulses)} entries for {len(layers)} layers")
    per_layer = tuple(
        count_layer(m, vec, dac=dac, write_pulses=wp) for m, vec, wp in zip(layers, vectors, pulses)
    )
    return NetworkCounts(per_layer=per_layer, vectors_per_image=tuple(int(x) for x in vectors), dac=dac)


# --------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class CostPreset:
    """Per-event energies and per-instance areas (plain data, loaded from JSON).

    Attributes
    ----------
    name:
        Preset name.
    source:
        Where the numbers come from and how they were read.
    compute_energy_per_device_read_j:
        Energy of one programmed device in one input vector's dot product (J).
    compute_energy_per_device_cycle_j:
        Energy of one programmed device in one DAC cycle (J); for presets that give
        array power rather than energy per MAC.
    write_energy_per_device_j:
        Programming one device once (J).
    density_devices_per_cm2:
        Crossbar devices per cm^2 (sets crossbar area).
    analog_periphery_energy_per_cycle_j:
        One ADC conversion of one column, with whatever analog parts the preset folds in
        (J).
    dac_energy_per_activation_j:
        One row driver (DAC) activation for one cycle (J); 0 if folded into the above.
    analog_periphery_area_um2, analog_periphery_area_per:
        Area of one analog periphery instance (um^2) and what it is instantiated per
        (one of :data:`AREA_SCOPES`).
    digital_energy_per_byte_j:
        Digital periphery energy per byte (J) (see the module docstring for "byte").
    digital_periphery_area_um2, digital_periphery_area_per:
        Area of one digital periphery instance (um^2) and its scope.
    notes:
        Free-text remarks (derivations, omissions).
    """

    name: str
    source: str
    compute_energy_per_device_read_j: float
    compute_energy_per_device_cycle_j: float
    write_energy_per_device_j: float
    density_devices_per_cm2: float
    analog_periphery_energy_per_cycle_j: float
    dac_energy_per_activation_j: float
    analog_periphery_area_um2: float
    analog_periphery_area_per: str
    digital_energy_per_byte_j: float
    digital_periphery_area_um2: float
    digital_periphery_area_per: str
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _validate_values({f.name: getattr(self, f.name) for f in fields(self)}, f"preset {self.name!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, object], origin: str = "<dict>") -> "CostPreset":
        """Build from plain data, rejecting missing and unknown fields.

        Raises
        ------
        ValueError
            Naming the offending field and ``origin`` (e.g. the JSON file).
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"{origin}: a preset must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        required = known - {"notes"}
        for key in sorted(required):
            if key not in data:
                raise ValueError(f"{origin}: missing field {key!r}")
        for key in data:
            if key not in known:
                raise ValueError(f"{origin}: unknown field {key!r}")
        values = dict(data)
        notes = values.get("notes", ())
        if isinstance(notes, str):
            notes = (notes,)
        if not isinstance(notes, (list, tuple)) or not all(isinstance(s, str) for s in notes):
            raise ValueError(f"{origin}: field 'notes' must be a string or a list of strings")
        values["notes"] = tuple(notes)
        _validate_values(values, origin)
        return cls(**values)

    def to_dict(self) -> dict:
        """Plain-data view (what the JSON file holds)."""
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d


_NUMERIC_FIELDS = (
    "compute_energy_per_device_read_j",
    "compute_energy_per_device_cycle_j",
    "write_energy_per_device_j",
    "density_devices_per_cm2",
    "analog_periphery_energy_per_cycle_j",
    "dac_energy_per_activation_j",
    "analog_periphery_area_um2",
    "digital_energy_per_byte_j",
    "digital_periphery_area_um2",
)


def _validate_values(values: Mapping[str, object], origin: str) -> None:
    for key in ("name", "source"):
        if not isinstance(values[key], str) or (key == "name" and not values[key]):
            raise ValueError(f"{origin}: field {key!r} must be a non-empty string")
    for key in ("analog_periphery_area_per", "digital_periphery_area_per"):
        if values[key] not in AREA_SCOPES:
            raise ValueError(f"{origin}: field {key!r} must be one of {AREA_SCOPES}, got {values[key]!r}")
    for key in _NUMERIC_FIELDS:
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{origin}: field {key!r} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{origin}: field {key!r} must be finite, got {value!r}")
        # Density divides; every other quantity may be 0 (folded into another field).
        if value < 0 or (key == "density_devices_per_cm2" and value == 0):
            bound = "> 0" if key == "density_devices_per_cm2" else ">= 0"
            raise ValueError(f"{origin}: field {key!r} must be {bound}, got {value!r}")


def available_presets() -> list[str]:
    """Names of the presets shipped in :mod:`remeco.models.presets`."""
    root = resources.files(_PRESET_PACKAGE)
    return sorted(p.name[: -len(".json")] for p in root.iterdir() if p.name.endswith(".json"))


def load_preset(name_or_path: str | os.PathLike) -> CostPreset:
    """Load a preset by name (``"remeco_table2"``, ``"isaac"``) or from a JSON file path.

    A string is a name if it is a bare identifier (letters, digits, ``_``, ``-``);
    anything else (a path object, a ``.json`` suffix, a directory separator) is a path.

    Raises
    ------
    ValueError
        Unknown name, unreadable or invalid JSON, missing, unknown, negative or
        non-finite fields (the message names the field and the file).
    """
    if isinstance(name_or_path, str) and re.fullmatch(r"[A-Za-z0-9_\-]+", name_or_path):
        resource = resources.files(_PRESET_PACKAGE) / f"{name_or_path}.json"
        if not resource.is_file():
            raise ValueError(f"unknown preset {name_or_path!r}; available: {available_presets()}")
        text, origin = resource.read_text(encoding="utf-8"), f"preset {name_or_path!r} ({resource})"
    else:
        path = Path(name_or_path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read preset file {path}: {exc}") from exc
        origin = str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{origin}: invalid JSON: {exc}") from exc
    return CostPreset.from_dict(data, origin)


# --------------------------------------------------------------------------- costing


@dataclass(frozen=True)
class CostReport:
    """Area and energy of a network for a number of images (plain data).

    Attributes
    ----------
    preset:
        Name of the preset used.
    images:
        Images the energy is for.
    area_mm2:
        Total area (mm^2).
    energy_j:
        Inference energy of ``images`` images plus one-time programming (J).
    energy_per_image_j:
        Inference energy of one image (J), write excluded.
    area_breakdown_mm2:
        ``crossbar``, ``analog_periphery``, ``digital_periphery`` (mm^2).
    energy_breakdown_j:
        ``compute``, ``analog_periphery``, ``digital_periphery`` (for ``images``) and
        ``write`` (once) (J).
    counts:
        The counts the costs were computed from.
    """

    preset: str
    images: int
    area_mm2: float
    energy_j: float
    energy_per_image_j: float
    area_breakdown_mm2: dict[str, float]
    energy_breakdown_j: dict[str, float]
    counts: NetworkCounts

    def to_dict(self) -> dict:
        """Plain-data view (JSON-friendly)."""
        return {
            "preset": self.preset,
            "images": self.images,
            "area_mm2": self.area_mm2,
            "energy_j": self.energy_j,
            "energy_per_image_j": self.energy_per_image_j,
            "area_breakdown_mm2": dict(self.area_breakdown_mm2),
            "energy_breakdown_j": dict(self.energy_breakdown_j),
            "counts": self.counts.to_dict(),
        }


def _instances(scope: str, counts: NetworkCounts, area_model: str) -> float:
    """Periphery instances charged at ``scope``; per crossbar, under the ``"columns"``
    model, each crossbar counts for the share of its columns in use (layer by layer)."""
    c = counts.total
    if scope == "crossbar" and area_model == "columns":
        return sum(x.crossbars * x.crossbar_columns / x.crossbar_columns_physical
                   for x in counts.per_layer if x.crossbar_columns_physical)
    return {"crossbar": c.crossbars, "layer": c.layers, "network": 1}[scope]


def cost_from_counts(counts: NetworkCounts, preset: CostPreset, images: int = 10_000, *,
                     area_model: str = "tiles") -> CostReport:
    """Area and energy from counts: each count times its preset cost (linear).

    Parameters
    ----------
    counts:
        From :func:`count_network`.
    preset:
        Per-event energies and per-instance areas.
    images:
        Images the inference energy is for.
    area_model:
        ``"tiles"`` (whole crossbars) or ``"columns"`` (the devices and column periphery
        in use), see :data:`AREA_MODELS`; energy does not depend on it.
    """
    n_img = _require_count("images", images, 0)
    if area_model not in AREA_MODELS:
        raise ValueError(f"area_model must be one of {AREA_MODELS}, got {area_model!r}")
    c = counts.total
    devices = c.devices_physical if area_model == "tiles" else c.devices_programmed
    area = {
        "crossbar": devices / preset.density_devices_per_cm2 * _MM2_PER_CM2,
        "analog_periphery": _instances(preset.analog_periphery_area_per, counts, area_model)
        * preset.analog_periphery_area_um2 / _UM2_PER_MM2,
        "digital_periphery": _instances(preset.digital_periphery_area_per, counts, area_model)
        * preset.digital_periphery_area_um2 / _UM2_PER_MM2,
    }
    per_image = {
        "compute": preset.compute_energy_per_device_read_j * c.device_reads_per_image
        + preset.compute_energy_per_device_cycle_j * c.device_cycles_per_image,
        "analog_periphery": preset.analog_periphery_energy_per_cycle_j * c.adc_conversions_per_image
        + preset.dac_energy_per_activation_j * c.dac_activations_per_image,
        "digital_periphery": preset.digital_energy_per_byte_j * c.digital_bytes_per_image,
    }
    energy = {key: n_img * value for key, value in per_image.items()}
    energy["write"] = preset.write_energy_per_device_j * c.devices_written
    return CostReport(
        preset=preset.name,
        images=n_img,
        area_mm2=sum(area.values()),
        energy_j=sum(energy.values()),
        energy_per_image_j=sum(per_image.values()),
        area_breakdown_mm2=area,
        energy_breakdown_j=energy,
        counts=counts,
    )


def estimate(
    network_layers: Sequence[MappedLayer],
    preset: CostPreset | str | os.PathLike,
    images: int = 10_000,
    *,
    vectors_per_image: Sequence[int] | None = None,
    dac: str = "bit_serial",
    write_pulses: Sequence[np.ndarray | int | None] | None = None,
    area_model: str = "tiles",
) -> CostReport:
    """Area and energy of running ``images`` images through a mapped network.

    Parameters
    ----------
    network_layers:
        Mapped layers in network order (redundant copies included in each layout).
    preset:
        A :class:`CostPreset`, or a preset name or JSON path for :func:`load_preset`.
    images:
        Images the inference energy is for (Table 4 of the paper uses 10 000).
    vectors_per_image:
        Per layer, input vectors one image produces (default 1 each: dense layers).
    dac:
        ``"bit_serial"`` or ``"multi_level"`` (see :func:`count_layer`).
    write_pulses:
        Optional per-layer programming pulse counts (reported in the counts only).
    area_model:
        ``"tiles"`` or ``"columns"`` (see :data:`AREA_MODELS` and the module docstring).
    """
    if not isinstance(preset, CostPreset):
        preset = load_preset(preset)
    counts = count_network(network_layers, vectors_per_image, dac=dac, write_pulses=write_pulses)
    return cost_from_counts(counts, preset, images, area_model=area_model)
