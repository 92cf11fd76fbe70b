"""Fixed-point building blocks shared by the datapath components.

Each helper is the hardware form of one rule of :mod:`remeco.models.emulation`; the
blocks call these instead of re-deriving the bit tricks.
"""

from __future__ import annotations

from amaranth import Cat, Const, Mux, Signal, Value, signed

__all__ = ["round_shift_const", "round_shift_var", "round_shift_sat", "clamp", "tree_sum", "pipelined_tree_sum", "bits_for"]


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
    """``round_shift`` by a run-time (unsigned) amount, one bit wider than ``value``.

    Uses ``floor((v + 2**(n-1)) / 2**n) == floor((floor(2 v / 2**n) + 1) / 2)``, true for
    every ``n >= 0`` (nested floor division; ``n = 0`` gives ``v``), so the rounding
    constant never has to be built at the width of the largest shift, and neither
    ``n - 1`` nor a special case for ``n = 0`` sits on the path (both used to add a carry
    chain and a multiplexer in front of the shifter).
    """
    value = Value.cast(value)
    wide = Cat(Const(0, 1), value).as_signed() if value.shape().signed else Cat(Const(0, 1), value)
    return ((wide >> shift) + 1) >> 1


def round_shift_sat(value: Value, shift: Value, bits: int) -> Value:
    """``round_shift`` by a run-time (unsigned) amount, saturated to ``[-2**bits, 2**bits]``.

    Equals ``min(max(round_shift_var(value, shift), -2**bits), 2**bits)``, so a later
    :func:`clamp` to any range inside ``[-2**bits, 2**bits - 1]`` gives the same result as
    on the exact value, but with ``bits + 2`` bits of logic instead of ``len(value) + 1``:
    only the low ``bits + 2`` bits of the shifted value are built and rounded (a short
    carry chain), and whether the exact result lies in range is decided on ``value``
    itself: ``-2**(bits+shift) <= value < 2**(bits+shift)``, i.e. every bit of ``value`` from
    ``bits + shift`` up equals its sign, tested against a mask decoded from ``shift`` in
    parallel with the shifter. (The requantizer's output stage; the full-width rounding
    add and the comparisons after it were its critical path.)
    """
    value = Value.cast(value)
    width, is_signed = len(value), value.shape().signed
    if width <= bits + 1:
        return round_shift_var(value, shift)  # |value| <= 2**bits: in range already
    sign = value[-1] if is_signed else Const(0)
    wide = Cat(Const(0, 1), value).as_signed() if is_signed else Cat(Const(0, 1), value)
    pre = (wide >> shift)[:bits + 2].as_signed()  # floor(2 value / 2**shift), low bits
    rounded = (pre + 1) >> 1
    out_of_range = Cat(*((shift <= j - bits) & (value[j] ^ sign) for j in range(bits, width))).any()
    limit = Const(1 << bits, signed(bits + 2))
    return Mux(out_of_range, Mux(sign, -limit, limit), rounded)


def clamp(value: Value, low: int, high: int) -> Value:
    """``min(max(value, low), high)`` (saturation).

    For the common bounds ``low = 0``, ``high = 2**k - 1`` the comparisons are the sign bit
    and an OR of the bits above ``k`` (no carry chains), and the result is ``k`` bits wide.
    """
    value = Value.cast(value)
    width, is_signed = len(value), value.shape().signed
    k = (high + 1).bit_length() - 1
    if low == 0 and high >= 1 and high + 1 == 1 << k and k < width - is_signed:
        neg = value[-1] if is_signed else Const(0)
        above = value[k:width - is_signed].any() & ~neg
        return Mux(neg, 0, Mux(above, high, value[:k]))
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
