"""The ADC calibration's quantile (remeco.models.emulation.calibrate_adc_shift) is
``np.quantile`` of all bit-plane column sums, computed without holding them all."""

import numpy as np
import pytest

from remeco.models.emulation import EmulationFormat, _accumulator_quantile, input_bit_planes, pad_inputs
from remeco.models.mapping import map_layer


@pytest.mark.parametrize("trial", range(12))
def test_quantile_equals_numpy_on_all_column_sums(trial):
    rng = np.random.default_rng(trial)
    fmt = EmulationFormat(rows=int(rng.choice([16, 32, 128])), cols=int(rng.choice([16, 128])))
    k, n = int(rng.integers(1, 300)), int(rng.integers(1, 40))
    mapped = map_layer(rng.integers(-127, 128, (k, n)), fmt)
    codes = mapped.target_levels() << fmt.code_frac
    if trial % 3 == 0:  # codes of both signs, as a chip instance's may be
        codes = codes - int(rng.integers(0, 300))
    x = rng.integers(0, 256, (int(rng.integers(1, 50)), k)) * (rng.random((1, k)) < 0.7)
    q = float(rng.choice([0.9999, 0.999, 0.5, 0.37, 1.0]))
    xp = pad_inputs(x, mapped)
    c2 = np.asarray(codes, np.int64).transpose(0, 2, 1, 3).reshape(mapped.row_tiles, fmt.rows, -1)
    c2 = c2[..., : mapped.physical_columns]
    every = np.einsum("...tr,trc->...tc", input_bit_planes(xp, fmt.input_bits), c2)  # the definition
    got = _accumulator_quantile(xp.reshape(-1, mapped.row_tiles, fmt.rows), c2, fmt.input_bits, q)
    assert got == float(np.quantile(every, q))
