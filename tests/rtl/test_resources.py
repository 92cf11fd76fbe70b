"""Resource counting from Yosys statistics (no synthesis here; see tests/host/test_rtl_cli.py)."""

from __future__ import annotations

import json

import pytest

from remeco.rtl.resources import XC7Z020, count_cells, parse_stat_json, yosys_script

# Trimmed `stat -json` output of Yosys 0.70 after synth_xilinx -flatten (the PE at the default size).
_STAT = """{
   "creator": "Yosys 0.70",
   "invocation": "stat -json ",
   "modules": {
      "\\\\pe": {
         "num_cells": 9,
         "num_cells_by_type": {"CARRY4": 93, "DSP48E1": 2, "FDRE": 484, "FDSE": 1, "INV": 22, "LUT2": 246,
                               "LUT3": 326, "LUT4": 97, "LUT5": 370, "LUT6": 278, "RAM32M": 47, "RAMB36E1": 6}
      }
   },
      "design": {
         "num_cells": 9,
         "num_cells_by_type": {"CARRY4": 93, "DSP48E1": 2, "FDRE": 484, "FDSE": 1, "INV": 22, "LUT2": 246,
                               "LUT3": 326, "LUT4": 97, "LUT5": 370, "LUT6": 278, "RAM32M": 47, "RAMB36E1": 6}
      }
}
"""


def test_count_cells_like_vivado():
    r = count_cells("pe", parse_stat_json(_STAT, top="pe"))
    assert r.lut_logic == 246 + 326 + 97 + 370 + 278
    assert r.lut_memory == 4 * 47  # a RAM32M occupies the four LUTs of a SLICEM
    assert r.lut == r.lut_logic + r.lut_memory
    assert r.ff == 485 and r.dsp == 2 and r.ramb36 == 6 and r.bram36 == 6.0
    pct = r.percent(XC7Z020)
    assert pct["lut"] == pytest.approx(100 * r.lut / 53_200)
    assert pct["bram"] == pytest.approx(100 * 6 / 140) and pct["dsp"] == pytest.approx(100 * 2 / 220)
    d = r.to_dict()
    assert json.loads(json.dumps(d)) == d  # plain data


def test_ramb18_counts_half_and_backslash_names():
    r = count_cells("x", {"\\RAMB18E1": 3, "RAMB36E1": 1, "\\LUT6": 2, "SRLC32E": 5, "FDCE": 1, "LDCE": 1})
    assert r.bram36 == 2.5 and r.lut == 7 and r.lut_memory == 5 and r.ff == 2


def test_parse_module_without_design_totals_and_old_key():
    text = 'log noise before\n{"modules": {"\\\\adc": {"cells_by_type": {"LUT3": 4, "FDRE": 9}}}}'
    assert parse_stat_json(text, top="adc") == {"LUT3": 4, "FDRE": 9}


@pytest.mark.parametrize("text", ["", "no json here", "{broken", '{"modules": {}}'])
def test_parse_rejects_output_without_counts(text):
    with pytest.raises(ValueError):
        parse_stat_json(text)


def test_script_targets_the_7_series_without_io_buffers():
    s = yosys_script("pe", "pe.il", "pe.stat.json")
    assert "synth_xilinx -family xc7" in s and "-noiopad" in s and "-top pe" in s
    assert "tee -q -o pe.stat.json stat -json" in s
