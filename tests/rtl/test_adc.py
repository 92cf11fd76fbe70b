"""ADC quantizer RTL == emulation model, in Verilator and Icarus."""

from __future__ import annotations

import pytest

from remeco.models.emulation import EmulationFormat
from remeco.tb import bench_adc
from remeco.tb.runner import run_bench, simulator_available

FMT = EmulationFormat()  # 128-row tiles, 10-bit codes, 8-bit ADC


def _params(**over) -> dict:
    p = {
        "acc_width": FMT.widths(FMT.rows)["acc"],
        "adc_bits": FMT.adc_bits,
        "adc_shift": 3,
        "tag_width": 0,
        "vectors": 10_000,
        "seed": 2024,
        "valid_prob": 0.8,
        "ready_prob": 0.7,
    }
    p.update(over)
    return p


@pytest.mark.sim
def test_adc_verilator():
    p = _params()
    run_bench("remeco.tb.bench_adc", bench_adc.design(p), top="adc", params=p).check()


@pytest.mark.sim
def test_adc_icarus():
    if not simulator_available("icarus"):
        pytest.skip("Icarus Verilog (iverilog) is not installed")
    # Icarus is the second opinion: same bench, a tagged, unshifted variant, fewer vectors.
    p = _params(adc_shift=0, tag_width=5, vectors=3_000, seed=7)
    run_bench("remeco.tb.bench_adc", bench_adc.design(p), top="adc", params=p, simulator="icarus").check()
