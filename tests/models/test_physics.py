import numpy as np
import pytest

from remeco.models import emulation as em
from remeco.models.emulation import EmulationFormat
from remeco.models.mapping import map_layer
from remeco.models.physics import analog_adc, physics_matvec

G_OFF, G_ON = 0.5e-6, 10e-6


def _layer(rows=32, cols=16, adc_bits=8, seed=0, k=60, n=7):
    fmt = EmulationFormat(rows=rows, cols=cols, adc_bits=adc_bits)
    rng = np.random.default_rng(seed)
    m = map_layer(rng.integers(-128, 128, (k, n)), fmt, rng.integers(0, 2, (n, 2)))
    levels = m.target_levels()
    ideal = G_OFF + levels * (G_ON - G_OFF) / (fmt.levels - 1)
    return fmt, m, ideal, rng


def test_ideal_physics_equals_integer_dot_product_with_both_dacs():
    fmt, m, t, rng = _layer(adc_bits=16)
    x = rng.integers(0, 256, (9, m.fan_in))
    ref = (x @ m.weights) << fmt.code_frac
    for dac in ("bit_serial", "multi_level"):
        z = physics_matvec(x, m, t, 4, g_off=G_OFF, g_on=G_ON, dac=dac, adc_bits=None)
        np.testing.assert_allclose(z, ref, rtol=0, atol=1e-6 * np.abs(ref).max())
    z = physics_matvec(x, m, t, 4, g_off=G_OFF, g_on=G_ON)
    np.testing.assert_array_equal(z, ref)


@pytest.mark.parametrize("adc_shift", [3, 5, 7])
def test_emulation_matches_physics_within_the_stated_bound(adc_shift):
    """Non-ideal conductances: per-conversion ADC difference <= floor(popcount/2**(s+1)) + 1."""
    fmt, m, t, rng = _layer(rows=64, cols=32, k=100, n=9, seed=adc_shift)
    t = t * (1 + 0.05 * rng.standard_normal(t.shape)) - 0.02 * G_ON * rng.random(t.shape)
    t = np.clip(t, 0, None)
    codes = em.quantize_codes(t, G_OFF, G_ON, fmt)
    x = rng.integers(0, 256, (40, m.fan_in))
    # per-conversion comparison, the level at which the bound is stated
    xp = em.pad_inputs(x, m)
    planes = em.input_bit_planes(xp, fmt.input_bits)
    c2 = codes.transpose(0, 2, 1, 3).reshape(m.row_tiles, fmt.rows, -1)
    t2 = t.transpose(0, 2, 1, 3).reshape(m.row_tiles, fmt.rows, -1)
    d_g = (G_ON - G_OFF) / 15
    acc_e = np.einsum("btr,trc->btc", planes.reshape(-1, m.row_tiles, fmt.rows), c2)
    sig_p = np.einsum("btr,trc->btc", planes.reshape(-1, m.row_tiles, fmt.rows), (t2 - G_OFF) / d_g * 16)
    adc_e = em.adc_quantize(acc_e, adc_shift, fmt.adc_bits)
    adc_p = analog_adc(sig_p, adc_shift, fmt.adc_bits)
    popcount = planes.reshape(-1, m.row_tiles, fmt.rows).sum(-1, keepdims=True)
    bound = popcount // (1 << (adc_shift + 1)) + 1
    assert np.all(np.abs(adc_e - adc_p) <= bound)
    # and the rounding errors mostly cancel: most conversions agree exactly
    assert np.mean(adc_e == adc_p) > 0.9
    ze = em.emulate_matvec(x, m, codes, adc_shift)
    zp = physics_matvec(x, m, t, adc_shift, g_off=G_OFF, g_on=G_ON)
    assert ze.shape == zp.shape == (40, 9)


def test_read_noise_is_seeded_and_changes_outputs():
    fmt, m, t, rng = _layer()
    x = rng.integers(0, 256, (5, m.fan_in))
    kw = dict(g_off=G_OFF, g_on=G_ON, adc_bits=None, read_noise=0.05)
    a = physics_matvec(x, m, t, 4, rng=np.random.default_rng(3), **kw)
    b = physics_matvec(x, m, t, 4, rng=np.random.default_rng(3), **kw)
    c = physics_matvec(x, m, t, 4, rng=np.random.default_rng(4), **kw)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_physics_bad_inputs_name_the_argument():
    fmt, m, t, rng = _layer()
    x = rng.integers(0, 256, (2, m.fan_in))
    kw = dict(g_off=G_OFF, g_on=G_ON)
    with pytest.raises(ValueError, match="dac"):
        physics_matvec(x, m, t, 4, dac="pwm", **kw)
    with pytest.raises(ValueError, match="transfer"):
        physics_matvec(x, m, t[..., :3], 4, **kw)
    with pytest.raises(ValueError, match="transfer"):
        physics_matvec(x, m, -t, 4, **kw)
    with pytest.raises(ValueError, match="read_noise"):
        physics_matvec(x, m, t, 4, read_noise=-0.1, **kw)
    with pytest.raises(ValueError, match="rng"):
        physics_matvec(x, m, t, 4, read_noise=0.1, **kw)
    with pytest.raises(ValueError, match="adc_shift"):
        physics_matvec(x, m, t, 40, **kw)
    with pytest.raises(ValueError, match="adc_bits"):
        physics_matvec(x, m, t, 4, adc_bits=0, **kw)
