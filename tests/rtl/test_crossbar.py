"""Behavioral crossbar tile RTL == column_accumulate on fault-mapped codes (Verilator)."""

from __future__ import annotations

import pytest

from remeco.tb.verification import bench_specs

pytestmark = pytest.mark.sim


def test_crossbar_verilator():
    result = bench_specs()["crossbar"].run().check()
    assert result.tests == 3 and result.vectors >= 10_000
