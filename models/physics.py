"""Physics model of a mapped layer (float): currents in, ADC codes out.

The same datapath as :mod:`remeco.models.emulation`, but the column signal is an analog
current computed from effective conductances in siemens (the crossbar transfer matrix of
each programmed tile, :class:`remeco.models.crossbar.NodalCrossbar`), with optional read
noise, and converted by an ADC with a fixed, calibrated range. The digital part after the
ADC (shift-and-add, averaging, offset correction) is shared with the emulation model, so
the two differ only in how the column signal is formed:

- physics: ``I = V @ T`` in amperes, ``I_diff = I - v_read * g_off * popcount`` (the
  reference current), ADC input ``I_diff / I_lsb`` with ``I_lsb = v_read * dG * 2**(s - F)``
  (``dG`` = one level step, ``F = code_frac``, ``s = adc_shift``);
- emulation: the same quantity computed from integer cell codes (``T`` rounded to
  ``2**-F`` of a level).

Tolerance (emulation vs physics, no read noise): a code differs from the exact scaled
conductance by at most 1/2, so an accumulator differs by at most ``popcount / 2`` code
units and an ADC output by at most ``floor(popcount / 2**(s+1)) + 1`` LSB; in practice the
rounding errors are independent and cancel (see tests/models/test_physics.py for the
measured agreement).

Input DACs: ``"bit_serial"`` (1-bit DAC, ``input_bits`` conversions per vector; the
hardware contract) or ``"multi_level"`` (one analog vector ``v_read * x / (2**B - 1)`` and
one conversion per vector; here ``adc_shift`` applies to the full-precision sum).
``adc_bits=None`` gives an ideal converter (no rounding, no clipping) and float outputs.
"""

from __future__ import annotations

import numpy as np

from .emulation import (
    EmulationFormat,
    average_columns,
    combine_slices,
    input_bit_planes,
    pad_inputs,
    shift_add_bits,
)

__all__ = ["analog_adc", "physics_matvec"]

_DACS = ("bit_serial", "multi_level")


def analog_adc(signal: np.ndarray, adc_shift: int, adc_bits: int | None) -> np.ndarray:
    """ADC on an analog signal already expressed in code units (``2**-code_frac`` level).

    ``clamp(floor(signal / 2**adc_shift + 1/2), 0, 2**adc_bits - 1)``, the float twin of
    :func:`remeco.models.emulation.adc_quantize`. ``adc_bits=None``: ideal, returns
    ``signal / 2**adc_shift`` unrounded.
    """
    scaled = np.asarray(signal, dtype=np.float64) / float(1 << adc_shift)
    if adc_bits is None:
        return scaled
    return np.clip(np.floor(scaled + 0.5), 0, (1 << adc_bits) - 1).astype(np.int64)


def physics_matvec(
    x: np.ndarray,
    mapped,
    transfer: np.ndarray,
    adc_shift: int,
    *,
    g_off: float,
    g_on: float,
    v_read: float = 0.2,
    dac: str = "bit_serial",
    adc_bits: int | None | str = "format",
    read_noise: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Inputs ``(..., K)`` -> dot products ``z`` ``(..., N)`` in units of ``2**-code_frac``.

    Parameters
    ----------
    x:
        Unsigned integer inputs (``fmt.input_bits`` wide).
    mapped:
        The :class:`~remeco.models.mapping.MappedLayer`.
    transfer:
        Effective conductances ``(row_tiles, col_tiles, rows, cols)`` in siemens.
    adc_shift:
        ADC range setting (LSB = ``2**adc_shift`` code units), calibrated offline.
    g_off, g_on:
        Device level-0 and top-level conductances (siemens).
    v_read:
        Read voltage of a driven word line (volts).
    dac:
        ``"bit_serial"`` or ``"multi_level"``.
    adc_bits:
        ``"format"`` (use ``mapped.fmt.adc_bits``), an integer, or ``None`` (ideal).
    read_noise:
        Relative standard deviation of multiplicative Gaussian noise on every cell's
        effective conductance, drawn anew for every conversion (needs ``rng``).
    rng:
        Generator for read noise.

    Returns
    -------
    int64 ``z`` for a real ADC; float64 for an ideal one.
    """
    fmt: EmulationFormat = mapped.fmt
    if dac not in _DACS:
        raise ValueError(f"dac must be one of {_DACS}, got {dac!r}")
    if isinstance(adc_shift, bool) or not isinstance(adc_shift, (int, np.integer)) or not 0 <= adc_shift <= 32:
        raise ValueError(f"adc_shift must be an integer in [0, 32], got {adc_shift!r}")
    bits = fmt.adc_bits if isinstance(adc_bits, str) and adc_bits == "format" else adc_bits
    if bits is not None and (isinstance(bits, str) or not 1 <= int(bits) <= 24):
        raise ValueError(f"adc_bits must be 'format', None or an integer in [1, 24], got {adc_bits!r}")
    if not (np.isfinite(read_noise) and read_noise >= 0):
        raise ValueError(f"read_noise must be a finite value >= 0, got {read_noise!r}")
    if read_noise > 0 and rng is None:
        raise ValueError("rng is required when read_noise > 0")
    if not (np.isfinite(v_read) and v_read > 0):
        raise ValueError(f"v_read must be a positive voltage, got {v_read!r}")
    t = np.asarray(transfer, dtype=np.float64)
    want = (mapped.row_tiles, mapped.col_tiles, fmt.rows, fmt.cols)
    if t.shape != want:
        raise ValueError(f"transfer must have shape {want}, got {t.shape}")
    if not np.all(np.isfinite(t)) or t.min() < 0:
        raise ValueError("transfer must be finite and non-negative (siemens)")

    xp = pad_inputs(x, mapped)  # (..., RT, rows)
    t2 = t.transpose(0, 2, 1, 3).reshape(mapped.row_tiles, fmt.rows, -1)  # (RT, rows, CT*cols)
    # One level step, in code units: the ADC sees (I - I_ref) / (v_read * dG) * 2**F.
    d_g = (g_on - g_off) / (fmt.levels - 1)
    to_code_units = float(1 << fmt.code_frac) / d_g

    def conversion_signal(drive: np.ndarray) -> np.ndarray:
        """drive: (..., RT, rows) in units of v_read -> ADC input (..., RT, CT*cols)."""
        tt = t2
        if read_noise > 0:
            tt = np.clip(t2 * (1.0 + read_noise * rng.standard_normal(t2.shape)), 0.0, None)
        # One BLAS product per row tile (einsum would not use BLAS here); padding rows
        # of the last tile carry no input and are left out.
        current = np.empty(drive.shape[:-1] + (tt.shape[-1],))
        for rt in range(mapped.row_tiles):
            used = min(fmt.rows, mapped.fan_in - rt * fmt.rows)
            current[..., rt, :] = (drive[..., rt, :used] * v_read) @ tt[rt, :used]
        reference = v_read * g_off * drive.sum(axis=-1, keepdims=True)
        return (current - reference) / v_read * to_code_units

    if dac == "bit_serial":
        planes = input_bit_planes(xp, fmt.input_bits).astype(np.float64)
        adc = np.stack([analog_adc(conversion_signal(p), adc_shift, bits) for p in planes])
        y = shift_add_bits(adc) if bits is not None else np.tensordot(
            2.0 ** np.arange(fmt.input_bits), adc, axes=(0, 0)
        )
    else:
        full = (1 << fmt.input_bits) - 1
        # The analog vector carries x / full; scaling back by full puts it on the same
        # code-unit scale as the bit-serial sum over b of acc_b << b.
        y = analog_adc(conversion_signal(xp / full) * full, adc_shift, bits)
    y = y.sum(axis=-2)[..., : mapped.physical_columns]
    x_sum = np.asarray(x, dtype=np.int64).sum(axis=-1)
    if bits is None:
        return _combine_float(y, mapped, x_sum, adc_shift)
    return combine_slices(average_columns(y, mapped), x_sum, adc_shift, fmt)


def _combine_float(y: np.ndarray, mapped, x_sum: np.ndarray, adc_shift: int) -> np.ndarray:
    """Ideal-ADC twin of average_columns + combine_slices (exact means, no rounding)."""
    fmt = mapped.fmt
    lead = y.shape[:-1]
    sums = np.zeros((fmt.n_slices, mapped.neurons) + lead)
    np.add.at(sums, (mapped.col_slice, mapped.col_neuron), np.moveaxis(y, -1, 0))
    counts = (2.0 ** mapped.copies_log2.T).reshape((fmt.n_slices, mapped.neurons) + (1,) * len(lead))
    avg = np.moveaxis(sums / counts, 1, -1)
    weights = 2.0 ** (np.arange(fmt.n_slices) * fmt.slice_bits)
    total = np.tensordot(weights, avg, axes=(0, 0)) * float(1 << adc_shift)
    return total - fmt.weight_offset * float(1 << fmt.code_frac) * np.asarray(x_sum, np.float64)[..., None]
