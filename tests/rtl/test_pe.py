"""Processing element RTL == emulate_matvec + bias + requantize / final_logits, end to end."""

from __future__ import annotations

import pytest

from remeco.tb.verification import bench_specs

pytestmark = pytest.mark.sim


def test_pe_verilator():
    spec = bench_specs()["pe"]
    result = spec.run().check()
    assert result.tests == 2
    # every layer: clean, generated-fault and host-fault phases, `neurons` outputs per vector
    assert result.vectors >= spec.params["layers"] * spec.params["neurons"] * 2 * spec.params["vectors"]
