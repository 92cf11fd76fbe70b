"""cocotb test benches and the simulator runner."""
