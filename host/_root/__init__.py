"""remeco: reliable memristor-crossbar accelerators, from golden model to RTL to board.

The layers are subpackages: :mod:`remeco.models` (golden models), :mod:`remeco.rtl`
(Amaranth components), :mod:`remeco.tb` (cocotb benches), :mod:`remeco.host` (driver,
campaigns, command line).
"""

__version__ = "0.1.0"
