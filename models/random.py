"""Explicit, reproducible randomness: every draw is keyed by (seed, instance, ...).

A chip instance is generated from ``(seed, instance)`` only, so a campaign gives the
same numbers on one process, a pool or a cluster. Each independent purpose (stuck-at
map, programming variation, wire resistance, read noise, ...) and each tile gets its own
stream by adding integers to the key; streams never depend on the order of draws
elsewhere.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["rng_for", "purpose_id"]


def purpose_id(purpose: str) -> int:
    """Stable 32-bit integer for a purpose name (CRC-32, identical on every platform)."""
    return zlib.crc32(purpose.encode("utf-8"))


def rng_for(seed: int, instance: int, purpose: str, *more: int) -> np.random.Generator:
    """A NumPy generator for one purpose of one chip instance.

    Parameters
    ----------
    seed:
        Campaign seed, a non-negative integer.
    instance:
        Chip-instance index, a non-negative integer.
    purpose:
        What the numbers are for, e.g. ``"stuck_at"``, ``"d2d"``, ``"wires"``.
    more:
        Further non-negative integers (tile index, copy index, ...) that select an
        independent sub-stream.
    """
    # The count of extra indices is part of the key: SeedSequence zero-pads short
    # entropy, so without it (s, i, p) and (s, i, p, 0) would give the same stream.
    key = [seed, instance, purpose_id(purpose), len(more), *more]
    for name, value in zip(("seed", "instance"), (seed, instance)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    for value in more:
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"stream indices must be non-negative integers, got {value!r}")
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))
