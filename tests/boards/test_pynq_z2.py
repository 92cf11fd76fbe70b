"""``boards/pynq_z2``: build script, block-design Tcl, constraints and the Verilog wrapper.

Vivado is not on the CI machines, so the Tcl runs under plain ``tclsh`` with every Vivado
command stubbed (Tcl's ``unknown`` records the calls): that catches Tcl errors and checks
what the script asks Vivado for. The wrapper is elaborated with the generated
``remeco_top`` and driven over AXI4-Lite in Icarus Verilog.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from remeco.rtl import ip, regmap

ROOT = Path(__file__).resolve().parents[2]
BOARD = ROOT / "boards" / "pynq_z2"


def test_build_without_vivado_fails_with_a_clear_message(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PATH"}
    env.update(PATH="/usr/bin:/bin", OUT=str(tmp_path / "out"))
    assert shutil.which("vivado", path=env["PATH"]) is None
    proc = subprocess.run(["bash", str(BOARD / "build.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "'vivado' is not on PATH" in proc.stderr and "settings64.sh" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists(), "build.sh generated files before finding vivado missing"


def test_files_name_the_key_ip():
    tcl = (BOARD / "block_design.tcl").read_text()
    for needle in (
        "xilinx.com:ip:processing_system7:5.5", "xilinx.com:ip:axi_dma:7.1", "xilinx.com:ip:proc_sys_reset:5.0",
        "create_bd_cell -type ip -vlnv $remeco_ip_vlnv $remeco_ip_instance", "source $ip_tcl", "ipx::package_project",
        "xc7z020clg400-1", "PCW_FPGA0_PERIPHERAL_FREQMHZ $clock_mhz",
        "STATS.WNS", "report_timing_summary", "remeco_timing.rpt",
        "CONFIG.c_include_sg {0}", "CONFIG.c_sg_length_width {26}", "PCW_USE_S_AXI_HP0 {1}", "remeco.hwh",
    ):
        assert needle in tcl, needle
    # the IP identity is remeco.rtl.ip's alone: the Tcl states no VLNV, version or instance name
    code = "\n".join(line for line in tcl.splitlines() if not line.lstrip().startswith("#"))
    for literal in (ip.VLNV, f":{ip.NAME}:", ip.VERSION, ip.INSTANCE_NAME, "module_ref", "-reference"):
        assert literal not in code, literal
    xdc = (BOARD / "pynq_z2.xdc").read_text()
    assert "PS-only" in xdc and "xc7z020clg400-1" in xdc
    wrapper = (BOARD / "remeco_axi.v").read_text()
    for needle in ("module remeco_axi", "remeco_top top", ".rst(~aresetn)", "assign m_axis_tkeep = 4'hF",
                   "xilinx.com:interface:aximm:1.0 s_axil", "xilinx.com:interface:axis:1.0 m_axis"):
        assert needle in wrapper, needle
    assert os.access(BOARD / "build.sh", os.X_OK)
    readme = (BOARD / "README.md").read_text()
    assert "build.sh" in readme and "--backend board" in readme


# Every Vivado command is unknown to tclsh: record it and answer what the script needs.
_STUBS = r"""
set ::calls {}
set ::board_parts [lindex $argv 3]
set ::wns 0.412
set argv [lrange $argv 0 2]
proc unknown {args} {
    lappend ::calls $args
    switch -- [lindex $args 0] {
        get_board_parts { return $::board_parts }
        create_project { file mkdir [lindex $args 2]; return [lindex $args 1] }
        make_wrapper { return /proj/remeco_wrapper.v }
        get_property {
            switch -- [lindex $args 1] {
                STATS.WNS { return $::wns }
                STATS.WHS { return 0.051 }
                default { return 100% }
            }
        }
        report_timing_summary {
            set f [open [lindex $args [expr {[lsearch $args -file] + 1}]] w]
            puts $f "stub timing summary"
            close $f
        }
        launch_runs {
            set runs [file join $::proj_dir remeco.runs impl_1]
            set hh [file join $::proj_dir remeco.gen sources_1 bd remeco hw_handoff]
            file mkdir $runs $hh
            close [open [file join $runs remeco_wrapper.bit] w]
            close [open [file join $hh remeco.hwh] w]
            return impl_1
        }
        default { return [lindex $args end] }
    }
}
set ::proj_dir [file join [file normalize [lindex $argv 1]] vivado]
source [lindex $argv 3]
"""


def _dry_run(tmp_path, board_parts: str = "", wns: float = 0.412, extra: tuple[str, ...] = (), keep_ip_tcl: bool = False):
    """Run block_design.tcl under tclsh with Vivado stubbed: ``(process, gen dir, out dir)``."""
    tclsh = shutil.which("tclsh")
    if tclsh is None:
        pytest.skip("tclsh is not installed")
    gen, out = tmp_path / "gen", tmp_path / "out"
    gen.mkdir(exist_ok=True)
    (gen / "remeco_top.v").write_text("// stand-in\n")
    if not keep_ip_tcl:
        ip.write_tcl(gen)
    harness = tmp_path / "harness.tcl"
    harness.write_text(
        _STUBS.replace("set ::board_parts [lindex $argv 3]", f"set ::board_parts {{{board_parts}}}")
        .replace("set ::wns 0.412", f"set ::wns {wns}")
        .replace("set argv [lrange $argv 0 2]", "")
        .replace("source [lindex $argv 3]", f"source {{{BOARD / 'block_design.tcl'}}}\nputs CALLS=[join $::calls \\n]")
    )
    proc = subprocess.run([tclsh, str(harness), str(gen), str(out), "3", *extra],
                          capture_output=True, text=True, timeout=60)
    return proc, gen, out


@pytest.mark.parametrize("board_parts", ["", "tul.com.tw:pynq-z2:part0:1.0"])
def test_block_design_tcl_dry_run(tmp_path, board_parts):
    proc, gen, out = _dry_run(tmp_path, board_parts)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = proc.stdout
    assert (out / "remeco.bit").is_file() and (out / "remeco.hwh").is_file()
    assert f"wrote {out / 'remeco.bit'} and {out / 'remeco.hwh'}" in log
    calls = log.split("CALLS=", 1)[1]
    for needle in (
        "create_project remeco", "create_bd_cell -type ip -vlnv xilinx.com:ip:processing_system7:5.5 processing_system7_0",
        "create_bd_cell -type ip -vlnv xilinx.com:ip:axi_dma:7.1 axi_dma_0",
        f"create_bd_cell -type ip -vlnv {ip.VLNV} {ip.INSTANCE_NAME}",
        f"ipx::package_project -root_dir {out / 'ip_repo' / f'{ip.NAME}_{ip.VERSION}'} -vendor {ip.VENDOR} "
        f"-library {ip.LIBRARY} -taxonomy /UserIP -import_files",
        f"set_property name {ip.NAME} ipx::current_core", f"set_property version {ip.VERSION} ipx::current_core",
        "ipx::save_core", f"set_property ip_repo_paths {out / 'ip_repo'}",
        "assign_bd_address -offset 0x40400000", "assign_bd_address -offset 0x43C00000",
        "remeco_0/s_axil/reg0", "axi_dma_0/M_AXIS_MM2S", "remeco_0/m_axis", "launch_runs impl_1 -to_step write_bitstream -jobs 3",
        str(gen / "remeco_top.v"),
    ):
        assert needle in calls, needle
    # packaged first (its own project, top the wrapper, both Verilog files), then instantiated
    assert calls.index("ipx::save_core") < calls.index(f"create_project remeco {out / 'vivado'}") \
        < calls.index(f"create_bd_cell -type ip -vlnv {ip.VLNV}")
    assert f"set_property top {ip.NAME} " in calls and str(BOARD / "remeco_axi.v") in calls
    assert ("set_property board_part tul.com.tw:pynq-z2:part0:1.0" in calls) == bool(board_parts)
    assert ("apply_board_preset 1" in calls) == bool(board_parts)
    # the PL clock (default 100 MHz), the routed run opened, its summary beside the bitstream
    assert "CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ 100 " in calls and "open_run impl_1" in calls
    assert (out / "remeco_timing.rpt").read_text() == "stub timing summary\n"
    assert "WNS 0.412 ns, WHS 0.051 ns" in log


def test_block_design_tcl_takes_the_vlnv_from_python(tmp_path):
    """The VLNV the block design packages and instantiates is what remeco.rtl.ip wrote: another
    identity in GEN_DIR/remeco_ip.tcl gives another IP (the script states none of its own)."""
    gen = tmp_path / "gen"
    gen.mkdir()
    (gen / ip.TCL_FILE).write_text(
        ip.to_tcl().replace(ip.VLNV, "acme:lib:other:7.3").replace(f"{{{ip.VENDOR}}}", "{acme}")
        .replace(f"{{{ip.VERSION}}}", "{7.3}").replace(f"{{{ip.INSTANCE_NAME}}}", "{other_0}")
    )
    proc, _, out = _dry_run(tmp_path, keep_ip_tcl=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = proc.stdout.split("CALLS=", 1)[1]
    assert "create_bd_cell -type ip -vlnv acme:lib:other:7.3 other_0" in calls
    assert "set_property version 7.3 " in calls and "-vendor acme " in calls
    assert "other_0/s_axil/reg0" in calls and "other_0/m_axis" in calls
    assert ip.VLNV not in calls and ip.INSTANCE_NAME not in calls


def test_block_design_tcl_clock_is_a_parameter(tmp_path):
    proc, _, out = _dry_run(tmp_path, extra=("125",))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ 125 " in proc.stdout and "at FCLK_CLK0 = 125 MHz" in proc.stdout
    assert (out / "remeco.bit").is_file()


@pytest.mark.parametrize("clock", ["fast", "0", "400"])
def test_block_design_tcl_refuses_a_bad_clock(tmp_path, clock):
    proc, _, out = _dry_run(tmp_path, extra=(clock,))
    assert proc.returncode != 0 and "CLOCK_MHZ must be a number" in proc.stderr, proc.stderr
    assert not (out / "remeco.bit").exists()


def test_block_design_tcl_fails_on_negative_slack(tmp_path):
    proc, _, out = _dry_run(tmp_path, wns=-0.234)
    assert proc.returncode != 0
    assert "timing not met at 100 MHz (WNS -0.234 ns" in proc.stderr, proc.stdout + proc.stderr
    assert (out / "remeco_timing.rpt").is_file()  # the summary, to see what missed
    assert not (out / "remeco.bit").exists() and not (out / "remeco.hwh").exists()


def test_block_design_tcl_refuses_missing_verilog(tmp_path):
    tclsh = shutil.which("tclsh")
    if tclsh is None:
        pytest.skip("tclsh is not installed")
    script = f"proc unknown {{args}} {{return {{}}}}\nset argv [list {tmp_path / 'none'} {tmp_path / 'out'}]\nsource {{{BOARD / 'block_design.tcl'}}}\n"
    harness = tmp_path / "h.tcl"
    harness.write_text(script)
    proc = subprocess.run([tclsh, str(harness)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "python -m remeco.rtl.top" in proc.stderr


def test_block_design_tcl_refuses_a_missing_ip_identity(tmp_path):
    tclsh = shutil.which("tclsh")
    if tclsh is None:
        pytest.skip("tclsh is not installed")
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "remeco_top.v").write_text("// stand-in\n")
    script = (f"proc unknown {{args}} {{return {{}}}}\nset argv [list {tmp_path / 'gen'} {tmp_path / 'out'}]\n"
              f"source {{{BOARD / 'block_design.tcl'}}}\n")
    harness = tmp_path / "h.tcl"
    harness.write_text(script)
    proc = subprocess.run([tclsh, str(harness)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and ip.TCL_FILE in proc.stderr and "python -m remeco.rtl.top" in proc.stderr


_TB = r"""
`default_nettype none
module tb;
  reg aclk = 0;
  always #5 aclk = ~aclk;
  reg aresetn = 0;
  reg [7:0] awaddr = 0, araddr = 0;
  reg awvalid = 0, wvalid = 0, arvalid = 0;
  reg [31:0] wdata = 0;
  wire awready, wready, bvalid, arready, rvalid;
  wire [1:0] bresp, rresp;
  wire [31:0] rdata;
  wire [31:0] m_tdata;
  wire [3:0] m_tkeep;
  wire s_tready, m_tvalid, m_tlast;
  reg failed = 0;

  remeco_axi dut (
    .aclk(aclk), .aresetn(aresetn),
    .s_axil_awaddr(awaddr), .s_axil_awprot(3'd0), .s_axil_awvalid(awvalid), .s_axil_awready(awready),
    .s_axil_wdata(wdata), .s_axil_wstrb(4'hF), .s_axil_wvalid(wvalid), .s_axil_wready(wready),
    .s_axil_bresp(bresp), .s_axil_bvalid(bvalid), .s_axil_bready(1'b1),
    .s_axil_araddr(araddr), .s_axil_arprot(3'd0), .s_axil_arvalid(arvalid), .s_axil_arready(arready),
    .s_axil_rdata(rdata), .s_axil_rresp(rresp), .s_axil_rvalid(rvalid), .s_axil_rready(1'b1),
    .s_axis_tdata(32'd0), .s_axis_tkeep(4'hF), .s_axis_tvalid(1'b0), .s_axis_tready(s_tready), .s_axis_tlast(1'b0),
    .m_axis_tdata(m_tdata), .m_axis_tkeep(m_tkeep), .m_axis_tvalid(m_tvalid), .m_axis_tready(1'b1),
    .m_axis_tlast(m_tlast)
  );

  // Inputs change at falling edges; what is seen there is what the next rising edge samples.
  task rd(input [7:0] a, input [31:0] want_data, input [1:0] want_resp);
    integer n;
    begin
      @(negedge aclk); araddr = a; arvalid = 1; n = 0;
      while (!arready) begin @(negedge aclk); n = n + 1; if (n > 50) begin $display("FAIL: no arready at %h", a); failed = 1; disable rd; end end
      @(negedge aclk); arvalid = 0;
      n = 0;
      while (!rvalid) begin @(negedge aclk); n = n + 1; if (n > 50) begin $display("FAIL: no rvalid at %h", a); failed = 1; disable rd; end end
      if (rresp !== want_resp || (want_resp == 2'd0 && rdata !== want_data)) begin
        $display("FAIL: read %h gave %h resp %0d, want %h resp %0d", a, rdata, rresp, want_data, want_resp);
        failed = 1;
      end
    end
  endtask

  task wr(input [7:0] a, input [31:0] d, input [1:0] want_resp);
    integer n;
    reg aw, w;
    begin
      @(negedge aclk); awaddr = a; wdata = d; awvalid = 1; wvalid = 1; n = 0;
      while (awvalid || wvalid) begin
        aw = awvalid && awready; w = wvalid && wready;
        @(negedge aclk);
        if (aw) awvalid = 0;
        if (w) wvalid = 0;
        n = n + 1; if (n > 50) begin $display("FAIL: write %h not accepted", a); failed = 1; disable wr; end
      end
      n = 0;
      while (!bvalid) begin @(negedge aclk); n = n + 1; if (n > 50) begin $display("FAIL: no bvalid at %h", a); failed = 1; disable wr; end end
      if (bresp !== want_resp) begin $display("FAIL: write %h gave resp %0d, want %0d", a, bresp, want_resp); failed = 1; end
    end
  endtask

  initial begin
    repeat (5) @(negedge aclk);
    aresetn = 1;
    rd(8'h00, 32'h@ID@, 2'd0);
    rd(8'h04, 32'h@VERSION@, 2'd0);
    rd(8'h@UNKNOWN@, 32'h0, 2'd2);
    wr(8'h00, 32'h1, 2'd2);
    wr(8'h@SEED@, 32'h12345678, 2'd0);
    rd(8'h@SEED@, 32'h12345678, 2'd0);
    if (m_tkeep !== 4'hF) begin $display("FAIL: m_axis_tkeep is %h", m_tkeep); failed = 1; end
    // aresetn low resets the top (rst = ~aresetn): the seed returns to its reset value
    @(negedge aclk); aresetn = 0; repeat (3) @(negedge aclk); aresetn = 1;
    rd(8'h@SEED@, 32'h@SEED_RESET@, 2'd0);
    if (!failed) $display("PASS");
    $finish;
  end
endmodule
"""


@pytest.mark.sim
def test_wrapper_drives_the_generated_top_over_axi_lite(tmp_path):
    if shutil.which("iverilog") is None or shutil.which("vvp") is None:
        pytest.skip("Icarus Verilog (iverilog) is not installed")
    top = pytest.importorskip("remeco.rtl.top", reason="the accelerator top generator is not there yet")
    from remeco.models.fabric import FabricConfig

    top.generate_top(tmp_path, FabricConfig(code_words=64, desc_words=64))
    seed = regmap.lookup("FAULT_SEED")
    unknown = next(o for o in range(0, 1 << regmap.ADDR_BITS, 4) if regmap.by_offset(o) is None)
    tb = (
        _TB.replace("@ID@", f"{regmap.ID_VALUE:08x}").replace("@VERSION@", f"{regmap.VERSION_VALUE:08x}")
        .replace("@UNKNOWN@", f"{unknown:02x}").replace("@SEED@", f"{seed.offset:02x}")
        .replace("@SEED_RESET@", f"{seed.reset:08x}")
    )
    (tmp_path / "tb.v").write_text(tb)
    sim = tmp_path / "tb.vvp"
    compile_ = subprocess.run(
        ["iverilog", "-g2005", "-s", "tb", "-o", str(sim), str(tmp_path / "tb.v"),
         str(BOARD / "remeco_axi.v"), str(tmp_path / "remeco_top.v")],
        capture_output=True, text=True, timeout=300,
    )
    assert compile_.returncode == 0, compile_.stderr[-3000:]
    run = subprocess.run(["vvp", "-n", str(sim)], capture_output=True, text=True, timeout=300)
    assert "PASS" in run.stdout and "FAIL" not in run.stdout, run.stdout[-3000:] + run.stderr[-2000:]
