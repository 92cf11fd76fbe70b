"""Chip configurations as files: JSON and TOML, presets shipped as data, one-line errors.

A file holds :meth:`remeco.models.chip.ChipParams.to_dict`: the fault, D2D, wire and
IR-drop fields at the top level and two tables, ``device``
(:class:`~remeco.models.device.DeviceParams`) and ``datapath``
(:class:`~remeco.models.emulation.EmulationFormat`: tile size, slices, input and ADC bits).
Every key may be left out (its default applies). Two top-level strings are metadata and
are not parameters: ``name`` and ``source`` (where the numbers come from). In TOML a
missing ``wire_resistance`` is the JSON ``null``: the resistance is drawn per instance.

Presets (``ChipParams.load("paper")``) are TOML files in ``remeco/models/presets/chips``:

``paper``  the ReMeCo paper's chip (its Table 2 and Section 4.1):
           1 % stuck-at faults, 83.8 % of them stuck-on; 4-bit devices, 8-bit weights in
           2 slices; 128 x 128 crossbars; wires N(2 ohm, 0.5 ohm^2); D2D sigma 0.1 mu;
           write-and-verify. It equals ``ChipParams()``.
``isaac``  ISAAC's datapath (ISCA 2016): 128 x 128 crossbars of 2-bit cells (an 8-bit
           weight in 4 slices), 8-bit ADC, 1-bit DAC (inputs bit-serial); ISAAC publishes no
           fault or wire model, so those are the paper's.

Reading and checking live here (one concept: the file format); :class:`ChipParams` keeps
only the thin ``load`` / ``save`` / ``from_dict`` methods.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from dataclasses import MISSING, fields
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["ChipConfigError", "METADATA", "available_chip_presets", "read_chip_file", "check_chip_dict", "to_toml"]

#: Top-level keys a chip file may hold that are not parameters.
METADATA = ("name", "source")
_PRESETS = "remeco.models.presets"


class ChipConfigError(ValueError):
    """A chip configuration that cannot be used (one line naming the file and the key)."""


def available_chip_presets() -> list[str]:
    """Names of the chip presets shipped with remeco."""
    root = resources.files(_PRESETS) / "chips"
    return sorted(p.name[: -len(".toml")] for p in root.iterdir() if p.name.endswith(".toml"))


def read_chip_file(source: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """The parameter dict of a preset name or a ``.json`` / ``.toml`` file, and its origin
    (for messages). A string is a preset name if it is a bare identifier."""
    if not isinstance(source, (str, os.PathLike)):
        raise ChipConfigError(f"a chip is a preset name or a .json / .toml file path, got {type(source).__name__}")
    if isinstance(source, str) and re.fullmatch(r"[A-Za-z0-9_\-]+", source):
        resource = resources.files(_PRESETS) / "chips" / f"{source}.toml"
        if not resource.is_file():
            raise ChipConfigError(f"unknown chip preset {source!r}; presets: {', '.join(available_chip_presets())} "
                                  "(or a .json / .toml file)")
        text, origin, suffix = resource.read_text(encoding="utf-8"), f"chip preset {source!r}", ".toml"
    else:
        path = Path(source)
        suffix = path.suffix.lower()
        if suffix not in (".json", ".toml"):
            raise ChipConfigError(f"chip file {path}: the name must end in .json or .toml")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ChipConfigError(f"cannot read chip file {path}: {getattr(exc, 'strerror', None) or exc}") from None
        origin = f"chip file {path}"
    try:
        data = json.loads(text) if suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if suffix == ".json" else "TOML"
        raise ChipConfigError(f"{origin}: invalid {kind}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ChipConfigError(f"{origin}: expected an object of chip parameters, got {type(data).__name__}")
    return data, origin


def _check_type(key: str, value: Any, annotation: str, origin: str) -> None:
    kinds = {part.strip() for part in annotation.split("|")}
    if value is None and "None" in kinds:
        return
    ok = (
        ("bool" in kinds and isinstance(value, bool))
        or ("int" in kinds and isinstance(value, int) and not isinstance(value, bool))
        or ("float" in kinds and isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))
        or ("str" in kinds and isinstance(value, str))
    )
    if not ok:
        want = " or ".join(sorted(k if k != "None" else "null" for k in kinds))
        raise ChipConfigError(f"{origin}: {key} must be {want}, got {value!r}")


def check_chip_dict(cls: type, data: Any, origin: str, prefix: str = "",
                    nested: dict[str, type] | None = None) -> dict[str, Any]:
    """Raise :class:`ChipConfigError` naming the first unknown key or value of a wrong type;
    return ``data`` with integers in float fields made floats (so ``2`` and ``2.0`` are
    the same chip, also in a campaign's spec).

    ``cls`` is a dataclass; ``nested`` maps field names to the dataclasses of their tables.
    """
    if not isinstance(data, dict):
        raise ChipConfigError(f"{origin}: {prefix.rstrip('.') or 'the configuration'} must be a table of parameters, "
                              f"got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if not prefix and key in METADATA:
            if not isinstance(value, str):
                raise ChipConfigError(f"{origin}: {key} must be a string, got {value!r}")
            out[key] = value
            continue
        if key not in known:
            allowed = sorted(known) + (list(METADATA) if not prefix else [])
            raise ChipConfigError(f"{origin}: unknown chip parameter {name!r}; known: {', '.join(allowed)}")
        if nested and key in nested:
            out[key] = check_chip_dict(nested[key], value, origin, f"{name}.")
            continue
        annotation = str(known[key].type)
        _check_type(name, value, annotation, origin)
        floats = "float" in {part.strip() for part in annotation.split("|")}
        out[key] = float(value) if floats and isinstance(value, int) and not isinstance(value, bool) else value
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # shortest round-trip form; TOML accepts exponents like 2e-06
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def to_toml(data: dict[str, Any], header: str = "") -> str:
    """TOML text of a chip dict (scalars first, then one table per nested dict; ``None``
    values are left out, which reads back as ``None``)."""
    lines = [f"# {line}" for line in header.splitlines()]
    tables = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        elif value is not None:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, table in tables:
        lines += ["", f"[{key}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


def field_defaults(cls: type) -> dict[str, Any]:
    """Default value of every field of a dataclass (for messages and docs)."""
    out = {}
    for f in fields(cls):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out
