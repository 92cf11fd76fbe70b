"""Long runs (``-m slow``): many more vectors, and every block on the second simulator."""

from __future__ import annotations

import pytest

from remeco.tb import VerifyParams, verify
from remeco.tb.runner import simulator_available
from remeco.tb.verification import COMPONENTS

pytestmark = [pytest.mark.sim, pytest.mark.slow]


def test_long_run_verilator():
    # Full-rate streams: sources and sinks then cost Python per beat, not per cycle.
    rows = verify(VerifyParams(vectors=200_000, seed=11, valid_prob=1.0, ready_prob=1.0), waves=False)
    for component, vectors, mismatches, _ in rows:
        assert vectors > 0 and mismatches == 0, component


def test_every_block_icarus():
    if not simulator_available("icarus"):
        pytest.skip("Icarus Verilog (iverilog) is not installed")
    rows = verify(VerifyParams(vectors=2_000, seed=12), simulator="icarus")
    # the accelerator top's bench runs on Verilator only (see tb.verification.bench_specs)
    assert [r[0] for r in rows] == [c for c in COMPONENTS if c != "top"]
    for component, vectors, mismatches, _ in rows:
        assert vectors > 0 and mismatches == 0, component
