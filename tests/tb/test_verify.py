"""remeco.tb.verify: one row per component, from real bench runs."""

from __future__ import annotations

import pytest

from remeco.tb import VerifyParams, verify
from remeco.tb.verification import COMPONENTS, bench_specs

pytestmark = pytest.mark.sim


def test_specs_cover_every_component():
    assert tuple(bench_specs()) == COMPONENTS


def test_verify_rows():
    # Same layer as the default specs (so the cached builds are reused), fewer vectors.
    rows = verify(VerifyParams(vectors=600, seed=3), components=("adc", "combine"))
    assert [r[0] for r in rows] == ["adc", "combine"]
    for component, vectors, mismatches, seconds in rows:
        assert vectors >= 300 and mismatches == 0 and seconds > 0, component
