"""The runner and benches can fail: mutated RTL must be caught, with a waveform to look at."""

from __future__ import annotations

import pytest
from amaranth import Module, Mux

from remeco.rtl.adc import ADCQuantizer
from remeco.tb import bench_adc
from remeco.tb.runner import BenchFailure, run_bench, simulator_available

pytestmark = pytest.mark.sim


class _RoundHalfDownADC(ADCQuantizer):
    """Wrong on exact .5 ties only: rounds them down instead of up."""

    def elaborate(self, platform):
        m = Module()
        half = (1 << self.adc_shift) >> 1
        rounded = (self.i.payload + half - 1) >> self.adc_shift
        top = (1 << self.adc_bits) - 1
        code = Mux(rounded < 0, 0, Mux(rounded > top, top, rounded))[: self.adc_bits]
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.ready):
            m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(code)]
        return m


def _params() -> dict:
    return {
        "acc_width": 12, "adc_bits": 6, "adc_shift": 2, "tag_width": 0,
        "vectors": 300, "seed": 5, "valid_prob": 0.9, "ready_prob": 0.9,
    }


@pytest.fixture
def icarus():
    if not simulator_available("icarus"):
        pytest.skip("Icarus Verilog (iverilog) is not installed")


def test_mutant_adc_is_caught(icarus):
    p = _params()
    result = run_bench("remeco.tb.bench_adc", _RoundHalfDownADC(12, 6, 2), top="adc_mutant",
                       params=p, simulator="icarus")
    assert not result.passed
    assert result.mismatches > 0 and result.failures > 0
    with pytest.raises(BenchFailure) as err:
        result.check()
    assert str(result.waves) in str(err.value)
    assert result.waves.exists() and result.waves.stat().st_size > 0


def test_correct_adc_passes_same_bench(icarus):
    p = _params()
    result = run_bench("remeco.tb.bench_adc", bench_adc.design(p), top="adc_small",
                       params=p, simulator="icarus")
    result.check()
    assert result.vectors >= p["vectors"] and result.tests == 2


def test_public_config_names_top_and_every_port():
    from remeco.tb.runner import verilator_public_config

    verilog = "/* x */\nmodule sub(a);\nendmodule\nmodule top(i__valid, clk, rst, o__payload);\n  input clk;\nendmodule\n"
    cfg = verilator_public_config(verilog, "top").splitlines()
    assert cfg[0] == "`verilator_config" and cfg[1] == 'public -module "top"'
    assert cfg[2:] == [f'public_flat_rw -module "top" -var "{p}"' for p in ("i__valid", "clk", "rst", "o__payload")]
    with pytest.raises(ValueError, match="module nothere"):
        verilator_public_config(verilog, "nothere")
