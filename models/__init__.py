"""Golden models: device, crossbar physics, fixed-point emulation contract."""
