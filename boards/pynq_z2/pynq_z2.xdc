# PYNQ-Z2 (xc7z020clg400-1) constraints for the remeco overlay.
#
# The design is PS-only at the pins: the accelerator talks to the Zynq PS over M_AXI_GP0
# and S_AXI_HP0 inside the chip, and no PL package pin is used. DDR and FIXED_IO (MIO)
# belong to the PS and are placed by the processing_system7 IP; the PL clock FCLK_CLK0
# (100 MHz) gets its create_clock from the IP's own constraints. So nothing is needed here;
# the file exists so the project has a constraints set to extend (LEDs, buttons, PMODs).
#
# Example, should an LED ever show activity (LD0 of the PYNQ-Z2 on R14, 3.3 V bank):
#   set_property -dict {PACKAGE_PIN R14 IOSTANDARD LVCMOS33} [get_ports led0]
