"""cocotb bench: :class:`remeco.rtl.requant.Requantizer` == step 7 of the contract.

Expected: ``t = add_bias(to_accumulator(z, code_frac), bias)``, then ``requantize(t,
multiplier, shift)`` (hidden) or ``final_logits(t)`` (last layer).

Parameters: ``z_width``, ``code_frac``, ``vectors``, ``seed``, ``valid_prob``, ``ready_prob``.
Every beat has its own random ``multiplier`` (in ``[1, 2**15)``), ``shift`` (in
``[0, MAX_SHIFT]``) and ``final``. Stimulus stays in the model's domain (``t`` in int32).
Half of the hidden beats choose ``shift`` so that the result lands inside ``[0, 255]``
(otherwise almost everything saturates); a tenth are exact .5 ties of the final rounding,
a tenth exact .5 ties of the rounding to accumulator units (``z = odd * 2**(code_frac-1)``),
a few sit at the ends of the int32 range of ``t``; the rest are uniform.
"""

from __future__ import annotations

import cocotb
import numpy as np

from ..models.emulation import MAX_SHIFT, final_logits, requantize, to_accumulator
from ..models.periphery import add_bias
from ..rtl.requant import BIAS_BITS, MULTIPLIER_BITS, Requantizer
from .common import random_case, reset_case

_I32 = (-(1 << 31), (1 << 31) - 1)


def design(p: dict) -> Requantizer:
    """The component under test for the bench parameters ``p``."""
    return Requantizer(p["z_width"], p["code_frac"])


def expected_outputs(beats: dict, code_frac: int) -> np.ndarray:
    """The model's output for every beat (uint8 activation or int32 logit, as int64)."""
    t = add_bias(to_accumulator(beats["z"], code_frac), beats["bias"])
    out = np.empty(t.size, dtype=np.int64)
    for i in range(t.size):
        if beats["final"][i]:
            out[i] = final_logits(t[i : i + 1])[0]
        else:
            out[i] = requantize(t[i : i + 1], int(beats["multiplier"][i]), int(beats["shift"][i]))[0]
    return out


def make_beats(rng: np.random.Generator, p: dict, n: int):
    """Random beats and the model's outputs."""
    zw, cf = p["z_width"], p["code_frac"]
    zlo, zhi = -(1 << (zw - 1)), (1 << (zw - 1)) - 1
    z = rng.integers(zlo, zhi, size=n, endpoint=True)
    small_z = rng.random(n) < 0.3
    z[small_z] = np.clip(rng.integers(-(1 << (cf + 12)), 1 << (cf + 12), size=int(small_z.sum())), zlo, zhi)
    if cf:  # exact ties of round_shift(z, code_frac), both signs
        tie_z = rng.random(n) < 0.1
        odd = 2 * rng.integers(-(1 << 10), 1 << 10, size=int(tie_z.sum())) + 1
        z[tie_z] = np.clip(odd << (cf - 1), zlo, zhi)
    bias = rng.integers(-(1 << (BIAS_BITS - 1)), (1 << (BIAS_BITS - 1)) - 1, size=n, endpoint=True)
    small = rng.random(n) < 0.5
    bias[small] = rng.integers(-1000, 1000, size=int(small.sum()))
    mult = rng.integers(1, (1 << MULTIPLIER_BITS) - 1, size=n, endpoint=True)
    few_bits = rng.random(n) < 0.3
    mult[few_bits] = rng.integers(1, 1 << 6, size=int(few_bits.sum()))
    final = (rng.random(n) < 0.25).astype(np.int64)
    shift = rng.integers(0, MAX_SHIFT, size=n, endpoint=True)

    # Keep t in int32 (the model's domain): move the bias, or shrink z and bias.
    for i in range(n):
        while True:
            t = int(add_bias(to_accumulator(z[i : i + 1], cf), bias[i])[0])
            if _I32[0] <= t <= _I32[1]:
                break
            acc = t - int(bias[i])
            if _I32[0] <= acc <= _I32[1]:
                bias[i] = int(rng.integers(_I32[0], _I32[1], endpoint=True)) - acc
                if not _I32[0] <= bias[i] <= _I32[1]:
                    bias[i] = -acc // 2
            else:
                z[i] //= 2
    # a few beats at the ends of the int32 range
    for i in np.flatnonzero(rng.random(n) < 0.02):
        acc = int(to_accumulator(z[i : i + 1], cf)[0])
        want = _I32[int(rng.integers(0, 2))]
        if _I32[0] <= want - acc <= _I32[1]:
            bias[i] = want - acc
    t = add_bias(to_accumulator(z, cf), bias)
    mag = np.array([max((abs(int(a)) * int(b)).bit_length(), 1) for a, b in zip(t, mult)])
    live = rng.random(n) < 0.5
    shift[live] = np.clip(mag[live] - 8 + rng.integers(-2, 3, size=int(live.sum())), 0, MAX_SHIFT)
    # exact ties of the final rounding: t * m == (odd) * 2**(shift-1), shift >= 1
    for i in np.flatnonzero((rng.random(n) < 0.1) & (final == 0)):
        sh = int(rng.integers(1, 20))
        target = (2 * int(rng.integers(0, 300)) + 1) << (sh - 1)  # a tie, mid-range
        if rng.random() < 0.3:
            target = -target
        acc = int(to_accumulator(z[i : i + 1], cf)[0])
        mult[i], shift[i], bias[i] = 1, sh, target - acc
        if not _I32[0] <= target - acc <= _I32[1]:
            z[i], bias[i] = 0, target
    beats = {"z": z, "bias": bias, "multiplier": mult, "shift": shift, "final": final}
    return beats, expected_outputs(beats, cf)


def _ints(words, payload):
    return np.asarray(payload.unpack_many(words), dtype=np.int64)


def _context(beats):
    return list(zip(*(beats[k] for k in ("z", "bias", "multiplier", "shift", "final"))))


@cocotb.test()
async def random_vectors(dut):
    """Random beats with per-beat settings, random idle cycles and backpressure."""
    await random_case(dut, "random_vectors", design, make_beats, lambda p: p["vectors"], "out", outputs=_ints,
                      context=_context)


@cocotb.test()
async def reset_mid_transfer(dut):
    """Reset with the pipeline stages full and a beat on offer."""
    await reset_case(dut, "reset_mid_transfer", design, make_beats, (300, 300), "out")
