"""The accelerator top as the host sees it: memories, stream words and one layer run.

:mod:`remeco.models.emulation` states the arithmetic; this module states, once, how the
accelerator top (:mod:`remeco.rtl.top`) holds a mapped network and moves data, so the
RTL, the host driver (:mod:`remeco.host.driver`) and the model backend agree:

Elaboration parameters (:class:`FabricConfig`)
    ``column_lanes`` (``L``) physical columns and ``vector_lanes`` (``VL``) input vectors
    are computed at once; the memories hold ``code_words`` words of ``L`` cells and
    ``desc_words`` column descriptors; ``max_fan_in`` bounds a layer's inputs.

Code and fault memories (:func:`layer_code_words`)
    A layer of ``K`` inputs and ``P`` physical columns occupies ``blocks * K`` words from
    its base, ``blocks = ceil(P / L)``: word ``base + b * K + r`` holds row ``r`` of
    physical columns ``b*L .. b*L + L - 1`` (lane ``l`` = column ``b*L + l``; lanes past
    ``P`` are padding and never reach an output). The fault memory has the same shape:
    one 2-bit :mod:`remeco.models.fault_lfsr` entry per cell.

Column descriptors (:func:`descriptor_words`)
    One word per physical column at ``desc_base + p``: ``slice`` in bits ``[3:0]``,
    ``k`` in ``[7:4]``, ``first`` bit 8, ``last`` bit 9, ``end`` bit 10
    (:func:`remeco.models.periphery.column_descriptors`).

Stream words
    Codes: two cells per 32-bit word, lane ``2i`` in bits ``[15:0]``, lane ``2i+1`` in
    ``[31:16]`` (two's complement, the low ``code_bits`` used), ``L / 2`` words per memory
    word (:func:`pack_codes`). Faults: one word per memory word, lane ``l`` in bits
    ``[2l+1:2l]`` (:func:`pack_faults`). Descriptors: one word each. Run inputs: group by
    group of ``VL`` vectors (the last group padded with zero vectors), row by row, one
    word per row, vector ``i`` of the group in byte ``i`` (:func:`pack_inputs`). Run
    outputs: group by group, neuron by neuron, ``VL`` int32 accumulators, padding vectors
    included (:func:`unpack_outputs`).

A run (:func:`run_layer`)
    For every vector: the cell codes as read (fault map applied when enabled), then
    emulation steps 2-4 per tile of ``tile_rows`` rows, step 5 and 6 as the descriptors
    direct them (a running sum per slice restarted by ``first`` and averaged at ``last``;
    a running neuron sum restarted after ``end`` and emitted at ``end``; ``end`` counts only
    on a ``last`` beat, where every mapping puts it) and
    ``to_accumulator``. With the words of a :class:`~remeco.models.mapping.MappedLayer`
    this equals :func:`remeco.models.emulation.emulate_matvec` followed by
    ``to_accumulator`` (``tests/models/test_fabric.py``).

On-chip fault generator (:func:`memory_fault_map`)
    The xorshift32 rule of :func:`remeco.models.fault_lfsr.generate_fault_map`, stepped
    once per cell over fault-memory words ``0 .. words - 1``, lane 0 first in each word.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .emulation import (
    EmulationFormat,
    adc_quantize,
    average_copies,
    emulate_matvec,
    input_bit_planes,
    to_accumulator,
)
from .fault_lfsr import apply_fault_map, generate_fault_map
from .periphery import column_descriptors

__all__ = [
    "FabricConfig",
    "LayerPlacement",
    "MemoryPlan",
    "plan_memory",
    "layer_code_words",
    "descriptor_words",
    "decode_descriptors",
    "pack_codes",
    "unpack_codes",
    "pack_faults",
    "unpack_faults",
    "pack_inputs",
    "unpack_outputs",
    "output_words",
    "memory_fault_map",
    "run_layer",
    "reference_run",
]

_MASK32 = 0xFFFFFFFF
SLICE_BITS_FIELD = 4  # descriptor field widths (fixed: one 32-bit word per column)
K_BITS_FIELD = 4


@dataclass(frozen=True)
class FabricConfig:
    """Elaboration parameters of the accelerator top (read back from its ``CAP_*`` registers).

    Attributes
    ----------
    fmt:
        Numeric format (``fmt.rows`` is the tile height: rows converted together).
    column_lanes:
        Physical columns computed at once (even, at most 16: cells per memory word).
    vector_lanes:
        Input vectors computed at once (``vector_lanes * input_bits <= 32``).
    code_words:
        Depth of the code and fault memories.
    desc_words:
        Depth of the column-descriptor memory.
    max_fan_in:
        Largest layer fan-in ``K`` (depth of the input buffer).
    max_copies_log2:
        Largest ``k`` (``2**k`` copies) a descriptor may carry.
    """

    fmt: EmulationFormat = EmulationFormat()
    column_lanes: int = 16
    vector_lanes: int = 4
    code_words: int = 16384
    desc_words: int = 4096
    max_fan_in: int = 1024
    max_copies_log2: int = 3

    def __post_init__(self) -> None:
        fmt = self.fmt
        if not isinstance(fmt, EmulationFormat):
            raise ValueError(f"fmt must be an EmulationFormat, got {type(fmt).__name__}")
        for name, low, high in (
            ("column_lanes", 2, 16),
            ("vector_lanes", 1, 32 // max(fmt.input_bits, 1)),
            ("code_words", 1, 1 << 24),
            ("desc_words", 1, 1 << 24),
            ("max_fan_in", 1, 65535),
            ("max_copies_log2", 0, (1 << K_BITS_FIELD) - 1),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not low <= v <= high:
                raise ValueError(f"{name} must be an integer in [{low}, {high}], got {v!r}")
        if self.column_lanes % 2:
            raise ValueError(f"column_lanes must be even (two cells per code word), got {self.column_lanes}")
        if fmt.code_bits > 16:
            raise ValueError(f"code_bits must be <= 16 for the code stream, got {fmt.code_bits}")
        if fmt.n_slices > (1 << SLICE_BITS_FIELD):
            raise ValueError(f"n_slices must be <= {1 << SLICE_BITS_FIELD}, got {fmt.n_slices}")
        if fmt.input_bits > 8:
            raise ValueError(f"input_bits must be <= 8 (one byte per vector lane), got {fmt.input_bits}")

    @property
    def words_per_code_word(self) -> int:
        """Stream words per code-memory word."""
        return self.column_lanes // 2

    def format_word(self) -> int:
        """The ``CAP_FORMAT`` register value (:mod:`remeco.rtl.regmap` field layout)."""
        from ..rtl.regmap import field_value

        f = self.fmt
        return field_value(
            "CAP_FORMAT", INPUT_BITS=f.input_bits, CODE_BITS=f.code_bits, CODE_FRAC=f.code_frac,
            ADC_BITS=f.adc_bits, SLICE_BITS=f.slice_bits, N_SLICES=f.n_slices, MAX_COPIES_LOG2=self.max_copies_log2,
        )

    @staticmethod
    def format_from_word(word: int, rows: int) -> tuple[EmulationFormat, int]:
        """``(fmt, max_copies_log2)`` from ``CAP_FORMAT`` and ``CAP_TILE_ROWS`` (``cols = rows``:
        the fabric does not depend on the tile width)."""
        from ..rtl.regmap import field_get

        g = lambda name: field_get("CAP_FORMAT", name, word)  # noqa: E731
        fmt = EmulationFormat(
            rows=rows, cols=rows, slice_bits=g("SLICE_BITS"), n_slices=g("N_SLICES"), input_bits=g("INPUT_BITS"),
            code_bits=g("CODE_BITS"), code_frac=g("CODE_FRAC"), adc_bits=g("ADC_BITS"),
        )
        return fmt, g("MAX_COPIES_LOG2")

    def to_dict(self) -> dict:
        """Plain-data view (JSON-friendly)."""
        d = asdict(self)
        d["fmt"] = self.fmt.to_dict()
        return d


def _check_int(name: str, v: object, low: int, high: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low or (high is not None and v > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {rng}, got {v!r}")
    return int(v)


def _blocks(columns: int, cfg: FabricConfig) -> int:
    return -(-columns // cfg.column_lanes)


@dataclass(frozen=True)
class LayerPlacement:
    """Where one layer (of one committee copy) lives in the fabric's memories."""

    fan_in: int
    columns: int
    neurons: int
    code_base: int
    desc_base: int
    adc_shift: int
    blocks: int

    @property
    def code_words(self) -> int:
        """Code-memory words the layer occupies (``blocks * fan_in``)."""
        return self.blocks * self.fan_in


@dataclass(frozen=True)
class MemoryPlan:
    """Placement of every (copy, layer) of a network: ``layers[copy][layer]``.

    Attributes
    ----------
    layers:
        Nested tuple of :class:`LayerPlacement`.
    code_words, desc_words:
        Words used in the code (and fault) memory and in the descriptor memory.
    """

    layers: tuple
    code_words: int
    desc_words: int


def plan_memory(mapped_layers, adc_shifts, copies: int, cfg: FabricConfig) -> MemoryPlan:
    """Place ``copies`` committee copies of the mapped layers, copy by copy, layer by layer.

    Raises ``ValueError`` naming the memory when the network does not fit the fabric.
    """
    copies = _check_int("copies", copies, 1)
    if len(mapped_layers) != len(adc_shifts):
        raise ValueError(f"{len(mapped_layers)} layers but {len(adc_shifts)} ADC shifts")
    code = desc = 0
    out = []
    for _ in range(copies):
        row = []
        for i, (m, shift) in enumerate(zip(mapped_layers, adc_shifts)):
            if m.fmt != cfg.fmt:
                raise ValueError(f"layer {i} is mapped with another format than the fabric's")
            if m.fan_in > cfg.max_fan_in:
                raise ValueError(f"layer {i} has fan-in {m.fan_in}, the fabric takes at most {cfg.max_fan_in}")
            if int(m.copies_log2.max()) > cfg.max_copies_log2:
                raise ValueError(
                    f"layer {i} has 2**{int(m.copies_log2.max())} copies, the fabric averages at most "
                    f"2**{cfg.max_copies_log2}"
                )
            _check_int(f"adc_shift of layer {i}", shift, 0, 31)
            blocks = _blocks(m.physical_columns, cfg)
            row.append(LayerPlacement(m.fan_in, m.physical_columns, m.neurons, code, desc, int(shift), blocks))
            code += blocks * m.fan_in
            desc += m.physical_columns
        out.append(tuple(row))
    if code > cfg.code_words:
        raise ValueError(f"the network needs {code} code-memory words, the fabric has {cfg.code_words}")
    if desc > cfg.desc_words:
        raise ValueError(f"the network needs {desc} descriptor words, the fabric has {cfg.desc_words}")
    return MemoryPlan(tuple(out), code, desc)


def layer_code_words(codes: np.ndarray, mapped, cfg: FabricConfig) -> np.ndarray:
    """Tile codes ``(row_tiles, col_tiles, rows, cols)`` -> memory words ``(blocks * K, L)``.

    Works for any per-cell array of that shape (codes or fault maps); padding lanes are 0.
    """
    fmt = mapped.fmt
    c = np.asarray(codes)
    want = (mapped.row_tiles, mapped.col_tiles, fmt.rows, fmt.cols)
    if c.shape != want:
        raise ValueError(f"codes must have shape {want}, got {c.shape}")
    k, p, lanes = mapped.fan_in, mapped.physical_columns, cfg.column_lanes
    full = c.transpose(0, 2, 1, 3).reshape(mapped.row_tiles * fmt.rows, -1)[:k, :p]
    blocks = _blocks(p, cfg)
    padded = np.zeros((k, blocks * lanes), dtype=c.dtype)
    padded[:, :p] = full
    return padded.reshape(k, blocks, lanes).transpose(1, 0, 2).reshape(blocks * k, lanes)


def descriptor_words(mapped) -> np.ndarray:
    """The ``P`` descriptor words of a mapped layer (uint32)."""
    d = column_descriptors(mapped)
    p = mapped.physical_columns
    w = (
        d.slice[:p]
        | (d.k[:p] << SLICE_BITS_FIELD)
        | (d.first[:p] << 8)
        | (d.last[:p] << 9)
        | (d.end[:p] << 10)
    )
    return w.astype(np.uint32)


def decode_descriptors(words: np.ndarray) -> dict[str, np.ndarray]:
    """Descriptor words -> ``{"slice", "k", "first", "last", "end"}`` int64 arrays."""
    w = np.asarray(words, dtype=np.int64)
    return {
        "slice": w & ((1 << SLICE_BITS_FIELD) - 1),
        "k": (w >> SLICE_BITS_FIELD) & ((1 << K_BITS_FIELD) - 1),
        "first": (w >> 8) & 1,
        "last": (w >> 9) & 1,
        "end": (w >> 10) & 1,
    }


def pack_codes(words: np.ndarray, cfg: FabricConfig) -> np.ndarray:
    """Code-memory words ``(n, L)`` of signed codes -> stream words ``(n * L / 2,)`` uint32."""
    c = np.asarray(words, dtype=np.int64)
    if c.ndim != 2 or c.shape[1] != cfg.column_lanes:
        raise ValueError(f"code words must have shape (n, {cfg.column_lanes}), got {c.shape}")
    fmt = cfg.fmt
    if c.size and (c.min() < fmt.code_min or c.max() > fmt.code_max):
        raise ValueError(f"codes must be in [{fmt.code_min}, {fmt.code_max}]")
    half = c & 0xFFFF
    return (half[:, 0::2] | (half[:, 1::2] << 16)).reshape(-1).astype(np.uint32)


def unpack_codes(stream: np.ndarray, cfg: FabricConfig) -> np.ndarray:
    """Inverse of :func:`pack_codes` (the low ``code_bits`` of each half, sign-extended)."""
    s = np.asarray(stream, dtype=np.int64) & _MASK32
    if s.size % cfg.words_per_code_word:
        raise ValueError(f"code stream length {s.size} is not a multiple of {cfg.words_per_code_word}")
    bits = cfg.fmt.code_bits
    out = np.empty((s.size // cfg.words_per_code_word, cfg.column_lanes), dtype=np.int64)
    pairs = s.reshape(-1, cfg.words_per_code_word)
    for j, shift in enumerate((0, 16)):
        v = (pairs >> shift) & ((1 << bits) - 1)
        out[:, j::2] = np.where(v >= 1 << (bits - 1), v - (1 << bits), v)
    return out


def pack_faults(words: np.ndarray, cfg: FabricConfig) -> np.ndarray:
    """Fault-memory words ``(n, L)`` of ``{0..3}`` -> stream words ``(n,)`` uint32."""
    f = np.asarray(words, dtype=np.int64)
    if f.ndim != 2 or f.shape[1] != cfg.column_lanes:
        raise ValueError(f"fault words must have shape (n, {cfg.column_lanes}), got {f.shape}")
    if f.size and (f.min() < 0 or f.max() > 3):
        raise ValueError("fault entries must be in [0, 3]")
    shifts = 2 * np.arange(cfg.column_lanes, dtype=np.int64)
    return (f << shifts).sum(axis=1).astype(np.uint32)


def unpack_faults(stream: np.ndarray, cfg: FabricConfig) -> np.ndarray:
    """Inverse of :func:`pack_faults`."""
    s = np.asarray(stream, dtype=np.int64) & _MASK32
    shifts = 2 * np.arange(cfg.column_lanes, dtype=np.int64)
    return (s[:, None] >> shifts) & 3


def pack_inputs(x: np.ndarray, cfg: FabricConfig) -> np.ndarray:
    """Run inputs ``(V, K)`` unsigned -> stream words ``(ceil(V / VL) * K,)`` uint32."""
    xi = np.asarray(x)
    if xi.ndim != 2 or xi.shape[0] < 1 or xi.shape[1] < 1 or not np.issubdtype(xi.dtype, np.integer):
        raise ValueError(f"inputs must be a non-empty integer (vectors, fan_in) array, got {xi.dtype} {xi.shape}")
    top = (1 << cfg.fmt.input_bits) - 1
    if xi.min() < 0 or xi.max() > top:
        raise ValueError(f"inputs must be in [0, {top}]")
    v, k = xi.shape
    vl = cfg.vector_lanes
    groups = -(-v // vl)
    padded = np.zeros((groups * vl, k), dtype=np.int64)
    padded[:v] = xi
    shifts = 8 * np.arange(vl, dtype=np.int64)
    lanes = padded.reshape(groups, vl, k).transpose(0, 2, 1)  # (group, row, lane)
    return (lanes << shifts).sum(axis=2).reshape(-1).astype(np.uint32)


def output_words(vectors: int, neurons: int, cfg: FabricConfig) -> int:
    """Words a run of ``vectors`` vectors and ``neurons`` neurons returns."""
    return -(-vectors // cfg.vector_lanes) * cfg.vector_lanes * neurons


def unpack_outputs(words: np.ndarray, vectors: int, neurons: int, cfg: FabricConfig) -> np.ndarray:
    """Run output words -> int64 accumulators ``(vectors, neurons)`` (padding dropped)."""
    w = np.asarray(words, dtype=np.uint32)
    want = output_words(vectors, neurons, cfg)
    if w.shape != (want,):
        raise ValueError(f"expected {want} output words, got shape {w.shape}")
    vl = cfg.vector_lanes
    acc = w.view(np.int32).astype(np.int64).reshape(-1, neurons, vl).transpose(0, 2, 1).reshape(-1, neurons)
    return acc[:vectors]


def memory_fault_map(seed: int, rate: int, on: int, words: int, cfg: FabricConfig) -> np.ndarray:
    """The fault-memory words ``(words, L)`` the on-chip generator writes."""
    words = _check_int("words", words, 0, cfg.code_words)
    if words == 0:
        return np.zeros((0, cfg.column_lanes), dtype=np.uint8)
    # generate_fault_map visits (tile, column, row) with row innermost: rows = lanes here
    return generate_fault_map(seed, rate, on, 1, cfg.column_lanes, words)[0].T.copy()


def run_layer(
    inputs: np.ndarray,
    code_words: np.ndarray,
    fault_words: np.ndarray | None,
    desc_words: np.ndarray,
    neurons: int,
    adc_shift: int,
    cfg: FabricConfig,
    code_on: int = 0,
    code_off: int = 0,
) -> np.ndarray:
    """One run from memory contents, by the descriptor rules: int64 accumulators ``(V, N)``.

    Parameters
    ----------
    inputs:
        ``(V, K)`` unsigned inputs.
    code_words, fault_words:
        The layer's ``(blocks * K, L)`` words (``fault_words`` ``None``: faults disabled).
    desc_words:
        The layer's ``P`` descriptor words.
    neurons:
        ``N``; the descriptors must close exactly ``N`` neurons (``ValueError`` otherwise,
        where the hardware would never finish the run).
    adc_shift, code_on, code_off:
        Run registers.
    """
    fmt = cfg.fmt
    x = np.asarray(inputs, dtype=np.int64)
    v, k = x.shape
    p = len(desc_words)
    blocks = _blocks(p, cfg)
    c = np.asarray(code_words, dtype=np.int64)
    if c.shape != (blocks * k, cfg.column_lanes):
        raise ValueError(f"code words must have shape {(blocks * k, cfg.column_lanes)}, got {c.shape}")
    if fault_words is not None:
        c = apply_fault_map(c, np.asarray(fault_words), code_on, code_off)
    cells = c.reshape(blocks, k, cfg.column_lanes).transpose(1, 0, 2).reshape(k, -1)[:, :p]  # (K, P)
    planes = input_bit_planes(x, fmt.input_bits)  # (bits, V, K)
    y = np.zeros((v, p), dtype=np.int64)
    for lo in range(0, k, fmt.rows):  # steps 2-4, tile by tile
        acc = planes[:, :, lo : lo + fmt.rows] @ cells[lo : lo + fmt.rows]
        adc = adc_quantize(acc, adc_shift, fmt.adc_bits)
        y += np.tensordot(np.left_shift(np.int64(1), np.arange(fmt.input_bits)), adc, axes=(0, 0))
    d = decode_descriptors(desc_words)
    x_sum = x.sum(axis=1)
    sums = np.zeros((fmt.n_slices, v), dtype=np.int64)
    neuron_sum = np.zeros(v, dtype=np.int64)
    fresh = True
    out = []
    offset_shift = fmt.weight_bits - 1 + fmt.code_frac
    for col in range(p):  # steps 5 and 6 as the streaming hardware does them
        s = int(d["slice"][col])
        if s >= fmt.n_slices:
            raise ValueError(f"descriptor {col} names slice {s}, the format has {fmt.n_slices}")
        sums[s] = (0 if d["first"][col] else sums[s]) + y[:, col]
        if not d["last"][col]:
            continue
        a = average_copies(sums[s], int(d["k"][col]))
        neuron_sum = (0 if fresh else neuron_sum) + (a << (s * fmt.slice_bits))
        fresh = bool(d["end"][col])
        if fresh:
            z = (neuron_sum << adc_shift) - (x_sum << offset_shift)
            out.append(to_accumulator(z, fmt.code_frac))
    if len(out) != neurons:
        raise ValueError(f"the descriptors close {len(out)} neurons, the run expects {neurons}")
    return np.stack(out, axis=1) if out else np.zeros((v, 0), dtype=np.int64)


def reference_run(x: np.ndarray, mapped, codes: np.ndarray, adc_shift: int) -> np.ndarray:
    """What a run of a mapped layer returns on tile codes ``codes``: ``to_accumulator(emulate_matvec(...))``."""
    return to_accumulator(emulate_matvec(x, mapped, codes, adc_shift), mapped.fmt.code_frac)
