"""cocotb bench: :class:`remeco.rtl.fault_gen.FaultGenerator` == :mod:`remeco.models.fault_lfsr`.

Random commands (seed, including 0; rate and stuck-on thresholds, including 0 and
65536; word counts from 0 to the memory depth; a quarter of them clears) go in with
random idle cycles, the written words come out under random backpressure, and every
``(addr, data)`` write is compared with :func:`remeco.models.fault_lfsr.generate_fault_map`
laid out as fault-memory words (lane 0 first; zeros for a clear).

Parameters: ``lanes``, ``depth``, ``commands``, ``seed``, ``valid_prob``, ``ready_prob``.
"""

from __future__ import annotations

import cocotb
import numpy as np

from ..models.fault_lfsr import THRESHOLD_ONE, generate_fault_map
from ..rtl.fault_gen import FaultGenerator
from .common import random_case, reset_case


def design(p: dict) -> FaultGenerator:
    """The component under test for the bench parameters ``p``."""
    return FaultGenerator(p["lanes"], p["depth"])


def expected_words(seed: int, rate: int, on: int, words: int, lanes: int, clear: bool) -> np.ndarray:
    """Fault-memory words ``(words,)`` a command writes, packed 2 bits per lane (lane 0 lowest)."""
    if words == 0:
        return np.zeros(0, dtype=np.int64)
    if clear:
        return np.zeros(words, dtype=np.int64)
    # generate_fault_map visits (tile, column, row), row innermost: rows = lanes of a word
    cells = generate_fault_map(seed, rate, on, 1, lanes, words)[0].T.astype(np.int64)  # (words, lanes)
    return (cells << (2 * np.arange(lanes, dtype=np.int64))).sum(axis=1)


def _threshold(rng: np.random.Generator) -> int:
    pick = rng.random()
    if pick < 0.1:
        return 0
    if pick < 0.2:
        return THRESHOLD_ONE
    return int(rng.integers(0, THRESHOLD_ONE + 1))


def make_commands(rng: np.random.Generator, p: dict, count: int):
    """Command beats and the ``(addr, data)`` writes expected from them, in order."""
    beats: dict[str, list[int]] = {k: [] for k in ("seed", "rate", "on", "words", "clear")}
    expected: list[tuple[int, int]] = []
    for i in range(count):
        seed = 0 if i % 7 == 3 else int(rng.integers(0, 1 << 32))
        rate, on = _threshold(rng), _threshold(rng)
        words = int(rng.integers(0, p["depth"], endpoint=True)) if i % 5 else p["depth"]
        clear = bool(rng.random() < 0.25)
        for name, v in (("seed", seed), ("rate", rate), ("on", on), ("words", words), ("clear", int(clear))):
            beats[name].append(v)
        expected.extend((a, int(d)) for a, d in enumerate(expected_words(seed, rate, on, words, p["lanes"], clear)))
    return beats, expected


def _outputs(words, pout) -> list[tuple[int, int]]:
    cols = pout.unpack_many(words)
    return list(zip(cols["addr"], cols["data"]))


@cocotb.test()
async def random_commands(dut):
    """Random generate and clear commands, random idle cycles and backpressure."""
    await random_case(dut, "random_commands", design, make_commands, lambda p: p["commands"], "(addr, data)",
                      outputs=_outputs)


@cocotb.test()
async def reset_mid_command(dut):
    """Reset while words are being written: the command is abandoned, the next ones are exact."""
    await reset_case(dut, "reset_mid_command", design, make_commands, (4, 6), "(addr, data)", outputs=_outputs)
