"""Chip configurations as files: JSON / TOML round trips, presets, one-line errors, one stuck-on share."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from remeco.models.chip import ChipParams, program_layer
from remeco.models.chipfile import ChipConfigError, available_chip_presets
from remeco.models.device import DeviceParams
from remeco.models.emulation import EmulationFormat
from remeco.models.faults import STUCK_AT_RATE, STUCK_ON_FRACTION
from remeco.models.mapping import map_layer

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_save_and_load_round_trip(tmp_path, suffix):
    chip = ChipParams(stuck_at_rate=0.02, stuck_on_fraction=0.5, write_verify=False, wire_resistance=1.5,
                      ir_drop="exact", device=DeviceParams(levels=8, g_on=3e-6),
                      datapath=EmulationFormat(rows=64, cols=32, slice_bits=3, n_slices=3, adc_bits=6))
    path = tmp_path / f"chip{suffix}"
    chip.save(path, source="a test")
    assert ChipParams.load(path) == chip
    assert ChipParams.load(str(path)) == chip
    # None (drawn wires) survives TOML, which has no null.
    ChipParams().save(path)
    assert ChipParams.load(path).wire_resistance is None


def test_integers_in_float_fields_are_the_same_chip(tmp_path):
    path = tmp_path / "chip.toml"
    path.write_text("wire_mean = 2\nd2d_sigma = 0\n[device]\nv_p = 4\n")
    chip = ChipParams.load(path)
    assert chip == ChipParams(d2d_sigma=0.0)
    assert json.dumps(chip.to_dict()) == json.dumps(ChipParams(d2d_sigma=0.0).to_dict())  # the spec's text
    assert isinstance(chip.wire_mean, float) and isinstance(chip.device.v_p, float)
    assert isinstance(chip.device.levels, int)


def test_presets_paper_is_the_default_chip_and_isaac_has_two_bit_cells():
    assert {"paper", "isaac"} <= set(available_chip_presets())
    paper = ChipParams.load("paper")
    assert paper == ChipParams()
    assert (paper.stuck_at_rate, paper.stuck_on_fraction) == (STUCK_AT_RATE, STUCK_ON_FRACTION) == (0.01, 0.838)
    isaac = ChipParams.load("isaac")
    assert (isaac.device.levels, isaac.datapath.slice_bits, isaac.datapath.n_slices) == (4, 2, 4)
    assert (isaac.datapath.rows, isaac.datapath.cols, isaac.datapath.adc_bits) == (128, 128, 8)
    # The isaac chip programs a layer mapped with its own datapath.
    weights = np.random.default_rng(0).integers(-127, 128, (40, 6))
    prog = program_layer(map_layer(weights, isaac.datapath), isaac, seed=0, instance=0)
    assert prog.transfer.shape[-2:] == (128, 128)
    assert "128x128 tiles" in isaac.describe() and "4x2-bit" in isaac.describe()


@pytest.mark.parametrize("text, suffix, words", [
    ('stuck_at_rate = 0.01\ncolour = "red"\n', ".toml", ["'colour'", "unknown chip parameter"]),
    ('[device]\nlevel = 16\n', ".toml", ["'device.level'"]),
    ('{"datapath": {"adc_bit": 8}}', ".json", ["'datapath.adc_bit'"]),
    ('stuck_at_rate = 1.5\n', ".toml", ["stuck_at_rate"]),
    ('write_verify = "yes"\n', ".toml", ["write_verify", "bool"]),
    ('{"d2d_sigma": "0.1"}', ".json", ["d2d_sigma", "float"]),
    ('ir_drop = "spice"\n', ".toml", ["ir_drop"]),
    ('[device]\nlevels = 8\n', ".toml", ["device.levels", "slice_bits"]),
    ('[device]\ng_on = -1.0\n', ".toml", ["device.g_on"]),
    ('[datapath]\nrows = 0\n', ".toml", ["datapath.rows"]),
    ('device = 3\n', ".toml", ["device", "table"]),
    ('stuck_at_rate = \n', ".toml", ["invalid TOML"]),
    ('[1, 2]', ".json", ["expected an object"]),
])
def test_bad_files_give_one_line_naming_the_key(tmp_path, text, suffix, words):
    path = tmp_path / f"chip{suffix}"
    path.write_text(text)
    with pytest.raises(ChipConfigError) as info:
        ChipParams.load(path)
    message = str(info.value)
    assert isinstance(info.value, ValueError) and "\n" not in message
    assert str(path) in message
    for word in words:
        assert word in message, message


def test_unknown_preset_missing_file_and_bad_suffix(tmp_path):
    with pytest.raises(ChipConfigError, match="unknown chip preset 'paperr'.*paper"):
        ChipParams.load("paperr")
    with pytest.raises(ChipConfigError, match="cannot read"):
        ChipParams.load(tmp_path / "none.toml")
    with pytest.raises(ChipConfigError, match=r"\.json or \.toml"):
        ChipParams.load(tmp_path / "chip.yaml")
    with pytest.raises(ChipConfigError, match=r"\.json or \.toml"):
        ChipParams().save(tmp_path / "chip.txt")
    for source in (None, 3, b"paper"):  # was os.fspath's TypeError, naming no argument
        with pytest.raises(ChipConfigError, match="a chip is a preset name or a .json / .toml file path, got"):
            ChipParams.load(source)


def test_the_stuck_on_share_is_written_once():
    # Everything that means the ReMeCo stuck-on share imports remeco.models.faults.
    hits = []
    for folder in ("models", "host", "rtl", "tb"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "faults.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"(?<![\d.])0\.838(?!\d)", line) and not line.lstrip().startswith(("#", "See ")):
                    hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not [h for h in hits if "=" in h.split(":", 2)[2]], hits
