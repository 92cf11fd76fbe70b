"""cocotb bench: :class:`remeco.rtl.shift_add.ShiftAdd` == ``shift_add_bits`` summed over tiles.

Parameters: ``adc_bits``, ``input_bits``, ``cols``, ``y_width``, ``tiles`` (row tiles per
job), ``jobs``, ``seed``, ``valid_prob``, ``ready_prob``. A job is one input vector's worth
of ADC codes ``(tiles, input_bits, cols)``; its beats go plane by plane (as the PE sends
them), with the column order of every plane shuffled in half of the jobs (the block
must not depend on it).
"""

from __future__ import annotations

import cocotb
import numpy as np

from ..models.emulation import shift_add_bits
from ..rtl.shift_add import ShiftAdd
from .common import random_case, reset_case


def design(p: dict) -> ShiftAdd:
    """The component under test for the bench parameters ``p``."""
    return ShiftAdd(p["adc_bits"], p["input_bits"], p["cols"], p["y_width"])


def make_jobs(rng: np.random.Generator, p: dict, n: int):
    """``n`` jobs: codes, beats (columns) and expected ``(y, col)`` outputs per job."""
    top = (1 << p["adc_bits"]) - 1
    tiles, bits, cols = p["tiles"], p["input_bits"], p["cols"]
    all_beats: dict[str, list[int]] = {k: [] for k in ("code", "bit", "col", "first", "last")}
    expected: list[tuple[int, int]] = []
    for j in range(n):
        kind = j % 4
        if kind == 0:  # extremes: the largest possible sums (width check) and zeros
            adc = rng.choice([0, top], size=(tiles, bits, cols))
        else:
            adc = rng.integers(0, top, size=(tiles, bits, cols), endpoint=True)
        shuffle = bool(j % 2)
        order_last = np.arange(cols)
        for t in range(tiles):
            for b in range(bits):
                order = rng.permutation(cols) if shuffle else np.arange(cols)
                for c in order:
                    all_beats["code"].append(int(adc[t, b, c]))
                    all_beats["bit"].append(b)
                    all_beats["col"].append(int(c))
                    all_beats["first"].append(int(t == 0 and b == 0))
                    all_beats["last"].append(int(t == tiles - 1 and b == bits - 1))
                if t == tiles - 1 and b == bits - 1:
                    order_last = order
        # model: shift_add_bits over bits (axis 0), then the sum over row tiles
        y = shift_add_bits(adc.transpose(1, 0, 2)).sum(axis=0)
        expected.extend((int(y[c]), int(c)) for c in order_last)
    return all_beats, expected


def _outputs(words, pout) -> list[tuple[int, int]]:
    cols = pout.unpack_many(words)
    return list(zip(cols["y"], cols["col"]))


@cocotb.test()
async def random_jobs(dut):
    """Random and extreme jobs, random idle cycles and backpressure."""
    await random_case(dut, "random_jobs", design, make_jobs, lambda p: p["jobs"], "(y, col)", outputs=_outputs)


@cocotb.test()
async def reset_mid_transfer(dut):
    """Reset in the middle of a job; the next jobs must start clean."""
    await reset_case(dut, "reset_mid_transfer", design, make_jobs, (4, 4), "(y, col)", outputs=_outputs)
