"""cocotb bench: :class:`remeco.rtl.combine.SliceCombiner` == ``combine_slices``.

Parameters: the format fields ``slice_bits``, ``n_slices``, ``code_frac``, ``input_bits``,
``rows``; ``fan_in``, ``adc_shift``, ``max_copies_log2`` (they size the widths); ``neurons``,
``seed``, ``valid_prob``, ``ready_prob``. Every neuron's slices arrive in a random order
(as the averager may emit them) with a random ``x_sum``; a quarter of the neurons use
only extreme values (0 or the largest ``a`` and ``x_sum``) to hit both ends of ``z``.
"""

from __future__ import annotations

import cocotb
import numpy as np

from ..models.emulation import EmulationFormat, combine_slices
from ..rtl.combine import SliceCombiner
from .common import random_case, reset_case


def fmt_of(p: dict) -> EmulationFormat:
    """The numeric format the bench parameters describe."""
    return EmulationFormat(
        rows=p["rows"], cols=8, slice_bits=p["slice_bits"], n_slices=p["n_slices"],
        input_bits=p["input_bits"], code_frac=p["code_frac"],
        code_bits=p["slice_bits"] + p["code_frac"] + 2, adc_bits=p["adc_bits"],
    )


def widths(p: dict) -> dict[str, int]:
    """Widths of the block's ports for the parameters (from ``EmulationFormat.widths``)."""
    fmt = fmt_of(p)
    w = fmt.widths(p["fan_in"], p["max_copies_log2"], p["adc_shift"])
    x_sum_max = p["fan_in"] * ((1 << fmt.input_bits) - 1)
    return {"y": w["y"], "z": w["z"], "x_sum": x_sum_max.bit_length(), "x_sum_max": x_sum_max}


def design(p: dict) -> SliceCombiner:
    """The component under test for the bench parameters ``p``."""
    w = widths(p)
    return SliceCombiner(fmt_of(p), w["y"], w["x_sum"], w["z"], p["adc_shift"])


def make_neurons(rng: np.random.Generator, p: dict, n: int):
    """Beats and expected ``z`` for ``n`` neurons."""
    fmt, w = fmt_of(p), widths(p)
    s = fmt.n_slices
    top = (1 << w["y"]) - 1
    a = rng.integers(0, top, size=(n, s), endpoint=True)
    x_sum = rng.integers(0, w["x_sum_max"], size=n, endpoint=True)
    extreme = np.arange(n) % 4 == 0
    a[extreme] = rng.choice([0, top], size=(int(extreme.sum()), s))
    x_sum[extreme] = rng.choice([0, w["x_sum_max"]], size=int(extreme.sum()))
    beats: dict[str, list[int]] = {k: [] for k in ("a", "slice", "end", "x_sum")}
    for j in range(n):
        order = rng.permutation(s)
        for i, sl in enumerate(order):
            beats["a"].append(int(a[j, sl]))
            beats["slice"].append(int(sl))
            beats["end"].append(int(i == s - 1))
            # x_sum matters only on the end beat; elsewhere it is noise the block must ignore
            beats["x_sum"].append(int(x_sum[j]) if i == s - 1 else int(rng.integers(0, w["x_sum_max"] + 1)))
    z = combine_slices(a.T[:, :, None], x_sum, p["adc_shift"], fmt)[:, 0]
    return beats, [int(v) for v in z]


@cocotb.test()
async def random_neurons(dut):
    """Random and extreme neurons, random idle cycles and backpressure."""
    await random_case(dut, "random_neurons", design, make_neurons, lambda p: p["neurons"], "z")


@cocotb.test()
async def reset_mid_transfer(dut):
    """Reset in the middle of a neuron; the next beat must start a fresh neuron."""
    await reset_case(dut, "reset_mid_transfer", design, make_neurons, (61, 60), "z")
