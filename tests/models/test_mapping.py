import numpy as np
import pytest

from remeco.models.emulation import EmulationFormat
from remeco.models.mapping import map_layer, slice_weights, unslice_weights


def test_bit_slice_round_trip_is_exact_for_every_weight():
    fmt = EmulationFormat()
    w = np.arange(-128, 128)
    levels = slice_weights(w, fmt)
    assert levels.shape == (2, 256)
    assert levels.min() == 0 and levels.max() == 15
    np.testing.assert_array_equal(unslice_weights(levels, fmt), w)
    # Offset encoding: -128 -> all zeros, 127 -> all top levels, 0 -> MSB digit 8.
    np.testing.assert_array_equal(levels[:, 0], [0, 0])
    np.testing.assert_array_equal(levels[:, -1], [15, 15])
    np.testing.assert_array_equal(levels[:, 128], [0, 8])


@pytest.mark.parametrize("slice_bits,n_slices", [(2, 4), (1, 8), (8, 1), (3, 2)])
def test_other_slicings_round_trip(slice_bits, n_slices):
    fmt = EmulationFormat(slice_bits=slice_bits, n_slices=n_slices, code_bits=slice_bits + 8)
    lo, hi = -fmt.weight_offset, fmt.weight_offset - 1
    w = np.arange(lo, hi + 1)
    np.testing.assert_array_equal(unslice_weights(slice_weights(w, fmt), fmt), w)


def test_layout_places_every_copy_on_its_own_column():
    fmt = EmulationFormat(rows=8, cols=8)
    rng = np.random.default_rng(1)
    w = rng.integers(-128, 128, (20, 6))
    k = np.array([[0, 0], [1, 1], [0, 2], [0, 0], [2, 2], [0, 1]])
    m = map_layer(w, fmt, k)
    assert m.physical_columns == int((2 ** k).sum())
    assert m.row_tiles == 3 and m.col_tiles == -(-m.physical_columns // 8)
    levels = m.target_levels()
    full = levels.transpose(0, 2, 1, 3).reshape(m.row_tiles * 8, m.col_tiles * 8)
    digits = slice_weights(w, fmt)
    for p in range(m.physical_columns):
        np.testing.assert_array_equal(full[:20, p], digits[m.col_slice[p], :, m.col_neuron[p]])
    assert not full[20:].any() and not full[:, m.physical_columns:].any()
    # copies of one (neuron, slice) are distinct physical columns
    keys = list(zip(m.col_neuron, m.col_slice, m.col_copy))
    assert len(set(keys)) == len(keys)


def test_bad_mapping_inputs_name_the_argument():
    fmt = EmulationFormat()
    with pytest.raises(ValueError, match="weights"):
        map_layer(np.array([[200]]), fmt)
    with pytest.raises(ValueError, match="weights"):
        map_layer(np.zeros((3, 3)), fmt)  # float
    with pytest.raises(ValueError, match="weights"):
        map_layer(np.zeros(3, dtype=int), fmt)
    with pytest.raises(ValueError, match="copies_log2"):
        map_layer(np.zeros((3, 3), dtype=int), fmt, copies_log2=np.array([0, 1]))
    with pytest.raises(ValueError, match="copies_log2"):
        map_layer(np.zeros((3, 3), dtype=int), fmt, copies_log2=-1)
    with pytest.raises(ValueError, match="copies_log2"):
        map_layer(np.zeros((3, 3), dtype=int), fmt, copies_log2=np.array([1.5, 1, 1]))
