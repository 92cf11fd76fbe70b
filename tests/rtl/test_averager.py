"""averager RTL == emulation model (Verilator)."""

from __future__ import annotations

import pytest

from remeco.tb.verification import bench_specs

pytestmark = pytest.mark.sim


def test_averager_verilator():
    result = bench_specs()["averager"].run().check()
    assert result.tests == 2 and result.vectors >= 10_000
