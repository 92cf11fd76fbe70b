"""Processing element RTL == emulate_matvec + bias + requantize / final_logits, end to end."""

from __future__ import annotations

import pytest

from remeco.tb.verification import bench_specs

pytestmark = pytest.mark.sim


def test_pe_verilator():
    spec = bench_specs()["pe"]
    assert spec.hdl_clock  # the full-rate phase runs with the clock in the HDL
    result = spec.run().check()
    assert result.tests == 2
    # every layer: clean, generated-fault and host-fault phases with random idle cycles and
    # backpressure, then a full-rate phase; `neurons` outputs per vector
    p = spec.params
    assert result.vectors >= p["layers"] * p["neurons"] * (2 * p["vectors"] + p["stream_vectors"]) >= 10_000
