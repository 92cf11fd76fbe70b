"""AXI4-Lite register file: constructor checks, ports, lint, and the cocotb bench in Verilator."""

from __future__ import annotations

import re

import pytest
from amaranth.hdl import Shape
from amaranth.lib.wiring import Flow

from remeco.rtl import regmap
from remeco.rtl.axil import AxiLiteSignature, RegisterFile
from remeco.rtl.regmap import REGISTERS, Register
from remeco.rtl.verilog import lint, to_verilog
from remeco.tb.runner import run_bench

#: The configuration the accelerator top uses.
SELF_CLEARING = {"FAULT_CONTROL": 0b011}
CORE_WRITABLE = ("LOAD_ADDRESS",)

BENCH_PARAMS = {
    "addr_bits": regmap.ADDR_BITS,
    "self_clearing": SELF_CLEARING,
    "core_writable": list(CORE_WRITABLE),
    "seed": 1,
    "accesses": 300,
    "pause": 0.3,
}


def _used(*components):
    for c in components:
        c._MustUse__used = True  # built only to look at them


def _regfile(**kw) -> RegisterFile:
    rf = RegisterFile(**{"self_clearing": SELF_CLEARING, "core_writable": CORE_WRITABLE, **kw})
    _used(rf)
    return rf


def test_members_follow_the_register_map():
    rf = _regfile()
    members = rf.signature.members
    assert members["bus"].flow == Flow.In and members["bus"].signature.flip() == AxiLiteSignature(regmap.ADDR_BITS)
    for r in REGISTERS:
        low = r.name.lower()
        assert members[low].flow == (Flow.In if r.access == "ro" else Flow.Out), r.name
        assert Shape.cast(members[low].shape).width == r.width, r.name
        assert members[f"{low}_written"].flow == members[f"{low}_read"].flow == Flow.Out
    assert members["fault_seed"].init == 1 and members["control"].init == 0
    assert members["load_address_set"].flow == Flow.In and Shape.cast(members["load_address_next"].shape).width == 32
    assert "fault_seed_set" not in members


def test_axil_signature():
    sig = AxiLiteSignature(12)
    assert sig == AxiLiteSignature(12) and sig != AxiLiteSignature(8)
    widths = {name: Shape.cast(m.shape).width for name, m in sig.members.items()}
    assert widths["awaddr"] == widths["araddr"] == 12 and widths["wdata"] == widths["rdata"] == 32
    assert widths["wstrb"] == 4 and widths["bresp"] == widths["rresp"] == 2 and widths["awprot"] == 3
    assert sig.members["awvalid"].flow == Flow.Out and sig.members["awready"].flow == Flow.In
    assert sig.members["rdata"].flow == Flow.In and sig.members["rready"].flow == Flow.Out
    with pytest.raises(ValueError, match="addr_bits"):
        AxiLiteSignature(0)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"self_clearing": {"NOPE": 1}}, r"self_clearing: no register named 'NOPE'"),
        ({"self_clearing": {"STATUS": 1}}, r"self_clearing: STATUS is ro"),
        ({"self_clearing": {"CONTROL": 1}}, r"self_clearing: CONTROL is wo"),
        ({"self_clearing": {"FAULT_CONTROL": 0b1000}}, r"self_clearing: mask"),
        ({"self_clearing": {"FAULT_CONTROL": 0}}, r"self_clearing: mask"),
        ({"self_clearing": {"FAULT_SEED": 1}}, r"self_clearing: FAULT_SEED resets to"),
        ({"core_writable": ("NOPE",)}, r"core_writable: no register named 'NOPE'"),
        ({"core_writable": ("CYCLES_LO",)}, r"core_writable: CYCLES_LO is ro"),
        ({"core_writable": "LOAD_ADDRESS"}, r"core_writable must be a collection"),
        ({"addr_bits": 7}, r"addr_bits=7 cannot address register FAULT_CONTROL at offset 0x88"),
        ({"addr_bits": 1}, r"addr_bits must be an integer"),
        ({"registers": ()}, r"registers: the table is empty"),
        ({"registers": (Register("A", 0, "rw"), Register("A_READ", 4, "rw"))}, r"registers: port name 'a_read'"),
        ({"registers": (Register("A", 2, "rw"),)}, r"aligned"),
    ],
)
def test_bad_arguments(kw, match):
    base = {"self_clearing": {}, "core_writable": ()}
    with pytest.raises(ValueError, match=match):
        RegisterFile(**{**base, **kw})


def test_address_bits_just_enough():
    _used(RegisterFile(addr_bits=8), RegisterFile((Register("A", 0x7C, "rw"),), addr_bits=7))


@pytest.mark.sim
def test_verilog_lints_clean(tmp_path):
    path = tmp_path / "remeco_axil.v"
    path.write_text(to_verilog(_regfile(), "remeco_axil"))
    clean, msg = lint(path)
    assert clean, msg


def test_top_level_port_names():
    """A member ``s_axil`` becomes ``s_axil__awaddr`` etc. (what cocotbext-axi's
    ``AxiLiteBus.from_prefix(dut, "s_axil_")`` looks for)."""
    from remeco.tb.bench_axil import design

    text = to_verilog(design(BENCH_PARAMS), "axil")
    header = re.search(r"^module axil\(([^)]*)\);", text, re.M).group(1)
    ports = {p.strip() for p in header.split(",")}
    for name in AxiLiteSignature(8).members:
        assert f"s_axil__{name}" in ports


@pytest.mark.sim
def test_axil_verilator():
    from remeco.tb.bench_axil import design

    result = run_bench("remeco.tb.bench_axil", design(BENCH_PARAMS), top="axil", params=BENCH_PARAMS).check()
    assert result.tests == 4
    assert result.vectors >= 2 * BENCH_PARAMS["accesses"] + 256
