"""On-chip fault generator RTL == models.fault_lfsr (Verilator, random commands and backpressure)."""

from __future__ import annotations

import pytest

from remeco.rtl.fault_gen import FaultGenerator
from remeco.tb import bench_fault_gen
from remeco.tb.runner import run_bench

pytestmark = pytest.mark.sim


@pytest.mark.parametrize("lanes, depth, commands", [(4, 24, 60), (1, 9, 150)])
def test_fault_gen_matches_model(lanes, depth, commands):
    p = {"lanes": lanes, "depth": depth, "commands": commands, "seed": 5, "valid_prob": 0.6, "ready_prob": 0.5}
    result = run_bench("remeco.tb.bench_fault_gen", bench_fault_gen.design(p), top="fault_gen", params=p).check()
    assert result.tests == 2 and result.vectors > 500


def test_fault_gen_refuses_empty_sizes():
    with pytest.raises(ValueError, match="lanes and depth"):
        FaultGenerator(0, 8)
