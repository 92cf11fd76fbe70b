"""ADC quantizer RTL == emulation model, in Verilator and Icarus."""

from __future__ import annotations

from dataclasses import replace

import pytest

from remeco.tb.runner import simulator_available
from remeco.tb.verification import bench_specs

pytestmark = pytest.mark.sim


def test_adc_verilator():
    spec = bench_specs()["adc"]
    result = spec.run().check()
    assert result.vectors >= spec.params["vectors"] >= 10_000


def test_adc_icarus():
    if not simulator_available("icarus"):
        pytest.skip("Icarus Verilog (iverilog) is not installed")
    spec = bench_specs()["adc"]
    # The second simulator runs the same bench on a tagged, unshifted variant (fewer
    # vectors: Icarus is slower), so both code paths of the block see two simulators.
    params = {**spec.params, "adc_shift": 0, "tag_width": 5, "vectors": 3_000, "seed": 7}
    replace(spec, params=params, simulator="icarus").run().check()
