# Vivado (2022.1 or later) batch build of the remeco PYNQ-Z2 overlay: remeco.bit + remeco.hwh.
#
#   vivado -mode batch -source block_design.tcl -tclargs GEN_DIR OUT_DIR [JOBS [CLOCK_MHZ]]
#
# GEN_DIR holds remeco_top.v and remeco_ip.tcl (python -m remeco.rtl.top --out GEN_DIR);
# OUT_DIR receives the accelerator packaged as an IP (OUT_DIR/ip_repo), the Vivado project
# (OUT_DIR/vivado), remeco.bit / remeco.hwh and remeco_timing.rpt (the routed design's
# timing summary). CLOCK_MHZ is the PL clock FCLK_CLK0 (default 100). The build
# fails, without writing remeco.bit, when the routed design misses that clock (WNS or WHS
# below zero); the summary is written either way. build.sh runs all of this.
#
# Block design "remeco" (instance names are what remeco.host.board.PynqDevice looks up):
#   processing_system7_0  Zynq PS: FCLK_CLK0 CLOCK_MHZ (100 MHz by default), M_AXI_GP0 (registers), S_AXI_HP0 (DMA to DDR)
#   rst_ps7_0_100M        proc_sys_reset for FCLK_CLK0 (the name stays whatever the clock)
#   ps7_0_axi_periph      axi_interconnect: GP0 -> axi_dma_0/S_AXI_LITE, remeco_0/s_axil
#   axi_dma_0             axi_dma 7.1, simple (direct register) mode, 32-bit MM2S/S2MM streams,
#                         26-bit buffer length register (64 MiB - 1 per transfer; the driver
#                         moves at most 2^22 words = 16 MiB per run), interrupts unconnected
#                         (the host polls DMASR)
#   axi_mem_intercon      axi_interconnect: DMA M_AXI_MM2S + M_AXI_S2MM -> PS S_AXI_HP0
#   remeco_0              the accelerator IP: remeco_axi.v wrapping the generated remeco_top,
#                         packaged with the VLNV of remeco.rtl.ip (sourced from GEN_DIR/remeco_ip.tcl),
#                         so the .hwh names it by that VLNV and pynq binds remeco.host.pynq_ip.RemecoIP
# Addresses: axi_dma_0 at 0x4040_0000, remeco_0 at 0x43C0_0000 (64 KiB each); the DMA
# reaches the DDR window 0x0000_0000 - 0x1FFF_FFFF through HP0.

if {[llength $argv] < 2} {
    error "usage: vivado -mode batch -source block_design.tcl -tclargs GEN_DIR OUT_DIR \[JOBS \[CLOCK_MHZ\]\]"
}
set here [file dirname [file normalize [info script]]]
set gen_dir [file normalize [lindex $argv 0]]
set out_dir [file normalize [lindex $argv 1]]
set jobs [expr {[llength $argv] > 2 ? [lindex $argv 2] : 2}]
set clock_mhz [expr {[llength $argv] > 3 ? [lindex $argv 3] : 100}]
# FCLK_CLK0 comes from the PS's IO PLL through two dividers; the PL's fabric tops out near 250 MHz
if {![string is double -strict $clock_mhz] || $clock_mhz <= 0 || $clock_mhz > 250} {
    error "CLOCK_MHZ must be a number in (0, 250\], got '$clock_mhz'"
}
set top_v [file join $gen_dir remeco_top.v]
set ip_tcl [file join $gen_dir remeco_ip.tcl]
foreach f [list $top_v $ip_tcl] {
    if {![file exists $f]} {
        error "$f is missing: generate it with python -m remeco.rtl.top --out $gen_dir"
    }
}
# remeco_ip_vendor, _library, _name, _version, _vlnv, _instance: defined once, in remeco.rtl.ip
source $ip_tcl

set design remeco
set part xc7z020clg400-1
set proj_dir [file join $out_dir vivado]
file mkdir $out_dir

# -- the accelerator as an IP ------------------------------------------------------------
# A project of its own whose top is the wrapper; the packager copies both Verilog files into
# the IP (-import_files) and infers s_axil, s_axis, m_axis, aclk and aresetn from the
# wrapper's X_INTERFACE attributes, and the AXI4-Lite memory map (block reg0) from s_axil.
set ip_repo [file join $out_dir ip_repo]
set ip_dir [file join $ip_repo ${remeco_ip_name}_$remeco_ip_version]
file delete -force $ip_dir
create_project ${design}_ip [file join $out_dir ip_project] -part $part -force
add_files -norecurse [list $top_v [file join $here remeco_axi.v]]
set_property top $remeco_ip_name [current_fileset]
update_compile_order -fileset sources_1
ipx::package_project -root_dir $ip_dir -vendor $remeco_ip_vendor -library $remeco_ip_library \
    -taxonomy /UserIP -import_files
set core [ipx::current_core]
set_property name $remeco_ip_name $core
set_property version $remeco_ip_version $core
set_property display_name "remeco accelerator (register map $remeco_ip_version)" $core
set_property description "remeco memristor-crossbar accelerator top: AXI4-Lite registers, AXI4-Stream in and out" $core
ipx::create_xgui_files $core
ipx::update_checksums $core
ipx::check_integrity $core
ipx::save_core $core
close_project
puts "remeco: packaged $remeco_ip_vlnv in $ip_dir"

create_project $design $proj_dir -part $part -force
set_property ip_repo_paths [list $ip_repo] [current_project]
update_ip_catalog -rebuild

# The TUL PYNQ-Z2 board files give the PS7 preset (DDR3 timing, MIO). The overlay only
# configures the PL (the board's boot loader configured the PS), so without them the part
# alone still gives a working overlay; the preset keeps the .hwh's PS settings truthful.
set board [lindex [lsort [get_board_parts -quiet *pynq-z2*]] end]
if {$board ne ""} {
    set_property board_part $board [current_project]
    puts "remeco: board part $board"
} else {
    puts "WARNING: remeco: no PYNQ-Z2 board files in this Vivado; building for the part $part alone"
}

add_files -fileset constrs_1 -norecurse [file join $here pynq_z2.xdc]
update_compile_order -fileset sources_1

create_bd_design $design

# -- cells -----------------------------------------------------------------------------
set ps [create_bd_cell -type ip -vlnv xilinx.com:ip:processing_system7:5.5 processing_system7_0]
apply_bd_automation -rule xilinx.com:bd_rule:processing_system7 \
    -config [list make_external "FIXED_IO, DDR" apply_board_preset [expr {$board ne "" ? 1 : 0}] \
                  Master Disable Slave Disable] $ps
set_property -dict [list \
    CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ $clock_mhz \
    CONFIG.PCW_EN_CLK0_PORT {1} \
    CONFIG.PCW_EN_RST0_PORT {1} \
    CONFIG.PCW_USE_M_AXI_GP0 {1} \
    CONFIG.PCW_USE_S_AXI_HP0 {1} \
    CONFIG.PCW_S_AXI_HP0_DATA_WIDTH {64} \
    CONFIG.PCW_USE_FABRIC_INTERRUPT {0} \
] $ps

set rst [create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset:5.0 rst_ps7_0_100M]

set dma [create_bd_cell -type ip -vlnv xilinx.com:ip:axi_dma:7.1 axi_dma_0]
set_property -dict [list \
    CONFIG.c_include_sg {0} \
    CONFIG.c_sg_include_stscntrl_strm {0} \
    CONFIG.c_sg_length_width {26} \
    CONFIG.c_include_mm2s {1} \
    CONFIG.c_include_s2mm {1} \
    CONFIG.c_m_axi_mm2s_data_width {32} \
    CONFIG.c_m_axis_mm2s_tdata_width {32} \
    CONFIG.c_m_axi_s2mm_data_width {32} \
    CONFIG.c_s_axis_s2mm_tdata_width {32} \
    CONFIG.c_mm2s_burst_size {16} \
    CONFIG.c_s2mm_burst_size {16} \
    CONFIG.c_include_mm2s_dre {0} \
    CONFIG.c_include_s2mm_dre {0} \
    CONFIG.c_addr_width {32} \
] $dma

set periph [create_bd_cell -type ip -vlnv xilinx.com:ip:axi_interconnect:2.1 ps7_0_axi_periph]
set_property -dict [list CONFIG.NUM_SI {1} CONFIG.NUM_MI {2}] $periph
set mem [create_bd_cell -type ip -vlnv xilinx.com:ip:axi_interconnect:2.1 axi_mem_intercon]
set_property -dict [list CONFIG.NUM_SI {2} CONFIG.NUM_MI {1}] $mem

set acc [create_bd_cell -type ip -vlnv $remeco_ip_vlnv $remeco_ip_instance]

# -- clock and resets --------------------------------------------------------------------
connect_bd_net [get_bd_pins processing_system7_0/FCLK_CLK0] \
    [get_bd_pins processing_system7_0/M_AXI_GP0_ACLK] \
    [get_bd_pins processing_system7_0/S_AXI_HP0_ACLK] \
    [get_bd_pins rst_ps7_0_100M/slowest_sync_clk] \
    [get_bd_pins axi_dma_0/s_axi_lite_aclk] \
    [get_bd_pins axi_dma_0/m_axi_mm2s_aclk] \
    [get_bd_pins axi_dma_0/m_axi_s2mm_aclk] \
    [get_bd_pins $remeco_ip_instance/aclk] \
    [get_bd_pins ps7_0_axi_periph/ACLK] \
    [get_bd_pins ps7_0_axi_periph/S00_ACLK] \
    [get_bd_pins ps7_0_axi_periph/M00_ACLK] \
    [get_bd_pins ps7_0_axi_periph/M01_ACLK] \
    [get_bd_pins axi_mem_intercon/ACLK] \
    [get_bd_pins axi_mem_intercon/S00_ACLK] \
    [get_bd_pins axi_mem_intercon/S01_ACLK] \
    [get_bd_pins axi_mem_intercon/M00_ACLK]
connect_bd_net [get_bd_pins processing_system7_0/FCLK_RESET0_N] [get_bd_pins rst_ps7_0_100M/ext_reset_in]
connect_bd_net [get_bd_pins rst_ps7_0_100M/interconnect_aresetn] \
    [get_bd_pins ps7_0_axi_periph/ARESETN] \
    [get_bd_pins axi_mem_intercon/ARESETN]
connect_bd_net [get_bd_pins rst_ps7_0_100M/peripheral_aresetn] \
    [get_bd_pins axi_dma_0/axi_resetn] \
    [get_bd_pins $remeco_ip_instance/aresetn] \
    [get_bd_pins ps7_0_axi_periph/S00_ARESETN] \
    [get_bd_pins ps7_0_axi_periph/M00_ARESETN] \
    [get_bd_pins ps7_0_axi_periph/M01_ARESETN] \
    [get_bd_pins axi_mem_intercon/S00_ARESETN] \
    [get_bd_pins axi_mem_intercon/S01_ARESETN] \
    [get_bd_pins axi_mem_intercon/M00_ARESETN]

# -- buses -------------------------------------------------------------------------------
connect_bd_intf_net [get_bd_intf_pins processing_system7_0/M_AXI_GP0] [get_bd_intf_pins ps7_0_axi_periph/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins ps7_0_axi_periph/M00_AXI] [get_bd_intf_pins axi_dma_0/S_AXI_LITE]
connect_bd_intf_net [get_bd_intf_pins ps7_0_axi_periph/M01_AXI] [get_bd_intf_pins $remeco_ip_instance/s_axil]
connect_bd_intf_net [get_bd_intf_pins axi_dma_0/M_AXI_MM2S] [get_bd_intf_pins axi_mem_intercon/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins axi_dma_0/M_AXI_S2MM] [get_bd_intf_pins axi_mem_intercon/S01_AXI]
connect_bd_intf_net [get_bd_intf_pins axi_mem_intercon/M00_AXI] [get_bd_intf_pins processing_system7_0/S_AXI_HP0]
connect_bd_intf_net [get_bd_intf_pins axi_dma_0/M_AXIS_MM2S] [get_bd_intf_pins $remeco_ip_instance/s_axis]
connect_bd_intf_net [get_bd_intf_pins $remeco_ip_instance/m_axis] [get_bd_intf_pins axi_dma_0/S_AXIS_S2MM]

# -- addresses ---------------------------------------------------------------------------
set ps_data [get_bd_addr_spaces processing_system7_0/Data]
assign_bd_address -offset 0x40400000 -range 0x00010000 -target_address_space $ps_data \
    [get_bd_addr_segs axi_dma_0/S_AXI_LITE/Reg] -force
assign_bd_address -offset 0x43C00000 -range 0x00010000 -target_address_space $ps_data \
    [get_bd_addr_segs $remeco_ip_instance/s_axil/reg0] -force
foreach space {Data_MM2S Data_S2MM} {
    assign_bd_address -offset 0x00000000 -range 0x20000000 \
        -target_address_space [get_bd_addr_spaces axi_dma_0/$space] \
        [get_bd_addr_segs processing_system7_0/S_AXI_HP0/HP0_DDR_LOWOCM] -force
}

validate_bd_design
save_bd_design

# -- implementation ----------------------------------------------------------------------
set bd_file [get_files $design.bd]
generate_target all $bd_file
set wrapper [make_wrapper -files $bd_file -top]
add_files -norecurse $wrapper
set_property top ${design}_wrapper [current_fileset]
update_compile_order -fileset sources_1

launch_runs impl_1 -to_step write_bitstream -jobs $jobs
wait_on_run impl_1
if {[get_property PROGRESS [get_runs impl_1]] ne "100%"} {
    error "remeco: implementation failed: [get_property STATUS [get_runs impl_1]] (see $proj_dir/$design.runs/impl_1)"
}

# -- timing: the summary beside the bitstream; a routed design that misses the clock is no overlay
open_run impl_1
set timing_rpt [file join $out_dir remeco_timing.rpt]
report_timing_summary -delay_type min_max -max_paths 10 -report_unconstrained -file $timing_rpt
set wns [get_property STATS.WNS [get_runs impl_1]]
set whs [get_property STATS.WHS [get_runs impl_1]]
puts "remeco: routed at FCLK_CLK0 = $clock_mhz MHz: WNS $wns ns, WHS $whs ns (summary: $timing_rpt)"
if {![string is double -strict $wns] || ![string is double -strict $whs]} {
    error "remeco: Vivado reported no slack for impl_1 (WNS '$wns', WHS '$whs'); see $timing_rpt"
}
if {$wns < 0 || $whs < 0} {
    error "remeco: timing not met at $clock_mhz MHz (WNS $wns ns, WHS $whs ns): no remeco.bit written; see $timing_rpt"
}

# -- the overlay: .bit and .hwh under one base name (pynq reads remeco.hwh beside remeco.bit)
set bits [glob -nocomplain -directory [file join $proj_dir $design.runs impl_1] *.bit]
if {[llength $bits] != 1} {
    error "remeco: expected one bitstream in $proj_dir/$design.runs/impl_1, found: $bits"
}
set hwhs [glob -nocomplain -directory $proj_dir -join * sources_1 bd $design hw_handoff $design.hwh]
if {[llength $hwhs] == 0} {
    error "remeco: no hardware handoff $design.hwh under $proj_dir"
}
file copy -force [lindex $bits 0] [file join $out_dir remeco.bit]
file copy -force [lindex $hwhs 0] [file join $out_dir remeco.hwh]
puts "remeco: wrote [file join $out_dir remeco.bit] and [file join $out_dir remeco.hwh]"
