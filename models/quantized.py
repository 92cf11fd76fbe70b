"""The exported integer network: plain arrays and numbers, NumPy only (no torch).

This is what inference needs, on a PC or on a board without torch: the layers
(:class:`QuantizedLayer`), the whole network with its integer reference inference
(:meth:`QuantizedNetwork.forward_int`: im2col, exact int32 accumulation, requantization,
ReLU and max pooling on the codes) and its plain-data ``.npz`` persistence. The
quantization scheme itself, the fake-quant training that produces these integers and
:func:`remeco.models.nn.export` are in :mod:`remeco.models.nn`, which re-exports every
name defined here; requantization is the emulation contract's
(:func:`remeco.models.emulation.requantize`), so the RTL, the fabric model and this
reference round alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .cachefile import usual_mode
from .emulation import MAX_SHIFT as _CONTRACT_MAX_SHIFT
from .emulation import MULTIPLIER_BITS as _CONTRACT_MULTIPLIER_BITS
from .emulation import requantize as _contract_requantize

if TYPE_CHECKING:
    from .data import Dataset

__all__ = [
    "MULTIPLIER_BITS",
    "MAX_SHIFT",
    "FORMAT_VERSION",
    "quantize_multiplier",
    "requantize",
    "im2col",
    "exact_matmul",
    "MatmulFn",
    "QuantizedLayer",
    "QuantizedNetwork",
    "atomic_savez",
]

#: Bits of the requantization multiplier: ``2**(MULTIPLIER_BITS-1) <= M < 2**MULTIPLIER_BITS``.
MULTIPLIER_BITS = _CONTRACT_MULTIPLIER_BITS
#: Largest shift :func:`requantize` accepts (``acc * M`` stays well inside int64).
MAX_SHIFT = _CONTRACT_MAX_SHIFT
#: Version of the quantization scheme and of the ``qnet.*`` file layout; bump when either changes.
FORMAT_VERSION = 1
_INT32_MAX = 2**31 - 1


# ----------------------------------------------------------------------------- fixed point


def quantize_multiplier(ratio: float) -> tuple[int, int]:
    """Fixed-point form ``M / 2**shift`` of a positive real scale ratio.

    ``ratio = m * 2**e`` with ``0.5 <= m < 1``; ``M = floor(m * 2**15 + 1/2)`` (round
    half up) so ``2**14 <= M < 2**15``, and ``shift = 15 - e``. If the rounding
    reaches ``2**15``, ``M`` becomes ``2**14`` and ``shift`` drops by one. The
    relative error of ``M / 2**shift`` is at most ``2**-15``.

    Parameters
    ----------
    ratio:
        Positive, finite real ratio (``s_in * s_w / s_out`` for a layer).

    Returns
    -------
    (int, int)
        ``multiplier`` and ``shift``.

    Raises
    ------
    ValueError
        If ``ratio`` is not positive and finite, or ``shift`` would leave 0..62.
    """
    if not (math.isfinite(ratio) and ratio > 0):
        raise ValueError(f"ratio must be positive and finite, got {ratio!r}")
    mantissa, exponent = math.frexp(ratio)
    multiplier = math.floor(mantissa * 2**MULTIPLIER_BITS + 0.5)
    if multiplier == 2**MULTIPLIER_BITS:
        multiplier, exponent = multiplier // 2, exponent + 1
    shift = MULTIPLIER_BITS - exponent
    if not 0 <= shift <= MAX_SHIFT:
        raise ValueError(f"ratio {ratio!r} needs shift {shift}, outside 0..{MAX_SHIFT}")
    return multiplier, shift


def requantize(acc: np.ndarray, multiplier: int, shift: int) -> np.ndarray:
    """Scale int32 accumulators to unsigned 8-bit activation codes.

    ``out = clamp(floor(acc * multiplier / 2**shift + 1/2), 0, 255)``, computed in
    int64 as ``(acc * multiplier + 2**(shift-1)) >> shift`` (arithmetic shift, i.e.
    floor; so exact halves round *up*, towards +infinity, also for negative values),
    then clamped. The clamp at 0 is the ReLU; the clamp at 255 saturates. With
    ``shift = 0`` there is nothing to round.

    Parameters
    ----------
    acc:
        Integer accumulators (int32, or any integer dtype with values in int32).
    multiplier:
        Positive integer below ``2**15`` (:data:`MULTIPLIER_BITS`).
    shift:
        Right shift, 0..62.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of the shape of ``acc``.

    Raises
    ------
    ValueError
        If ``multiplier`` or ``shift`` is out of range or ``acc`` is not integer.
    """
    acc = np.asarray(acc)
    if not np.issubdtype(acc.dtype, np.integer):
        raise ValueError(f"acc must be an integer array, got {acc.dtype}")
    # One implementation of the rule: the emulation contract's step 7 (the RTL follows it).
    return _contract_requantize(acc, multiplier, shift)


def im2col(x: np.ndarray, kernel: int, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Unfold image patches into rows, one row per output position.

    Parameters
    ----------
    x:
        Activations ``(N, C, H, W)`` (any dtype; uint8 codes in the integer path).
        Padding inserts zeros, which is code 0 = real 0 (zero point 0).
    kernel, stride, padding:
        Square convolution geometry.

    Returns
    -------
    numpy.ndarray
        ``(N * Ho * Wo, C * kernel * kernel)``; rows ordered by image, output row,
        output column; columns ordered by (channel, kernel row, kernel column), the
        order of ``weight.reshape(out_channels, -1)`` for a torch weight
        ``(out, in, k, k)``.
    """
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    n, c = x.shape[:2]
    windows = sliding_window_view(x, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
    ho, wo = windows.shape[2:4]
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kernel * kernel)


# ----------------------------------------------------------------------------- integer network

MatmulFn = Callable[[int, "QuantizedLayer", np.ndarray], np.ndarray]


@dataclass(eq=False)
class QuantizedLayer:
    """One layer of the exported integer network, ready for crossbar mapping.

    Parameters
    ----------
    kind:
        ``"conv"`` or ``"dense"``.
    weight:
        ``int8`` ``(in_features, out_features)`` matrix: one crossbar row per input,
        one column (neuron) per output. For a conv layer the rows follow
        :func:`im2col` order (channel, kernel row, kernel column). Values -127..127.
    bias:
        ``int32`` ``(out_features,)`` in accumulator units ``input_scale * weight_scale``.
    weight_shape:
        Original torch weight shape, ``(out, in, k, k)`` or ``(out, in)``.
    input_shape:
        Shape of one input activation: ``(C, H, W)`` for conv, ``(F,)`` for dense.
    kernel, stride, padding:
        Convolution geometry (1, 1, 0 for dense).
    pool:
        Non-overlapping max-pool window after the activation (1 = none).
    input_scale, weight_scale:
        Real value of one input code / one weight code.
    output_scale:
        Real value of one output code; for the last layer, of one accumulator unit.
    multiplier, shift:
        Requantization ``M / 2**shift ~= input_scale * weight_scale / output_scale``
        (see :func:`requantize`); 0, 0 for the last layer.
    relu:
        True for hidden layers (ReLU via the clamp at 0), False for the last layer,
        which returns int32 accumulators.
    """

    kind: str
    weight: np.ndarray
    bias: np.ndarray
    weight_shape: tuple[int, ...]
    input_shape: tuple[int, ...]
    kernel: int
    stride: int
    padding: int
    pool: int
    input_scale: float
    weight_scale: float
    output_scale: float
    multiplier: int
    shift: int
    relu: bool

    def __post_init__(self) -> None:
        self.weight_shape = tuple(int(v) for v in self.weight_shape)
        self.input_shape = tuple(int(v) for v in self.input_shape)
        if self.weight.dtype != np.int8 or self.weight.ndim != 2:
            raise ValueError(f"weight must be a 2-D int8 matrix, got {self.weight.dtype} {self.weight.shape}")
        if self.bias.dtype != np.int32 or self.bias.shape != (self.weight.shape[1],):
            raise ValueError(
                f"bias must be int32 of shape ({self.weight.shape[1]},), got {self.bias.dtype} {self.bias.shape}"
            )
        if self.weight.size and int(self.weight.min()) < -127:
            raise ValueError("weight codes must lie in -127..127")
        self._check_geometry()
        # The exact accumulator must fit int32 for any uint8 input.
        bound = self.in_features * 255 * 127 + int(np.abs(self.bias.astype(np.int64)).max(initial=0))
        if bound > _INT32_MAX:
            raise OverflowError(f"{self.kind} layer with {self.in_features} inputs may overflow an int32 accumulator")

    def _check_geometry(self) -> None:
        """Raise ``ValueError`` for geometry or requantization values the layer cannot be run
        with (a loaded file is checked against what the arrays will be used for: sizes,
        slices and shifts, so it fails here in one line rather than deep inside inference)."""
        if self.kind not in ("conv", "dense"):
            raise ValueError(f"layer kind must be 'conv' or 'dense', got {self.kind!r}")
        for name, low in (("kernel", 1), ("stride", 1), ("padding", 0), ("pool", 1), ("multiplier", 0), ("shift", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        if not isinstance(self.relu, (bool, np.bool_)):
            raise ValueError(f"relu must be true or false, got {self.relu!r}")
        if math.prod(self.weight_shape) != self.weight.size:
            raise ValueError(f"weight_shape {self.weight_shape} does not hold the {self.weight.shape} weight matrix")
        if self.kind == "dense":
            if self.input_shape != (self.in_features,):
                raise ValueError(f"a dense layer's input_shape must be ({self.in_features},) (its weight rows), "
                                 f"got {self.input_shape}")
        else:
            if len(self.input_shape) != 3 or min(self.input_shape) < 1:
                raise ValueError(f"a conv layer's input_shape must be (C, H, W), got {self.input_shape}")
            c = self.input_shape[0]
            if c * self.kernel * self.kernel != self.in_features:
                raise ValueError(f"a conv layer of {c} channels and kernel {self.kernel} has {c * self.kernel ** 2} "
                                 f"weight rows, the weight matrix {self.in_features}")
            h, w = self.positions
            if min(h, w) < 1 or min(h, w) < self.pool:
                raise ValueError(f"kernel {self.kernel}, stride {self.stride}, padding {self.padding} and pool "
                                 f"{self.pool} leave no output of the {self.input_shape[1:]} input")
        if self.relu:
            if not 0 < int(self.multiplier) < (1 << MULTIPLIER_BITS) or not 0 <= int(self.shift) <= MAX_SHIFT:
                raise ValueError(f"requantization multiplier {self.multiplier} / shift {self.shift} outside "
                                 f"1..{(1 << MULTIPLIER_BITS) - 1} / 0..{MAX_SHIFT}")

    @property
    def in_features(self) -> int:
        """Crossbar rows: inputs per output neuron."""
        return int(self.weight.shape[0])

    @property
    def out_features(self) -> int:
        """Crossbar columns (before bit slicing): output neurons / channels."""
        return int(self.weight.shape[1])

    @property
    def positions(self) -> tuple[int, int]:
        """Conv output height and width before pooling ((1, 1) for dense)."""
        if self.kind == "dense":
            return (1, 1)
        _, h, w = self.input_shape
        return (
            (h + 2 * self.padding - self.kernel) // self.stride + 1,
            (w + 2 * self.padding - self.kernel) // self.stride + 1,
        )

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of one output activation after pooling."""
        if self.kind == "dense":
            return (self.out_features,)
        h, w = self.positions
        return (self.out_features, h // self.pool, w // self.pool)

    def input_rows(self, x: np.ndarray) -> np.ndarray:
        """The crossbar input vectors of a batch: im2col rows or flattened features.

        Parameters
        ----------
        x:
            ``uint8`` activations ``(N, *input_shape)`` (a dense layer also accepts
            ``(N, C, H, W)`` and flattens it in C, H, W order).

        Returns
        -------
        numpy.ndarray
            ``uint8`` ``(N * positions, in_features)``.
        """
        if self.kind == "conv":
            return im2col(x, self.kernel, self.stride, self.padding)
        return x.reshape(len(x), -1)

    def output_from_acc(self, acc: np.ndarray, n_images: int) -> np.ndarray:
        """Finish the layer from accumulators that already include the bias.

        Parameters
        ----------
        acc:
            Integer ``(N * positions, out_features)`` accumulators.
        n_images:
            N.

        Returns
        -------
        numpy.ndarray
            ``uint8`` activations ``(N, *output_shape)`` for hidden layers
            (requantize, then max pool), ``int32`` ``(N, out_features)`` for the last
            layer.
        """
        if not self.relu:
            return acc.astype(np.int32).reshape(n_images, -1)
        return self.arrange_outputs(requantize(acc, self.multiplier, self.shift), n_images)

    def arrange_outputs(self, codes: np.ndarray, n_images: int) -> np.ndarray:
        """Requantized uint8 ``(N * positions, out_features)`` -> the next layer's activations.

        Dense: ``(N, out_features)``; conv: ``(N, C, H, W)`` after max pooling. Shared by
        :meth:`output_from_acc` and the fast engine (:mod:`remeco.models.engine`).
        """
        if self.kind == "dense":
            return codes.reshape(n_images, self.out_features)
        h, w = self.positions
        codes = codes.reshape(n_images, h, w, self.out_features).transpose(0, 3, 1, 2)
        p = self.pool
        if p > 1:
            hp, wp = h // p, w // p
            codes = codes[:, :, : hp * p, : wp * p].reshape(n_images, self.out_features, hp, p, wp, p).max(axis=(3, 5))
        return np.ascontiguousarray(codes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuantizedLayer):
            return NotImplemented
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray):
                if not (isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)):
                    return False
            elif a != b or type(a) is not type(b):
                return False
        return True

    __hash__ = None  # mutable container of arrays


def _jsonable(value: object) -> object:
    """Tuples become lists for JSON (turned back into tuples on load)."""
    return list(value) if isinstance(value, tuple) else value


def exact_matmul(rows: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Exact integer product ``rows @ weight`` as int64, through float64 BLAS.

    Every product of a uint8 code and an int8 weight is below 2**15 in magnitude,
    so every partial sum of fewer than 2**38 terms is an integer below 2**53 and
    float64 represents it exactly, in any summation order. This is much faster than
    NumPy's integer matmul, which has no BLAS.

    Parameters
    ----------
    rows:
        ``(R, K)`` uint8 (or small integer) inputs.
    weight:
        ``(K, C)`` int8 weights.

    Returns
    -------
    numpy.ndarray
        ``int64`` ``(R, C)``.
    """
    return (rows.astype(np.float64) @ weight.astype(np.float64)).astype(np.int64)


@dataclass(eq=False)
class QuantizedNetwork:
    """An exported integer network: plain arrays and numbers, no torch.

    Parameters
    ----------
    name:
        Network name.
    input_shape:
        ``(C, H, W)`` of the uint8 input images.
    num_classes:
        Number of logits.
    layers:
        The layers in order; the last one returns int32 accumulators.
    """

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    layers: list[QuantizedLayer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.input_shape = tuple(int(v) for v in self.input_shape)
        if self.layers:
            self._check_chain()

    def _check_chain(self) -> None:
        """Raise ``ValueError`` unless every layer takes what the one before gives, hidden
        layers end in ReLU (uint8 activations) and the last gives ``num_classes`` logits."""
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ValueError(f"input_shape must be (C, H, W), got {self.input_shape}")
        shape = self.input_shape
        for index, layer in enumerate(self.layers):
            if not isinstance(layer, QuantizedLayer):
                raise ValueError(f"layer {index} must be a QuantizedLayer, got {type(layer).__name__}")
            fits = layer.input_shape == shape if layer.kind == "conv" else layer.in_features == int(np.prod(shape))
            if not fits:
                raise ValueError(f"layer {index} ({layer.kind}) takes {layer.input_shape}, the layer before gives {shape}")
            if layer.relu != (index < len(self.layers) - 1):
                raise ValueError(f"layer {index}: every layer but the last must have relu true, the last false")
            shape = layer.output_shape
        last = self.layers[-1].out_features
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, (int, np.integer)) \
                or self.num_classes != last:
            raise ValueError(f"num_classes must equal the last layer's {last} outputs, got {self.num_classes!r}")

    def forward_int(
        self, images: np.ndarray, *, batch_size: int = 64, matmul: MatmulFn | None = None
    ) -> np.ndarray:
        """Integer reference inference.

        Per layer: :meth:`QuantizedLayer.input_rows` (im2col of the uint8
        activations), ``acc = rows @ W + bias`` in int32 (exact), then for hidden
        layers :func:`requantize` (round half up, clamp 0..255, i.e. ReLU) and uint8
        max pooling; the last layer's accumulators are the logits.

        Parameters
        ----------
        images:
            ``uint8`` ``(N, C, H, W)`` raw pixels.
        batch_size:
            Images per chunk (bounds the im2col memory).
        matmul:
            Optional replacement of the exact product, called as
            ``matmul(layer_index, layer, rows)`` with uint8 rows
            ``(R, in_features)`` and returning integer ``(R, out_features)``
            accumulators *without* the bias; this is where a crossbar emulation plugs
            in (it must saturate its own accumulators if it wants saturation).
            Default: :func:`exact_matmul`.

        Returns
        -------
        numpy.ndarray
            ``int32`` ``(N, num_classes)`` logits in accumulator units.

        Raises
        ------
        ValueError
            If ``images`` is not uint8 of the input shape.
        OverflowError
            If an accumulator plus bias leaves the int32 range (impossible with the
            exact product, see :class:`QuantizedLayer`).
        """
        images = np.asarray(images)
        if images.dtype != np.uint8 or tuple(images.shape[1:]) != self.input_shape:
            raise ValueError(
                f"images must be uint8 of shape (N, {self.input_shape}), got {images.dtype} {images.shape}"
            )
        outputs = []
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size]
            n = len(x)
            for index, layer in enumerate(self.layers):
                rows = layer.input_rows(x)
                if matmul is None:
                    acc = exact_matmul(rows, layer.weight)
                else:
                    acc = np.asarray(matmul(index, layer, rows)).astype(np.int64)
                acc = acc + layer.bias.astype(np.int64)
                if acc.size and (acc.max() > _INT32_MAX or acc.min() < -_INT32_MAX - 1):
                    raise OverflowError(f"layer {index}: accumulator outside int32")
                x = layer.output_from_acc(acc.astype(np.int32), n)
            outputs.append(x)
        if not outputs:
            return np.zeros((0, self.num_classes), np.int32)
        return np.concatenate(outputs).astype(np.int32)

    def predict(self, images: np.ndarray, **kwargs) -> np.ndarray:
        """Predicted classes (``argmax`` of :meth:`forward_int`, first index on ties).

        Parameters
        ----------
        images:
            ``uint8`` ``(N, C, H, W)``.
        **kwargs:
            Passed to :meth:`forward_int`.

        Returns
        -------
        numpy.ndarray
            ``int64`` ``(N,)``.
        """
        return self.forward_int(images, **kwargs).argmax(axis=1)

    def accuracy(self, dataset: Dataset, **kwargs) -> float:
        """Top-1 accuracy (0..1) of the integer reference on a data set.

        Parameters
        ----------
        dataset:
            Images and labels.
        **kwargs:
            Passed to :meth:`forward_int`.

        Returns
        -------
        float
        """
        return float(np.mean(self.predict(dataset.images, **kwargs) == dataset.labels))

    @property
    def num_parameters(self) -> int:
        """Weights plus biases."""
        return sum(layer.weight.size + layer.bias.size for layer in self.layers)

    # -- plain-data persistence ---------------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        """All content as a flat dict of arrays (no objects; ``.npz`` friendly).

        Returns
        -------
        dict
            ``"qnet.meta"``: JSON text (a 0-d unicode array) with names, shapes,
            geometry, scales (Python ``repr`` floats, which round-trip exactly),
            multipliers and shifts; ``"qnet.<i>.weight"`` and ``"qnet.<i>.bias"``.
        """
        meta = {
            "format": FORMAT_VERSION,
            "name": self.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "layers": [
                {
                    f.name: _jsonable(getattr(layer, f.name))
                    for f in dataclasses.fields(layer)
                    if f.name not in ("weight", "bias")
                }
                for layer in self.layers
            ],
        }
        arrays = {"qnet.meta": np.array(json.dumps(meta))}
        for index, layer in enumerate(self.layers):
            arrays[f"qnet.{index}.weight"] = layer.weight
            arrays[f"qnet.{index}.bias"] = layer.bias
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray] | np.lib.npyio.NpzFile) -> "QuantizedNetwork":
        """Inverse of :meth:`to_arrays`.

        Parameters
        ----------
        arrays:
            Mapping with the keys written by :meth:`to_arrays` (other keys ignored).

        Returns
        -------
        QuantizedNetwork

        Raises
        ------
        ValueError
            If the format version is not the one this code writes.
        """
        meta = json.loads(str(arrays["qnet.meta"][()]))
        if not isinstance(meta, dict):
            raise ValueError(f"qnet.meta must be a JSON object, got {type(meta).__name__}")
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"quantized network format {meta.get('format')!r}, expected {FORMAT_VERSION}")
        if not isinstance(meta.get("name"), str) or not isinstance(meta.get("layers"), list) or not meta["layers"] \
                or not all(isinstance(f, dict) for f in meta["layers"]):
            raise ValueError("qnet.meta must hold a name and a non-empty list of layer objects")
        layers = []
        for index, fields in enumerate(meta["layers"]):
            layers.append(
                QuantizedLayer(
                    weight=np.array(arrays[f"qnet.{index}.weight"]),
                    bias=np.array(arrays[f"qnet.{index}.bias"]),
                    **{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()},
                )
            )
        return cls(meta["name"], tuple(meta["input_shape"]), meta["num_classes"], layers)

    def sha256(self) -> str:
        """The network's identity: SHA-256 (hex) over :meth:`to_arrays` in key order (each
        key's text, then its array's bytes in native order: the same on every little-endian
        machine). Equal networks, equal digests;
        ``remeco train --json`` prints it and ``remeco reproduce`` names the network file
        by its first 16 digits."""
        digest = hashlib.sha256()
        for key, value in sorted(self.to_arrays().items()):
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        return digest.hexdigest()

    def save(self, path: str | Path) -> None:
        """Write to an ``.npz`` file atomically (temporary file, then rename).

        Parameters
        ----------
        path:
            Destination file.
        """
        atomic_savez(Path(path), self.to_arrays())

    @classmethod
    def load(cls, path: str | Path) -> "QuantizedNetwork":
        """Read a network written by :meth:`save` (no pickle involved).

        Parameters
        ----------
        path:
            The ``.npz`` file.

        Returns
        -------
        QuantizedNetwork
        """
        with np.load(Path(path), allow_pickle=False) as arrays:
            return cls.from_arrays(arrays)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuantizedNetwork):
            return NotImplemented
        return (
            self.name == other.name
            and self.input_shape == other.input_shape
            and self.num_classes == other.num_classes
            and len(self.layers) == len(other.layers)
            and all(a == b for a, b in zip(self.layers, other.layers))
        )

    __hash__ = None


# ----------------------------------------------------------------------------- files


def atomic_savez(path: Path, arrays: dict[str, np.ndarray], *, compressed: bool = False) -> None:
    """``np.savez`` (``np.savez_compressed`` if ``compressed``) to a temporary file in the
    destination folder, then rename: a reader never sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        usual_mode(fd)
        with os.fdopen(fd, "wb") as handle:
            (np.savez_compressed if compressed else np.savez)(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
