"""Fault map rules of the RTL crossbar: generator order, statistics, application."""

from __future__ import annotations

import numpy as np
import pytest

from remeco.models.fault_lfsr import (
    FAULT_NONE, FAULT_OFF, FAULT_ON, THRESHOLD_ONE,
    apply_fault_map, generate_fault_map, rate_threshold, xorshift32,
)


def test_xorshift_is_a_bijection_without_zero():
    rng = np.random.default_rng(0)
    states = {int(s) for s in rng.integers(1, 1 << 32, size=20_000)}
    images = {xorshift32(s) for s in states}
    assert len(images) == len(states)
    assert 0 not in images
    assert xorshift32(0) == 0  # the fixed point the seed rule avoids


def test_xorshift_matches_its_definition_on_one_bit_states():
    # s = 1: s ^= s << 13 -> 0x2001; s ^= s >> 17 -> 0x2001; s ^= s << 5 -> 0x2001 ^ 0x40020
    assert xorshift32(1) == (0x2001 ^ (0x2001 << 5))
    # the top bit must not leak past 32 bits
    assert xorshift32(1 << 31) < (1 << 32)


def test_seed_zero_means_one_and_seeds_differ():
    a = generate_fault_map(0, 20_000, 30_000, 2, 8, 8)
    b = generate_fault_map(1, 20_000, 30_000, 2, 8, 8)
    c = generate_fault_map(2, 20_000, 30_000, 2, 8, 8)
    assert np.array_equal(a, b)
    assert not np.array_equal(b, c)


def test_visiting_order_tile_column_row():
    # Tile-major, then column, row innermost: a smaller map is a prefix of a larger one.
    big = generate_fault_map(99, 30_000, 30_000, 3, 8, 6)
    assert np.array_equal(generate_fault_map(99, 30_000, 30_000, 2, 8, 6), big[:2])
    wide = generate_fault_map(99, 30_000, 30_000, 1, 8, 7)
    assert np.array_equal(generate_fault_map(99, 30_000, 30_000, 1, 8, 6), wide[:, :, :6])
    # an extra row shifts the draws of every later column
    tall = generate_fault_map(99, 30_000, 30_000, 1, 9, 6)
    assert not np.array_equal(tall[0, :8, 1:], wide[0, :, 1:6])


def test_rates_follow_thresholds():
    rate, on = rate_threshold(0.1), rate_threshold(0.25)
    fmap = generate_fault_map(12345, rate, on, 4, 64, 64)
    n = fmap.size
    faulty = np.isin(fmap, (FAULT_OFF, FAULT_ON))
    k = int(faulty.sum())
    # 6 sigma binomial bounds
    assert abs(k - 0.1 * n) < 6 * np.sqrt(n * 0.1 * 0.9)
    k_on = int((fmap == FAULT_ON).sum())
    assert abs(k_on - 0.25 * k) < 6 * np.sqrt(k * 0.25 * 0.75)
    assert set(np.unique(fmap)) <= {FAULT_NONE, FAULT_OFF, FAULT_ON}


def test_extreme_thresholds():
    assert not generate_fault_map(7, 0, THRESHOLD_ONE, 1, 16, 16).any()
    assert (generate_fault_map(7, THRESHOLD_ONE, THRESHOLD_ONE, 1, 16, 16) == FAULT_ON).all()
    assert (generate_fault_map(7, THRESHOLD_ONE, 0, 1, 16, 16) == FAULT_OFF).all()


def test_apply_fault_map():
    rng = np.random.default_rng(3)
    codes = rng.integers(-512, 512, size=(2, 8, 8))
    fmap = rng.integers(0, 4, size=codes.shape)
    out = apply_fault_map(codes, fmap, code_on=240, code_off=-3)
    healthy = (fmap & 1) == 0
    assert np.array_equal(out[healthy], codes[healthy])
    assert (out[fmap == FAULT_ON] == 240).all()
    assert (out[fmap == FAULT_OFF] == -3).all()
    # 2 (bit 1 without bit 0) is healthy too
    assert np.array_equal(out[fmap == 2], codes[fmap == 2])


@pytest.mark.parametrize("bad", [
    dict(seed=-1), dict(seed=1 << 32), dict(rate=THRESHOLD_ONE + 1), dict(on=-1), dict(rows=0),
])
def test_generator_validation(bad):
    args = dict(seed=1, rate=10, on=10, tiles=1, rows=2, cols=2)
    args.update(bad)
    with pytest.raises(ValueError):
        generate_fault_map(**args)


def test_apply_validation():
    with pytest.raises(ValueError):
        apply_fault_map(np.zeros((2, 2)), np.zeros((2, 3), int), 1, 0)
    with pytest.raises(ValueError):
        apply_fault_map(np.zeros((2, 2)), np.full((2, 2), 4), 1, 0)
    with pytest.raises(ValueError):
        rate_threshold(1.5)
