"""Fixed-point building blocks shared by the datapath components.

Each helper is the hardware form of one rule of :mod:`remeco.models.emulation`; the
blocks call these instead of re-deriving the bit tricks.
"""

from __future__ import annotations

from amaranth import Const, Mux, Value

__all__ = ["round_shift_const", "round_shift_var", "clamp", "tree_sum", "bits_for"]


def bits_for(n: int) -> int:
    """Bits of an unsigned field that holds values ``0 .. n`` (at least 1)."""
    return max(1, int(n).bit_length())


def round_shift_const(value: Value, shift: int) -> Value:
    """``floor((v + 2**(shift-1)) / 2**shift)`` for a constant shift (``round_shift``).

    ``value`` should be signed when it can be negative (then ``>>`` is arithmetic).
    """
    if shift == 0:
        return value
    return (value + (1 << (shift - 1))) >> shift


def round_shift_var(value: Value, shift: Value) -> Value:
    """``round_shift`` by a run-time amount, without widening ``value``.

    Uses ``floor((v + 2**(n-1)) / 2**n) == floor((floor(v / 2**(n-1)) + 1) / 2)`` for
    ``n >= 1`` (nested floor division), so the rounding constant never has to be built
    at the width of the largest shift; ``n = 0`` passes ``v`` through.
    """
    pre = value >> (shift - 1)[: len(shift)]
    return Mux(shift == 0, value, (pre + 1) >> 1)


def clamp(value: Value, low: int, high: int) -> Value:
    """``min(max(value, low), high)`` (saturation)."""
    return Mux(value < low, low, Mux(value > high, high, value))


def tree_sum(terms: list) -> Value:
    """Balanced adder tree (depth ``ceil(log2(n))`` instead of a chain of ``n - 1``)."""
    if not terms:
        return Const(0)
    level = list(terms)
    while len(level) > 1:
        nxt = [level[i] + level[i + 1] for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]
