"""remeco.tb.verify: one row per component, from real bench runs."""

from __future__ import annotations

import pytest

from remeco.models.emulation import EmulationFormat
from remeco.models.fabric import FabricConfig
from remeco.tb import VerifyParams, verify
from remeco.tb.verification import COMPONENTS, bench_specs, top_config

pytestmark = pytest.mark.sim


def test_specs_cover_every_component():
    specs = bench_specs()
    assert tuple(specs) == COMPONENTS and COMPONENTS[-1] == "top"
    assert specs["pe"].hdl_clock and not specs["top"].hdl_clock  # the top's bench is cocotbext-axi
    assert specs["top"].simulators == ("verilator",)


def test_top_config_follows_the_layer():
    vp = VerifyParams(fan_in=24, max_copies_log2=2)
    cfg = top_config(vp)
    assert isinstance(cfg, FabricConfig) and cfg.fmt == vp.fmt
    assert (cfg.max_fan_in, cfg.max_copies_log2, cfg.column_lanes, cfg.vector_lanes) == (24, 2, 4, 2)
    # room for every layer the bench places: 11 neurons x 2 slices x 4 copies on 4 lanes, K = 24
    assert cfg.code_words >= 5 * 22 * 24 and cfg.desc_words >= 5 * 88
    assert bench_specs(vp)["top"].params["cfg"] == cfg.to_dict()
    # the bench draws layers of up to a tile and a row
    assert top_config(VerifyParams(fan_in=10)).max_fan_in == VerifyParams().fmt.rows + 1


def test_top_row_needs_a_format_the_fabric_holds():
    vp = VerifyParams(fmt=EmulationFormat(rows=16, cols=8, code_bits=17))  # the code stream is 16 bits
    assert "top" not in bench_specs(vp) and "adc" in bench_specs(vp)
    with pytest.raises(ValueError, match="code_bits"):
        verify(vp, components=("top",))
    with pytest.raises(ValueError, match="icarus"):
        verify(VerifyParams(), components=("adc", "top"), simulator="icarus")


def test_verify_rows():
    # Same layer as the default specs, fewer vectors, no waves: the builds are those of
    # `remeco verify` in tests/host/test_rtl_cli.py.
    rows = verify(VerifyParams(vectors=600, seed=3), components=("adc", "combine", "top"), waves=False)
    assert [r[0] for r in rows] == ["adc", "combine", "top"]
    for component, vectors, mismatches, seconds in rows:
        assert vectors >= 300 and mismatches == 0 and seconds > 0, component
