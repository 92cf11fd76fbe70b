"""Memristive device: levels, Yakopcic programming dynamics, D2D variation, stuck-at faults.

One device is a 4-bit (16-level) memristor in a 1T1R cell (ReMeCo, Table 2 and Sec. 4.1).
Everything here is vectorized over arrays of devices (a crossbar tile is a ``(rows, cols)``
array); there is no per-device Python object.

Read model
----------
The state ``x`` in ``[0, 1]`` maps linearly to a read conductance,
``G = g_off + x (g_on - g_off)``. Level ``k`` of ``levels`` is the state
``x_k = k / (levels - 1)``, so the levels are evenly spaced between ``g_off`` (HRS) and
``g_on`` (LRS). The Yakopcic I-V relation ``I = a x sinh(b V)`` is close to linear in ``V``
at the small read voltage ``v_read`` and is replaced by this linear small-signal read model,
which is what the crossbar physics needs.

Programming dynamics (Yakopcic et al., generalized memristor model, 2011/2013; used for
the 4-bit device of Yakopcic et al., IJCNN 2014, that ReMeCo programs)
--------------------------------------------------------------------------------
``dx/dt = eta g(V) f(x)`` with the threshold function

``g(V) = A_p (e^V - e^V_p)`` for ``V > V_p``, ``-A_n (e^-V - e^V_n)`` for ``V < -V_n``,
``0`` otherwise,

and the window function (which branch depends on the sign of ``eta V``)

* ``eta V > 0`` (state rises, SET): ``f = e^(-alpha_p (x - x_p)) w_p(x)`` for ``x >= x_p``,
  else ``1``, with ``w_p(x) = (x_p - x) / (1 - x_p) + 1`` (zero at ``x = 1``);
* ``eta V < 0`` (state falls, RESET): ``f = e^(alpha_n (x + x_n - 1)) w_n(x)`` for
  ``x <= 1 - x_n``, else ``1``, with ``w_n(x) = x / (1 - x_n)`` (zero at ``x = 0``).

A programming pulse has a constant voltage, so ``g`` is constant during the pulse and the
ODE separates: with the *progress coordinate* ``P(x) = integral dx / f(x)``, a pulse of
width ``t`` moves ``P`` by exactly ``eta g(V) t``. ``P`` has a closed form (identity below
the window threshold, an exponential integral ``E1`` inside the window), so every pulse is
integrated exactly, vectorized over all devices, with no time stepping; the inverse of
``P`` is a table lookup polished by two Newton steps. Two useful consequences: device
variation of ``V_p, A_p`` (and ``V_n, A_n``) only scales the progress a pulse makes, and
the state after a train of same-polarity pulses depends only on their total width.

SET and RESET pulses
--------------------
A SET pulse has amplitude ``eta * v_set`` and a RESET pulse ``-eta * v_reset``, so that
SET always raises ``x`` whatever the sign convention ``eta``. Pulses have a width between
``min_pulse_width`` and ``pulse_width``. Because ``w_p(1) = 0`` and ``w_n(0) = 0``, the
bounds ``x = 1`` (by SET) and ``x = 0`` (by RESET) are reached only asymptotically; the
programmer therefore aims at ``aim_margin`` level spacings inside the bound for the top
level (and for level 0 when it has to RESET down to it). The default margin, 1e-3 of a
level, is far below any conductance code step of the emulation model.

Programming schemes
-------------------
* **Open loop** (:func:`program_open_loop`): from the known start state, the programmer
  computes the total pulse time the *nominal* device needs to reach the target, splits it
  into ``ceil(t / pulse_width)`` equal pulses and applies them to the actual (varied)
  devices. Devices with a larger ``A_p`` or lower ``V_p`` overshoot, others undershoot.
* **Write-and-verify** (:func:`program_write_verify`): read; if the read conductance is
  within ``tolerance`` level spacings of the target, stop; otherwise apply a SET burst
  (below target) or a RESET burst (above target) and read again, until the pulse budget
  ``max_pulses`` is spent. A burst is planned like the open-loop train, from the *read*
  state to the aimed state: the nominal device's time, divided by the device's response
  factor ``k`` the controller measured on its previous burst of the same polarity, split
  into ``ceil(t / pulse_width)`` equal pulses (at least ``min_pulse_width`` each), so
  bursts are long far from the target and a single short, partial pulse close to it.
  ``k`` starts at 1 (nominal device) and is updated from the read after each burst that
  was expected to move the state by more than the tolerance band, so noisy reads of tiny
  moves do not spoil it. A nominal device lands on its target after the first burst;
  without read noise a varied device is usually in tolerance after the first or second
  burst. Devices that do not move (stuck devices, a device whose threshold lies above the
  pulse amplitude) spend the whole budget and are reported as not converged.

Device-to-device variation (ReMeCo, Fig. 2c-d)
----------------------------------------------
Per device: ``V_p ~ N(4, 0.08)`` V and ``V_n`` likewise (0.08 taken as the standard
deviation, as the paper writes ``N(mu, sigma)``); ``A_p ~ N(8.16e5, sigma_rel * mu)`` and
``A_n`` likewise with ``sigma_rel`` 0.1 (default) or 0.2. Drawn modulation factors are
clipped at 0, so a (very rare) negative draw gives a device that does not switch rather
than one that switches backwards. All four arrays come from one standard-normal draw per
device and parameter, then scaled, so sweeping ``sigma_rel`` on one chip instance moves
the same devices in the same direction (common random numbers).

Stuck-at faults (ReMeCo, Sec. 4.1: 1 % of devices, 83.8 % of them stuck-at-on)
------------------------------------------------------------------------------
See :func:`sample_stuck_at` for the exact sampling rule.

Randomness
----------
Every random draw comes from :func:`remeco.models.random.rng_for` keyed by
``(seed, instance, purpose, *more)``: purposes ``"d2d"``, ``"stuck_at"`` and
``"verify_read"`` (read noise during write-and-verify), each with the tile index (and any
further indices) as extra stream keys. :func:`draw_devices` takes any keys, so a chip can
key its devices by logical position (:mod:`remeco.models.chip`) and program them with
:func:`program_drawn`.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass, field, fields

import numpy as np
from scipy.special import exp1

from .faults import STUCK_AT_RATE, STUCK_ON_FRACTION
from .random import rng_for

__all__ = [
    "DeviceParams",
    "D2DParams",
    "DeviceVariation",
    "ProgrammingResult",
    "ProgrammedTile",
    "threshold_g",
    "window_f",
    "state_rate",
    "apply_pulse",
    "draw_variation",
    "program_open_loop",
    "program_write_verify",
    "sample_stuck_at",
    "apply_stuck_at",
    "read_noise",
    "program_tile",
    "program_tiles",
    "DeviceDraws",
    "draw_devices",
    "program_drawn",
    "clear_draw_cache",
]

# Smallest distance to a bound that the progress-coordinate inverse resolves. Reaching it
# from the middle takes about (1 - x_p) e^(alpha (1 - x_p)) ln(1 / _Y_MIN) progress units,
# several times the full-range pulse time, so it is never a limit in practice.
_Y_MIN = 1e-13
_TABLE_POINTS = 2049
# Bounds of the write-and-verify controller's response-factor estimate: a device 32x
# slower or faster than nominal is already far outside any D2D distribution of interest.
_K_MIN, _K_MAX = 1.0 / 32.0, 32.0


# --------------------------------------------------------------------------- validation


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _require_real(name: str, value: object, *, lo: float | None = None, lo_open: bool = False,
                  hi: float | None = None, hi_open: bool = False) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a finite real in range."""
    lo_txt = "" if lo is None else (f"> {lo}" if lo_open else f">= {lo}")
    hi_txt = "" if hi is None else (f"< {hi}" if hi_open else f"<= {hi}")
    want = " and ".join(t for t in (lo_txt, hi_txt) if t) or "finite"
    if not _is_real(value) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite real number ({want}), got {value!r}")
    v = float(value)
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise ValueError(f"{name} must be {want}, got {value!r}")
    if hi is not None and (v >= hi if hi_open else v > hi):
        raise ValueError(f"{name} must be {want}, got {value!r}")


def _require_int(name: str, value: object, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class DeviceParams:
    """Nominal device, its programming pulses and the write-and-verify settings.

    Attributes
    ----------
    levels:
        Conductance levels per device (ReMeCo: 4-bit devices, 16 levels), ``>= 2``.
    g_off, g_on:
        Conductance of the lowest (HRS, state 0) and highest (LRS, state 1) level in
        siemens; ``0 < g_off < g_on``. Defaults 0.1 uS and 2 uS (10 Mohm / 500 kohm,
        on/off ratio 20). ReMeCo does not state its range; it does show IR-drop as a
        moderate loss at its 2 ohm wires, which with 128-row tiles needs devices in the
        uS range: at 2 ohm this range attenuates a 128 x 128 tile's column currents by
        about 2 % on average (10 uS would give about 10 %, which with offset-encoded
        weights swamps the signal). Change it here for other technologies.
    v_read:
        Read voltage (V), below both switching thresholds so reads never program.
    v_p, v_n:
        Yakopcic SET / RESET threshold voltages (V), ReMeCo: ``V_p = 4`` (``V_n``
        symmetric).
    a_p, a_n:
        Yakopcic SET / RESET modulation factors (1/s), ReMeCo: ``A_p = 8.16e5``
        (``A_n`` symmetric).
    x_p, x_n:
        Window thresholds in ``[0, 1)``: the SET motion slows down for ``x >= x_p`` and
        the RESET motion for ``x <= 1 - x_n``. Default 0.95, a device that responds
        linearly over 95 % of its range and saturates at the ends (our choice; ReMeCo
        does not publish them).
    alpha_p, alpha_n:
        Exponential decay of the motion inside the windows, ``>= 0``. Default 4 (our
        choice, in the range of the published Yakopcic fits).
    eta:
        Direction of state motion for a positive voltage, ``+1`` or ``-1`` (Yakopcic).
    v_set, v_reset:
        Magnitudes (V) of the SET and RESET pulse amplitudes. SET is applied at
        ``eta * v_set`` and RESET at ``-eta * v_reset``; each must exceed the threshold of
        its branch. Default 5 V: 12 standard deviations of the D2D spread above
        ``V_p = 4``, so every device switches, and far enough above it that the
        ``V_p`` spread changes the switching speed by only about 5 % (1 sigma), leaving
        the ``A_p`` spread that ReMeCo sweeps as the main D2D effect (at 4.5 V the
        ``V_p`` spread alone would give 12 %).
    pulse_width:
        Longest programming pulse (s). Default 5 ns: the nominal device moves about 0.38
        of its range (5.7 levels) per full pulse at 5 V. The time scale follows from
        ReMeCo's ``A_p`` and is not calibrated to a real device.
    min_pulse_width:
        Shortest pulse the driver produces (s), default 0.1 ns (0.11 of a level, well
        below the tolerance band, so short corrections cannot jump over it).
    tolerance:
        Write-and-verify accepts a read conductance within ``tolerance`` level spacings
        of the target, in ``(0, 0.5]``. Default 0.25: the level is recovered by rounding
        with margin, and a device is never accepted on the neighbouring level's side.
    max_pulses:
        Write-and-verify pulse budget per device, ``>= 1``. Default 64: the nominal device
        needs at most 4 pulses; 64 lets devices down to about 1/20 of the nominal
        switching speed converge even on the top level (``A_p`` that low is a 4.75-sigma
        draw at ``sigma_rel = 0.2``).
    aim_margin:
        Distance (in level spacings) inside the state bounds aimed at for the extreme
        levels, in ``(0, tolerance)``. Default 1e-3 (see the module docstring).
    """

    levels: int = 16
    g_off: float = 0.1e-6
    g_on: float = 2e-6
    v_read: float = 0.2
    v_p: float = 4.0
    v_n: float = 4.0
    a_p: float = 8.16e5
    a_n: float = 8.16e5
    x_p: float = 0.95
    x_n: float = 0.95
    alpha_p: float = 4.0
    alpha_n: float = 4.0
    eta: int = 1
    v_set: float = 5.0
    v_reset: float = 5.0
    pulse_width: float = 5e-9
    min_pulse_width: float = 0.1e-9
    tolerance: float = 0.25
    max_pulses: int = 64
    aim_margin: float = 1e-3

    def __post_init__(self) -> None:
        _require_int("levels", self.levels, 2)
        _require_int("max_pulses", self.max_pulses, 1)
        if isinstance(self.eta, bool) or self.eta not in (1, -1):
            raise ValueError(f"eta must be +1 or -1, got {self.eta!r}")
        for name in ("g_off", "v_read", "v_p", "v_n", "a_p", "a_n", "v_set", "v_reset",
                     "pulse_width", "min_pulse_width"):
            _require_real(name, getattr(self, name), lo=0.0, lo_open=True)
        _require_real("g_on", self.g_on, lo=float(self.g_off), lo_open=True)
        for name in ("x_p", "x_n"):
            _require_real(name, getattr(self, name), lo=0.0, hi=1.0, hi_open=True)
        for name in ("alpha_p", "alpha_n"):
            _require_real(name, getattr(self, name), lo=0.0)
        _require_real("v_read", self.v_read, hi=min(self.v_p, self.v_n), hi_open=True)
        # The SET pulse uses the V_p branch of g(V) when eta = +1 and the V_n branch
        # when eta = -1 (and conversely for RESET), so compare with the right threshold.
        set_thr, reset_thr = (self.v_p, self.v_n) if self.eta == 1 else (self.v_n, self.v_p)
        _require_real("v_set", self.v_set, lo=set_thr, lo_open=True)
        _require_real("v_reset", self.v_reset, lo=reset_thr, lo_open=True)
        _require_real("min_pulse_width", self.min_pulse_width, lo=0.0, lo_open=True,
                      hi=self.pulse_width)
        _require_real("tolerance", self.tolerance, lo=0.0, lo_open=True, hi=0.5)
        _require_real("aim_margin", self.aim_margin, lo=0.0, lo_open=True,
                      hi=self.tolerance, hi_open=True)

    # -- levels and conductances ---------------------------------------------------

    @property
    def level_spacing(self) -> float:
        """Conductance between adjacent levels, in siemens."""
        return (self.g_on - self.g_off) / (self.levels - 1)

    def check_levels(self, levels: np.ndarray, name: str = "levels") -> np.ndarray:
        """Validate an integer level array (values in ``[0, levels - 1]``); return it as int64.

        Raises
        ------
        ValueError
            Naming ``name`` if the array is not integer or a value is out of range.
        """
        a = np.asarray(levels)
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name} must be an integer array, got dtype {a.dtype}")
        if a.size and (a.min() < 0 or a.max() > self.levels - 1):
            raise ValueError(
                f"{name} must be in [0, {self.levels - 1}], got values in [{a.min()}, {a.max()}]"
            )
        return a.astype(np.int64, copy=False)

    def level_state(self, levels: np.ndarray) -> np.ndarray:
        """Integer levels -> device states ``k / (levels - 1)`` in ``[0, 1]``."""
        return self.check_levels(levels) / float(self.levels - 1)

    def level_conductance(self, levels: np.ndarray) -> np.ndarray:
        """Integer levels -> nominal conductances in siemens."""
        return self.state_to_conductance(self.level_state(levels))

    def state_to_conductance(self, state: np.ndarray) -> np.ndarray:
        """States in ``[0, 1]`` -> read conductances ``g_off + x (g_on - g_off)`` (siemens)."""
        x = np.asarray(state, dtype=np.float64)
        return self.g_off + x * (self.g_on - self.g_off)

    def conductance_to_state(self, conductance: np.ndarray, *, clip: bool = True) -> np.ndarray:
        """Conductances (siemens) -> states; clipped to ``[0, 1]`` unless ``clip=False``."""
        x = (np.asarray(conductance, dtype=np.float64) - self.g_off) / (self.g_on - self.g_off)
        return np.clip(x, 0.0, 1.0) if clip else x

    def conductance_to_level(self, conductance: np.ndarray) -> np.ndarray:
        """Conductances (siemens) -> nearest level (int64, clipped to the valid range)."""
        x = self.conductance_to_state(conductance, clip=False)
        return np.clip(np.rint(x * (self.levels - 1)), 0, self.levels - 1).astype(np.int64)


@dataclass(frozen=True)
class D2DParams:
    """Device-to-device variation of the Yakopcic switching parameters.

    Attributes
    ----------
    sigma_rel:
        Standard deviation of ``A_p`` and ``A_n`` relative to their nominal value
        (ReMeCo: 0.1 or 0.2), ``>= 0``.
    v_sigma:
        Standard deviation of ``V_p`` and ``V_n`` in volts (ReMeCo: 0.08), ``>= 0``.
    """

    sigma_rel: float = 0.1
    v_sigma: float = 0.08

    def __post_init__(self) -> None:
        _require_real("sigma_rel", self.sigma_rel, lo=0.0)
        _require_real("v_sigma", self.v_sigma, lo=0.0)

    @classmethod
    def none(cls) -> "D2DParams":
        """No variation: every device is the nominal device."""
        return cls(sigma_rel=0.0, v_sigma=0.0)

    @property
    def enabled(self) -> bool:
        """Whether any parameter varies."""
        return self.sigma_rel > 0 or self.v_sigma > 0


@dataclass(frozen=True)
class DeviceVariation:
    """Per-device Yakopcic switching parameters of one array of devices.

    Attributes
    ----------
    v_p, v_n:
        SET / RESET thresholds (V), float arrays of one shape.
    a_p, a_n:
        SET / RESET modulation factors (1/s), same shape, ``>= 0``.
    """

    v_p: np.ndarray
    v_n: np.ndarray
    a_p: np.ndarray
    a_n: np.ndarray

    def __post_init__(self) -> None:
        shapes = {np.shape(getattr(self, f.name)) for f in fields(self)}
        if len(shapes) != 1:
            raise ValueError(f"v_p, v_n, a_p and a_n must have one shape, got {sorted(shapes)}")

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the device array."""
        return tuple(np.shape(self.v_p))

    @classmethod
    def nominal(cls, shape: tuple[int, ...], params: DeviceParams) -> "DeviceVariation":
        """Every device equal to the nominal device of ``params``."""
        return cls(*(np.full(shape, float(v)) for v in (params.v_p, params.v_n, params.a_p, params.a_n)))

    @classmethod
    def draw(cls, shape: tuple[int, ...], rng: np.random.Generator, params: DeviceParams,
             d2d: D2DParams) -> "DeviceVariation":
        """Draw per-device parameters from ``rng`` (see the module docstring).

        The four parameters come from one ``standard_normal((4, *shape))`` draw, in the
        order ``V_p, V_n, A_p, A_n``; modulation factors are clipped at 0.
        """
        z = rng.standard_normal((4, *shape))
        # In place, in z (the same operations as v_p + sigma z and so on: + and * commute
        # exactly): no temporaries of the size of the array.
        v_p, v_n, a_p, a_n = z
        for v, nominal in ((v_p, params.v_p), (v_n, params.v_n)):
            v *= d2d.v_sigma
            v += nominal
        for a, nominal in ((a_p, params.a_p), (a_n, params.a_n)):
            a *= d2d.sigma_rel
            a += 1.0
            a *= nominal
            np.maximum(a, 0.0, out=a)
        return cls(v_p, v_n, a_p, a_n)


def draw_variation(shape: tuple[int, ...], seed: int, instance: int, *more: int,
                   params: DeviceParams | None = None,
                   d2d: D2DParams | None = None) -> DeviceVariation:
    """Per-device D2D parameters of one array, keyed by ``(seed, instance, "d2d", *more)``.

    Parameters
    ----------
    shape:
        Shape of the device array, e.g. ``(rows, cols)`` of a tile.
    seed, instance:
        Campaign seed and chip-instance index.
    more:
        Further stream indices, e.g. the tile index.
    params:
        Nominal device (default :class:`DeviceParams`).
    d2d:
        Variation (default :class:`D2DParams`, ReMeCo's 0.1 / 0.08 V).

    Returns
    -------
    DeviceVariation
        Nominal values everywhere when ``d2d`` has no variation.
    """
    params = DeviceParams() if params is None else params
    d2d = D2DParams() if d2d is None else d2d
    shape = tuple(int(s) for s in shape)
    if not d2d.enabled:
        return DeviceVariation.nominal(shape, params)
    return DeviceVariation.draw(shape, rng_for(seed, instance, "d2d", *more), params, d2d)


# --------------------------------------------------------------------------- dynamics


def threshold_g(voltage: np.ndarray, v_p: np.ndarray, v_n: np.ndarray, a_p: np.ndarray,
                a_n: np.ndarray) -> np.ndarray:
    """Yakopcic threshold function ``g(V)`` (1/s), broadcast over all arguments.

    ``A_p (e^V - e^V_p)`` for ``V > V_p``, ``-A_n (e^-V - e^V_n)`` for ``V < -V_n``, else 0.
    """
    v = np.asarray(voltage, dtype=np.float64)
    v_p, v_n, a_p, a_n = (np.asarray(a, dtype=np.float64) for a in (v_p, v_n, a_p, a_n))
    pos = a_p * (np.exp(v) - np.exp(v_p))
    neg = -a_n * (np.exp(-v) - np.exp(v_n))
    return np.where(v > v_p, pos, np.where(v < -v_n, neg, 0.0))


def _pulse_rates(params: DeviceParams, v_p, v_n, a_p, a_n) -> tuple[np.ndarray, np.ndarray]:
    """Progress per second of a SET and of a RESET pulse, ``eta g(V)`` at the two pulse
    amplitudes clipped at 0 (a device with a threshold above the amplitude has g = 0;
    clipping only guards against the sign of a non-physical draw).

    The values of :func:`threshold_g`, element for element, with each exponential of the
    thresholds computed once for both pulses and a branch of ``g`` only where some device
    takes it (SET pulses take the ``V_p`` branch, RESET pulses the ``V_n`` one).
    """
    v_p, v_n, a_p, a_n = (np.asarray(a, dtype=np.float64) for a in (v_p, v_n, a_p, a_n))
    shape = np.broadcast_shapes(v_p.shape, v_n.shape, a_p.shape, a_n.shape)
    exps: dict = {}

    def pos(v: np.ndarray) -> np.ndarray:
        if "p" not in exps:
            exps["p"] = np.exp(v_p)
        return a_p * (np.exp(v) - exps["p"])

    def neg(v: np.ndarray) -> np.ndarray:
        if "n" not in exps:
            exps["n"] = np.exp(v_n)
        return -a_n * (np.exp(-v) - exps["n"])

    def g(voltage: float) -> np.ndarray:
        v = np.asarray(voltage, dtype=np.float64)
        above, below = v > v_p, v < -v_n
        if above.all():
            return pos(v)
        if below.all() and not above.any():
            return neg(v)
        return np.where(above, pos(v), np.where(below, neg(v), 0.0))

    up = params.eta * g(params.eta * params.v_set)
    down = -params.eta * g(-params.eta * params.v_reset)
    return (np.broadcast_to(np.maximum(up, 0.0), shape), np.broadcast_to(np.maximum(down, 0.0), shape))


def _window_up(u: np.ndarray, threshold: float, alpha: float) -> np.ndarray:
    """The rising-motion window ``e^(-alpha (u - thr)) ((thr - u) / (1 - thr) + 1)``."""
    inside = np.exp(-alpha * (u - threshold)) * ((threshold - u) / (1.0 - threshold) + 1.0)
    return np.where(u >= threshold, inside, 1.0)


def window_f(state: np.ndarray, rising: np.ndarray | bool, params: DeviceParams) -> np.ndarray:
    """Yakopcic window ``f(x)``: the SET branch where ``rising`` (``eta V > 0``), else RESET.

    The RESET branch is the SET branch mirrored, ``f_n(x) = f_p(1 - x)`` with ``x_n,
    alpha_n`` in place of ``x_p, alpha_p``.
    """
    x = np.asarray(state, dtype=np.float64)
    up = _window_up(x, params.x_p, params.alpha_p)
    down = _window_up(1.0 - x, params.x_n, params.alpha_n)
    return np.where(rising, up, down)


def _variation_arrays(params: DeviceParams, variation: DeviceVariation | None):
    if variation is None:
        return params.v_p, params.v_n, params.a_p, params.a_n
    return variation.v_p, variation.v_n, variation.a_p, variation.a_n


def state_rate(state: np.ndarray, voltage: np.ndarray, params: DeviceParams,
               variation: DeviceVariation | None = None) -> np.ndarray:
    """Right-hand side ``dx/dt = eta g(V) f(x)`` (1/s), for reference and testing."""
    g = threshold_g(voltage, *_variation_arrays(params, variation))
    drive = params.eta * g
    return drive * window_f(state, drive > 0, params)


@dataclass(frozen=True)
class _Progress:
    """The progress coordinate ``P(u) = integral_0^u du' / f_up(u')`` of one window branch.

    ``P(u) = u`` below the threshold; inside the window
    ``P(u) = thr + (1 - thr) e^(alpha (1 - thr)) (E1(alpha (1 - u)) - E1(alpha (1 - thr)))``
    (``thr + (1 - thr) ln((1 - thr) / (1 - u))`` for ``alpha = 0``), which is infinite at
    ``u = 1``.
    """

    threshold: float
    alpha: float
    s_table: np.ndarray = field(repr=False)
    logy_table: np.ndarray = field(repr=False)
    # The constant factor and term of _inside, (1 - thr) e^(alpha (1 - thr)) and
    # E1(alpha (1 - thr)), computed once instead of on every call (same values).
    scale: float = field(default=0.0, repr=False)
    e1_w: float = field(default=0.0, repr=False)

    @classmethod
    def build(cls, threshold: float, alpha: float) -> "_Progress":
        """The progress map of one window branch; cached, as it depends on two numbers only."""
        return _progress_map(float(threshold), float(alpha))

    @classmethod
    def _build(cls, threshold: float, alpha: float) -> "_Progress":
        w = 1.0 - threshold
        scale, e1_w = (w * math.exp(alpha * w), exp1(alpha * w)) if alpha != 0.0 else (0.0, 0.0)
        y = np.geomspace(1.0 - threshold, _Y_MIN, _TABLE_POINTS)
        tmp = cls(threshold, alpha, np.empty(0), np.empty(0), scale, e1_w)
        s_table, logy_table = tmp._inside(y), np.log(y)
        s_table.flags.writeable = False
        logy_table.flags.writeable = False
        return cls(threshold, alpha, s_table, logy_table, scale, e1_w)

    def _inside(self, y: np.ndarray) -> np.ndarray:
        thr, a = self.threshold, self.alpha
        w = 1.0 - thr
        with np.errstate(divide="ignore"):
            if a == 0.0:
                return thr + w * np.log(w / y)
            return thr + self.scale * (exp1(a * y) - self.e1_w)

    def forward(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.float64)
        out = np.array(u, copy=True)
        # E1 is costly; most states are below the window, where P(u) = u.
        inside = u >= self.threshold
        if inside.any():
            out[inside] = self._inside(np.maximum(1.0 - u[inside], 0.0))
        return out

    def inverse(self, s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, dtype=np.float64)
        thr = self.threshold
        out = np.array(s, copy=True)
        inside = s >= thr
        if not inside.any():
            return out
        si = s[inside]
        y = np.exp(np.interp(si, self.s_table, self.logy_table))
        # Newton on y = 1 - u: dP/dy = -1 / f, so y <- y + (P(1 - y) - s) f(1 - y).
        for _ in range(2):
            with np.errstate(invalid="ignore"):
                step = (self._inside(y) - si) * _window_up(1.0 - y, thr, self.alpha)
            y = np.clip(np.where(np.isfinite(step), y + step, y), _Y_MIN, 1.0 - thr)
        out[inside] = 1.0 - y
        return out


@functools.lru_cache(maxsize=64)
def _progress_map(threshold: float, alpha: float) -> _Progress:
    return _Progress._build(threshold, alpha)


@dataclass(frozen=True)
class _Dynamics:
    """Progress maps and per-pulse rates for one device array (private helper)."""

    up: _Progress
    down: _Progress
    rate_up: np.ndarray  # progress per second of a SET pulse, per device, >= 0
    rate_down: np.ndarray  # progress per second of a RESET pulse, per device, >= 0
    rate_up_nominal: float
    rate_down_nominal: float

    @classmethod
    def build(cls, params: DeviceParams, variation: DeviceVariation | None,
              shape: tuple[int, ...]) -> "_Dynamics":

        r_up_nom, r_down_nom = _pulse_rates(params, *_variation_arrays(params, None))
        r_up, r_down = _pulse_rates(params, *_variation_arrays(params, variation))
        return cls(
            _Progress.build(params.x_p, params.alpha_p),
            _Progress.build(params.x_n, params.alpha_n),
            np.broadcast_to(r_up, shape).astype(np.float64),
            np.broadcast_to(r_down, shape).astype(np.float64),
            float(r_up_nom),
            float(r_down_nom),
        )

    def position(self, x: np.ndarray, rising: np.ndarray) -> np.ndarray:
        """Progress coordinate of states ``x`` in the direction of motion."""
        x = np.asarray(x, dtype=np.float64)
        rising = np.broadcast_to(rising, x.shape)
        out = np.empty(x.shape)
        out[rising] = self.up.forward(x[rising])
        out[~rising] = self.down.forward(1.0 - x[~rising])
        return out

    def move(self, x: np.ndarray, rising: np.ndarray, progress: np.ndarray) -> np.ndarray:
        """States after moving ``progress >= 0`` along the direction of motion."""
        out = np.array(x, dtype=np.float64, copy=True)
        moving = progress > 0
        r = moving & rising
        f = moving & ~rising
        if r.any():
            out[r] = self.up.inverse(self.up.forward(x[r]) + progress[r])
        if f.any():
            out[f] = 1.0 - self.down.inverse(self.down.forward(1.0 - x[f]) + progress[f])
        return out


def apply_pulse(state: np.ndarray, voltage: float | np.ndarray, width: float | np.ndarray,
                params: DeviceParams, variation: DeviceVariation | None = None) -> np.ndarray:
    """States after one rectangular pulse, integrated exactly (see the module docstring).

    Parameters
    ----------
    state:
        Device states in ``[0, 1]``.
    voltage:
        Pulse amplitude (V), scalar or per device.
    width:
        Pulse width (s), ``>= 0``, scalar or per device.
    params:
        Nominal device (window shape, ``eta``).
    variation:
        Per-device thresholds and modulation factors; ``None`` for nominal devices.

    Returns
    -------
    numpy.ndarray
        New states, same shape as the broadcast of the arguments.
    """
    x = np.asarray(state, dtype=np.float64)
    if x.size and (np.nanmin(x) < 0 or np.nanmax(x) > 1 or np.isnan(x).any()):
        raise ValueError("state must be in [0, 1]")
    w = np.asarray(width, dtype=np.float64)
    if w.size and (np.isnan(w).any() or w.min() < 0):
        raise ValueError(f"width must be >= 0, got minimum {w.min()!r}")
    drive = params.eta * threshold_g(voltage, *_variation_arrays(params, variation))
    shape = np.broadcast_shapes(x.shape, drive.shape, w.shape)
    x, drive, w = (np.broadcast_to(a, shape) for a in (x, drive, w))
    dyn = _Dynamics.build(params, None, ())
    return dyn.move(x, drive > 0, np.abs(drive) * w)


# --------------------------------------------------------------------------- programming


@dataclass(frozen=True)
class ProgrammingResult:
    """Outcome of programming an array of devices.

    Attributes
    ----------
    conductance:
        Final (true) conductance per device in siemens, after any stuck-at override.
    pulses:
        Programming pulses applied per device (int64).
    pulse_time:
        Total applied pulse time per device in seconds (for energy models that cost
        pulse duration rather than pulse count).
    converged:
        Write-and-verify: the last verify read was within tolerance. Open loop (no
        verify reads): the final conductance is within tolerance, checked afterwards.
    reads:
        Verify reads per device (int64; 0 for open loop).
    """

    conductance: np.ndarray
    pulses: np.ndarray
    pulse_time: np.ndarray
    converged: np.ndarray
    reads: np.ndarray


def _prepare(target_levels, params: DeviceParams, variation: DeviceVariation | None,
             initial_state, fault_map):
    levels = params.check_levels(target_levels, "target_levels")
    shape = levels.shape
    if variation is not None and variation.shape != shape:
        raise ValueError(f"variation has shape {variation.shape}, target_levels has {shape}")
    if initial_state is None:
        x0 = np.zeros(shape)
    else:
        x0 = np.array(np.broadcast_to(np.asarray(initial_state, dtype=np.float64), shape))
        if np.isnan(x0).any() or (x0.size and (x0.min() < 0 or x0.max() > 1)):
            raise ValueError("initial_state must be in [0, 1]")
    if fault_map is None:
        faults = np.zeros(shape, dtype=np.int8)
    else:
        faults = _check_fault_map(fault_map, shape)
    dyn = _Dynamics.build(params, variation, shape)
    if fault_map is not None:
        stuck = faults != 0
        # Stuck devices do not respond to pulses.
        dyn = _Dynamics(dyn.up, dyn.down, np.where(stuck, 0.0, dyn.rate_up),
                        np.where(stuck, 0.0, dyn.rate_down), dyn.rate_up_nominal,
                        dyn.rate_down_nominal)
    target_x = levels / float(params.levels - 1)
    margin = params.aim_margin / (params.levels - 1)
    aim = np.clip(target_x, margin, 1.0 - margin)
    return levels, x0, faults, dyn, target_x, aim


def _read_true(x: np.ndarray, faults: np.ndarray, params: DeviceParams) -> np.ndarray:
    return apply_stuck_at(params.state_to_conductance(x), faults, params)


def _in_tolerance(g: np.ndarray, target_x: np.ndarray, params: DeviceParams) -> np.ndarray:
    err = (g - params.state_to_conductance(target_x)) / params.level_spacing
    return np.abs(err) <= params.tolerance


def program_open_loop(target_levels: np.ndarray, params: DeviceParams | None = None,
                      variation: DeviceVariation | None = None, *,
                      initial_state: np.ndarray | float | None = None,
                      fault_map: np.ndarray | None = None) -> ProgrammingResult:
    """Program without verification: the nominal device's pulse train, applied to every device.

    Parameters
    ----------
    target_levels:
        Integer levels in ``[0, levels - 1]``, any shape.
    params:
        Device and pulse parameters (default :class:`DeviceParams`).
    variation:
        Per-device parameters of the actual devices (``None``: nominal devices).
    initial_state:
        State before programming, known to the programmer (default 0, the reset state).
    fault_map:
        Optional stuck-at map (see :func:`sample_stuck_at`); stuck devices do not move
        and read as ``g_on`` / ``g_off``.

    Returns
    -------
    ProgrammingResult
        ``pulses`` is ``ceil(t / pulse_width)`` for the nominal pulse time ``t`` (0 when
        the start state is already within tolerance of the target).
    """
    params = DeviceParams() if params is None else params
    levels, x0, faults, dyn, target_x, aim = _prepare(target_levels, params, variation,
                                                      initial_state, fault_map)
    return _open_loop(levels, x0, faults, dyn, target_x, aim, params)


def _open_loop(levels, x0, faults, dyn: "_Dynamics", target_x, aim, params: DeviceParams) -> ProgrammingResult:
    """The body of :func:`program_open_loop`, on prepared arrays."""
    rising = aim > x0
    needed = np.abs(dyn.position(aim, rising) - dyn.position(x0, rising))
    nominal_rate = np.where(rising, dyn.rate_up_nominal, dyn.rate_down_nominal)
    start_ok = np.abs(x0 - target_x) * (params.levels - 1) <= params.tolerance
    t = np.where(start_ok, 0.0, np.maximum(needed / nominal_rate, params.min_pulse_width))
    pulses = np.ceil(t / params.pulse_width * (1 - 1e-12)).astype(np.int64)
    # Same-polarity pulses act through their total width only, so applying the total
    # time at once is exact for the equal-width pulse train.
    actual_rate = np.where(rising, dyn.rate_up, dyn.rate_down)
    x = dyn.move(x0, rising, actual_rate * t)
    g = _read_true(x, faults, params)
    return ProgrammingResult(g, pulses, t, _in_tolerance(g, target_x, params),
                             np.zeros(levels.shape, dtype=np.int64))


def program_write_verify(target_levels: np.ndarray, params: DeviceParams | None = None,
                         variation: DeviceVariation | None = None, *,
                         initial_state: np.ndarray | float | None = None,
                         fault_map: np.ndarray | None = None,
                         read_sigma_rel: float = 0.0,
                         rng: np.random.Generator | None = None) -> ProgrammingResult:
    """Program with write-and-verify (pulse, read, repeat; see the module docstring).

    Parameters
    ----------
    target_levels:
        Integer levels in ``[0, levels - 1]``, any shape.
    params:
        Device, pulse and verify parameters (default :class:`DeviceParams`).
    variation:
        Per-device parameters of the actual devices (``None``: nominal devices).
    initial_state:
        State before programming (default 0, the reset state); the controller does not
        need to know it, it reads.
    fault_map:
        Optional stuck-at map; stuck devices do not move and read as ``g_on`` /
        ``g_off``, so they converge only if that is within tolerance of the target and
        otherwise spend the whole pulse budget.
    read_sigma_rel:
        Relative read noise of the verify reads (see :func:`read_noise`), 0 = off.
    rng:
        Generator for the read noise; required when ``read_sigma_rel > 0``.

    Returns
    -------
    ProgrammingResult
        With read noise, ``converged`` reflects the (noisy) verify read; the returned
        conductance is the true one.
    """
    params = DeviceParams() if params is None else params
    _require_real("read_sigma_rel", read_sigma_rel, lo=0.0)
    if read_sigma_rel > 0 and rng is None:
        raise ValueError("rng is required when read_sigma_rel > 0")
    levels, x0, faults, dyn, _, _ = _prepare(target_levels, params, variation,
                                             initial_state, fault_map)
    shape = levels.shape
    res = _write_verify_flat(levels.ravel(), x0.ravel(), faults.ravel(), dyn.rate_up.ravel(),
                             dyn.rate_down.ravel(), params, read_sigma_rel,
                             [(rng, 0, levels.size)])
    return ProgrammingResult(*(a.reshape(shape) for a in res))


class _LevelTables:
    """Per-level constants of write-and-verify: the target conductance and the progress
    coordinate of the aimed state in both directions (private helper).

    Every value is computed by the same element-wise expressions as for a device array
    (on the array of all levels), so looking it up gives the same bits.
    """

    def __init__(self, params: DeviceParams) -> None:
        up, down = _Progress.build(params.x_p, params.alpha_p), _Progress.build(params.x_n, params.alpha_n)
        target_x = np.arange(params.levels, dtype=np.int64) / float(params.levels - 1)
        margin = params.aim_margin / (params.levels - 1)
        aim = np.clip(target_x, margin, 1.0 - margin)
        self.g_target = params.state_to_conductance(target_x)
        self.aim_up = up.forward(aim)
        self.aim_down = down.forward(1.0 - aim)
        self.up, self.down = up, down
        set_v, reset_v = params.eta * params.v_set, -params.eta * params.v_reset
        nominal = _variation_arrays(params, None)
        # As in _Dynamics.build: the nominal device's progress per second of each pulse.
        self.rate_up_nominal = float(np.maximum(params.eta * threshold_g(set_v, *nominal), 0.0))
        self.rate_down_nominal = float(np.maximum(-params.eta * threshold_g(reset_v, *nominal), 0.0))


@functools.lru_cache(maxsize=16)
def _level_tables(params: DeviceParams) -> _LevelTables:
    return _LevelTables(params)


def _positions(x: np.ndarray, rising: np.ndarray, up: _Progress, down: _Progress) -> np.ndarray:
    """``_Dynamics.position`` of states ``x`` (the same element-wise operations): the
    progress coordinate of the branch argument (``x`` rising, ``1 - x`` falling)."""
    p = np.where(rising, x, 1.0 - x)  # the branch argument u, overwritten inside the windows
    if up.threshold == down.threshold:
        inside = np.flatnonzero(p >= up.threshold)
    else:
        inside = np.flatnonzero(np.where(rising, p >= up.threshold, p >= down.threshold))
    if inside.size:  # the windows hold few devices: work on their positions only
        rises, u = rising.take(inside), p.take(inside)
        for branch, sel in ((up, rises), (down, ~rises)):
            if sel.any():
                p[inside[sel]] = branch._inside(np.maximum(1.0 - u[sel], 0.0))
    return p


def _inverse(s: np.ndarray, rising: np.ndarray, up: _Progress, down: _Progress) -> np.ndarray:
    """Branch argument ``u`` with progress ``s`` (``_Progress.inverse`` per direction),
    written over ``s``."""
    if up.threshold == down.threshold:
        inside = np.flatnonzero(s >= up.threshold)
    else:
        inside = np.flatnonzero(np.where(rising, s >= up.threshold, s >= down.threshold))
    if inside.size:
        rises, si = rising.take(inside), s.take(inside)
        for branch, sel in ((up, rises), (down, ~rises)):
            if sel.any():
                s[inside[sel]] = branch.inverse(si[sel])
    return s


def _first_pass_from_reset(levels: np.ndarray, faults: np.ndarray, tab: "_LevelTables", params: DeviceParams):
    """Iteration 1 of write-and-verify for devices in the reset state (x = 0), no read noise.

    Every device of one (stuck state, level) class reads the same conductance there and
    plans the same first burst, so the read, the verdict and the burst are computed once
    per class (by the very element-wise operations of :func:`_write_verify_flat`, on one
    representative of each class, so the same bits) and looked up per device.

    Returns ``(cls, ok, rising, here, count, burst)`` per class and each device's class.
    """
    ok, rising, here, count, burst = _first_pass_classes(params)
    cls = np.asarray(faults, dtype=np.intp) + 1
    cls *= params.levels
    cls += levels
    return cls, ok, rising, here, count, burst


@functools.lru_cache(maxsize=16)
def _first_pass_classes(params: DeviceParams) -> tuple[np.ndarray, ...]:
    """The per-class part of :func:`_first_pass_from_reset` (it depends on the device
    parameters only): ``(ok, rising, here, count, burst)``, read-only, once per parameter set."""
    tab = _level_tables(params)
    n_levels = params.levels
    g_off, g_on = params.g_off, params.g_on
    g_span = g_on - g_off
    fault = np.repeat(np.array([-1, 0, 1]), n_levels)
    level = np.tile(np.arange(n_levels), 3)
    g_read = np.full(fault.size, float(g_off))  # x = 0: 0 * span + g_off, exactly g_off
    stuck = np.where(fault > 0, g_on, np.where(fault < 0, g_off, np.nan))
    np.copyto(g_read, stuck, where=~np.isnan(stuck))
    err = g_read - tab.g_target.take(level)
    err /= params.level_spacing
    ok = np.abs(err) <= params.tolerance
    x_hat = g_read - g_off
    x_hat /= g_span
    np.clip(x_hat, _Y_LO, 1.0 - _Y_LO, out=x_hat)
    rising = err < 0
    here = _positions(x_hat, rising, tab.up, tab.down)
    needed = np.where(rising, tab.aim_up.take(level), tab.aim_down.take(level))
    needed -= here
    np.maximum(needed, 0.0, out=needed)
    # the response factors start at 1, so the expected rate is the nominal one
    t_plan = np.divide(needed, np.where(rising, tab.rate_up_nominal, tab.rate_down_nominal), out=needed)
    count = t_plan / params.pulse_width
    count *= _SHRINK
    np.ceil(count, out=count)
    np.clip(count, 1, params.max_pulses, out=count)
    width = t_plan / count
    np.clip(width, params.min_pulse_width, params.pulse_width, out=width)
    burst = np.multiply(count, width, out=width)
    out = (ok, rising, here, count, burst)
    for a in out:
        a.flags.writeable = False
    return out


@functools.lru_cache(maxsize=16)
def _frozen_outcomes(params: DeviceParams) -> tuple[np.ndarray, ...]:
    """``(pulses, pulse_time, converged, reads)`` of write-and-verify from the reset state
    of a device that cannot move, per (stuck state, level) class (index ``(fault + 1) *
    levels + level``): one device of every class simulated, once per parameter set."""
    classes = np.arange(3 * params.levels)
    zero = np.zeros(classes.size)
    out = _write_verify_flat(classes % params.levels, zero, (classes // params.levels - 1).astype(np.int8), zero,
                             zero, params, 0.0, [(None, 0, classes.size)], by_class=False)[1:]
    for a in out:
        a.flags.writeable = False
    return out


_Y_LO = 1e-12  # keep read-back states off the bounds where progress is infinite
_SHRINK = 1 - 1e-12  # a burst of exactly n pulses' time is n pulses, not n + 1


def _write_verify_flat(levels: np.ndarray, x0: np.ndarray, faults: np.ndarray, r_up: np.ndarray,
                       r_down: np.ndarray, params: DeviceParams, read_sigma_rel: float,
                       segments: list, *, by_class: bool = True) -> tuple[np.ndarray, ...]:
    """Write-and-verify of a flat array of devices (already validated; see the module docstring).

    The devices may belong to several tiles: device ``i`` only ever interacts with its own
    data, so programming tiles together gives each device exactly the bits it gets alone;
    only the verify-read noise is drawn per tile, from ``segments``, a list of
    ``(rng, start, stop)`` giving each tile's generator and its slice of the flat arrays
    (in the order of the devices, as a tile programmed alone draws it). ``r_up`` and
    ``r_down`` are zero for stuck devices.

    From the reset state without read noise, devices that cannot move (both rates zero:
    the stuck ones) read the same at every verify and so spend the same pulses as any
    device of their (stuck state, level) class; with ``by_class`` one device per class is
    simulated and its outcome given to the others (they would otherwise keep the loop
    going to the pulse budget for a few devices).

    Returns ``(conductance, pulses, pulse_time, converged, reads)``, flat.
    """
    tab = _level_tables(params)
    up, down = tab.up, tab.down
    n = levels.size
    g_off, g_on = params.g_off, params.g_on
    g_span = g_on - g_off
    spacing, tolerance = params.level_spacing, params.tolerance
    max_pulses, pulse_width, min_width = params.max_pulses, params.pulse_width, params.min_pulse_width
    rn_up, rn_down = tab.rate_up_nominal, tab.rate_down_nominal
    tol_progress = params.tolerance / (params.levels - 1)

    x_final = np.array(x0, dtype=np.float64)
    pulses = np.zeros(n, dtype=np.int64)
    pulse_time = np.zeros(n)
    reads = np.zeros(n, dtype=np.int64)
    converged = np.zeros(n, dtype=bool)
    noisy = read_sigma_rel > 0
    starts = np.array([seg[1] for seg in segments]) if noisy else None
    any_stuck = bool(np.any(faults != 0))
    # The state of the devices still being verified, one array per quantity in device
    # order, so that dropping the finished ones is a take of each (a take along the
    # columns of one state matrix cost twice as much). The per-level constants (target
    # conductance, aimed progress) are looked up from the level when needed.
    level = np.asarray(levels)
    r_u, r_d = np.asarray(r_up, dtype=np.float64), np.asarray(r_down, dtype=np.float64)
    last_rising = last_width = last_from = None
    iteration = 0
    from_reset = not noisy and n and not np.any(x0)
    if not from_reset:
        index = np.arange(n)
        stuck = np.where(faults > 0, g_on, np.where(faults < 0, g_off, np.nan)) if any_stuck else None
        x = x_final.copy()
        k_up, k_down = np.ones(n), np.ones(n)
        count_sum, time_sum = np.zeros(n), np.zeros(n)  # pulses and pulse time so far

    if from_reset:
        # Iteration 1 from the reset state, per (stuck state, level) class: most devices
        # of a campaign start here and many (level 0) finish at once.
        cls, ok_c, rising_c, here_c, count_c, burst_c = _first_pass_from_reset(level, faults, tab, params)
        ok = ok_c.take(cls)
        reads[ok] = 1  # in tolerance at the first read: no pulse, state unchanged
        converged[ok] = True
        active = np.flatnonzero(~ok)
        if by_class:
            frozen = r_u.take(active) == 0
            frozen &= r_d.take(active) == 0
            if frozen.any():
                at, active = active[frozen], active[~frozen]
                which = cls.take(at)
                c_pulses, c_time, c_converged, c_reads = _frozen_outcomes(params)
                pulses[at], pulse_time[at] = c_pulses.take(which), c_time.take(which)
                converged[at], reads[at] = c_converged.take(which), c_reads.take(which)
        cls = cls.take(active)
        rising, burst = rising_c.take(cls), burst_c.take(cls)
        r_u, r_d = r_u.take(active), r_d.take(active)
        progress = np.where(rising, r_u, r_d)
        progress *= burst
        x = x_final.take(active)
        moving = np.flatnonzero(progress > 0)
        if moving.size:
            still = rising.take(moving)
            if up.threshold > 0 and still.all():
                # _positions of states 0 (x0 is all zero) rising, below the window: the
                # states themselves; and np.where(still, u, 1 - u) is u
                s = x.take(moving)
                s += progress.take(moving)
                x[moving] = _inverse(s, still, up, down)
            else:
                s = _positions(x.take(moving), still, up, down)
                s += progress.take(moving)
                u_new = _inverse(s, still, up, down)
                x[moving] = np.where(still, u_new, 1.0 - u_new)
        index, level = active, level.take(active)
        stuck = None
        if any_stuck:
            f = faults.take(active)
            if f.any():  # else the stuck devices went by class
                stuck = np.where(f > 0, g_on, np.where(f < 0, g_off, np.nan))
        k_up, k_down = np.ones(active.size), np.ones(active.size)
        count_sum, time_sum = count_c.take(cls), burst  # 0 + the first burst
        last_rising, last_width, last_from = rising, burst, here_c.take(cls)
        iteration = 1

    while index.size:
        iteration += 1
        g_read = x * g_span
        g_read += g_off
        if stuck is not None:
            np.copyto(g_read, stuck, where=~np.isnan(stuck))
        if noisy:
            # The same draws as a tile alone: each tile's generator, its active devices in order.
            cuts = np.searchsorted(index, starts)
            cuts = np.append(cuts, index.size)
            z = np.concatenate([seg[0].standard_normal(int(cuts[t + 1] - cuts[t]))
                                for t, seg in enumerate(segments)])
            g_read = np.maximum(g_read * (1.0 + read_sigma_rel * z), 0.0)
        err = g_read - tab.g_target.take(level)
        err /= spacing
        ok = np.abs(err) <= tolerance
        keep = ~ok
        keep &= count_sum < max_pulses
        if not keep.all():
            # Positions, then take: boolean masks made the whole write-and-verify of
            # 1.8 M devices 2.4x slower (measured).
            done = np.flatnonzero(~keep)
            at = index.take(done)
            x_final[at] = x.take(done)
            pulses[at] = count_sum.take(done)
            pulse_time[at] = time_sum.take(done)
            reads[at] = iteration
            converged[at] = ok.take(done)
            if done.size == keep.size:
                break
            kept = np.flatnonzero(keep)
            index, level, x, r_u, r_d, k_up, k_down, count_sum, time_sum, err, g_read = (
                a.take(kept) for a in (index, level, x, r_u, r_d, k_up, k_down, count_sum, time_sum, err, g_read))
            if stuck is not None:
                stuck = stuck.take(kept)
            if last_rising is not None:
                last_rising, last_width, last_from = (a.take(kept) for a in (last_rising, last_width, last_from))
        x_hat = g_read - g_off
        x_hat /= g_span
        np.clip(x_hat, _Y_LO, 1.0 - _Y_LO, out=x_hat)
        rising = err < 0
        here = _positions(x_hat, rising, up, down)

        if iteration > 1:
            # Every device still here was pulsed on the last pass: learn its response
            # factor from that burst where it was expected to move more than the band.
            changed = last_rising != rising
            if changed.any():
                observed = here.copy()
                observed[changed] = _positions(x_hat[changed], last_rising[changed], up, down)
            else:
                observed = here
            nominal = np.where(last_rising, rn_up, rn_down) * last_width
            expected = nominal * np.where(last_rising, k_up, k_down)
            observed = observed - last_from
            with np.errstate(divide="ignore", invalid="ignore"):
                k_obs = np.clip(observed / nominal, _K_MIN, _K_MAX)
            learn = expected > tol_progress
            learn_up = learn & last_rising
            learn &= ~last_rising
            np.copyto(k_up, k_obs, where=learn_up)
            np.copyto(k_down, k_obs, where=learn)

        needed = np.where(rising, tab.aim_up.take(level), tab.aim_down.take(level))
        needed -= here
        np.maximum(needed, 0.0, out=needed)
        k = np.where(rising, k_up, k_down)
        k *= np.where(rising, rn_up, rn_down)
        t_plan = np.divide(needed, k, out=needed)
        count = t_plan / pulse_width
        count *= _SHRINK
        np.ceil(count, out=count)
        left = max_pulses - count_sum
        np.clip(count, 1, left, out=count)
        width = t_plan / count
        np.clip(width, min_width, pulse_width, out=width)
        burst = np.multiply(count, width, out=width)
        progress = np.where(rising, r_u, r_d)
        progress *= burst
        # _Dynamics.move: same-polarity pulses act through their total width only.
        moving = progress > 0
        s = _positions(x, rising, up, down)
        s += progress
        u_new = _inverse(s, rising, up, down)
        x_new = np.where(rising, u_new, 1.0 - u_new)
        np.copyto(x, x_new, where=moving)
        count_sum += count
        time_sum += burst
        last_rising, last_width, last_from = rising, burst, here

    g = _read_true_fast(x_final, faults, params)
    return g, pulses, pulse_time, converged, reads


class _NativeTables:
    """The constants and per-level / per-class tables of the C write-and-verify loop
    (``models/engine/write_verify.c``) for one parameter set (private helper; keeps the
    arrays the C struct points at alive)."""

    def __init__(self, params: DeviceParams) -> None:
        from .engine.native import WriteVerifyStruct

        tab = _level_tables(params)
        ok, rising, here, count, burst = _first_pass_classes(params)
        fz_pulses, fz_time, fz_converged, fz_reads = _frozen_outcomes(params)
        # 16 unused entries after each table: the C code loads 16 entries from where the
        # entries of healthy devices start (two registers to look up levels in)
        pad = lambda a, dtype: np.concatenate([np.asarray(a, dtype=dtype), np.zeros(16, dtype)])  # noqa: E731
        u8, f8, i8 = (lambda a, t=t: pad(a, t) for t in (np.uint8, np.float64, np.int64))
        self.arrays = dict(g_target=f8(tab.g_target), aim_up=f8(tab.aim_up), aim_down=f8(tab.aim_down),
                           ok_c=i8(ok), rising_c=i8(rising), here_c=f8(here), count_c=f8(count),
                           burst_c=f8(burst), fz_pulses=i8(fz_pulses), fz_reads=i8(fz_reads),
                           fz_time=f8(fz_time), fz_converged=u8(fz_converged))
        s = WriteVerifyStruct()
        s.levels = params.levels
        s.vector = 1  # eight devices per AVX-512 vector where the CPU has AVX-512F (tests set 0)
        # the very Python floats _write_verify_flat computes with
        s.g_off, s.g_on, s.g_span = params.g_off, params.g_on, params.g_on - params.g_off
        s.spacing, s.tolerance, s.max_pulses = params.level_spacing, params.tolerance, float(params.max_pulses)
        s.pulse_width, s.min_width = params.pulse_width, params.min_pulse_width
        s.rn_up, s.rn_down = tab.rate_up_nominal, tab.rate_down_nominal
        s.tol_progress = params.tolerance / (params.levels - 1)
        s.y_lo, s.y_hi, s.shrink = _Y_LO, 1.0 - _Y_LO, _SHRINK
        s.k_min, s.k_max = _K_MIN, _K_MAX
        s.thr_up, s.thr_down = tab.up.threshold, tab.down.threshold
        for name, a in self.arrays.items():
            setattr(s, name, a.ctypes.data)
        self.struct = s


@functools.lru_cache(maxsize=16)
def _native_tables(params: DeviceParams) -> _NativeTables:
    return _NativeTables(params)


def _write_verify_reset(levels: np.ndarray, faults: np.ndarray, r_up: np.ndarray, r_down: np.ndarray,
                        params: DeviceParams) -> tuple[np.ndarray, ...]:
    """:func:`_write_verify_flat` from the reset state without read noise (flat, validated
    arrays): the C loop of ``models/engine/write_verify.c`` where the library is available,
    the numpy loop otherwise and for the devices the C loop hands back (those whose
    trajectory enters a window of the window function, where the progress coordinate takes
    transcendental functions the C loop does not evaluate). Same bits either way: every
    device is simulated on its own data by the same float operations.

    ``REMECO_NO_NATIVE_PROGRAMMING=1`` forces the numpy loop.
    """
    from .engine.native import programming

    lib = programming()
    n = levels.size
    if lib is None or n == 0:
        parts = []
        # Chunks whose state stays in cache are faster than one pass over millions of
        # devices (1.8 M paper-LeNet devices: 1.0 -> 0.36 s); same bits.
        for a in range(0, max(n, 1), _WRITE_VERIFY_CHUNK):
            b = min(n, a + _WRITE_VERIFY_CHUNK)
            parts.append(_write_verify_flat(levels[a:b], np.zeros(b - a), faults[a:b], r_up[a:b], r_down[a:b],
                                            params, 0.0, [(None, 0, b - a)]))
        return parts[0] if len(parts) == 1 else tuple(np.concatenate(x) for x in zip(*parts))
    tables = _native_tables(params)
    lv = np.ascontiguousarray(levels, dtype=np.int64)
    f = np.ascontiguousarray(faults, dtype=np.int8)
    if f.min() < -1 or f.max() > 1:  # the C loop indexes its class tables with them
        raise ValueError("fault_map values must be -1, 0 or +1")
    ru = np.ascontiguousarray(r_up, dtype=np.float64)
    rd = np.ascontiguousarray(r_down, dtype=np.float64)
    g, pulse_time = np.empty(n), np.empty(n)
    pulses, reads = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    converged, fallback = np.empty(n, dtype=bool), np.empty(n, dtype=np.uint8)
    arrays = (lv, f, ru, rd, g, pulses, pulse_time, converged, reads, fallback)
    status = lib.remeco_write_verify(tables.struct, n, *(a.ctypes.data for a in arrays))
    if status:
        raise MemoryError("write-and-verify: out of memory in the C loop")
    back = np.flatnonzero(fallback)
    if back.size:
        res = _write_verify_flat(lv.take(back), np.zeros(back.size), f.take(back), ru.take(back), rd.take(back),
                                 params, 0.0, [(None, 0, back.size)])
        for dst, src in zip((g, pulses, pulse_time, converged, reads), res):
            dst[back] = src
    return g, pulses, pulse_time, converged, reads


def _read_true_fast(x: np.ndarray, faults: np.ndarray, params: DeviceParams) -> np.ndarray:
    """``_read_true`` for an already validated fault map."""
    g = params.state_to_conductance(x)
    return np.where(faults > 0, params.g_on, np.where(faults < 0, params.g_off, g))


# --------------------------------------------------------------------------- faults, noise


def _check_rate(name: str, value: object) -> None:
    _require_real(name, value, lo=0.0, hi=1.0)


def sample_stuck_at(shape: tuple[int, ...], seed: int, instance: int, *more: int,
                    rate: float = STUCK_AT_RATE, stuck_on_fraction: float = STUCK_ON_FRACTION) -> np.ndarray:
    """Stuck-at fault map, keyed by ``(seed, instance, "stuck_at", *more)``.

    Each device is faulty independently with probability ``rate``; a faulty device is
    then stuck-at-on independently with probability ``stuck_on_fraction``, otherwise
    stuck-at-off. So the number of faulty devices is Binomial(n, rate) and, given that
    number ``m``, the number stuck-at-on is Binomial(m, stuck_on_fraction) (ReMeCo:
    rate 1 %, 83.8 % stuck-at-on).

    The two decisions use two uniform numbers per device drawn regardless of the rates
    (``u_fault < rate``, ``u_on < stuck_on_fraction``), so on one chip instance the faulty
    set at a higher rate contains the faulty set at a lower rate, and the on/off split
    of a device does not depend on the rate: rate sweeps are nested.

    Parameters
    ----------
    shape:
        Shape of the device array.
    seed, instance:
        Campaign seed and chip-instance index.
    more:
        Further stream indices (tile index, ...).
    rate:
        Fault probability per device, in ``[0, 1]``.
    stuck_on_fraction:
        Probability that a faulty device is stuck-at-on (LRS), in ``[0, 1]``.

    Returns
    -------
    numpy.ndarray
        int8 map: 0 healthy, +1 stuck-at-on (``g_on``), -1 stuck-at-off (``g_off``).
    """
    _check_rate("rate", rate)
    _check_rate("stuck_on_fraction", stuck_on_fraction)
    shape = tuple(int(s) for s in shape)
    u = rng_for(seed, instance, "stuck_at", *more).random((2, *shape))
    faulty = u[0] < rate
    on = u[1] < stuck_on_fraction
    # where(faulty, where(on, 1, -1), 0) in int8 arithmetic on the 0/1 bytes (5x faster)
    out = on.view(np.int8) * np.int8(2)
    out -= np.int8(1)
    out *= faulty.view(np.int8)
    return out


def _check_fault_map(fault_map: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    f = np.asarray(fault_map)
    if f.shape != tuple(shape):
        raise ValueError(f"fault_map has shape {f.shape}, expected {tuple(shape)}")
    if not np.issubdtype(f.dtype, np.integer) or (f.size and not np.isin(f, (-1, 0, 1)).all()):
        raise ValueError("fault_map must be an integer array of -1, 0 and +1")
    return f.astype(np.int8, copy=False)


def apply_stuck_at(conductance: np.ndarray, fault_map: np.ndarray,
                   params: DeviceParams) -> np.ndarray:
    """Override stuck devices: +1 -> ``g_on``, -1 -> ``g_off``, 0 -> unchanged (siemens)."""
    g = np.asarray(conductance, dtype=np.float64)
    f = _check_fault_map(fault_map, g.shape)
    return np.where(f > 0, params.g_on, np.where(f < 0, params.g_off, g))


def read_noise(conductance: np.ndarray, sigma_rel: float,
               rng: np.random.Generator | None) -> np.ndarray:
    """One noisy read: ``G (1 + sigma_rel z)``, ``z ~ N(0, 1)`` per device, clipped at 0.

    Parameters
    ----------
    conductance:
        True conductances (siemens).
    sigma_rel:
        Relative standard deviation, ``>= 0``; 0 returns a copy and draws nothing.
    rng:
        Generator for ``z`` (may be ``None`` only when ``sigma_rel == 0``).
    """
    _require_real("sigma_rel", sigma_rel, lo=0.0)
    g = np.array(conductance, dtype=np.float64)
    if sigma_rel == 0:
        return g
    if rng is None:
        raise ValueError("rng is required when sigma_rel > 0")
    return np.maximum(g * (1.0 + sigma_rel * rng.standard_normal(g.shape)), 0.0)


# --------------------------------------------------------------------------- one tile


@dataclass(frozen=True)
class ProgrammedTile:
    """One crossbar tile of one chip instance after programming.

    Attributes
    ----------
    conductance:
        Final conductance per device in siemens (stuck devices at ``g_on`` / ``g_off``).
    target_levels:
        The requested levels (int64).
    fault_map:
        int8 stuck-at map (0 healthy, +1 stuck-at-on, -1 stuck-at-off).
    pulses:
        Programming pulses per device (int64).
    pulse_time:
        Total pulse time per device (s).
    converged:
        See :class:`ProgrammingResult`.
    reads:
        Verify reads per device (int64; 0 for open loop).
    """

    conductance: np.ndarray
    target_levels: np.ndarray
    fault_map: np.ndarray
    pulses: np.ndarray
    pulse_time: np.ndarray
    converged: np.ndarray
    reads: np.ndarray


@dataclass(frozen=True)
class DeviceDraws:
    """The random part of an array of devices of one chip instance (plain data, read-only).

    Everything programming needs from the draws: the stuck-at map and, from the D2D
    parameters, each device's progress per second of a SET / RESET pulse (zero where the
    device is stuck, as it does not respond). Element ``i`` of every array is one device.

    Attributes
    ----------
    fault_map:
        int8, 0 healthy, +1 stuck-at-on, -1 stuck-at-off (see :func:`sample_stuck_at`).
    rate_up, rate_down:
        float64 progress rates of the device's pulses (see :func:`draw_variation`).
    """

    fault_map: np.ndarray
    rate_up: np.ndarray
    rate_down: np.ndarray

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays."""
        return int(self.fault_map.nbytes + self.rate_up.nbytes + self.rate_down.nbytes)


# Device draws (stuck-at map and the per-device pulse rates that follow from the D2D
# parameters) depend on their stream keys and the parameters only, not on the levels the
# devices are programmed to: plans that put different levels on the same devices share
# them. LRU, bounded by entries and by bytes (a layer of a large network is megabytes).
_DRAW_CACHE: OrderedDict = OrderedDict()
_DRAW_CACHE_SIZE = 64
_DRAW_CACHE_BYTES = 256 << 20
_DRAW_CACHE_HELD = 0  # bytes held by _DRAW_CACHE


def clear_draw_cache() -> None:
    """Forget the memoised device draws (stuck-at maps and rates) of this process."""
    global _DRAW_CACHE_HELD
    _DRAW_CACHE.clear()
    _DRAW_CACHE_HELD = 0


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def draw_devices(shape: tuple[int, ...], seed: int, instance: int, *more: int,
                 params: DeviceParams | None = None, d2d: D2DParams | None = None,
                 stuck_at_rate: float = STUCK_AT_RATE, stuck_on_fraction: float = STUCK_ON_FRACTION) -> DeviceDraws:
    """Stuck-at map and pulse rates of an array of devices, keyed by ``(seed, instance, *more)``.

    Exactly :func:`sample_stuck_at` and :func:`draw_variation` with the same keys (streams
    ``"stuck_at"`` and ``"d2d"``), turned into pulse rates as programming does; memoised
    (LRU, read-only arrays), so asking twice for the same devices costs nothing.

    Parameters
    ----------
    shape:
        Shape of the device array.
    seed, instance:
        Campaign seed and chip-instance index.
    more:
        Further stream indices: what identifies these devices on the chip (a tile index,
        or a logical position as :mod:`remeco.models.chip` uses).
    params:
        Nominal device (default :class:`DeviceParams`).
    d2d:
        Device-to-device variation (default :class:`D2DParams`).
    stuck_at_rate, stuck_on_fraction:
        See :func:`sample_stuck_at`.
    """
    params = DeviceParams() if params is None else params
    d2d = D2DParams() if d2d is None else d2d
    shape = tuple(int(s) for s in shape)
    stuck_at_rate, stuck_on_fraction = float(stuck_at_rate), float(stuck_on_fraction)
    key = (shape, params, seed, instance, tuple(int(m) for m in more), d2d, stuck_at_rate, stuck_on_fraction)
    hit = _DRAW_CACHE.get(key)
    if hit is not None:
        _DRAW_CACHE.move_to_end(key)
        return hit
    faults = sample_stuck_at(shape, seed, instance, *more, rate=stuck_at_rate,
                             stuck_on_fraction=stuck_on_fraction)
    if d2d.enabled:
        variation = draw_variation(shape, seed, instance, *more, params=params, d2d=d2d)
        r_up, r_down = _pulse_rates(params, variation.v_p, variation.v_n, variation.a_p, variation.a_n)
    else:
        # Nominal devices (draw_variation's np.full arrays): the rates of an array of one
        # nominal device, the same element-wise operations, repeated.
        r_up, r_down = _nominal_rates(params)
    stuck = faults != 0
    value = DeviceDraws(_frozen(faults), _frozen(np.where(stuck, 0.0, r_up)), _frozen(np.where(stuck, 0.0, r_down)))
    global _DRAW_CACHE_HELD
    if _DRAW_CACHE_SIZE > 0 and value.nbytes <= _DRAW_CACHE_BYTES:
        _DRAW_CACHE[key] = value
        _DRAW_CACHE_HELD += value.nbytes
        while len(_DRAW_CACHE) > _DRAW_CACHE_SIZE or _DRAW_CACHE_HELD > _DRAW_CACHE_BYTES:
            _DRAW_CACHE_HELD -= _DRAW_CACHE.popitem(last=False)[1].nbytes
    return value


@functools.lru_cache(maxsize=16)
def _nominal_rates(params: DeviceParams) -> tuple:
    """Pulse rates of one nominal device (:func:`draw_devices` without D2D variation)."""
    one = DeviceVariation.nominal((1,), params)
    return tuple(r[0] for r in _pulse_rates(params, one.v_p, one.v_n, one.a_p, one.a_n))


def _open_loop_drawn(levels: np.ndarray, draws: DeviceDraws, params: DeviceParams) -> ProgrammingResult:
    """:func:`program_open_loop` from the reset state, for devices given by their draws
    (the same element-wise operations, so the same bits)."""
    nominal = _Dynamics.build(params, None, ())
    dyn = _Dynamics(nominal.up, nominal.down, draws.rate_up, draws.rate_down,
                    nominal.rate_up_nominal, nominal.rate_down_nominal)
    x0 = np.zeros(levels.shape)
    target_x = levels / float(params.levels - 1)
    margin = params.aim_margin / (params.levels - 1)
    aim = np.clip(target_x, margin, 1.0 - margin)
    return _open_loop(levels, x0, draws.fault_map, dyn, target_x, aim, params)


def program_drawn(target_levels: np.ndarray, draws: DeviceDraws, params: DeviceParams | None = None, *,
                  write_verify: bool = True) -> ProgrammingResult:
    """Program devices whose random part is already drawn, from the reset state.

    ``target_levels[i]`` is programmed on the device ``draws[i]`` describes (arrays of one
    shape; the devices may come from anywhere on the chip, since every device is simulated
    on its own data). No verify-read noise: it is a draw per read, not per device.

    Parameters
    ----------
    target_levels:
        Integer levels, any shape.
    draws:
        The devices (:func:`draw_devices`, or arrays gathered from several draws).
    params:
        Device parameters (default :class:`DeviceParams`).
    write_verify:
        Write-and-verify (True) or open loop.
    """
    params = DeviceParams() if params is None else params
    levels = params.check_levels(target_levels, "target_levels")
    shape = levels.shape
    for name in ("fault_map", "rate_up", "rate_down"):
        if np.shape(getattr(draws, name)) != shape:
            raise ValueError(f"draws.{name} has shape {np.shape(getattr(draws, name))}, target_levels {shape}")
    if not write_verify:
        return _open_loop_drawn(levels, draws, params)
    res = _write_verify_reset(*(np.ravel(a) for a in (levels, draws.fault_map, draws.rate_up, draws.rate_down)),
                              params)
    return ProgrammingResult(*(a.reshape(shape) for a in res))


_WRITE_VERIFY_CHUNK = 1 << 17  # devices per pass of the numpy write-and-verify in program_drawn


def program_tile(target_levels: np.ndarray, params: DeviceParams | None = None, *, seed: int,
                 instance: int, tile: int = 0, d2d_sigma: float = 0.1,
                 d2d_v_sigma: float | None = None, write_verify: bool = True,
                 stuck_at_rate: float = STUCK_AT_RATE, stuck_on_fraction: float = STUCK_ON_FRACTION,
                 read_sigma_rel: float = 0.0) -> ProgrammedTile:
    """Program one tile of chip instance ``(seed, instance)``: faults, D2D, programming.

    Parameters
    ----------
    target_levels:
        Integer levels ``(rows, cols)`` (any shape works).
    params:
        Device parameters (default :class:`DeviceParams`).
    seed, instance, tile:
        Keys of every random stream used (``"stuck_at"``, ``"d2d"``, ``"verify_read"``).
    d2d_sigma:
        Relative standard deviation of ``A_p``/``A_n`` (ReMeCo 0.1 or 0.2).
    d2d_v_sigma:
        Standard deviation of ``V_p``/``V_n`` in volts. ``None`` (default) means ReMeCo's
        0.08 V when ``d2d_sigma > 0`` and 0 when ``d2d_sigma == 0``, so ``d2d_sigma=0``
        turns device variation off entirely; pass a number to set it independently.
    write_verify:
        Write-and-verify (True, ReMeCo's assumption) or open loop.
    stuck_at_rate, stuck_on_fraction:
        See :func:`sample_stuck_at` (ReMeCo 0.01 and 0.838).
    read_sigma_rel:
        Relative read noise of the verify reads (write-and-verify only), 0 = off.

    Returns
    -------
    ProgrammedTile
        Its ``fault_map`` is read-only (shared with other tiles of the same keys).
    """
    return program_tiles([target_levels], params, seed=seed, instance=instance, tiles=[tile],
                         d2d_sigma=d2d_sigma, d2d_v_sigma=d2d_v_sigma, write_verify=write_verify,
                         stuck_at_rate=stuck_at_rate, stuck_on_fraction=stuck_on_fraction,
                         read_sigma_rel=read_sigma_rel)[0]


def program_tiles(targets, params: DeviceParams | None = None, *, seed: int, instance: int,
                  tiles, d2d_sigma: float = 0.1, d2d_v_sigma: float | None = None,
                  write_verify: bool = True, stuck_at_rate: float = STUCK_AT_RATE,
                  stuck_on_fraction: float = STUCK_ON_FRACTION,
                  read_sigma_rel: float = 0.0) -> list[ProgrammedTile]:
    """Program several tiles of one chip instance at once; ``tiles[i]`` is the key of ``targets[i]``.

    The result is exactly (bit for bit) that of :func:`program_tile` on each tile: every
    device is simulated by the same element-wise operations and every tile draws from its
    own streams. Write-and-verify runs all tiles in one vectorized pass, which saves the
    per-pass overhead of the many small passes near the end of the verify loop.
    See :func:`program_tile` for the other parameters.
    """
    params = DeviceParams() if params is None else params
    _require_real("d2d_sigma", d2d_sigma, lo=0.0)
    _check_rate("stuck_at_rate", stuck_at_rate)
    _check_rate("stuck_on_fraction", stuck_on_fraction)
    _require_real("read_sigma_rel", read_sigma_rel, lo=0.0)
    if len(targets) != len(tiles):
        raise ValueError(f"got {len(targets)} target arrays and {len(tiles)} tile keys")
    if d2d_v_sigma is None:
        d2d_v_sigma = 0.08 if d2d_sigma > 0 else 0.0
    d2d = D2DParams(sigma_rel=float(d2d_sigma), v_sigma=float(d2d_v_sigma))
    stuck_at_rate, stuck_on_fraction = float(stuck_at_rate), float(stuck_on_fraction)
    all_levels = [params.check_levels(t, "target_levels") for t in targets]
    draws = [draw_devices(lv.shape, seed, instance, tile, params=params, d2d=d2d,
                          stuck_at_rate=stuck_at_rate, stuck_on_fraction=stuck_on_fraction)
             for lv, tile in zip(all_levels, tiles)]
    if not write_verify:
        out = []
        for levels, drawn in zip(all_levels, draws):
            res = _open_loop_drawn(levels, drawn, params)
            out.append(ProgrammedTile(res.conductance, levels, drawn.fault_map, res.pulses,
                                      res.pulse_time, res.converged, res.reads))
        return out
    sizes = [lv.size for lv in all_levels]
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    flat = [np.concatenate([a.ravel() for a in arrays]) if len(arrays) > 1 else arrays[0].ravel()
            for arrays in (all_levels, [d.fault_map for d in draws], [d.rate_up for d in draws],
                           [d.rate_down for d in draws])]
    segments = [(rng_for(seed, instance, "verify_read", tile) if read_sigma_rel > 0 else None,
                 int(bounds[i]), int(bounds[i + 1])) for i, tile in enumerate(tiles)]
    x0 = np.zeros(int(bounds[-1]))
    g, pulses, pulse_time, converged, reads = _write_verify_flat(
        flat[0], x0, flat[1], flat[2], flat[3], params, float(read_sigma_rel), segments)
    out = []
    for i, (levels, drawn) in enumerate(zip(all_levels, draws)):
        a, b, shape = int(bounds[i]), int(bounds[i + 1]), levels.shape
        out.append(ProgrammedTile(g[a:b].reshape(shape), levels, drawn.fault_map, pulses[a:b].reshape(shape),
                                  pulse_time[a:b].reshape(shape), converged[a:b].reshape(shape),
                                  reads[a:b].reshape(shape)))
    return out
