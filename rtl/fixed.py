"""Fixed-point building blocks shared by the datapath components.

Each helper is the hardware form of one rule of :mod:`remeco.models.emulation`; the
blocks call these instead of re-deriving the bit tricks.
"""

from __future__ import annotations

from amaranth import Const, Mux, Signal, Value

__all__ = ["round_shift_const", "round_shift_var", "clamp", "tree_sum", "pipelined_tree_sum", "bits_for"]


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


def pipelined_tree_sum(m, terms: list, enable: Value, levels_per_stage: int = 2, name: str = "tree") -> tuple[Value, int]:
    """:func:`tree_sum` with a register after every ``levels_per_stage`` adder levels.

    The registers (in ``m``'s ``sync`` domain) load while ``enable`` is high, so the tree
    is one more stage of a pipeline that advances as a whole. No register follows the
    last level: the caller registers the sum. Returns ``(sum, stages)``: the sum is
    valid ``stages`` enabled cycles after its terms, so side-band data must be delayed
    by as many stages.
    """
    if levels_per_stage < 1:
        raise ValueError(f"levels_per_stage must be >= 1, got {levels_per_stage}")
    level = [Value.cast(t) for t in terms] or [Const(0)]
    depth = stages = 0
    while len(level) > 1:
        nxt = [level[i] + level[i + 1] for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level, depth = nxt, depth + 1
        if depth % levels_per_stage == 0 and len(level) > 1:
            regs = [Signal(v.shape(), name=f"{name}_s{stages}_{j}") for j, v in enumerate(level)]
            with m.If(enable):
                m.d.sync += [r.eq(v) for r, v in zip(regs, level)]
            level, stages = regs, stages + 1
    return level[0], stages
