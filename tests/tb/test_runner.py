"""The runner and benches can fail: mutated RTL must be caught, with a waveform to look at."""

from __future__ import annotations

import pytest
from amaranth import Module, Mux

from remeco.rtl.adc import ADCQuantizer
from remeco.tb import bench_adc
from remeco.tb.runner import SAMPLED_SUFFIX, BenchFailure, hdl_clock_testbench, run_bench, simulator_available

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


_TINY = """module sub(a);
  input a;
endmodule
(* top = 1 *)
module top(i__valid, clk, i__payload, o__payload, rst, o__valid);
  input i__valid;
  input clk;
  input signed [7:0] i__payload;
  output [11:0] o__payload;
  wire [11:0] o__payload;
  input rst;
  output o__valid;
  reg o__valid = 1'h0;
endmodule
"""


def test_hdl_clock_testbench_wraps_every_port():
    name, text, public = hdl_clock_testbench(_TINY, "top", period_ns=10)
    lines = [ln.strip() for ln in text.splitlines()]
    assert name == "top_tb" and f"module {name};" in lines
    assert "reg clk = 1'b0;" in lines and "always #5ns clk = ~clk;" in lines
    # inputs are registers the bench writes, outputs wires plus their value at the last rising edge
    for decl in ("reg i__valid;", "reg signed [7:0] i__payload;", "reg rst;", "wire [11:0] o__payload;",
                 f"reg [11:0] o__payload{SAMPLED_SUFFIX};", "wire o__valid;", f"reg o__valid{SAMPLED_SUFFIX};",
                 f"o__valid{SAMPLED_SUFFIX} <= o__valid;"):
        assert decl in lines, decl
    assert "top dut (.i__valid(i__valid), .clk(clk), .i__payload(i__payload), .o__payload(o__payload), " \
           ".rst(rst), .o__valid(o__valid));" in lines
    assert sorted(public) == sorted(["clk", "i__valid", "i__payload", "o__payload", "rst", "o__valid",
                                     f"o__payload{SAMPLED_SUFFIX}", f"o__valid{SAMPLED_SUFFIX}"])
    with pytest.raises(ValueError, match="clk"):
        hdl_clock_testbench(_TINY.replace("input clk;", "output clk;"), "top")
    with pytest.raises(ValueError, match="period"):
        hdl_clock_testbench(_TINY, "top", period_ns=5)


def test_hdl_clock_needs_verilator():
    adc = _RoundHalfDownADC(12, 6, 2)
    adc._MustUse__used = True  # refused before it is elaborated
    with pytest.raises(ValueError, match="Verilator"):
        run_bench("remeco.tb.bench_adc", adc, top="adc_mutant", params=_params(), simulator="icarus", hdl_clock=True)


def test_sampled_suffix_matches_the_benches():
    import inspect

    from remeco.tb import common

    assert f'"{{name}}{SAMPLED_SUFFIX}"' in inspect.getsource(common.sampled)


def test_stream_bench_agrees_on_either_clock():
    # Random idle cycles and backpressure: the stream models decide every transfer from
    # the values the edge sampled, whichever side of the edge their callbacks run on, so
    # both clocks give the same transfers: the same outputs compared and, for a mutant,
    # the same mismatches.
    p = {**_params(), "vectors": 2000}
    seen = {}
    for hdl_clock in (False, True):
        good = run_bench("remeco.tb.bench_adc", bench_adc.design(p), top="adc_small", params=p, waves=False,
                         hdl_clock=hdl_clock).check()
        bad = run_bench("remeco.tb.bench_adc", _RoundHalfDownADC(12, 6, 2), top="adc_mutant", params=p,
                        waves=False, hdl_clock=hdl_clock)
        seen[hdl_clock] = (good.tests, good.vectors, bad.failures > 0, bad.mismatches, bad.vectors)
    assert seen[True] == seen[False]
    tests, vectors, caught, mismatches, bad_vectors = seen[True]
    assert tests == 2 and vectors >= 2000 and caught and 0 < mismatches < bad_vectors
