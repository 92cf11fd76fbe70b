"""Fixed-point emulation model: THE contract the RTL implements bit for bit.

Everything a digital circuit computes for one crossbar layer, as integer NumPy. Every
width, rounding and saturation rule of the datapath is stated here, once; the RTL
(:mod:`remeco.rtl`) and its benches import these functions and parameters rather than
restating them.

Datapath of one layer (one input vector ``x``: ``K`` unsigned ``input_bits``-bit values)
------------------------------------------------------------------------------------------
1. **Cell codes.** Each cell of a tile holds a signed fixed-point *effective conductance
   code* ``c = clamp(floor((T - g_off) / (g_on - g_off) * (levels - 1) * 2**code_frac + 1/2),
   code_min, code_max)`` where ``T`` is the cell's effective conductance (the crossbar
   transfer matrix: programmed level + programming error + stuck-at override + IR-drop
   attenuation, see :func:`quantize_codes`). Units: ``2**-code_frac`` of one device level.
   A healthy ideal cell at level ``d`` has code ``d << code_frac``. Codes are
   ``code_bits`` wide, two's complement (IR-drop can push a level-0 cell below 0).
2. **Column accumulation** (bit-serial, 1-bit DAC): for input bit ``b``, the rows whose bit
   is 1 are driven; ``acc[b, col] = sum_rows bit * code`` (:func:`column_accumulate`).
   The ``g_off`` baseline is removed *before* the ADC by a reference current
   ``v_read * g_off * popcount`` (known digitally), which is why codes are relative to
   ``g_off``. ``acc`` is exact (``acc_bits`` wide, signed).
3. **ADC** (:func:`adc_quantize`): ``adc = clamp(floor((acc + 2**(s-1)) / 2**s), 0,
   2**adc_bits - 1)`` with ``s = adc_shift`` (a per-layer constant calibrated offline,
   never from the batch being converted); for ``s = 0`` no rounding term. Round half up;
   negative inputs clip to 0 (unsigned converter).
4. **Shift-and-add over input bits** (:func:`shift_add_bits`):
   ``y[col] = sum_tiles sum_b adc[tile, b, col] << b`` (exact, non-negative).
5. **Redundancy averaging** (:func:`average_copies`): a (neuron, slice) with ``2**k``
   physical copies gives ``a = floor((sum_copies y + 2**(k-1)) / 2**k)`` (round half up;
   ``k = 0`` passes ``y`` through). Copies per neuron and slice are independent, so
   sensitive-neuron and MSB plans map onto the same block.
6. **Slice recombination and offset correction** (:func:`combine_slices`):
   ``z = (sum_s a[s] << (slice_bits * s)) << adc_shift  -  (weight_offset * sum_k x_k) << code_frac``.
   ``z`` is the signed dot product ``sum_k x_k w_k`` in units of ``2**-code_frac``
   (``weight_offset = 2**(weight_bits-1)`` undoes the offset encoding ``u = w + offset``).
7. **To accumulator units, bias, ReLU and requantization**: ``acc = round_shift(z,
   code_frac)`` (:func:`to_accumulator`; on an ideal crossbar exactly ``sum_k x_k w_k``),
   ``t = acc + bias``; hidden layers: ``out = clamp(floor((t * multiplier + 2**(shift-1))
   / 2**shift), 0, 255)`` (:func:`requantize`; ReLU is the clamp at 0; ``multiplier`` in
   ``[1, 2**15)``, ``shift`` in ``[0, 62]``); the last layer's logits are ``t`` as int32
   (:func:`final_logits`). From ``acc`` on, this is exactly the integer reference network
   (:meth:`remeco.models.nn.QuantizedNetwork.forward_int`), which uses these functions.

With an ideal crossbar (``T`` exactly at the level conductances), an ADC wide enough not
to clip and ``adc_shift <= code_frac``, steps 1-7 reproduce the integer reference
network exactly; every non-ideality enters only through the codes and the ADC.

Widths (checked by :meth:`EmulationFormat.validate`): all intermediate values are held
exactly in int64 here; the RTL sizes its registers from :meth:`EmulationFormat.widths`,
which are large enough that no step can overflow for the tile size and layer fan-in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "EmulationFormat",
    "round_shift",
    "quantize_codes",
    "column_accumulate",
    "adc_quantize",
    "shift_add_bits",
    "average_copies",
    "combine_slices",
    "to_accumulator",
    "requantize",
    "final_logits",
    "MULTIPLIER_BITS",
    "MAX_SHIFT",
    "input_bit_planes",
    "average_columns",
    "pad_inputs",
    "emulate_matvec",
    "calibrate_adc_shift",
]


def _require_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {rng}, got {value}")
    return int(value)


@dataclass(frozen=True)
class EmulationFormat:
    """Numeric formats of the crossbar datapath (the hardware contract).

    Attributes
    ----------
    rows, cols:
        Crossbar tile size (word lines x bit lines).
    levels:
        Conductance levels per device (``2**slice_bits``).
    slice_bits, n_slices:
        Bits per device and devices (adjacent columns) per weight.
    input_bits:
        Bits of the unsigned input activations, applied bit-serially (1-bit DAC).
    code_bits, code_frac:
        Width (two's complement) and fractional bits of the cell codes.
    adc_bits:
        ADC resolution; the converter is unsigned ``[0, 2**adc_bits - 1]``.
    """

    rows: int = 128
    cols: int = 128
    slice_bits: int = 4
    n_slices: int = 2
    input_bits: int = 8
    code_bits: int = 10
    code_frac: int = 4
    adc_bits: int = 8

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field that is out of range."""
        _require_int("rows", self.rows, 1, 4096)
        _require_int("cols", self.cols, 1, 4096)
        _require_int("slice_bits", self.slice_bits, 1, 8)
        _require_int("n_slices", self.n_slices, 1, 8)
        _require_int("input_bits", self.input_bits, 1, 16)
        _require_int("code_frac", self.code_frac, 0, 12)
        _require_int("adc_bits", self.adc_bits, 1, 24)
        # A code must hold the top level plus one level of headroom, signed.
        need = self.slice_bits + self.code_frac + 2
        _require_int("code_bits", self.code_bits, need, 24)

    # -- derived constants --------------------------------------------------------
    @property
    def levels(self) -> int:
        """Number of device conductance levels."""
        return 1 << self.slice_bits

    @property
    def weight_bits(self) -> int:
        """Bits of a weight (sum of the slice widths)."""
        return self.slice_bits * self.n_slices

    @property
    def weight_offset(self) -> int:
        """Offset added to a signed weight before slicing: ``2**(weight_bits-1)``."""
        return 1 << (self.weight_bits - 1)

    @property
    def code_min(self) -> int:
        """Smallest representable cell code."""
        return -(1 << (self.code_bits - 1))

    @property
    def code_max(self) -> int:
        """Largest representable cell code."""
        return (1 << (self.code_bits - 1)) - 1

    @property
    def adc_max(self) -> int:
        """Largest ADC output code."""
        return (1 << self.adc_bits) - 1

    def widths(self, fan_in: int, max_copies_log2: int = 0, adc_shift: int = 0) -> dict[str, int]:
        """Register widths (bits, two's complement unless noted) that cannot overflow.

        Parameters
        ----------
        fan_in:
            Number of inputs ``K`` of the layer (rows over all row tiles).
        max_copies_log2:
            Largest ``k`` of ``2**k`` redundant copies.
        adc_shift:
            The layer's ADC shift.
        """
        k = _require_int("fan_in", fan_in, 1)
        copies = _require_int("max_copies_log2", max_copies_log2, 0, 8)
        shift = _require_int("adc_shift", adc_shift, 0, 32)
        tiles = -(-k // self.rows)
        acc = self.code_bits + _clog2(self.rows) + 1
        y = self.adc_bits + self.input_bits + _clog2(tiles)  # unsigned
        avg_sum = y + copies  # unsigned
        combined = y + self.slice_bits * (self.n_slices - 1) + _clog2(self.n_slices) + shift + 1
        offset = _clog2(self.weight_offset * k * ((1 << self.input_bits) - 1) + 1) + self.code_frac + 1
        z = max(combined, offset) + 1
        return {"acc": acc, "y": y, "avg_sum": avg_sum, "z": z}

    def to_dict(self) -> dict[str, int]:
        """Plain-data view (JSON-friendly)."""
        return asdict(self)


def _clog2(n: int) -> int:
    """Ceiling of log2 for n >= 1 (0 for n == 1)."""
    return max(int(n) - 1, 0).bit_length()


def round_shift(value: np.ndarray | int, shift: int) -> np.ndarray:
    """``floor((value + 2**(shift-1)) / 2**shift)``: arithmetic shift, round half up.

    ``shift = 0`` returns the value unchanged. Works on signed integers (the floor makes
    ``-1.5`` round to ``-1``, exactly what ``(v + half) >>> shift`` does in hardware).
    """
    shift = _require_int("shift", shift, 0, 62)
    v = np.asarray(value, dtype=np.int64)
    if shift == 0:
        return v.copy()
    return (v + (np.int64(1) << np.int64(shift - 1))) >> np.int64(shift)


def quantize_codes(
    transfer: np.ndarray, g_off: float, g_on: float, fmt: EmulationFormat
) -> np.ndarray:
    """Effective conductances (siemens) -> signed cell codes (step 1 of the datapath).

    ``c = clamp(floor((T - g_off) / lsb + 1/2), code_min, code_max)`` with
    ``lsb = (g_on - g_off) / (levels - 1) / 2**code_frac``.

    Parameters
    ----------
    transfer:
        Effective conductance per cell, e.g. ``NodalCrossbar(...).transfer_matrix``.
    g_off, g_on:
        The device's lowest and highest level conductance.
    fmt:
        Numeric format.
    """
    t = np.asarray(transfer, dtype=np.float64)
    if not np.all(np.isfinite(t)):
        raise ValueError("transfer must be finite (no NaN or inf conductance)")
    if not (np.isfinite(g_off) and np.isfinite(g_on) and 0 <= g_off < g_on):
        raise ValueError(f"need 0 <= g_off < g_on, got g_off={g_off!r}, g_on={g_on!r}")
    lsb = (g_on - g_off) / (fmt.levels - 1) / (1 << fmt.code_frac)
    codes = np.floor((t - g_off) / lsb + 0.5)
    return np.clip(codes, fmt.code_min, fmt.code_max).astype(np.int64)


def input_bit_planes(x: np.ndarray, input_bits: int) -> np.ndarray:
    """Unsigned inputs ``(..., K)`` -> bit planes ``(input_bits, ..., K)`` of 0/1 (LSB first)."""
    xi = np.asarray(x)
    if not np.issubdtype(xi.dtype, np.integer):
        raise ValueError(f"x must be an integer array, got dtype {xi.dtype}")
    if xi.size and (xi.min() < 0 or xi.max() >= (1 << input_bits)):
        raise ValueError(f"x must be in [0, {(1 << input_bits) - 1}] for input_bits={input_bits}")
    xi = xi.astype(np.int64)
    return np.stack([(xi >> b) & 1 for b in range(input_bits)])


def column_accumulate(bits: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Column sums of the driven cells: ``acc[..., col] = sum_row bits[..., row] * codes[row, col]``.

    Parameters
    ----------
    bits:
        0/1 array ``(..., rows)`` (one input bit plane, any leading batch dims).
    codes:
        Cell codes ``(rows, cols)``.
    """
    b = np.asarray(bits, dtype=np.int64)
    c = np.asarray(codes, dtype=np.int64)
    if b.shape[-1] != c.shape[0]:
        raise ValueError(f"bits has {b.shape[-1]} rows but codes has {c.shape[0]}")
    return b @ c


def adc_quantize(acc: np.ndarray, adc_shift: int, adc_bits: int) -> np.ndarray:
    """ADC transfer function: ``clamp(round_shift(acc, adc_shift), 0, 2**adc_bits - 1)``."""
    _require_int("adc_bits", adc_bits, 1, 24)
    return np.clip(round_shift(acc, adc_shift), 0, (1 << adc_bits) - 1)


def shift_add_bits(adc: np.ndarray) -> np.ndarray:
    """Recombine bit-serial conversions: ``adc (input_bits, ..., cols)`` -> ``sum_b adc[b] << b``."""
    a = np.asarray(adc, dtype=np.int64)
    weights = np.left_shift(np.int64(1), np.arange(a.shape[0], dtype=np.int64))
    return np.tensordot(weights, a, axes=(0, 0))


def average_copies(copy_sum: np.ndarray, copies_log2: np.ndarray | int) -> np.ndarray:
    """Average ``2**k`` redundant copies from their sum: ``round_shift(sum, k)`` elementwise."""
    s = np.asarray(copy_sum, dtype=np.int64)
    k = np.broadcast_to(np.asarray(copies_log2, dtype=np.int64), s.shape)
    if k.size and (k.min() < 0 or k.max() > 30):
        raise ValueError("copies_log2 must be in [0, 30]")
    half = np.where(k > 0, np.left_shift(np.int64(1), np.maximum(k - 1, 0)), 0)
    return (s + half) >> k


def combine_slices(
    slice_values: np.ndarray, x_sum: np.ndarray, adc_shift: int, fmt: EmulationFormat
) -> np.ndarray:
    """Slice recombination and offset correction (step 6).

    Parameters
    ----------
    slice_values:
        Averaged slice values ``(n_slices, ..., neurons)``, slice 0 least significant.
    x_sum:
        ``sum_k x_k`` per input vector, shape ``(...,)`` (broadcast over neurons).
    adc_shift:
        The layer's ADC shift.
    fmt:
        Numeric format.

    Returns
    -------
    ``z``: the signed dot products in units of ``2**-code_frac``.
    """
    a = np.asarray(slice_values, dtype=np.int64)
    if a.shape[0] != fmt.n_slices:
        raise ValueError(f"slice_values has {a.shape[0]} slices, format has {fmt.n_slices}")
    shifts = np.arange(fmt.n_slices, dtype=np.int64) * fmt.slice_bits
    y = np.tensordot(np.left_shift(np.int64(1), shifts), a, axes=(0, 0))
    xs = np.asarray(x_sum, dtype=np.int64)[..., None]
    return (y << np.int64(adc_shift)) - ((fmt.weight_offset * xs) << np.int64(fmt.code_frac))


def to_accumulator(z: np.ndarray, code_frac: int) -> np.ndarray:
    """Step 7a: ``round_shift(z, code_frac)``, the dot product in integer accumulator units."""
    return round_shift(z, code_frac)


#: Requantization multiplier width: ``1 <= multiplier < 2**MULTIPLIER_BITS`` (an 18-bit DSP input).
MULTIPLIER_BITS = 15
#: Largest requantization shift.
MAX_SHIFT = 62


def requantize(t: np.ndarray, multiplier: int, shift: int) -> np.ndarray:
    """Step 7b, hidden layers: ReLU + rescale ``t = acc + bias`` to uint8.

    ``out = clamp(floor((t * multiplier + 2**(shift-1)) / 2**shift), 0, 255)``: round half up
    (towards +infinity, also for negative ``t``), then the clamp at 0 is the ReLU and the
    clamp at 255 saturates. ``multiplier / 2**shift`` approximates the real ratio
    ``input_scale * weight_scale / output_scale``. ``t`` must lie in int32.
    """
    t = np.asarray(t)
    if not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"t must be an integer array, got {t.dtype}")
    if isinstance(multiplier, bool) or not 0 < int(multiplier) < (1 << MULTIPLIER_BITS):
        raise ValueError(f"multiplier must be in 1..{(1 << MULTIPLIER_BITS) - 1}, got {multiplier}")
    if not 0 <= int(shift) <= MAX_SHIFT:
        raise ValueError(f"shift must be in 0..{MAX_SHIFT}, got {shift}")
    scaled = t.astype(np.int64) * np.int64(multiplier)
    return np.clip(round_shift(scaled, int(shift)), 0, 255).astype(np.uint8)


def final_logits(t: np.ndarray) -> np.ndarray:
    """Step 7b, last layer: ``t = acc + bias`` as int32 logits (overflow is an error)."""
    out = np.asarray(t, dtype=np.int64)
    if out.size and (out.min() < np.iinfo(np.int32).min or out.max() > np.iinfo(np.int32).max):
        raise ValueError("logits overflow int32")
    return out.astype(np.int32)


# -- a whole layer ----------------------------------------------------------------------


def average_columns(y: np.ndarray, mapped) -> np.ndarray:
    """Per-physical-column values ``(..., P)`` -> averaged slice values ``(n_slices, ..., N)``.

    Sums the copies of every (neuron, slice) and applies :func:`average_copies` with the
    layer's ``copies_log2`` (step 5).
    """
    y = np.asarray(y, dtype=np.int64)
    fmt = mapped.fmt
    lead = y.shape[:-1]
    # Copy sums as one product with a 0/1 selection matrix (exact in float64: every
    # sum is an integer far below 2**53), much faster than a scatter-add.
    select = np.zeros((mapped.physical_columns, fmt.n_slices * mapped.neurons))
    select[np.arange(mapped.physical_columns), mapped.col_slice * mapped.neurons + mapped.col_neuron] = 1.0
    sums = (y.reshape(-1, y.shape[-1]).astype(np.float64) @ select).astype(np.int64)
    sums = sums.reshape((-1, fmt.n_slices, mapped.neurons))
    avg = average_copies(sums, mapped.copies_log2.T[None])
    return np.moveaxis(avg.reshape(lead + (fmt.n_slices, mapped.neurons)), -2, 0)


def pad_inputs(x: np.ndarray, mapped) -> np.ndarray:
    """Inputs ``(..., K)`` -> ``(..., row_tiles, rows)`` with zero padding, validated."""
    fmt = mapped.fmt
    xi = np.asarray(x)
    if xi.ndim < 1 or xi.shape[-1] != mapped.fan_in:
        raise ValueError(f"x must have {mapped.fan_in} inputs on its last axis, got shape {xi.shape}")
    input_bit_planes(xi[..., :0], fmt.input_bits)  # dtype check only
    if xi.size and (xi.min() < 0 or xi.max() >= (1 << fmt.input_bits)):
        raise ValueError(f"x must be in [0, {(1 << fmt.input_bits) - 1}]")
    pad = mapped.row_tiles * fmt.rows - mapped.fan_in
    xp = np.concatenate([xi.astype(np.int64), np.zeros(xi.shape[:-1] + (pad,), np.int64)], axis=-1)
    return xp.reshape(xi.shape[:-1] + (mapped.row_tiles, fmt.rows))


def _check_inputs(x: np.ndarray, mapped) -> np.ndarray:
    """Validate inputs ``(..., K)`` against the layer and the input width."""
    xi = np.asarray(x)
    if xi.ndim < 1 or xi.shape[-1] != mapped.fan_in:
        raise ValueError(f"x must have {mapped.fan_in} inputs on its last axis, got shape {xi.shape}")
    if not np.issubdtype(xi.dtype, np.integer):
        raise ValueError(f"x must be an integer array, got dtype {xi.dtype}")
    if xi.size and (xi.min() < 0 or xi.max() >= (1 << mapped.fmt.input_bits)):
        raise ValueError(f"x must be in [0, {(1 << mapped.fmt.input_bits) - 1}]")
    return xi


def emulate_matvec(x: np.ndarray, mapped, codes: np.ndarray, adc_shift: int) -> np.ndarray:
    """Steps 2-6 for a batch: inputs ``(..., K)`` -> ``z`` ``(..., N)`` (units ``2**-code_frac``).

    Exactly :func:`column_accumulate`, :func:`adc_quantize`, :func:`shift_add_bits`
    (summed over row tiles), :func:`average_columns` and :func:`combine_slices` applied in
    turn (``tests/models/test_emulation.py`` checks it against that composition), computed
    fast: all bit planes of a row tile in one float32 GEMM (exact: every partial sum is an
    integer below 2**24), input vectors that are all zero on a row tile skipped (they
    convert to 0).

    Parameters
    ----------
    x:
        Unsigned integer inputs.
    mapped:
        The :class:`~remeco.models.mapping.MappedLayer`.
    codes:
        Cell codes ``(row_tiles, col_tiles, rows, cols)`` (see :func:`quantize_codes`).
    adc_shift:
        The layer's ADC shift.
    """
    import torch  # the fast path only; the contract functions above are plain NumPy

    fmt = mapped.fmt
    _require_int("adc_shift", adc_shift, 0, 32)
    c = np.asarray(codes)
    want = (mapped.row_tiles, mapped.col_tiles, fmt.rows, fmt.cols)
    if c.shape != want:
        raise ValueError(f"codes must have shape {want}, got {c.shape}")
    xi = _check_inputs(x, mapped)
    lead = xi.shape[:-1]
    xf = xi.reshape(-1, mapped.fan_in)
    small = np.uint8 if fmt.input_bits <= 8 else np.int32
    xf = torch.from_numpy(np.ascontiguousarray(xf, dtype=small))
    p = mapped.physical_columns
    c2 = c.transpose(0, 2, 1, 3).reshape(mapped.row_tiles, fmt.rows, -1)[..., :p]
    if fmt.rows * max(abs(fmt.code_min), fmt.code_max) >= (1 << 24):
        raise ValueError("format too wide for the float32 fast path (rows * |code| >= 2**24)")
    half = float(1 << (adc_shift - 1)) if adc_shift else 0.0
    inv_scale = 1.0 / float(1 << adc_shift)
    bit_weights = torch.tensor([float(1 << b) for b in range(fmt.input_bits)], dtype=torch.float64)
    y = torch.zeros((xf.shape[0], p), dtype=torch.float64)
    for rt in range(mapped.row_tiles):
        lo = rt * fmt.rows
        used = min(fmt.rows, mapped.fan_in - lo)  # padding rows carry input 0
        xt = xf[:, lo : lo + used]
        live = torch.nonzero(xt.any(dim=1)).flatten()
        if live.numel() == 0:
            continue
        xt = xt[live]
        ct = torch.from_numpy(c2[rt, :used].astype(np.float32))
        planes = torch.stack([(xt >> b) & 1 for b in range(fmt.input_bits)]).to(torch.float32)
        acc = planes @ ct  # step 2, (B, live, P)
        adc = torch.floor((acc + half) * inv_scale).clamp_(0, fmt.adc_max)  # step 3
        y.index_add_(0, live, torch.tensordot(bit_weights, adc.to(torch.float64), dims=1))  # step 4
    y_np = y.numpy().astype(np.int64).reshape(lead + (p,))
    slices = average_columns(y_np, mapped)
    x_sum = xi.astype(np.int64).sum(axis=-1)
    return combine_slices(slices, x_sum, adc_shift, fmt)


def calibrate_adc_shift(
    x_calibration: np.ndarray, mapped, codes: np.ndarray, quantile: float = 0.9999
) -> int:
    """Choose a layer's ADC shift offline from calibration inputs (never the batch converted).

    Returns the smallest ``adc_shift`` for which the ``quantile`` of all bit-plane column
    accumulators (on the given codes, normally those of the ideal crossbar) fits the ADC
    without clipping. Clipping the rare top tail buys resolution for the common values.
    The quantile is ``np.quantile``'s (linear interpolation) of all those accumulators.
    """
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile must be in (0, 1], got {quantile!r}")
    fmt = mapped.fmt
    c = np.asarray(codes, dtype=np.int64)
    xp = pad_inputs(x_calibration, mapped)
    c2 = c.transpose(0, 2, 1, 3).reshape(mapped.row_tiles, fmt.rows, -1)[..., : mapped.physical_columns]
    top = _accumulator_quantile(xp.reshape(-1, mapped.row_tiles, fmt.rows), c2, fmt.input_bits, quantile)
    shift = 0
    while shift < 32 and np.floor(top / (1 << shift) + 0.5) > fmt.adc_max:
        shift += 1
    return shift


def _accumulator_quantile(xp: np.ndarray, c2: np.ndarray, input_bits: int, quantile: float) -> float:
    """``np.quantile`` of every bit-plane column sum ``planes[b, n, t] @ c2[t]`` of inputs
    ``xp`` ``(N, tiles, rows)``, without holding them all: they are integers in a known
    range, so a histogram built tile by tile gives the two order statistics the quantile
    interpolates between. Large layers (AlexNet's fc1: 9216 x 8192 cells) would otherwise
    need tens of GB and minutes of int64 einsum for a few calibration images."""
    tiles, rows, _ = c2.shape
    lo, hi = rows * min(int(c2.min(initial=0)), 0), rows * max(int(c2.max(initial=0)), 0)
    n = input_bits * xp.shape[0] * c2.shape[0] * c2.shape[2]
    if n == 0:
        return 0.0
    # float32 products of 0/1 planes and codes are exact while every partial sum is below 2**24
    exact = max(-lo, hi) < (1 << 24)
    counts = np.zeros(hi - lo + 1, dtype=np.int64)
    chunk = max(1, (1 << 24) // max(1, input_bits * c2.shape[2]))  # inputs per step: ~64 MB of sums
    for t in range(tiles):
        ct = c2[t].astype(np.float32 if exact else np.int64)
        for start in range(0, xp.shape[0], chunk):
            x = xp[start : start + chunk, t]
            planes = np.concatenate([(x >> b) & 1 for b in range(input_bits)]).astype(ct.dtype)
            acc = planes @ ct
            bins = acc.astype(np.intp).ravel()
            if lo:
                bins -= lo
            counts += np.bincount(bins, minlength=counts.size)
    # np.quantile, method "linear": the order statistics at floor(q (n - 1)) and the next one
    index = quantile * (n - 1)
    below = int(np.floor(index))
    cumulative = np.cumsum(counts)
    a = float(np.searchsorted(cumulative, below, side="right") + lo)
    b = float(np.searchsorted(cumulative, min(below + 1, n - 1), side="right") + lo)
    gamma = index - below
    # numpy's _lerp, for the same rounding
    return b - (b - a) * (1 - gamma) if gamma >= 0.5 else a + (b - a) * gamma
