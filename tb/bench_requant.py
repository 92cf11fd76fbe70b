"""cocotb bench: :class:`remeco.rtl.requant.Requantizer` == ``add_bias`` + ``requantize`` / ``final_logits``.

Parameters: ``z_width``, ``code_frac``, ``vectors``, ``seed``, ``valid_prob``, ``ready_prob``.
Every beat has its own random ``multiplier``, ``shift`` and ``final``. Half of the hidden
beats choose ``shift`` so that the result lands inside ``[0, 255]`` (otherwise almost
everything saturates), a tenth are exact .5 ties of the rounding, the rest are uniform.
"""

from __future__ import annotations

import cocotb
import numpy as np

from ..models.emulation import final_logits, requantize
from ..models.periphery import add_bias
from ..rtl.requant import BIAS_BITS, MULTIPLIER_BITS, Requantizer
from .common import Comparison, bench_params, check_reset, run_stream, run_with_reset
from .stream import stream_payload

MAX_SHIFT = 48  # the model's range for shift


def design(p: dict) -> Requantizer:
    """The component under test for the bench parameters ``p``."""
    return Requantizer(p["z_width"], p["code_frac"])


def make_beats(rng: np.random.Generator, p: dict, n: int):
    """Random beats and the model's outputs."""
    zw, cf = p["z_width"], p["code_frac"]
    z = rng.integers(-(1 << (zw - 1)), (1 << (zw - 1)) - 1, size=n, endpoint=True)
    # keep t >> code_frac inside int32 so that final_logits is defined
    bias = rng.integers(-(1 << (BIAS_BITS - 2)), (1 << (BIAS_BITS - 2)) - 1, size=n, endpoint=True)
    small = rng.random(n) < 0.5
    bias[small] = rng.integers(-1000, 1000, size=int(small.sum()))
    mult = rng.integers(0, (1 << MULTIPLIER_BITS) - 1, size=n, endpoint=True)
    few_bits = rng.random(n) < 0.3
    mult[few_bits] = rng.integers(0, 1 << 12, size=int(few_bits.sum()))
    final = (rng.random(n) < 0.25).astype(np.int64)
    shift = rng.integers(0, MAX_SHIFT, size=n, endpoint=True)
    t = add_bias(z, bias, cf)
    mag = np.array([max(int(abs(int(a)) * int(b)).bit_length(), 1) for a, b in zip(t, mult)])
    live = rng.random(n) < 0.5
    shift[live] = np.clip(mag[live] - cf - 8 + rng.integers(-2, 3, size=int(live.sum())), 0, MAX_SHIFT)
    # exact ties: t * m == (odd) * 2**(n-1) with n = shift + code_frac
    ties = np.flatnonzero((rng.random(n) < 0.1) & (final == 0))
    for i in ties:
        nsh = int(rng.integers(1, 20))
        sh = max(nsh - cf, 0)
        nsh = sh + cf
        if nsh == 0:
            continue
        target = (2 * int(rng.integers(0, 300)) + 1) << (nsh - 1)  # a tie, mid-range
        if rng.random() < 0.3:
            target = -target
        mult[i], shift[i] = 1, sh
        tz = target - (int(bias[i]) << cf)
        if -(1 << (zw - 1)) <= tz < (1 << (zw - 1)):
            z[i] = tz
        else:
            bias[i], z[i] = 0, max(min(target, (1 << (zw - 1)) - 1), -(1 << (zw - 1)))
    t = add_bias(z, bias, cf)
    # The model holds t * multiplier in int64 (its stated domain): shrink the multiplier
    # of the few beats whose product would not fit.
    for i in range(n):
        while abs(int(t[i])) * int(mult[i]) >= 1 << 62:
            mult[i] >>= 1
    expected = np.empty(n, dtype=np.int64)
    for i in range(n):
        if final[i]:
            expected[i] = final_logits(t[i : i + 1], cf)[0]
        else:
            expected[i] = requantize(t[i : i + 1], int(mult[i]), int(shift[i]), cf)[0]
    beats = {"z": z, "bias": bias, "multiplier": mult, "shift": shift, "final": final}
    return beats, expected


@cocotb.test()
async def random_vectors(dut):
    """Random beats with per-beat settings, random idle cycles and backpressure."""
    p = bench_params()
    comp = design(p)
    pin, pout = stream_payload(comp, "i"), stream_payload(comp, "o")
    rng = np.random.default_rng(p["seed"])
    beats, expected = make_beats(rng, p, p["vectors"])
    got = await run_stream(dut, pin.pack_many(beats), len(expected), p, p["seed"], component=comp)
    cmp = Comparison()
    ctx = list(zip(*(beats[k] for k in ("z", "bias", "multiplier", "shift", "final"))))
    cmp.check("out", expected, np.asarray(pout.unpack_many(got), dtype=np.int64), context=ctx)
    cmp.finish("random_vectors")


@cocotb.test()
async def reset_mid_transfer(dut):
    """Reset with both pipeline stages full and a beat on offer."""
    p = bench_params()
    comp = design(p)
    pin, pout = stream_payload(comp, "i"), stream_payload(comp, "o")
    rng = np.random.default_rng(p["seed"] + 1)
    beats0, exp0 = make_beats(rng, p, 300)
    beats1, exp1 = make_beats(rng, p, 300)
    _, got0, got1 = await run_with_reset(dut, pin.pack_many(beats0), pin.pack_many(beats1), len(exp1), p, p["seed"] + 2, component=comp)
    cmp = Comparison()
    check_reset(cmp, "out", exp0, pout.unpack_many(got0), exp1, pout.unpack_many(got1))
    cmp.finish("reset_mid_transfer")
