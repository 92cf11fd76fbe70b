"""bench/rtl_sim.py end to end on a few vectors (slow: four Verilator builds)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.sim, pytest.mark.slow]


def test_rtl_sim_bench_small(capsys):
    path = Path(__file__).resolve().parents[2] / "bench" / "rtl_sim.py"
    spec = importlib.util.spec_from_file_location("rtl_sim_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    # every driver's outputs are compared with the model inside (a mismatch exits)
    assert mod.main(["--vectors", "6", "--repeat", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = {r["driver"]: r for r in doc["rows"]}
    assert set(rows) == {"cocotb (gpi clock)", "cocotb floor (gpi clock, no Python)", "cocotb (hdl clock)",
                         "cocotb floor (hdl clock, no Python)", "C++ loop, same model", "C++ loop, plain model"}
    # the same traffic takes the same number of cycles in cocotb (either clock) and in the C++ loop
    for clock in ("gpi", "hdl"):
        assert abs(rows[f"cocotb ({clock} clock)"]["cycles"] - rows["C++ loop, same model"]["cycles"]) <= 2
    assert rows["C++ loop, same model"]["cycles"] == rows["C++ loop, plain model"]["cycles"]
    assert all(r["rate"] > 0 for r in rows.values())
