"""combine RTL == emulation model (Verilator)."""

from __future__ import annotations

import pytest

from remeco.tb.verification import bench_specs

pytestmark = pytest.mark.sim


def test_combine_verilator():
    result = bench_specs()["combine"].run().check()
    assert result.tests == 2 and result.vectors >= 10_000
