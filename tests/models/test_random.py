import numpy as np
import pytest

from remeco.models.random import rng_for


def test_streams_are_reproducible_and_distinct():
    a = rng_for(1, 2, "x").random(4)
    np.testing.assert_array_equal(a, rng_for(1, 2, "x").random(4))
    others = [rng_for(1, 2, "x", 0), rng_for(1, 2, "y"), rng_for(1, 3, "x"), rng_for(2, 2, "x"), rng_for(1, 2, "x", 0, 0)]
    for g in others:
        assert not np.array_equal(a, g.random(4))
    assert not np.array_equal(rng_for(1, 2, "x", 0).random(4), rng_for(1, 2, "x", 0, 0).random(4))


@pytest.mark.parametrize("args", [(-1, 0, "x"), (0, -2, "x"), (0, 0, "x", -1), (0.5, 0, "x")])
def test_bad_keys(args):
    with pytest.raises(ValueError):
        rng_for(*args)
