"""remeco: reliable memristor-crossbar accelerators, from golden model to RTL to board.

The layers are subpackages: :mod:`remeco.models` (golden models), :mod:`remeco.rtl`
(Amaranth components), :mod:`remeco.tb` (cocotb benches), :mod:`remeco.host` (driver,
campaigns, command line).

Python API (bring your own network)
-----------------------------------
:func:`from_torch`
    A torch ``nn.Sequential`` (or fx-traceable chain) -> the integer network the crossbars
    run (post-training quantization; BatchNorm and average pools folded).
:func:`evaluate`
    A network on chip instances under redundancy plans -> a pandas DataFrame, one row per
    (instance, plan): accuracy, area, energy, plan and chip; resumable with ``store=``.
:func:`compute_sensitivity`
    Neuron sensitivity for the sensitivity-guided plans.
:class:`ChipParams`
    Non-idealities and datapath of a chip; ``ChipParams.load("paper" | "isaac" | path)``
    and ``save(path)`` (JSON or TOML).
:class:`EmulationFormat`, :class:`DeviceParams`
    The datapath (tile, slices, ADC and input bits) and the device model inside a chip.
:class:`RedundancyPlan`, :func:`make_plan`, :data:`PLAN_NAMES`
    Redundancy plans (named or your own).
:class:`QuantizedNetwork`, :class:`Sensitivity`, :func:`load_dataset`
    The integer network, sensitivities, the data sets (embedded MNIST-5k by default).
:data:`STUCK_AT_RATE`, :data:`STUCK_ON_FRACTION`
    The paper's fault model (1 % stuck, 83.8 % of them stuck on).
:class:`ConversionError`, :class:`EvaluationError`, :class:`ChipConfigError`
    One-line errors for bad input (all ``ValueError``).

The names are imported on first use, so ``import remeco`` stays light (no torch) for
the board-side driver.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public name -> module that defines it.
_EXPORTS = {
    "from_torch": "remeco.models.convert",
    "compute_sensitivity": "remeco.models.convert",
    "ConversionError": "remeco.models.convert",
    "evaluate": "remeco.host.evaluate",
    "EvaluationError": "remeco.host.evaluate",
    "ChipParams": "remeco.models.chip",
    "ChipConfigError": "remeco.models.chipfile",
    "EmulationFormat": "remeco.models.emulation",
    "DeviceParams": "remeco.models.device",
    "RedundancyPlan": "remeco.models.redundancy",
    "make_plan": "remeco.models.redundancy",
    "PLAN_NAMES": "remeco.models.redundancy",
    "QuantizedNetwork": "remeco.models.quantized",
    "Sensitivity": "remeco.models.sensitivity",
    "load_dataset": "remeco.models.data",
    "STUCK_AT_RATE": "remeco.models.faults",
    "STUCK_ON_FRACTION": "remeco.models.faults",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'remeco' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
