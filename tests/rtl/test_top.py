"""Accelerator top RTL == models.fabric (Verilator, through its AXI4-Lite and AXI4-Stream ports)."""

from __future__ import annotations

import pytest

from remeco.models.emulation import EmulationFormat
from remeco.models.fabric import FabricConfig
from remeco.rtl.top import TOP_NAME, AcceleratorTop, generate_top
from remeco.tb import bench_top
from remeco.tb.runner import run_bench

pytestmark = pytest.mark.sim

#: Small tiles and lanes: every rule of the top (tiles, blocks, groups, copies) at a
#: size that simulates in seconds.
SMALL = FabricConfig(
    fmt=EmulationFormat(rows=16, cols=8), column_lanes=4, vector_lanes=2,
    code_words=600, desc_words=160, max_fan_in=40, max_copies_log2=2,
)


def _params(cfg: FabricConfig, **kw) -> dict:
    p = {"cfg": cfg.to_dict(), "layers": 5, "runs": 400, "max_vectors": 16, "seed": 3, "pause": 0.3}
    p.update(kw)
    return p


def test_top_matches_model_small_config():
    p = _params(SMALL)
    result = run_bench("remeco.tb.bench_top", bench_top.design(p), top=TOP_NAME, params=p).check()
    assert result.tests == 1 and result.vectors >= 10_000


def test_top_matches_model_without_backpressure():
    p = _params(SMALL, seed=11, pause=0.0, runs=20)
    result = run_bench("remeco.tb.bench_top", bench_top.design(p), top=TOP_NAME, params=p).check()
    assert result.vectors > 200


@pytest.mark.parametrize("field, value", [("column_lanes", 6), ("vector_lanes", 3)])
def test_top_needs_power_of_two_lanes(field, value):
    cfg = FabricConfig(**{field: value})
    with pytest.raises(ValueError, match=field):
        AcceleratorTop(cfg)


def test_generate_top_writes_the_module(tmp_path):
    path = generate_top(tmp_path, SMALL)
    text = path.read_text()
    assert path.name == f"{TOP_NAME}.v" and f"module {TOP_NAME}" in text
    for port in ("s_axil__awaddr", "s_axil__rresp", "s_axis__tdata", "s_axis__tlast", "m_axis__tready", "m_axis__tlast"):
        assert port in text, port
