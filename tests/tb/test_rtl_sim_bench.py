"""bench/rtl_sim.py: end to end on a few vectors (slow: five Verilator builds); the Verilog player mode (short)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.sim]


def _bench_module():
    path = Path(__file__).resolve().parents[2] / "bench" / "rtl_sim.py"
    spec = importlib.util.spec_from_file_location("rtl_sim_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_rtl_sim_bench_small(capsys):
    mod = _bench_module()
    # every driver's outputs are compared with the model inside (a mismatch exits)
    assert mod.main(["--vectors", "6", "--repeat", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = {r["driver"]: r for r in doc["rows"]}
    assert set(rows) == {"cocotb (gpi clock)", "cocotb floor (gpi clock, no Python)", "cocotb (hdl clock)",
                         "cocotb floor (hdl clock, no Python)", "cocotb (hdl clock, Verilog player)",
                         "C++ loop, same model", "C++ loop, plain model"}
    # the same traffic takes the same number of cycles in cocotb (any driver) and in the C++ loop
    for clock in ("gpi", "hdl", "player"):
        assert abs(rows[mod.driver_name(clock)]["cycles"] - rows["C++ loop, same model"]["cycles"]) <= 2
    assert rows["C++ loop, same model"]["cycles"] == rows["C++ loop, plain model"]["cycles"]
    assert all(r["rate"] > 0 for r in rows.values())


def test_rtl_sim_player_outputs_equal_model(tmp_path):
    """The Verilog player mode (no Python in the timed phase) records exactly the model's outputs."""
    from remeco.rtl.verilog import LayerParams

    mod = _bench_module()
    stim = mod.make_stimulus(LayerParams(), 5, 3)
    r = mod.run_cocotb(stim, tmp_path, "player")  # the bench compares as well (a mismatch fails the run)
    expected = [int(v) for v in stim["expected"]]
    assert len(expected) > 0
    assert r["outputs"] == expected
    # cycles from the first beat offered to the last output taken: the C++ loop's count
    exe = mod.build_cpp(stim, tmp_path, "same")
    cpp = mod.run_cpp(stim, exe, tmp_path)
    assert cpp["outputs"] == expected
    assert r["cycles"] == cpp["cycles"]
