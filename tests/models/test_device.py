import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from remeco.models import device as dv
from remeco.models.device import D2DParams, DeviceParams, DeviceVariation

P = DeviceParams()
# Number of standard deviations for statistical bounds: a false failure has probability
# below 1e-6 per check, and the bounds shrink with n, so a wrong rate is still caught.
Z = 5.0


def _binomial_ok(k: int, n: int, p: float) -> bool:
    sd = math.sqrt(n * p * (1 - p))
    return abs(k - n * p) <= Z * sd


def _level_error(g, levels, params=P):
    return (g - params.level_conductance(levels)) / params.level_spacing


def _targets(shape=(64, 64), seed=0):
    return np.random.default_rng(seed).integers(0, P.levels, shape)


def _variation(shape, sigma, seed=1, instance=0, tile=0):
    d2d = D2DParams(sigma_rel=sigma, v_sigma=0.08 if sigma else 0.0)
    return dv.draw_variation(shape, seed, instance, tile, params=P, d2d=d2d)


# ----------------------------------------------------------------- levels and conductances


def test_levels_evenly_spaced_between_g_off_and_g_on_and_round_trip():
    levels = np.arange(P.levels)
    g = P.level_conductance(levels)
    assert g[0] == P.g_off and g[-1] == pytest.approx(P.g_on, rel=1e-15)
    np.testing.assert_allclose(np.diff(g), P.level_spacing, rtol=1e-12)
    np.testing.assert_array_equal(P.conductance_to_level(g), levels)
    # Anything within half a spacing rounds back to the level.
    np.testing.assert_array_equal(P.conductance_to_level(g + 0.49 * P.level_spacing)[:-1], levels[:-1])
    x = np.linspace(0, 1, 11)
    np.testing.assert_allclose(P.conductance_to_state(P.state_to_conductance(x)), x, atol=1e-15)
    assert P.conductance_to_state(2 * P.g_on) == 1.0
    assert P.conductance_to_state(2 * P.g_on, clip=False) > 1.0


# ----------------------------------------------------------------- Yakopcic dynamics


@pytest.mark.parametrize(
    "x0, voltage, width, var",
    [
        (0.2, 5.0, 5e-9, None),  # linear region
        (0.9, 5.0, 5e-9, None),  # runs into the SET window
        (0.99, 5.0, 20e-9, None),  # deep in saturation
        (0.8, -5.0, 5e-9, None),  # RESET, linear
        (0.1, -5.0, 10e-9, None),  # into the RESET window
        (0.5, 4.6, 30e-9, (4.1, 3.9, 7e5, 9e5)),  # a varied device
        (0.5, -4.8, 30e-9, (4.1, 3.9, 7e5, 9e5)),
    ],
)
def test_closed_form_pulse_matches_ode_integration(x0, voltage, width, var):
    variation = None if var is None else DeviceVariation(*(np.array(v) for v in var))
    sol = solve_ivp(
        lambda t, y: dv.state_rate(y, voltage, P, variation),
        (0.0, width), [x0], method="Radau", rtol=1e-11, atol=1e-13,
    )
    assert sol.success
    got = dv.apply_pulse(x0, voltage, width, P, variation)
    assert abs(float(got) - sol.y[0, -1]) < 1e-7
    assert float(got) != x0


def test_pulse_below_threshold_does_nothing_and_state_stays_in_bounds():
    x = np.linspace(0, 1, 21)
    np.testing.assert_array_equal(dv.apply_pulse(x, 3.9, 1e-6, P), x)
    np.testing.assert_array_equal(dv.apply_pulse(x, -3.9, 1e-6, P), x)
    up = dv.apply_pulse(x, 5.0, 1e-6, P)  # ~100x the full-range time
    down = dv.apply_pulse(x, -5.0, 1e-6, P)
    assert np.all(up <= 1) and np.all(up > 0.999) and np.all(down >= 0) and np.all(down < 1e-3)
    # Splitting a pulse does not change the result (g(V) does not depend on x).
    once = dv.apply_pulse(x, 5.0, 8e-9, P)
    twice = dv.apply_pulse(dv.apply_pulse(x, 5.0, 3e-9, P), 5.0, 5e-9, P)
    np.testing.assert_allclose(once, twice, atol=1e-12)


def test_eta_minus_one_swaps_polarity():
    p = DeviceParams(eta=-1)
    assert float(dv.apply_pulse(0.5, -5.0, 5e-9, p)) > 0.5
    assert float(dv.apply_pulse(0.5, 5.0, 5e-9, p)) < 0.5
    t = np.arange(p.levels)
    res = dv.program_write_verify(t, p)
    assert res.converged.all()
    assert np.abs(_level_error(res.conductance, t, p)).max() <= 2 * p.aim_margin


# ----------------------------------------------------------------- D2D variation


def test_d2d_draw_statistics_and_disabled_is_nominal():
    shape = (200, 200)
    n = shape[0] * shape[1]
    var = dv.draw_variation(shape, 7, 3, 0, params=P, d2d=D2DParams(sigma_rel=0.2, v_sigma=0.08))
    for arr, mu, sd in ((var.v_p, P.v_p, 0.08), (var.v_n, P.v_n, 0.08),
                        (var.a_p, P.a_p, 0.2 * P.a_p), (var.a_n, P.a_n, 0.2 * P.a_n)):
        assert arr.shape == shape
        assert abs(arr.mean() - mu) <= Z * sd / math.sqrt(n)
        # Std of the sample std of a normal is about sd / sqrt(2 n).
        assert abs(arr.std() - sd) <= Z * sd / math.sqrt(2 * n)
    off = dv.draw_variation(shape, 7, 3, 0, params=P, d2d=D2DParams.none())
    for arr, mu in ((off.v_p, P.v_p), (off.v_n, P.v_n), (off.a_p, P.a_p), (off.a_n, P.a_n)):
        assert np.all(arr == mu)


def test_d2d_parameters_of_one_device_are_independent():
    shape = (200, 200)
    n = shape[0] * shape[1]
    var = dv.draw_variation(shape, 7, 3, 0, params=P, d2d=D2DParams(sigma_rel=0.2, v_sigma=0.08))
    r = np.corrcoef(np.stack([var.v_p.ravel(), var.v_n.ravel(), var.a_p.ravel(), var.a_n.ravel()]))
    assert np.abs(r[np.triu_indices(4, 1)]).max() < Z / math.sqrt(n)


def test_d2d_sigma_sweep_uses_common_random_numbers():
    a = dv.draw_variation((30, 30), 1, 2, 5, params=P, d2d=D2DParams(sigma_rel=0.1))
    b = dv.draw_variation((30, 30), 1, 2, 5, params=P, d2d=D2DParams(sigma_rel=0.2))
    np.testing.assert_allclose(b.a_p - P.a_p, 2 * (a.a_p - P.a_p), rtol=1e-9)
    np.testing.assert_array_equal(a.v_p, b.v_p)


def test_d2d_streams_of_tiles_and_instances_are_independent():
    shape = (100, 100)
    n = shape[0] * shape[1]
    base = _variation(shape, 0.1, seed=4, instance=0, tile=0)
    for other in (_variation(shape, 0.1, seed=4, instance=0, tile=1),
                  _variation(shape, 0.1, seed=4, instance=1, tile=0)):
        r = np.corrcoef(base.a_p.ravel(), other.a_p.ravel())[0, 1]
        assert abs(r) < Z / math.sqrt(n)
    again = _variation(shape, 0.1, seed=4, instance=0, tile=0)
    np.testing.assert_array_equal(base.a_p, again.a_p)


# ----------------------------------------------------------------- programming


def test_open_loop_without_variation_hits_every_level():
    t = np.arange(P.levels)
    res = dv.program_open_loop(t, P)
    err = _level_error(res.conductance, t)
    assert res.converged.all()
    # Exact up to the aim margin at the top level (x = 1 is only reached asymptotically).
    assert np.abs(err[:-1]).max() < 1e-9
    assert abs(err[-1]) <= P.aim_margin + 1e-9
    assert res.pulses[0] == 0 and np.all(res.pulses[1:] > 0)
    assert np.all(np.diff(res.pulses) >= 0) and np.all(np.diff(res.pulse_time) > 0)
    np.testing.assert_array_equal(res.reads, 0)
    # Pulse count is the nominal time in whole pulses.
    np.testing.assert_array_equal(res.pulses, np.ceil(res.pulse_time / P.pulse_width - 1e-9))


@pytest.mark.parametrize("sigma", [0.1, 0.2])
def test_write_verify_converges_under_d2d_variation(sigma):
    t = _targets()
    var = _variation(t.shape, sigma)
    res = dv.program_write_verify(t, P, var)
    err = _level_error(res.conductance, t)
    assert res.converged.all()
    assert np.abs(err).max() <= P.tolerance + 1e-9
    assert np.all(res.pulses[t > 0] > 0) and np.all(res.pulses[t == 0] == 0)
    assert res.pulses.max() <= P.max_pulses
    assert np.all(res.reads >= 1)
    assert np.all(res.pulse_time[t > 0] > 0)
    # Variation costs extra verify iterations compared with the nominal device.
    nominal = dv.program_write_verify(t, P)
    assert res.pulses.sum() > nominal.pulses.sum()
    assert res.reads.sum() > nominal.reads.sum()


def test_open_loop_misses_under_d2d_variation_and_gets_worse_with_sigma():
    t = _targets()
    out = {}
    for sigma in (0.0, 0.1, 0.2):
        res = dv.program_open_loop(t, P, _variation(t.shape, sigma))
        err = _level_error(res.conductance, t)
        out[sigma] = np.mean(np.abs(err) > P.tolerance)
        np.testing.assert_array_equal(res.converged, np.abs(err) <= P.tolerance)
    assert out[0.0] == 0.0
    # The paper's point: without write-and-verify, D2D variation mis-programs devices.
    assert out[0.2] > 0.25
    assert out[0.2] > out[0.1] > 0.0


def test_write_verify_adapts_to_slow_and_fast_devices():
    # Devices from 10x slower to 3x faster than nominal, in both directions: the
    # controller measures each device's response and needs only a few bursts. (Without
    # that, devices more than 2x faster oscillate around the target and never converge.)
    n = 16
    scale = np.linspace(0.1, 3.0, n)
    nominal = DeviceVariation.nominal((n,), P)
    var = DeviceVariation(nominal.v_p, nominal.v_n, scale * P.a_p, scale[::-1] * P.a_n)
    for start, level in ((0.0, 9), (1.0, 2)):
        t = np.full(n, level)
        res = dv.program_write_verify(t, P, var, initial_state=start)
        assert res.converged.all()
        assert np.abs(_level_error(res.conductance, t)).max() <= P.tolerance
        assert res.reads.max() <= 5


def test_write_verify_reports_devices_that_cannot_be_programmed():
    t = np.array([[3, 8, 15, 0], [15, 0, 7, 7]])
    # A device whose SET threshold lies above the pulse amplitude never moves up.
    var = dv.DeviceVariation.nominal(t.shape, P)
    v_p = var.v_p.copy()
    v_p[0, 0] = P.v_set + 0.1
    var = DeviceVariation(v_p, var.v_n, var.a_p, var.a_n)
    faults = np.array([[0, 1, 1, -1], [-1, 1, 0, 0]], dtype=np.int8)
    res = dv.program_write_verify(t, P, var, fault_map=faults)
    expect_ok = np.array([[False, False, True, True], [False, False, True, True]])
    np.testing.assert_array_equal(res.converged, expect_ok)
    assert np.all(res.pulses[~expect_ok] == P.max_pulses)
    assert res.pulses[0, 2] == 0 and res.pulses[0, 3] == 0  # stuck at the right value
    np.testing.assert_array_equal(res.conductance[faults > 0], P.g_on)
    np.testing.assert_array_equal(res.conductance[faults < 0], P.g_off)


def test_write_verify_from_a_programmed_state_uses_reset_pulses():
    t = np.arange(P.levels)
    res = dv.program_write_verify(t, P, initial_state=1.0)
    assert res.converged.all()
    assert np.abs(_level_error(res.conductance, t)).max() <= P.tolerance
    assert res.pulses[-1] == 0 and np.all(res.pulses[:-1] > 0)


def test_write_verify_with_read_noise():
    t = _targets((32, 32))
    var = _variation(t.shape, 0.1)
    with pytest.raises(ValueError, match="rng"):
        dv.program_write_verify(t, P, var, read_sigma_rel=0.01)
    a = dv.program_write_verify(t, P, var, read_sigma_rel=0.01, rng=np.random.default_rng(5))
    b = dv.program_write_verify(t, P, var, read_sigma_rel=0.01, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a.conductance, b.conductance)
    assert a.converged.mean() > 0.99
    err = np.abs(_level_error(a.conductance, t))
    # Noise of 1 % of G is ~0.16 level at g_on: verified devices land near, not always in.
    assert np.median(err) < P.tolerance and err.max() < 1.5


# ----------------------------------------------------------------- stuck-at faults


@pytest.mark.parametrize("rate, on_fraction", [(0.01, 0.838), (0.3, 0.162)])
def test_stuck_at_rate_and_split_within_binomial_bounds(rate, on_fraction):
    shape = (500, 400)
    n = shape[0] * shape[1]
    f = dv.sample_stuck_at(shape, 11, 0, 0, rate=rate, stuck_on_fraction=on_fraction)
    assert f.dtype == np.int8 and f.shape == shape
    assert set(np.unique(f)) <= {-1, 0, 1}
    faulty = int(np.count_nonzero(f))
    assert _binomial_ok(faulty, n, rate)
    assert _binomial_ok(int(np.count_nonzero(f == 1)), faulty, on_fraction)


def test_stuck_at_edge_rates():
    shape = (300, 300)
    assert not dv.sample_stuck_at(shape, 1, 2, rate=0.0).any()
    every = dv.sample_stuck_at(shape, 1, 2, rate=1.0, stuck_on_fraction=0.838)
    assert np.all(every != 0)
    assert _binomial_ok(int(np.count_nonzero(every == 1)), every.size, 0.838)
    assert np.all(dv.sample_stuck_at(shape, 1, 2, rate=1.0, stuck_on_fraction=1.0) == 1)
    assert np.all(dv.sample_stuck_at(shape, 1, 2, rate=1.0, stuck_on_fraction=0.0) == -1)


def test_stuck_at_rate_sweep_is_nested_and_streams_are_independent():
    shape = (200, 200)
    lo = dv.sample_stuck_at(shape, 3, 4, 0, rate=0.01)
    hi = dv.sample_stuck_at(shape, 3, 4, 0, rate=0.05)
    assert np.all(hi[lo != 0] == lo[lo != 0])
    # Tiles and instances: with rate 0.5, P(faulty in both) = 0.25 if independent.
    base = dv.sample_stuck_at(shape, 3, 4, 0, rate=0.5) != 0
    for other in (dv.sample_stuck_at(shape, 3, 4, 1, rate=0.5) != 0,
                  dv.sample_stuck_at(shape, 3, 5, 0, rate=0.5) != 0):
        assert _binomial_ok(int(np.count_nonzero(base & other)), base.size, 0.25)
    np.testing.assert_array_equal(base, dv.sample_stuck_at(shape, 3, 4, 0, rate=0.5) != 0)


def test_apply_stuck_at_overrides_only_stuck_devices():
    g = np.full((2, 3), 3e-6)
    f = np.array([[0, 1, -1], [-1, 0, 1]], dtype=np.int8)
    out = dv.apply_stuck_at(g, f, P)
    np.testing.assert_array_equal(out, [[3e-6, P.g_on, P.g_off], [P.g_off, 3e-6, P.g_on]])
    with pytest.raises(ValueError, match="fault_map"):
        dv.apply_stuck_at(g, np.full((2, 3), 2), P)
    with pytest.raises(ValueError, match="fault_map"):
        dv.apply_stuck_at(g, f[:, :2], P)


# ----------------------------------------------------------------- read noise


def test_read_noise_statistics_and_clipping():
    n = 200_000
    g = np.full(n, 5e-6)
    sigma = 0.05
    noisy = dv.read_noise(g, sigma, np.random.default_rng(0))
    rel = noisy / g - 1
    assert abs(rel.mean()) <= Z * sigma / math.sqrt(n)
    assert abs(rel.std() - sigma) <= Z * sigma / math.sqrt(2 * n)
    np.testing.assert_array_equal(dv.read_noise(g, 0.0, None), g)
    wild = dv.read_noise(g[:1000], 2.0, np.random.default_rng(1))
    assert wild.min() == 0.0 and np.all(wild >= 0)
    with pytest.raises(ValueError, match="rng"):
        dv.read_noise(g, 0.1, None)


# ----------------------------------------------------------------- one tile of a chip


def _tile(**kw):
    args = dict(seed=9, instance=2, tile=1)
    args.update(kw)
    return dv.program_tile(_targets((48, 48)), P, **args)


def test_program_tile_is_deterministic_and_keyed_by_instance_and_tile():
    a, b = _tile(), _tile()
    for name in ("conductance", "fault_map", "pulses", "pulse_time", "converged", "reads"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for other in (_tile(instance=3), _tile(tile=2), _tile(seed=10)):
        assert not np.array_equal(a.fault_map, other.fault_map)
        assert not np.array_equal(a.conductance, other.conductance)


def test_program_tile_faults_variation_and_ideal_case():
    t = _targets((48, 48))
    res = _tile()
    np.testing.assert_array_equal(res.target_levels, t)
    np.testing.assert_array_equal(res.conductance[res.fault_map > 0], P.g_on)
    np.testing.assert_array_equal(res.conductance[res.fault_map < 0], P.g_off)
    healthy = res.fault_map == 0
    assert res.converged[healthy].all()
    assert np.abs(_level_error(res.conductance, t)[healthy]).max() <= P.tolerance + 1e-9
    # Stuck devices whose stuck value is not the target burn the whole budget.
    wrong = ~healthy & ~res.converged
    assert wrong.any() and np.all(res.pulses[wrong] == P.max_pulses)
    # d2d_sigma = 0 switches variation off entirely (V_p too): an ideal chip.
    ideal = _tile(d2d_sigma=0.0, stuck_at_rate=0.0)
    assert not ideal.fault_map.any()
    assert np.abs(_level_error(ideal.conductance, t)).max() <= P.aim_margin + 1e-9
    np.testing.assert_array_equal(ideal.pulses, dv.program_open_loop(t, P).pulses)
    # Open loop on the same instance misses.
    open_loop = _tile(write_verify=False, stuck_at_rate=0.0, d2d_sigma=0.2)
    assert np.mean(~open_loop.converged) > 0.25


# ----------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"levels": 1}, "levels"),
        ({"levels": 2.5}, "levels"),
        ({"levels": True}, "levels"),
        ({"g_off": -1e-6}, "g_off"),
        ({"g_off": float("nan")}, "g_off"),
        ({"g_on": 0.1e-6}, "g_on"),
        ({"g_on": 0.05e-6}, "g_on"),
        ({"v_read": 4.5}, "v_read"),
        ({"v_read": -0.2}, "v_read"),
        ({"a_p": 0.0}, "a_p"),
        ({"a_n": float("inf")}, "a_n"),
        ({"x_p": 1.0}, "x_p"),
        ({"x_n": -0.1}, "x_n"),
        ({"alpha_p": -1.0}, "alpha_p"),
        ({"eta": 0}, "eta"),
        ({"v_set": 3.9}, "v_set"),
        ({"v_reset": 4.0}, "v_reset"),
        ({"pulse_width": 0.0}, "pulse_width"),
        ({"min_pulse_width": 6e-9}, "min_pulse_width"),
        ({"tolerance": 0.0}, "tolerance"),
        ({"tolerance": 0.6}, "tolerance"),
        ({"max_pulses": 0}, "max_pulses"),
        ({"aim_margin": 0.3}, "aim_margin"),
    ],
)
def test_device_params_reject_bad_values_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DeviceParams(**kwargs)


def test_other_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="sigma_rel"):
        D2DParams(sigma_rel=-0.1)
    with pytest.raises(ValueError, match="v_sigma"):
        D2DParams(v_sigma=float("nan"))
    for rate in (-0.01, 1.5, float("nan")):
        with pytest.raises(ValueError, match="rate"):
            dv.sample_stuck_at((4, 4), 0, 0, rate=rate)
    with pytest.raises(ValueError, match="stuck_on_fraction"):
        dv.sample_stuck_at((4, 4), 0, 0, stuck_on_fraction=1.01)
    with pytest.raises(ValueError, match="seed"):
        dv.sample_stuck_at((4, 4), -1, 0)
    with pytest.raises(ValueError, match="target_levels"):
        dv.program_write_verify(np.array([0, 16]), P)
    with pytest.raises(ValueError, match="target_levels"):
        dv.program_open_loop(np.array([0.0, 1.0]), P)
    with pytest.raises(ValueError, match="levels"):
        P.level_conductance(np.array([-1]))
    with pytest.raises(ValueError, match="d2d_sigma"):
        dv.program_tile(np.zeros((2, 2), dtype=int), P, seed=0, instance=0, d2d_sigma=-0.1)
    with pytest.raises(ValueError, match="stuck_at_rate"):
        dv.program_tile(np.zeros((2, 2), dtype=int), P, seed=0, instance=0, stuck_at_rate=2.0)
    with pytest.raises(ValueError, match="sigma_rel"):
        dv.read_noise(np.ones(3), -0.1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="read_sigma_rel"):
        dv.program_write_verify(np.zeros(3, dtype=int), P, read_sigma_rel=float("nan"))
    with pytest.raises(ValueError, match="initial_state"):
        dv.program_write_verify(np.zeros(3, dtype=int), P, initial_state=1.5)
    with pytest.raises(ValueError, match="variation"):
        dv.program_open_loop(np.zeros((2, 2), dtype=int), P, DeviceVariation.nominal((3, 3), P))


# ----------------------------------------------------------------- fast programming path

from remeco.models.device import (  # noqa: E402
    ProgrammingResult, _K_MAX, _K_MIN, _prepare, _read_true, _require_real, read_noise,
)


def _reference_write_verify(target_levels: np.ndarray, params: DeviceParams | None = None,
                         variation: DeviceVariation | None = None, *,
                         initial_state: np.ndarray | float | None = None,
                         fault_map: np.ndarray | None = None,
                         read_sigma_rel: float = 0.0,
                         rng: np.random.Generator | None = None) -> ProgrammingResult:
    """The write-and-verify loop before vectorizing over tiles (kept as the reference)."""
    params = DeviceParams() if params is None else params
    _require_real("read_sigma_rel", read_sigma_rel, lo=0.0)
    if read_sigma_rel > 0 and rng is None:
        raise ValueError("rng is required when read_sigma_rel > 0")
    levels, x0, faults, dyn, target_x, aim = _prepare(target_levels, params, variation,
                                                      initial_state, fault_map)
    shape = levels.shape
    x = x0.ravel().copy()
    faults_f = faults.ravel()
    target_f, aim_f = target_x.ravel(), aim.ravel()
    g_target = params.state_to_conductance(target_f)
    r_up, r_down = dyn.rate_up.ravel(), dyn.rate_down.ravel()
    n = x.size
    pulses = np.zeros(n, dtype=np.int64)
    pulse_time = np.zeros(n)
    reads = np.zeros(n, dtype=np.int64)
    converged = np.zeros(n, dtype=bool)
    k_up, k_down = np.ones(n), np.ones(n)
    # The previous burst of each device (for the response-factor update): its polarity,
    # total width, and the read-state progress coordinate it started from.
    last_rising = np.zeros(n, dtype=bool)
    last_width = np.zeros(n)
    last_from = np.zeros(n)
    tol_progress = params.tolerance / (params.levels - 1)
    y_lo = 1e-12  # keep read-back states off the bounds where progress is infinite

    active = np.arange(n)
    while active.size:
        g_read = _read_true(x[active], faults_f[active], params)
        reads[active] += 1
        if read_sigma_rel > 0:
            g_read = read_noise(g_read, read_sigma_rel, rng)
        err = (g_read - g_target[active]) / params.level_spacing
        ok = np.abs(err) <= params.tolerance
        converged[active[ok]] = True
        keep = ~ok & (pulses[active] < params.max_pulses)
        active, err, g_read = active[keep], err[keep], g_read[keep]
        if not active.size:
            break
        x_hat = np.clip(params.conductance_to_state(g_read), y_lo, 1.0 - y_lo)

        # Learn the response factor from the burst just verified, where that burst was
        # expected to move the state by more than the tolerance band.
        pulsed = pulses[active] > 0
        if pulsed.any():
            a = active[pulsed]
            lr = last_rising[a]
            nominal = np.where(lr, dyn.rate_up_nominal, dyn.rate_down_nominal) * last_width[a]
            expected = nominal * np.where(lr, k_up[a], k_down[a])
            observed = dyn.position(x_hat[pulsed], lr) - last_from[a]
            with np.errstate(divide="ignore", invalid="ignore"):
                k_obs = np.clip(observed / nominal, _K_MIN, _K_MAX)
            learn = expected > tol_progress
            k_up[a[learn & lr]] = k_obs[learn & lr]
            k_down[a[learn & ~lr]] = k_obs[learn & ~lr]

        rising = err < 0
        here = dyn.position(x_hat, rising)
        needed = np.maximum(dyn.position(aim_f[active], rising) - here, 0.0)
        k = np.where(rising, k_up[active], k_down[active])
        nominal_rate = np.where(rising, dyn.rate_up_nominal, dyn.rate_down_nominal)
        t_plan = needed / (k * nominal_rate)
        left = params.max_pulses - pulses[active]
        count = np.clip(np.ceil(t_plan / params.pulse_width * (1 - 1e-12)), 1, left).astype(np.int64)
        width = np.clip(t_plan / count, params.min_pulse_width, params.pulse_width)
        burst = count * width
        actual_rate = np.where(rising, r_up[active], r_down[active])
        # Same-polarity pulses act through their total width only: apply the burst at once.
        x[active] = dyn.move(x[active], rising, actual_rate * burst)
        pulses[active] += count
        pulse_time[active] += burst
        last_rising[active], last_width[active], last_from[active] = rising, burst, here

    g = _read_true(x, faults_f, params)
    return ProgrammingResult(g.reshape(shape), pulses.reshape(shape),
                             pulse_time.reshape(shape), converged.reshape(shape),
                             reads.reshape(shape))


@pytest.mark.parametrize("case", range(6))
def test_vectorized_write_verify_equals_the_reference_loop_bit_for_bit(case):
    rs = np.random.default_rng(case)
    params = [P, DeviceParams(levels=8, tolerance=0.1, max_pulses=8), DeviceParams(eta=-1, x_n=0.5, alpha_p=0.0)][case % 3]
    shape = [(40, 30), (7,), (3, 5, 4)][case % 3]
    levels = rs.integers(0, params.levels, shape)
    var = dv.draw_variation(shape, case, 1, 2, params=params, d2d=D2DParams(0.3, 0.2))
    faults = dv.sample_stuck_at(shape, case, 1, 2, rate=0.1)
    x0 = rs.random(shape) if case % 2 else None
    sigma = [0.0, 0.05][case % 2]
    rng = lambda: np.random.default_rng(99)  # noqa: E731
    got = dv.program_write_verify(levels, params, var, initial_state=x0, fault_map=faults,
                                  read_sigma_rel=sigma, rng=rng())
    want = _reference_write_verify(levels, params, var, initial_state=x0, fault_map=faults,
                                   read_sigma_rel=sigma, rng=rng())
    for name in ("conductance", "pulses", "pulse_time", "converged", "reads"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)


def test_program_tiles_equals_program_tile_per_tile_with_read_noise():
    rs = np.random.default_rng(5)
    targets = [rs.integers(0, P.levels, s) for s in ((16, 16), (8, 12), (16, 16))]
    kw = dict(seed=3, instance=4, d2d_sigma=0.2, stuck_at_rate=0.05, read_sigma_rel=0.05)
    together = dv.program_tiles(targets, P, tiles=[7, 8, 9], **kw)
    for t, tile, res in zip(targets, (7, 8, 9), together):
        alone = dv.program_tile(t, P, tile=tile, **kw)
        for name in ("conductance", "fault_map", "pulses", "pulse_time", "converged", "reads"):
            np.testing.assert_array_equal(getattr(res, name), getattr(alone, name), err_msg=name)
    assert not together[0].fault_map.flags.writeable  # shared through the draw memo


def test_program_drawn_in_chunks_gives_the_bits_of_one_pass(monkeypatch):
    monkeypatch.setenv("REMECO_NO_NATIVE_PROGRAMMING", "1")  # the numpy loop's chunks
    params = DeviceParams()
    draws = dv.draw_devices((40, 50), 3, 1, 9, params=params, d2d=D2DParams(sigma_rel=0.2), stuck_at_rate=0.05)
    levels = np.random.default_rng(1).integers(0, params.levels, (40, 50))
    monkeypatch.setattr(dv, "_WRITE_VERIFY_CHUNK", 1 << 30)
    whole = dv.program_drawn(levels, draws, params)
    monkeypatch.setattr(dv, "_WRITE_VERIFY_CHUNK", 7)  # 286 chunks, the last one partial
    chunked = dv.program_drawn(levels, draws, params)
    for name in ("conductance", "pulses", "pulse_time", "converged", "reads"):
        got, want = getattr(chunked, name), getattr(whole, name)
        assert got.shape == want.shape and got.dtype == want.dtype and np.array_equal(got, want), name
    assert (whole.reads > 2).any() and not whole.converged.all()  # several passes, stuck devices
    empty = dv.program_drawn(np.zeros((0, 3), dtype=np.int64), dv.DeviceDraws(*(np.zeros((0, 3), dtype=t) for t in (np.int8, float, float))), params)
    assert empty.conductance.shape == (0, 3)


# ------------------------------------------------- the C write-and-verify (engine/write_verify.c)

_NATIVE_CASES = [  # (params, D2D, stuck-at rate)
    (DeviceParams(), D2DParams(), 0.01),  # ReMeCo: sigma_rel 0.1, V 0.08, 1 % stuck
    (DeviceParams(), D2DParams(0.3, 0.2), 0.1),
    (DeviceParams(), D2DParams.none(), 0.0),
    (DeviceParams(levels=8, tolerance=0.1, max_pulses=8), D2DParams(0.2, 0.08), 0.05),
    (DeviceParams(eta=-1, x_n=0.5, alpha_p=0.0), D2DParams(0.3, 0.2), 0.02),
    (DeviceParams(x_p=0.7, alpha_n=1.0, aim_margin=0.2), D2DParams(0.2, 0.1), 0.01),
    (DeviceParams(levels=32, tolerance=0.4, max_pulses=16), D2DParams(0.2, 0.08), 0.01),  # > 16 levels: gathers
    (DeviceParams(levels=2), D2DParams(0.3, 0.2), 0.3),
]


@pytest.fixture
def native_write_verify():
    from remeco.models.engine import native

    if native.programming() is None:
        pytest.skip("the C write-and-verify is not available here")


@pytest.mark.parametrize("case", range(len(_NATIVE_CASES)))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_c_write_verify_equals_the_numpy_loop_bit_for_bit(native_write_verify, monkeypatch, case, seed):
    """program_drawn through the C loop (AVX-512 and scalar passes) against the numpy loop,
    on random device draws: every level, D2D variation, stuck-at faults, other window shapes.
    5,063 devices: three blocks of the C loop and a partial vector at the end."""
    params, d2d, rate = _NATIVE_CASES[case]
    shape = (61, 83)
    draws = dv.draw_devices(shape, seed, 7, case, params=params, d2d=d2d, stuck_at_rate=rate)
    levels = np.random.default_rng([seed, case]).integers(0, params.levels, shape)
    levels.ravel()[:params.levels] = np.arange(params.levels)  # every level at least once
    struct = dv._native_tables(params).struct  # (its per-class outcomes run the numpy loop once)
    numpy_sizes = []
    flat = dv._write_verify_flat
    monkeypatch.setattr(dv, "_write_verify_flat", lambda lv, *a, **k: numpy_sizes.append(lv.size) or flat(lv, *a, **k))

    monkeypatch.setenv("REMECO_NO_NATIVE_PROGRAMMING", "1")
    want = dv.program_drawn(levels, draws, params)
    assert numpy_sizes == [levels.size]  # the switch forces the numpy loop
    monkeypatch.delenv("REMECO_NO_NATIVE_PROGRAMMING")
    for vector in (1, 0):
        monkeypatch.setattr(struct, "vector", vector)
        numpy_sizes.clear()
        got = dv.program_drawn(levels, draws, params)
        for name in ("conductance", "pulses", "pulse_time", "converged", "reads"):
            g, w = getattr(got, name), getattr(want, name)
            assert g.dtype == w.dtype and g.shape == w.shape, name
            assert np.array_equal(g, w), (name, vector, int((g != w).sum()))
        # the C loop did most of the work; the numpy loop only the devices it handed back
        assert sum(numpy_sizes) < levels.size // 2, numpy_sizes
    assert (want.reads > 2).any() or not d2d.enabled  # several verify passes (nominal devices: one burst)


def test_c_write_verify_hands_back_the_devices_that_enter_a_window(native_write_verify, monkeypatch):
    """Level 15 is aimed inside the SET window (x >= 0.95): those devices go to numpy."""
    params = DeviceParams()
    shape = (40, 40)
    draws = dv.draw_devices(shape, 0, 1, 2, params=params, d2d=D2DParams(), stuck_at_rate=0.0)
    levels = np.full(shape, params.levels - 1)
    levels[:20] = 5
    dv._native_tables(params)
    sizes = []
    flat = dv._write_verify_flat
    monkeypatch.setattr(dv, "_write_verify_flat", lambda lv, *a, **k: sizes.append(np.bincount(lv, minlength=16)) or flat(lv, *a, **k))
    got = dv.program_drawn(levels, draws, params)
    (counts,) = sizes
    assert counts[params.levels - 1] == 800 and counts.sum() == 800
    assert got.converged.all()
