"""Bring your own torch network: post-training quantization to the integer network.

:func:`from_torch` turns a torch ``nn.Module`` (an ``nn.Sequential``, or any module that
``torch.fx`` traces into a chain) into the :class:`~remeco.models.quantized.QuantizedNetwork`
that the mapping, the chip instances and the accelerator run, with the quantization
scheme of :mod:`remeco.models.nn` (its docstring is the statement of the rules).

What the integer network can express, and so what a module may contain
----------------------------------------------------------------------
An integer layer is a convolution or a dense product, its bias, then for hidden layers a
ReLU (the clamp at 0 of the requantization to unsigned 8-bit codes) and optionally a
non-overlapping max pool; the last layer returns its int32 accumulators as logits.

============================  ===============================================================
``Conv2d``                    square kernel, stride and zero padding; dilation 1, groups 1
``Linear``                    after a ``Flatten`` (or on a 1-D input)
``ReLU``                      required after every hidden ``Conv2d`` / ``Linear``; none
                              after the last one
``MaxPool2d``                 window = stride, no padding, floor mode; before or after the
                              ReLU (they commute), not after the last layer
``AvgPool2d``                 window = stride, no padding, floor mode. The integer network
                              has no average pooling, but an average is linear: it is folded
                              into the *next* ``Linear`` (exact) or ``Conv2d`` (kernel and
                              stride times the window; exact when the map size is a multiple
                              of the window). The folded layer has window**2 times the rows.
``BatchNorm1d/2d``            directly after a ``Linear`` / ``Conv2d``; folded into it with
                              its running statistics (eval mode)
``Flatten``                   ``start_dim=1`` (also ``torch.flatten(x, 1)``, ``x.flatten(1)``,
                              ``x.view(x.size(0), -1)`` in a traced ``forward``, where
                              ``F.relu``, ``F.max_pool2d``, ``F.avg_pool2d`` and ``F.dropout``
                              are accepted too)
``Dropout``, ``Identity``     dropped (inference)
``Softmax``, ``LogSoftmax``   dropped when last (the predicted class is unchanged)
============================  ===============================================================

A user module inside an ``nn.Sequential`` (a conv + BatchNorm + ReLU block, say) is
traced with ``torch.fx`` and must itself be such a chain. Anything else raises
:class:`ConversionError` (a ``ValueError``), one line naming the layer and what is
supported.

Input convention
----------------
The accelerator consumes raw pixels 0..255 as the first layer's 8-bit codes (scale
1/255), so the module must be a function of ``pixels / 255`` (floats in ``[0, 1]``, what
torchvision's ``ToTensor`` gives). A normalisation ``(x - mean) / std`` is affine: fold it
into the first layer before converting.

Calibration
-----------
Weights: symmetric per layer, ``s_w = max|w| / (2**(weight_bits-1) - 1)``, codes rounded
half to even. Hidden activations: ``s_out = a_max / 255`` with ``a_max`` the largest
ReLU output of the (folded) float module over the calibration images, so no calibration
activation saturates. Biases and fixed-point ratios as in :func:`remeco.models.nn.export`.

The float module after folding is kept as :attr:`ConvertedNetwork.float_model`
(:class:`FoldedNet`): one torch layer per integer layer, the same function as the user's
module. Its gradients give the network's neuron sensitivity
(:func:`remeco.models.sensitivity.neuron_sensitivity`), which the sensitivity-guided
redundancy plans need.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .quantized import _INT32_MAX, QuantizedLayer, QuantizedNetwork, quantize_multiplier

__all__ = ["ConversionError", "SUPPORTED", "ConvertedNetwork", "FoldedNet", "fold", "from_torch", "compute_sensitivity"]

#: What :func:`from_torch` accepts, as named in its error messages.
SUPPORTED = ("Conv2d, Linear, ReLU, MaxPool2d, AvgPool2d (folded into the next Conv2d/Linear), Flatten, "
             "BatchNorm1d/2d (folded), Dropout (dropped)")


#: Calibration images a :class:`ConvertedNetwork` keeps for the ADC calibration (as many
#: as ``remeco reproduce`` calibrates with).
KEPT_CALIBRATION_IMAGES = 500


class ConversionError(ValueError):
    """A torch module that the integer network cannot express (one line, naming the layer)."""


# ----------------------------------------------------------------------------- float model


class FoldedLayer(nn.Module):
    """One integer layer in float: conv or dense (BatchNorm and average pools folded in),
    bias, ReLU for hidden layers, max pool."""

    def __init__(self, kind: str, weight: torch.Tensor, bias: torch.Tensor, *, stride: int = 1,
                 padding: int = 0, pool: int = 1, relu: bool = True) -> None:
        super().__init__()
        self.kind, self.stride, self.padding, self.pool, self.relu = kind, stride, padding, pool, relu
        self.weight = nn.Parameter(weight.detach().clone().to(torch.float32))
        self.bias = nn.Parameter(bias.detach().clone().to(torch.float32))

    @property
    def kernel(self) -> int:
        """Square kernel size (1 for dense)."""
        return int(self.weight.shape[-1]) if self.kind == "conv" else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's real output (after ReLU and pooling for hidden layers)."""
        if self.kind == "conv":
            x = F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding)
        else:
            x = F.linear(x.flatten(1), self.weight, self.bias)
        if self.relu:
            x = F.relu(x)
        if self.pool > 1:
            x = F.max_pool2d(x, self.pool)
        return x


class FoldedNet(nn.Module):
    """The user's module after folding: ``layers[i]`` is integer layer ``i`` in float.

    ``forward`` takes raw pixels 0..255 (uint8 or float ``(N, C, H, W)``) and returns real
    logits; ``layers.<i>.weight`` has the output neuron on axis 0, the layout
    :func:`~remeco.models.sensitivity.neuron_sensitivity` expects.
    """

    def __init__(self, layers: list[FoldedLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Real logits of raw pixel images."""
        x = images.to(torch.float32) / 255
        for layer in self.layers:
            x = layer(x)
        return x

    def activation_maxima(self, images: np.ndarray, batch_size: int = 500) -> list[float]:
        """Largest output of every layer over ``images`` (uint8 ``(N, C, H, W)``)."""
        maxima = [0.0] * len(self.layers)
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                x = torch.from_numpy(np.array(images[start:start + batch_size])).to(torch.float32) / 255
                for i, layer in enumerate(self.layers):
                    x = layer(x)
                    maxima[i] = max(maxima[i], float(x.max()))
        return maxima


@dataclass(eq=False)
class ConvertedNetwork(QuantizedNetwork):
    """A :class:`~remeco.models.quantized.QuantizedNetwork` from :func:`from_torch`, with the
    folded float module it was quantized from.

    Attributes
    ----------
    float_model:
        :class:`FoldedNet`, the user's function with BatchNorm and average pools folded
        in; used for the sensitivity of the redundancy plans.
    calibration_images:
        The first :data:`KEPT_CALIBRATION_IMAGES` calibration images, with which
        :func:`remeco.evaluate` calibrates the ADC ranges unless given others.

    Neither is saved by :meth:`save` (the ``.npz`` holds the integer network only).
    """

    float_model: FoldedNet | None = field(default=None, repr=False)
    calibration_images: np.ndarray | None = field(default=None, repr=False)


# ----------------------------------------------------------------------------- module -> ops


@dataclass
class _Op:
    kind: str  # conv, linear, bn, relu, maxpool, avgpool, flatten, skip, softmax
    name: str  # "Conv2d 'features.0'" for messages
    module: nn.Module | None = None
    k: int = 1


def _pair(value, what: str, name: str) -> int:
    """A square size: an int or an (a, a) tuple."""
    if isinstance(value, int):
        return value
    if isinstance(value, tuple) and len(value) == 2 and value[0] == value[1] and isinstance(value[0], int):
        return value[0]
    raise ConversionError(f"{name}: {what} {value!r} is not square; the integer network uses square kernels, strides "
                          "and paddings")


def _module_op(m: nn.Module, name: str) -> _Op:
    label = f"{type(m).__name__} '{name}'"
    if isinstance(m, nn.Conv2d):
        return _Op("conv", label, m)
    if isinstance(m, nn.Linear):
        return _Op("linear", label, m)
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return _Op("bn", label, m)
    if isinstance(m, nn.ReLU):
        return _Op("relu", label)
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        return _pool_op(m, label)
    if isinstance(m, nn.Flatten):
        if m.start_dim != 1 or m.end_dim != -1:
            raise ConversionError(f"{label}: only Flatten(start_dim=1, end_dim=-1) is supported")
        return _Op("flatten", label)
    if isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)):
        return _Op("skip", label)
    if isinstance(m, (nn.Softmax, nn.LogSoftmax)):
        return _Op("softmax", label)
    raise ConversionError(f"{label} is not supported; a network for remeco is built of {SUPPORTED}")


def _pool_op(m: nn.Module, label: str) -> _Op:
    k = _pair(m.kernel_size, "kernel_size", label)
    stride = k if m.stride is None or m.stride == () else _pair(m.stride, "stride", label)
    padding = _pair(m.padding, "padding", label)
    bad = stride != k or padding != 0 or m.ceil_mode
    if isinstance(m, nn.MaxPool2d):
        bad = bad or _pair(m.dilation, "dilation", label) != 1 or m.return_indices
    else:
        bad = bad or m.divisor_override is not None
    if bad:
        raise ConversionError(f"{label}: only non-overlapping pools are supported (stride = kernel_size, padding 0, "
                              "floor mode)")
    return _Op("maxpool" if isinstance(m, nn.MaxPool2d) else "avgpool", label, k=k)


def _sequential_ops(module: nn.Sequential, prefix: str = "") -> list[_Op]:
    ops = []
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        if isinstance(child, nn.Sequential):
            ops += _sequential_ops(child, full + ".")
        elif not type(child).__module__.startswith("torch.") and any(True for _ in child.children()):
            ops += _traced_ops(child, full + ".")  # a user block (conv + BN + ReLU, say): trace it
        else:
            ops.append(_module_op(child, full))
    return ops


_FX_RELU = {torch.relu, F.relu}
_FX_FLATTEN = {torch.flatten}
_FX_SKIP = {F.dropout}
_FX_SOFTMAX = {F.softmax, F.log_softmax, torch.softmax, torch.log_softmax}
# Functional pools: their positional parameters after the input, to build the module form.
_FX_POOLS = {
    F.max_pool2d: (nn.MaxPool2d, ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")),
    F.avg_pool2d: (nn.AvgPool2d, ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                  "divisor_override")),
}


def _traced_ops(module: nn.Module, prefix: str = "") -> list[_Op]:
    """Trace ``module`` with torch.fx; its graph must be a chain of supported operations
    (``prefix``: the module's name inside its parent, for messages)."""
    import torch.fx

    try:
        graph_module = torch.fx.symbolic_trace(module)
    except Exception as exc:  # noqa: BLE001 - fx raises many types; the user needs one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionError(f"torch.fx cannot trace {type(module).__name__} ({first}); pass an nn.Sequential or a "
                              f"module whose forward is a plain chain of {SUPPORTED}") from None
    ops: list[_Op] = []
    previous = None
    for node in graph_module.graph.nodes:
        if node.op == "placeholder":
            if previous is not None:
                raise ConversionError(f"{type(module).__name__}.forward takes more than one input; remeco networks "
                                      "take the images only")
            previous = node
            continue
        if node.op == "call_method" and node.target == "size":
            continue  # only feeds a view(x.size(0), -1)
        if node.op == "output":
            if node.args[0] is not previous:
                raise ConversionError(f"{type(module).__name__} returns something other than the last layer's output")
            break
        if not node.args or node.args[0] is not previous:
            raise ConversionError(f"node '{node.name}' ({node.op} {getattr(node.target, '__name__', node.target)}) "
                                  f"does not continue a chain; remeco networks are chains of {SUPPORTED}")
        label = f"'{prefix}{node.name}'"
        if node.op == "call_module":
            ops.append(_module_op(graph_module.get_submodule(node.target), f"{prefix}{node.target}"))
        elif node.op == "call_function" and node.target in _FX_RELU:
            ops.append(_Op("relu", f"relu {label}"))
        elif node.op == "call_function" and node.target in _FX_SKIP:
            ops.append(_Op("skip", f"dropout {label}"))
        elif node.op == "call_function" and node.target in _FX_POOLS:
            cls, names = _FX_POOLS[node.target]
            kwargs = dict(zip(names, node.args[1:])) | dict(node.kwargs)
            try:
                pool = cls(**kwargs)
            except TypeError as exc:
                raise ConversionError(f"{node.target.__name__} {label}: {exc}") from None
            ops.append(_pool_op(pool, f"{node.target.__name__} {label}"))
        elif (node.op == "call_function" and node.target in _FX_SOFTMAX) or (
            node.op == "call_method" and node.target in ("softmax", "log_softmax")
        ):
            ops.append(_Op("softmax", f"softmax {label}"))
        elif (node.op == "call_function" and node.target in _FX_FLATTEN) or (
            node.op == "call_method" and node.target == "flatten"
        ):
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            if start != 1 or end != -1:
                raise ConversionError(f"flatten {label}: only flatten(x, 1) is supported (start_dim=1, end_dim=-1)")
            ops.append(_Op("flatten", f"flatten {label}"))
        elif node.op == "call_method" and node.target == "relu":
            ops.append(_Op("relu", f"relu {label}"))
        elif node.op == "call_method" and node.target in ("view", "reshape"):
            shape = node.args[1:] if len(node.args) > 2 else tuple(node.args[1]) if len(node.args) == 2 else ()
            first = shape[0] if shape else None
            batch = (getattr(first, "op", None) == "call_method" and first.target == "size"
                     and first.args[0] is previous and first.args[1:] in ((0,), ()))
            if not (len(shape) == 2 and batch and shape[1] == -1):
                raise ConversionError(f"{node.target} {label}: only x.{node.target}(x.size(0), -1) (a flatten) is "
                                      "supported")
            ops.append(_Op("flatten", f"{node.target} {label}"))
        else:
            target = getattr(node.target, "__name__", node.target)
            if node.target in (operator.add, torch.add, torch.cat):
                detail = "; remeco networks are chains (no residual additions or concatenations)"
            else:
                detail = f"; a network for remeco is built of {SUPPORTED}"
            raise ConversionError(f"{node.op} {target} {label} is not supported{detail}")
        previous = node
    return ops


# ----------------------------------------------------------------------------- ops -> layers


@dataclass
class _Layer:
    kind: str  # conv or dense
    name: str
    weight: torch.Tensor  # (out, in, k, k) or (out, in), float64
    bias: torch.Tensor
    input_shape: tuple[int, ...]  # the integer layer's input: (C, H, W) or (features,)
    stride: int = 1
    padding: int = 0
    pool: int = 1
    relu: bool = False
    output_hw: tuple[int, int] = (1, 1)  # before pooling


def _fold_bn(layer: _Layer, bn: nn.Module, label: str) -> None:
    expected = nn.BatchNorm2d if layer.kind == "conv" else nn.BatchNorm1d
    if not isinstance(bn, expected):
        raise ConversionError(f"{label} follows a {'Conv2d' if layer.kind == 'conv' else 'Linear'}; it needs "
                              f"{expected.__name__}")
    if bn.running_mean is None or bn.running_var is None:
        raise ConversionError(f"{label} has no running statistics (track_running_stats=False); it cannot be folded")
    if bn.num_features != layer.weight.shape[0]:
        raise ConversionError(f"{label} has {bn.num_features} features, the layer before it {layer.weight.shape[0]}")
    scale = bn.weight.detach().double() if bn.weight is not None else torch.ones(bn.num_features, dtype=torch.float64)
    shift = bn.bias.detach().double() if bn.bias is not None else torch.zeros(bn.num_features, dtype=torch.float64)
    factor = scale / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    layer.weight = layer.weight * factor.reshape(-1, *([1] * (layer.weight.ndim - 1)))
    layer.bias = (layer.bias - bn.running_mean.detach().double()) * factor + shift


def _new_layer(op: _Op, shape: tuple[int, ...], avg: int, avg_shape: tuple[int, ...] | None) -> tuple[_Layer, tuple]:
    """The layer of a conv / linear op on activations of ``shape``; ``avg`` > 1 folds the
    average pool that produced ``shape`` from ``avg_shape``. Returns the layer and its
    real output shape before pooling."""
    m = op.module
    weight = m.weight.detach().double()
    bias = m.bias.detach().double() if m.bias is not None else torch.zeros(weight.shape[0], dtype=torch.float64)
    if op.kind == "conv":
        if len(shape) != 3:
            raise ConversionError(f"{op.name} gets flat ({shape[0]},) inputs; a Conv2d needs (C, H, W) maps")
        if m.groups != 1 or _pair(m.dilation, "dilation", op.name) != 1 or m.padding_mode != "zeros":
            raise ConversionError(f"{op.name}: only groups=1, dilation=1 and zero padding are supported")
        k = _pair(m.kernel_size, "kernel_size", op.name)
        s = _pair(m.stride, "stride", op.name)
        if isinstance(m.padding, str):
            if m.padding == "valid":
                p = 0
            elif (k - 1) % 2 == 0:
                p = (k - 1) // 2
            else:
                raise ConversionError(f"{op.name}: padding='same' with an even kernel is asymmetric; not supported")
        else:
            p = _pair(m.padding, "padding", op.name)
        if shape[0] != m.in_channels:
            raise ConversionError(f"{op.name} expects {m.in_channels} channels, gets {shape[0]}")
        ho, wo = (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1
        if ho < 1 or wo < 1:
            raise ConversionError(f"{op.name}: kernel {k} does not fit its {shape[1]}x{shape[2]} input")
        in_shape = shape
        if avg > 1:
            _, h, w = avg_shape
            if h % avg or w % avg:
                raise ConversionError(f"AvgPool2d before {op.name}: folded into the Conv2d only when the map size "
                                      f"({h}x{w}) is a multiple of the window ({avg})")
            # conv_K,s,p(avgpool_a(x)) == conv_{aK},{as},{ap}(x) with every weight spread over
            # an a x a block and divided by a**2.
            weight = weight.repeat_interleave(avg, dim=2).repeat_interleave(avg, dim=3) / avg**2
            k, s, p, in_shape = k * avg, s * avg, p * avg, avg_shape
        layer = _Layer("conv", op.name, weight, bias, tuple(in_shape), s, p, output_hw=(ho, wo))
        return layer, (weight.shape[0], ho, wo)
    # Linear
    features = int(np.prod(shape))
    if len(shape) != 1:
        raise ConversionError(f"{op.name} gets (C, H, W) maps {shape}; put a Flatten before it")
    if features != m.in_features:
        raise ConversionError(f"{op.name} expects {m.in_features} inputs, gets {features}")
    if avg > 1:
        c, h, w = avg_shape
        hp, wp = h // avg, w // avg
        # linear(flatten(avgpool_a(x))): each pooled input's weight spread over its a x a
        # block / a**2; the rows and columns the floor-mode pool drops get weight 0.
        full = torch.zeros(weight.shape[0], c, h, w, dtype=torch.float64)
        block = weight.reshape(-1, c, hp, wp).repeat_interleave(avg, dim=2).repeat_interleave(avg, dim=3) / avg**2
        full[:, :, :hp * avg, :wp * avg] = block
        weight = full.reshape(weight.shape[0], -1)
        features = c * h * w
    return _Layer("dense", op.name, weight, bias, (features,)), (weight.shape[0],)


def _layers(ops: list[_Op], input_shape: tuple[int, int, int]) -> list[_Layer]:
    layers: list[_Layer] = []
    shape: tuple[int, ...] = input_shape  # the real activation entering the next op
    current: _Layer | None = None
    fresh = False  # the current layer has had nothing but BatchNorm after its product
    avg, avg_shape, avg_name = 1, None, ""
    for index, op in enumerate(ops):
        if op.kind == "skip":
            continue
        if op.kind == "softmax":
            if any(o.kind not in ("skip",) for o in ops[index + 1:]):
                raise ConversionError(f"{op.name} is supported only as the last operation (dropped: the predicted "
                                      "class does not change)")
            continue
        if op.kind in ("conv", "linear"):
            if current is not None and not current.relu:
                raise ConversionError(f"{op.name} follows {current.name} without a ReLU between them; hidden "
                                      "activations are unsigned 8-bit codes, so every hidden Conv2d/Linear needs a ReLU")
            current, shape = _new_layer(op, shape, avg, avg_shape)
            layers.append(current)
            avg, avg_shape, fresh = 1, None, True
        elif op.kind == "bn":
            if current is None or not fresh:
                raise ConversionError(f"{op.name} must directly follow a Conv2d or Linear (it is folded into it)")
            _fold_bn(current, op.module, op.name)
        elif op.kind == "relu":
            fresh = False
            if current is None or avg > 1:
                # On non-negative pixels, or on an average of ReLU outputs: nothing to do.
                continue
            current.relu = True
        elif op.kind == "maxpool":
            fresh = False
            if current is None or current.kind != "conv" or avg > 1:
                raise ConversionError(f"{op.name}: a max pool is supported only on a Conv2d's output (before any "
                                      "AvgPool2d)")
            if len(shape) != 3:
                raise ConversionError(f"{op.name} gets flat inputs; it needs (C, H, W) maps")
            current.pool *= op.k
            shape = (shape[0], shape[1] // op.k, shape[2] // op.k)
        elif op.kind == "avgpool":
            fresh = False
            if current is not None and not current.relu:
                raise ConversionError(f"{op.name}: the integer network has no average pooling; an AvgPool2d is "
                                      "folded into the next Conv2d/Linear, so it must come after the ReLU")
            if len(shape) != 3:
                raise ConversionError(f"{op.name} gets flat inputs; it needs (C, H, W) maps")
            if avg == 1:
                avg_shape, avg_name = shape, op.name
            elif avg_shape[1] % (avg * op.k) and avg_shape[2] % (avg * op.k):
                raise ConversionError(f"{op.name}: two average pools in a row fold only on maps that divide evenly")
            avg *= op.k
            shape = (shape[0], shape[1] // op.k, shape[2] // op.k)
            if shape[1] < 1 or shape[2] < 1:
                raise ConversionError(f"{op.name}: window {op.k} does not fit its input")
        elif op.kind == "flatten":
            fresh = False
            shape = (int(np.prod(shape)),)
    if current is None:
        raise ConversionError(f"the module has no Conv2d or Linear layer; a network for remeco is built of {SUPPORTED}")
    if avg > 1:
        raise ConversionError(f"{avg_name}: the integer network has no average pooling; an AvgPool2d is folded into "
                              "the next Conv2d/Linear, and none follows it")
    if current.relu or current.pool > 1:
        raise ConversionError(f"{current.name} is the last layer: its accumulators are the logits, so it takes no "
                              "ReLU or pooling after it")
    if current.kind == "conv" and current.output_hw != (1, 1):
        raise ConversionError(f"{current.name} is the last layer and gives {current.output_hw[0]}x"
                              f"{current.output_hw[1]} maps; the last layer must give one logit per class (a Linear, "
                              "or a Conv2d with 1x1 output)")
    return layers


# ----------------------------------------------------------------------------- quantization


def _folded(layers: list[_Layer]) -> FoldedNet:
    return FoldedNet([
        FoldedLayer(layer.kind, layer.weight, layer.bias, stride=layer.stride, padding=layer.padding,
                    pool=layer.pool, relu=layer.relu)
        for layer in layers
    ])


def from_torch(module: nn.Module, calibration_images: np.ndarray, *, weight_bits: int = 8,
               input_bits: int = 8) -> ConvertedNetwork:
    """Quantize a torch network to the integer network that remeco maps onto crossbars.

    Post-training quantization: BatchNorm and average pools are folded, weights quantized
    per layer, activation ranges calibrated on ``calibration_images`` (see the module
    docstring for what a module may contain and the input convention: the module is a
    function of ``pixels / 255``).

    Parameters
    ----------
    module:
        An ``nn.Sequential`` (nested ones are flattened) or a module ``torch.fx`` traces
        into a chain; used in eval mode, not modified.
    calibration_images:
        uint8 raw pixels ``(N, C, H, W)``, N >= 1, from the training data (never the test set).
    weight_bits:
        Bits of the symmetric weight codes, 2..8 (codes in ``±(2**(weight_bits-1) - 1)``).
    input_bits:
        Bits of the activation codes; the integer network carries 8-bit activations, so
        only 8 is accepted.

    Returns
    -------
    ConvertedNetwork
        A :class:`~remeco.models.quantized.QuantizedNetwork` (use it wherever one is
        expected) with the folded float module as ``float_model``.

    Raises
    ------
    ConversionError
        One line naming the layer the integer network cannot express, or a bad argument.
    """
    if not isinstance(module, nn.Module):
        raise ConversionError(f"module must be a torch nn.Module, got {type(module).__name__}")
    if isinstance(weight_bits, bool) or not isinstance(weight_bits, int) or not 2 <= weight_bits <= 8:
        raise ConversionError(f"weight_bits must be an integer in 2..8 (int8 weight codes), got {weight_bits!r}")
    if input_bits != 8:
        raise ConversionError(f"input_bits must be 8: the integer network's activations are 8-bit codes "
                              f"(requantization clamps to 0..255), got {input_bits!r}")
    images = np.asarray(calibration_images)
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) == 0:
        raise ConversionError(f"calibration_images must be non-empty uint8 raw pixels (N, C, H, W), got "
                              f"{images.dtype} {images.shape}")
    devices = {str(t.device) for t in (*module.parameters(), *module.buffers())} - {"cpu"}
    if devices:
        raise ConversionError(f"module has parameters on {', '.join(sorted(devices))}; remeco converts on the CPU: "
                              "pass module.cpu() (or a CPU copy)")
    input_shape = tuple(int(v) for v in images.shape[1:])
    layers = _fold_layers(module, input_shape)
    for layer in layers:
        for what, t in (("weight", layer.weight), ("bias", layer.bias)):
            if not bool(torch.isfinite(t).all()):
                # NaN or inf would quantize to arbitrary int8 codes without an error
                raise ConversionError(f"{layer.name}: the folded {what} holds NaN or infinite values")
    folded = _folded(layers)
    maxima = folded.activation_maxima(images)
    qmax = 2 ** (weight_bits - 1) - 1
    out: list[QuantizedLayer] = []
    in_scale = 1 / 255
    for index, (layer, fl) in enumerate(zip(layers, folded.layers)):
        w = layer.weight.numpy()
        w_scale = max(float(np.abs(w).max()), 1e-12) / qmax
        codes = np.clip(np.rint(w / w_scale), -qmax, qmax).astype(np.int8)
        bias = np.rint(layer.bias.numpy() / (in_scale * w_scale))
        if np.abs(bias).max(initial=0) > _INT32_MAX:
            raise ConversionError(f"{layer.name}: a bias is too large for an int32 accumulator at this weight scale")
        if layer.relu:
            if maxima[index] <= 0:
                raise ConversionError(f"{layer.name}: every ReLU output is 0 on the calibration images; the layer is "
                                      "dead or the images are not raw pixels")
            out_scale = maxima[index] / 255
            try:
                multiplier, shift = quantize_multiplier(in_scale * w_scale / out_scale)
            except ValueError as exc:
                raise ConversionError(f"{layer.name}: {exc}") from None
        else:
            out_scale, multiplier, shift = in_scale * w_scale, 0, 0
        try:
            out.append(QuantizedLayer(
                kind=layer.kind,
                weight=np.ascontiguousarray(codes.reshape(codes.shape[0], -1).T),
                bias=bias.astype(np.int32),
                weight_shape=tuple(codes.shape),
                input_shape=layer.input_shape,
                kernel=fl.kernel,
                stride=layer.stride,
                padding=layer.padding,
                pool=layer.pool,
                input_scale=float(in_scale),
                weight_scale=float(w_scale),
                output_scale=float(out_scale),
                multiplier=multiplier,
                shift=shift,
                relu=layer.relu,
            ))
        except (ValueError, OverflowError) as exc:
            raise ConversionError(f"{layer.name}: {exc}") from None
        in_scale = out_scale
    classes = out[-1].out_features
    name = f"torch-{type(module).__name__}"
    kept = np.array(images[:KEPT_CALIBRATION_IMAGES])
    kept.flags.writeable = False
    return ConvertedNetwork(name, input_shape, classes, out, float_model=folded, calibration_images=kept)


def _fold_layers(module: nn.Module, input_shape: tuple[int, int, int]) -> list[_Layer]:
    ops = _sequential_ops(module) if isinstance(module, nn.Sequential) else _traced_ops(module)
    return _layers(ops, input_shape)


def fold(module: nn.Module, input_shape: tuple[int, int, int]) -> FoldedNet:
    """The float :class:`FoldedNet` of ``module`` (BatchNorm and average pools folded in,
    one torch layer per integer layer) for ``(C, H, W)`` inputs, without quantizing.

    Raises
    ------
    ConversionError
        As :func:`from_torch`, for what the integer network cannot express.
    """
    if not isinstance(module, nn.Module):
        raise ConversionError(f"module must be a torch nn.Module, got {type(module).__name__}")
    return _folded(_fold_layers(module, tuple(int(v) for v in input_shape)))


def compute_sensitivity(network, images: np.ndarray, labels: np.ndarray, *, module: nn.Module | None = None):
    """Neuron sensitivity (ReMeCo: mean dE/dw per output neuron) of a network, for the
    sensitivity-guided redundancy plans.

    Computed by :func:`remeco.models.sensitivity.neuron_sensitivity` on a float model
    with one layer per integer layer: ``module`` if given (a torch module, folded as
    :func:`from_torch` folds it, or a built-in :class:`remeco.models.nn.QATNet`), else
    the ``float_model`` a :func:`from_torch` network carries. Use training images, as
    the paper does.

    Parameters
    ----------
    network:
        The integer network (its layer sizes are checked against the float model's).
    images, labels:
        uint8 ``(N, C, H, W)`` training images and their integer labels.
    module:
        Optional float model (see above).

    Returns
    -------
    remeco.models.sensitivity.Sensitivity

    Raises
    ------
    ConversionError
        No float model to differentiate, or one whose layers do not match the network.
    """
    from .nn import QATNet
    from .sensitivity import neuron_sensitivity

    if module is None:
        model = getattr(network, "float_model", None)
        if model is None:
            raise ConversionError("the network has no float model to differentiate (it did not come from "
                                  "remeco.from_torch); pass module= (the torch module it was made from)")
    elif isinstance(module, (QATNet, FoldedNet)):
        model = module
    else:
        model = fold(module, network.input_shape)
    sizes = [int(layer.weight.shape[0]) for layer in model.layers]
    if sizes != [layer.out_features for layer in network.layers]:
        raise ConversionError(f"the float model's layers have {sizes} neurons, the network's "
                              f"{[layer.out_features for layer in network.layers]}")
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8 or images.shape[1:] != tuple(network.input_shape):
        raise ConversionError(f"images must be uint8 of shape (N, {tuple(network.input_shape)}), got "
                              f"{images.dtype} {images.shape}")
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise ConversionError(f"labels must be {len(images)} integers, got {labels.dtype} {labels.shape}")
    if len(images) == 0:
        raise ConversionError("images must hold at least one training image")
    if int(labels.min()) < 0 or int(labels.max()) >= network.num_classes:
        # the loss would index outside the logits (a torch RuntimeError)
        raise ConversionError(f"labels must be classes in 0..{network.num_classes - 1} (the network's outputs), "
                              f"got {int(labels.min())}..{int(labels.max())}")
    return neuron_sensitivity(model, images, labels.astype(np.int64))
