// remeco_axi: the generated accelerator top (remeco_top, from `python -m remeco.rtl.top`)
// with the port names and interface attributes Vivado's block design infers, so the
// module drops into a block design as a module reference:
//   s_axil  AXI4-Lite slave, 8-bit addresses (the registers of remeco.rtl.regmap)
//   s_axis  AXI4-Stream slave, 32-bit words from the AXI DMA's MM2S (TKEEP accepted, unused:
//           the DMA sends whole words)
//   m_axis  AXI4-Stream master, 32-bit words to the AXI DMA's S2MM (TKEEP all ones)
//   aclk    the one clock; aresetn active-low reset, synchronous to aclk (proc_sys_reset's
//           peripheral_aresetn); remeco_top's rst is its synchronous active-high inverse.
`default_nettype none

module remeco_axi (
    (* X_INTERFACE_INFO = "xilinx.com:signal:clock:1.0 aclk CLK" *)
    (* X_INTERFACE_PARAMETER = "ASSOCIATED_BUSIF s_axil:s_axis:m_axis, ASSOCIATED_RESET aresetn" *)
    input  wire        aclk,
    (* X_INTERFACE_INFO = "xilinx.com:signal:reset:1.0 aresetn RST" *)
    (* X_INTERFACE_PARAMETER = "POLARITY ACTIVE_LOW" *)
    input  wire        aresetn,

    (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 s_axil AWADDR" *)
    (* X_INTERFACE_PARAMETER = "PROTOCOL AXI4LITE, DATA_WIDTH 32, ADDR_WIDTH 8" *)
    input  wire [7:0]  s_axil_awaddr,
    (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 s_axil AWPROT" *)
    input  wire [2:0]  s_axil_awprot,
    (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 s_axil AWVALID" *)
    input  wire        s_axil_awvalid,
    (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 s_axil AWREADY" *)
    output wire        s_axil_awready,
    (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 s_axil WDATA" *)
    input  wire [31:0] s_axil_wdata,
    (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 s_axil WSTRB" *)
    input  wire [3:0]  s_axil_wstrb,
    (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 s_axil WVALID" *)
    input  wire        s_axil_wvalid,
    (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 s_axil WREADY" *)
    output wire        s_axil_wready,
    (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 s_axil BRESP" *)
    output wire [1:0]  s_axil_bresp,
    (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 s_axil BVALID" *)
    output wire        s_axil_bvalid,
    (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 s_axil BREADY" *)
    input  wire        s_axil_bready,
    (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 s_axil ARADDR" *)
    input  wire [7:0]  s_axil_araddr,
    (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 s_axil ARPROT" *)
    input  wire [2:0]  s_axil_arprot,
    (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 s_axil ARVALID" *)
    input  wire        s_axil_arvalid,
    (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 s_axil ARREADY" *)
    output wire        s_axil_arready,
    (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 s_axil RDATA" *)
    output wire [31:0] s_axil_rdata,
    (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 s_axil RRESP" *)
    output wire [1:0]  s_axil_rresp,
    (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 s_axil RVALID" *)
    output wire        s_axil_rvalid,
    (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 s_axil RREADY" *)
    input  wire        s_axil_rready,

    (* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 s_axis TDATA" *)
    (* X_INTERFACE_PARAMETER = "TDATA_NUM_BYTES 4, HAS_TKEEP 1, HAS_TLAST 1, HAS_TSTRB 0, TUSER_WIDTH 0, TID_WIDTH 0, TDEST_WIDTH 0" *)
    input  wire [31:0] s_axis_tdata,
    (* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 s_axis TKEEP" *)
    input  wire [3:0]  s_axis_tkeep,
    (* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 s_axis TVALID" *)
    input  wire        s_axis_tvalid,
    (* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 s_axis TREADY" *)
    output wire        s_axis_tready,
    (* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 s_axis TLAST" *)
    input  wire        s_axis_tlast,

    (* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 m_axis TDATA" *)
    (* X_INTERFACE_PARAMETER = "TDATA_NUM_BYTES 4, HAS_TKEEP 1, HAS_TLAST 1, HAS_TSTRB 0, TUSER_WIDTH 0, TID_WIDTH 0, TDEST_WIDTH 0" *)
    output wire [31:0] m_axis_tdata,
    (* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 m_axis TKEEP" *)
    output wire [3:0]  m_axis_tkeep,
    (* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 m_axis TVALID" *)
    output wire        m_axis_tvalid,
    (* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 m_axis TREADY" *)
    input  wire        m_axis_tready,
    (* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 m_axis TLAST" *)
    output wire        m_axis_tlast
);

    // Whole 32-bit words only, in both directions.
    assign m_axis_tkeep = 4'hF;

    remeco_top top (
        .clk(aclk),
        .rst(~aresetn),

        .s_axil__awaddr(s_axil_awaddr),
        .s_axil__awprot(s_axil_awprot),
        .s_axil__awvalid(s_axil_awvalid),
        .s_axil__awready(s_axil_awready),
        .s_axil__wdata(s_axil_wdata),
        .s_axil__wstrb(s_axil_wstrb),
        .s_axil__wvalid(s_axil_wvalid),
        .s_axil__wready(s_axil_wready),
        .s_axil__bresp(s_axil_bresp),
        .s_axil__bvalid(s_axil_bvalid),
        .s_axil__bready(s_axil_bready),
        .s_axil__araddr(s_axil_araddr),
        .s_axil__arprot(s_axil_arprot),
        .s_axil__arvalid(s_axil_arvalid),
        .s_axil__arready(s_axil_arready),
        .s_axil__rdata(s_axil_rdata),
        .s_axil__rresp(s_axil_rresp),
        .s_axil__rvalid(s_axil_rvalid),
        .s_axil__rready(s_axil_rready),

        .s_axis__tdata(s_axis_tdata),
        .s_axis__tvalid(s_axis_tvalid),
        .s_axis__tready(s_axis_tready),
        .s_axis__tlast(s_axis_tlast),

        .m_axis__tdata(m_axis_tdata),
        .m_axis__tvalid(m_axis_tvalid),
        .m_axis__tready(m_axis_tready),
        .m_axis__tlast(m_axis_tlast)
    );

endmodule

`default_nettype wire
