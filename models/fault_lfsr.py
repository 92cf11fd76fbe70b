"""Run-time stuck-at fault injection of the behavioral crossbar tile (the RTL contract).

The FPGA crossbar keeps a fault map beside the cell codes and applies it at read time,
so faults can be injected, changed and cleared without reloading the weights. This
module defines, once, the two rules the RTL (:mod:`remeco.rtl.crossbar`) implements:

Fault map and its application (:func:`apply_fault_map`)
    One 2-bit entry per cell. Bit 0 = *stuck*, bit 1 = *stuck on* (meaningful only when
    stuck): ``0`` and ``2`` healthy, ``1`` (:data:`FAULT_OFF`) stuck at off, ``3``
    (:data:`FAULT_ON`) stuck at on. A stuck cell reads as the fixed code ``code_off`` or
    ``code_on`` (two run-time registers, signed ``code_bits``, e.g. the codes of the
    ``g_off`` and ``g_on`` levels), whatever code was programmed.

On-chip fault generator (:func:`generate_fault_map`)
    A xorshift32 generator (Marsaglia's linear-feedback shift register with the
    ``(13, 17, 5)`` triple; period ``2**32 - 1``) steps once per cell. Cells are visited
    tile by tile, column by column, row by row (row innermost). After each step the new
    state ``s`` decides the cell: faulty iff ``s & 0xFFFF < rate_threshold``; a faulty
    cell is stuck on iff ``s >> 16 < on_threshold``. Thresholds are in ``[0, 65536]``
    (``65536`` means always), so the fault rate is ``rate_threshold / 65536`` and the
    stuck-on fraction ``on_threshold / 65536``. The seed is the initial state; seed 0
    (a fixed point of xorshift) is replaced by 1.

Maps are indexed like one layer's codes with the tile axes flattened:
``(tiles, rows, cols)``, tile ``t = row_tile * col_tiles + col_tile``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "FAULT_NONE",
    "FAULT_OFF",
    "FAULT_ON",
    "THRESHOLD_ONE",
    "xorshift32",
    "rate_threshold",
    "generate_fault_map",
    "apply_fault_map",
]

FAULT_NONE = 0
FAULT_OFF = 1
FAULT_ON = 3
#: Threshold value meaning "always" (probability 1).
THRESHOLD_ONE = 1 << 16

_MASK32 = 0xFFFFFFFF


def xorshift32(state: int) -> int:
    """One step of the generator: ``s ^= s << 13; s ^= s >> 17; s ^= s << 5`` (32 bits)."""
    s = int(state) & _MASK32
    s ^= (s << 13) & _MASK32
    s ^= s >> 17
    s ^= (s << 5) & _MASK32
    return s


def rate_threshold(probability: float) -> int:
    """The threshold for a probability: ``round(p * 65536)``, in ``[0, 65536]``."""
    p = float(probability)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {probability!r}")
    return int(round(p * THRESHOLD_ONE))


def _check_threshold(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not 0 <= value <= THRESHOLD_ONE:
        raise ValueError(f"{name} must be in [0, {THRESHOLD_ONE}], got {value}")
    return int(value)


def generate_fault_map(
    seed: int, rate: int, on: int, tiles: int, rows: int, cols: int
) -> np.ndarray:
    """The fault map the on-chip generator writes, ``(tiles, rows, cols)`` of ``{0, 1, 3}``.

    Parameters
    ----------
    seed:
        32-bit seed (initial generator state; 0 means 1).
    rate, on:
        Fault-rate and stuck-on thresholds in ``[0, 65536]`` (see :func:`rate_threshold`).
    tiles, rows, cols:
        Shape of the map.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= _MASK32:
        raise ValueError(f"seed must be a 32-bit unsigned integer, got {seed!r}")
    rate = _check_threshold("rate", rate)
    on = _check_threshold("on", on)
    for name, v in (("tiles", tiles), ("rows", rows), ("cols", cols)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    state = int(seed) or 1
    out = np.zeros((tiles, cols, rows), dtype=np.uint8)
    flat = out.reshape(-1)  # visiting order: tile, column, row (row innermost)
    for i in range(flat.size):
        state = xorshift32(state)
        if (state & 0xFFFF) < rate:
            flat[i] = FAULT_ON if (state >> 16) < on else FAULT_OFF
    return out.transpose(0, 2, 1).copy()


def apply_fault_map(
    codes: np.ndarray, fault_map: np.ndarray, code_on: int, code_off: int
) -> np.ndarray:
    """Cell codes as the faulty crossbar reads them.

    ``where(fault & 1, where(fault & 2, code_on, code_off), codes)``, elementwise.

    Parameters
    ----------
    codes:
        Programmed cell codes (any shape).
    fault_map:
        2-bit fault entries, same shape as ``codes``.
    code_on, code_off:
        Codes read from stuck-on and stuck-off cells.
    """
    c = np.asarray(codes, dtype=np.int64)
    f = np.asarray(fault_map)
    if f.shape != c.shape:
        raise ValueError(f"fault_map has shape {f.shape}, codes have {c.shape}")
    if not np.issubdtype(f.dtype, np.integer) or (f.size and (f.min() < 0 or f.max() > 3)):
        raise ValueError("fault_map entries must be integers in [0, 3]")
    f = f.astype(np.int64)
    stuck = (f & 1) == 1
    on = (f & 2) == 2
    return np.where(stuck, np.where(on, np.int64(code_on), np.int64(code_off)), c)
