"""requant RTL == contract step 7 (Verilator), and the bench catches rounding mistakes."""

from __future__ import annotations

import pytest

from remeco.rtl import requant
from remeco.tb.runner import run_bench
from remeco.tb.verification import bench_specs

pytestmark = pytest.mark.sim


def test_requant_verilator():
    result = bench_specs()["requant"].run().check()
    assert result.tests == 2 and result.vectors >= 10_000


@pytest.mark.parametrize(
    "helper, wrong",
    [
        # z -> accumulator units by truncation instead of round half up
        ("round_shift_const", lambda value, shift: value >> shift),
        # t * multiplier -> output by truncation instead of round half up
        ("round_shift_sat", lambda value, shift, bits: value >> shift),
    ],
    ids=["acc-floor", "requant-floor"],
)
def test_rounding_mutants_are_caught(monkeypatch, helper, wrong):
    spec = bench_specs()["requant"]
    monkeypatch.setattr(requant, helper, wrong)  # used when the component is elaborated
    comp = requant.Requantizer(spec.params["z_width"], spec.params["code_frac"])
    params = {**spec.params, "vectors": 1500}
    result = run_bench("remeco.tb.bench_requant", comp, top=f"requant_mutant_{helper}", params=params, waves=False)
    assert result.tests == 2 and result.failures > 0
    assert 0 < result.mismatches < result.vectors
