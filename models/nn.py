"""Networks, 8-bit quantization-aware training, integer export and trained-model cache.

The exported integer network (:class:`QuantizedNetwork`, :class:`QuantizedLayer`,
:func:`requantize`, :func:`im2col` ...) is defined in :mod:`remeco.models.quantized`,
which needs NumPy only, so inference runs where torch does not (a PYNQ board); this
module imports torch and re-exports those names.

Networks
--------
All layers are convolutions or dense layers without batch norm; every hidden layer is
followed by ReLU, 8-bit activation quantization and optionally a non-overlapping max
pool (window = stride = ``pool``). ``k`` is the kernel size, ``p`` the zero padding,
shapes are (channels, height, width) of the activation *after* the layer (and pool).

``"lenet5"`` (default, small enough for an FPGA), 1x28x28 input, 44,426 parameters:

==========  =====================================  ===========  ==========
layer       operation                              output       parameters
==========  =====================================  ===========  ==========
conv1       1 -> 6, k5, p0, ReLU, pool 2           6x12x12      156
conv2       6 -> 16, k5, p0, ReLU, pool 2          16x4x4       2,416
fc1         256 -> 120, ReLU                       120          30,840
fc2         120 -> 84, ReLU                        84           10,164
fc3         84 -> 10 (logits)                      10           850
==========  =====================================  ===========  ==========

``"lenet_paper"``: the paper's LeNet size (REFERENCE Table 3: 2 conv + 3 dense,
866 K parameters; the paper gives no layer shapes, so this is our design). 1x28x28
input, 865,858 parameters (0.02 % below 866 K), 11.5 M multiply-accumulates:

==========  =====================================  ===========  ==========
conv1       1 -> 32, k5, p2, ReLU, pool 2          32x14x14     832
conv2       32 -> 64, k5, p2, ReLU, pool 2         64x7x7       51,264
fc1         3136 -> 256, ReLU                      256          803,072
fc2         256 -> 40, ReLU                        40           10,280
fc3         40 -> 10 (logits)                      10           410
==========  =====================================  ===========  ==========

``"alexnet"``: AlexNet for CIFAR-10, 3x32x32 input, 58,294,666 parameters. It keeps
AlexNet's widths (96-256-384-384-256 convolutions, 4096-4096 dense, final feature
map 256x6x6 = 9216) with kernels and pools sized for 32x32 images and a 10-way head.
The paper's 62 M is the ImageNet AlexNet, whose 1000-way head alone holds 4.1 M
parameters; with a 10-way head the same widths give 58.3 M.

==========  =====================================  ===========  ==========
conv1       3 -> 96, k5, p0, ReLU, pool 2          96x14x14     7,296
conv2       96 -> 256, k5, p1, ReLU, pool 2        256x6x6      614,656
conv3       256 -> 384, k3, p1, ReLU               384x6x6      885,120
conv4       384 -> 384, k3, p1, ReLU               384x6x6      1,327,488
conv5       384 -> 256, k3, p1, ReLU               256x6x6      884,992
fc1         9216 -> 4096, ReLU                     4096         37,752,832
fc2         4096 -> 4096, ReLU                     4096         16,781,312
fc3         4096 -> 10 (logits)                    10           40,970
==========  =====================================  ===========  ==========

Quantization (one scheme for training, export and the integer reference)
-----------------------------------------------------------------------
Activations travel between layers as *codes*: unsigned integers 0..255 with a
per-layer real scale (real value = code x scale, zero point 0).

* Input: raw pixels 0..255 are the codes of the first layer; scale 1/255.
* Weights: symmetric int8 per layer, ``s_w = max|w| / 127``, codes
  ``round(w / s_w)`` in -127..127 (-128 is never used, so the range is symmetric for
  the crossbar's offset encoding). Rounding: half to even (``torch.round``).
* Bias: int32 in accumulator units ``s_in * s_w``, ``round(b / (s_in * s_w))``, half
  to even.
* Accumulator: ``acc = sum(x_code * w_code) + b_code`` (exact integers).
* Output activation of hidden layers: scale ``s_out = a_max / 255``, where ``a_max``
  is an exponential moving average (momentum :data:`ACT_MOMENTUM`) of the batch
  maximum of the ReLU output, seeded by the first training batch and frozen in eval
  mode. The code is ``requantize(acc, M, shift)`` with ``M / 2**shift`` the 15-bit
  fixed-point form of ``s_in * s_w / s_out`` (:func:`quantize_multiplier`):
  round half up, clamp to 0..255 (the lower clamp is the ReLU).
* Max pooling acts on the codes (it commutes with the monotone requantization).
* The last layer returns the int32 accumulators as logits (real logit = acc x
  ``s_in * s_w``).

The fake-quant float model computes exactly these integers in float32 (accumulators
of integer codes are exact below 2**24) and scales them by the *same* fixed-point
ratio ``M / 2**shift``; only the float32 rounding of ``acc * ratio`` can differ from
the integer path, which flips an activation code by one in rare exact-tie cases.
Gradients pass through every rounding unchanged (straight-through estimator) and
are zero where an activation is clamped.

Determinism
-----------
:func:`train` draws everything (initial weights, batch order, augmentation shifts)
from one ``torch.Generator`` seeded with ``seed``; it touches no global RNG. It runs
in a child process with pinned float kernels (:mod:`remeco.models.portable`): one
thread, ATen's baseline x86-64 kernels, MKL's vendor-independent branch and no
oneDNN, whatever the caller's thread count, torch settings or CPU. Each of these
matters: with two threads torch splits reductions differently (40,627 of 44,426
integer weights and biases of the default LeNet-5 differed between one and two
threads), and an Intel Xeon and an AMD EPYC trained different networks from the same
recipe on their own vector kernels (measured hashes in :mod:`remeco.models.portable`).
The trained network therefore depends only on the recipe and the torch build; its
identity is :meth:`QuantizedNetwork.sha256`. The integer reference is exact
everywhere.

Cache
-----
:func:`get_trained` stores one ``.npz`` (no pickle) per (network spec, training
hyper-parameters, :data:`TRAINING_VERSION`, train and test data hashes, format version) under
``$REMECO_CACHE`` or ``~/.cache/remeco``, written to a temporary file and renamed,
so an interrupted run never leaves a partial entry. An entry that does not load and
validate (empty, truncated, wrong fields) is named in one warning line and retrained
(:mod:`remeco.models.cachefile`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .cachefile import DAMAGED, warn_damaged
from .data import Dataset
from .portable import run_pinned

# The integer network is torch-free and lives in .quantized; its names are re-exported
# here so that ``from remeco.models.nn import QuantizedNetwork`` keeps working.
from .quantized import _INT32_MAX, MAX_SHIFT, MULTIPLIER_BITS, MatmulFn, QuantizedLayer, QuantizedNetwork
from .quantized import FORMAT_VERSION as _FORMAT_VERSION
from .quantized import atomic_savez as _atomic_savez
from .quantized import exact_matmul, im2col, quantize_multiplier, requantize

__all__ = [
    "ACT_MOMENTUM",
    "TRAINING_VERSION",
    "MULTIPLIER_BITS",
    "MAX_SHIFT",
    "NET_NAMES",
    "LayerSpec",
    "NetSpec",
    "net_spec",
    "QuantLayer",
    "QATNet",
    "build_net",
    "count_parameters",
    "TrainConfig",
    "default_config",
    "train",
    "predict_logits",
    "evaluate",
    "quantize_multiplier",
    "requantize",
    "im2col",
    "exact_matmul",
    "MatmulFn",
    "QuantizedLayer",
    "QuantizedNetwork",
    "export",
    "TrainedModel",
    "default_cache_dir",
    "save_network_once",
    "cache_key",
    "get_trained",
]

#: Momentum of the exponential moving average of each layer's activation maximum.
ACT_MOMENTUM = 0.99
#: Network names accepted by :func:`net_spec`.
NET_NAMES = ("lenet5", "lenet_paper", "alexnet")
#: How :func:`train` runs, in the cache key: 3 = in a child process with pinned float
#: kernels (:mod:`remeco.models.portable`), the same network on any x86-64 CPU; 2 = one
#: torch thread in the caller's process (the network depended on the CPU's vector
#: kernels); 1 = the caller's thread count (it depended on that too).
TRAINING_VERSION = 3


# ----------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class LayerSpec:
    """Shape of one layer.

    Parameters
    ----------
    kind:
        ``"conv"`` or ``"dense"``.
    in_features, out_features:
        Input / output channels for a convolution, features for a dense layer.
    kernel, stride, padding:
        Square convolution geometry (1, 1, 0 for dense layers).
    pool:
        Non-overlapping max-pool window (and stride) after the activation; 1 = none.
    """

    kind: str
    in_features: int
    out_features: int
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    pool: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("conv", "dense"):
            raise ValueError(f"kind must be 'conv' or 'dense', got {self.kind!r}")
        if self.kind == "dense" and (self.kernel, self.stride, self.padding, self.pool) != (1, 1, 0, 1):
            raise ValueError("a dense layer has kernel=1, stride=1, padding=0, pool=1")


@dataclass(frozen=True)
class NetSpec:
    """Architecture of a network: input shape, classes and layers in order.

    Parameters
    ----------
    name:
        Network name (one of :data:`NET_NAMES` for the built-in ones).
    input_shape:
        ``(C, H, W)`` of the input images.
    num_classes:
        Width of the last layer.
    layers:
        Layer shapes; every layer but the last has ReLU + 8-bit activations.
    """

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    layers: tuple[LayerSpec, ...]

    def shapes(self) -> list[tuple[int, ...]]:
        """Activation shape entering each layer, plus the output shape at the end.

        Returns
        -------
        list of tuple
            ``len(layers) + 1`` shapes: ``(C, H, W)`` before convolutions, ``(F,)``
            before dense layers and at the output.

        Raises
        ------
        ValueError
            If consecutive layers do not fit together.
        """
        shape: tuple[int, ...] = tuple(self.input_shape)
        shapes = [shape]
        for index, layer in enumerate(self.layers):
            if layer.kind == "conv":
                if len(shape) != 3 or shape[0] != layer.in_features:
                    raise ValueError(f"layer {index}: conv expects {layer.in_features} channels, gets {shape}")
                h = (shape[1] + 2 * layer.padding - layer.kernel) // layer.stride + 1
                w = (shape[2] + 2 * layer.padding - layer.kernel) // layer.stride + 1
                shape = (layer.out_features, h // layer.pool, w // layer.pool)
                if min(shape[1:]) < 1:
                    raise ValueError(f"layer {index}: output {shape} is empty")
            else:
                flat = int(np.prod(shape))
                if flat != layer.in_features:
                    raise ValueError(f"layer {index}: dense expects {layer.in_features} inputs, gets {shape}")
                shape = (layer.out_features,)
            shapes.append(shape)
        if shape != (self.num_classes,):
            raise ValueError(f"network output {shape} does not match num_classes={self.num_classes}")
        return shapes


def net_spec(name: str) -> NetSpec:
    """The architecture of a built-in network.

    Parameters
    ----------
    name:
        ``"lenet5"``, ``"lenet_paper"`` or ``"alexnet"`` (see the module docstring
        for the exact shapes).

    Returns
    -------
    NetSpec

    Raises
    ------
    ValueError
        If ``name`` is unknown.
    """
    conv, dense = "conv", "dense"
    if name == "lenet5":
        layers = (
            LayerSpec(conv, 1, 6, kernel=5, pool=2),
            LayerSpec(conv, 6, 16, kernel=5, pool=2),
            LayerSpec(dense, 256, 120),
            LayerSpec(dense, 120, 84),
            LayerSpec(dense, 84, 10),
        )
        return NetSpec(name, (1, 28, 28), 10, layers)
    if name == "lenet_paper":
        layers = (
            LayerSpec(conv, 1, 32, kernel=5, padding=2, pool=2),
            LayerSpec(conv, 32, 64, kernel=5, padding=2, pool=2),
            LayerSpec(dense, 3136, 256),
            LayerSpec(dense, 256, 40),
            LayerSpec(dense, 40, 10),
        )
        return NetSpec(name, (1, 28, 28), 10, layers)
    if name == "alexnet":
        layers = (
            LayerSpec(conv, 3, 96, kernel=5, pool=2),
            LayerSpec(conv, 96, 256, kernel=5, padding=1, pool=2),
            LayerSpec(conv, 256, 384, kernel=3, padding=1),
            LayerSpec(conv, 384, 384, kernel=3, padding=1),
            LayerSpec(conv, 384, 256, kernel=3, padding=1),
            LayerSpec(dense, 9216, 4096),
            LayerSpec(dense, 4096, 4096),
            LayerSpec(dense, 4096, 10),
        )
        return NetSpec(name, (3, 32, 32), 10, layers)
    raise ValueError(f"net_name must be one of {', '.join(NET_NAMES)}; got {name!r}")


def _as_spec(net: str | NetSpec) -> NetSpec:
    return net if isinstance(net, NetSpec) else net_spec(net)


# ----------------------------------------------------------------------------- fixed point
# quantize_multiplier and requantize: remeco.models.quantized


def _fixed_point_ratio(ratio: torch.Tensor) -> torch.Tensor:
    """Torch twin of :func:`quantize_multiplier`: the value ``M / 2**shift``, float32.

    Same rounding (half up on the 15-bit mantissa), and exact in float32 because the
    result has at most 16 significant bits; so the fake-quant model scales by
    precisely the ratio that the exported integer network uses.
    """
    mantissa, exponent = torch.frexp(ratio)
    multiplier = torch.floor(mantissa * 2**MULTIPLIER_BITS + 0.5)
    return torch.ldexp(multiplier, exponent - MULTIPLIER_BITS)


# ----------------------------------------------------------------------------- QAT torch model


def _ste(value: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
    """``quantized`` in the forward pass, identity gradient to ``value``."""
    return value + (quantized - value).detach()


class QuantLayer(nn.Module):
    """One fake-quantized conv or dense layer (weights, bias, activation scale).

    Parameters
    ----------
    spec:
        Layer shape.
    last:
        True for the output layer: no ReLU, no activation quantization, returns real
        logits ``acc * s_in * s_w``.
    generator:
        Source of the initial weights (Kaiming-uniform for ReLU; biases start at 0).

    Notes
    -----
    Buffers ``act_max`` (EMA of the batch maximum of the ReLU output, real units) and
    ``observed`` (whether any training batch has been seen) define the output scale.
    """

    def __init__(self, spec: LayerSpec, last: bool, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.last = last
        if spec.kind == "conv":
            shape = (spec.out_features, spec.in_features, spec.kernel, spec.kernel)
        else:
            shape = (spec.out_features, spec.in_features)
        self.weight = nn.Parameter(torch.empty(shape))
        nn.init.kaiming_uniform_(self.weight, nonlinearity="relu", generator=generator)
        self.bias = nn.Parameter(torch.zeros(spec.out_features))
        self.register_buffer("act_max", torch.zeros(()))
        self.register_buffer("observed", torch.zeros((), dtype=torch.bool))

    def weight_codes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight codes (float tensor of integers -127..127, STE gradient) and ``s_w``."""
        scale = self.weight.detach().abs().max().clamp_min(1e-12) / 127
        value = self.weight / scale
        return _ste(value, torch.round(value).clamp(-127, 127)), scale

    def bias_codes(self, in_scale: torch.Tensor, weight_scale: torch.Tensor) -> torch.Tensor:
        """Bias codes in accumulator units ``s_in * s_w`` (integers, STE gradient)."""
        value = self.bias / (in_scale * weight_scale)
        return _ste(value, torch.round(value).clamp(-_INT32_MAX, _INT32_MAX))

    def output_scale(self) -> torch.Tensor:
        """Scale of the output codes, ``a_max / 255`` (hidden layers only)."""
        return self.act_max / 255

    def ratio(self, in_scale: torch.Tensor, weight_scale: torch.Tensor) -> torch.Tensor:
        """Real ratio ``s_in * s_w / s_out`` in float32 (before fixed-point rounding)."""
        return (in_scale * weight_scale / self.output_scale()).detach()

    def forward(self, x: torch.Tensor, in_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply the layer to input codes.

        Parameters
        ----------
        x:
            Input codes (float tensor of integers 0..255), ``(N, C, H, W)`` or ``(N, F)``.
        in_scale:
            Real scale of the input codes (0-d tensor).

        Returns
        -------
        (torch.Tensor, torch.Tensor)
            Output codes and their scale, or for the last layer real logits and the
            accumulator unit ``s_in * s_w``.
        """
        w_codes, w_scale = self.weight_codes()
        b_codes = self.bias_codes(in_scale, w_scale)
        if self.spec.kind == "conv":
            acc = F.conv2d(x, w_codes, b_codes, stride=self.spec.stride, padding=self.spec.padding)
        else:
            acc = F.linear(x, w_codes, b_codes)
        unit = (in_scale * w_scale).detach()
        if self.last:
            return acc * unit, unit
        if self.training:
            # Observe the real ReLU output range before quantizing with it.
            batch_max = (acc.detach().max() * unit).clamp_min(1e-6)
            if bool(self.observed):
                self.act_max.mul_(ACT_MOMENTUM).add_((1 - ACT_MOMENTUM) * batch_max)
            else:
                self.act_max.copy_(batch_max)
                self.observed.fill_(True)
        elif not bool(self.observed):
            raise RuntimeError("activation scale not calibrated: run training batches (train mode) first")
        scaled = (acc * _fixed_point_ratio(self.ratio(in_scale, w_scale))).clamp(0, 255)
        codes = _ste(scaled, torch.floor(scaled + 0.5).clamp(max=255))
        if self.spec.pool > 1:
            codes = F.max_pool2d(codes, self.spec.pool)
        return codes, self.output_scale()


class QATNet(nn.Module):
    """Fake-quantized network of :class:`QuantLayer` built from a :class:`NetSpec`.

    Parameters
    ----------
    spec:
        Architecture.
    generator:
        Source of the initial weights (layers initialized in order); by default a
        fresh generator seeded with 0, so torch's global RNG is never used.

    Notes
    -----
    ``forward`` takes raw pixels 0..255 (uint8 or float tensor ``(N, C, H, W)``) and
    returns real logits. In train mode it updates the activation ranges.
    """

    def __init__(self, spec: NetSpec, generator: torch.Generator | None = None) -> None:
        super().__init__()
        spec.shapes()  # validate the layer chain early
        self.spec = spec
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        count = len(spec.layers)
        self.layers = nn.ModuleList(
            QuantLayer(layer, index == count - 1, generator) for index, layer in enumerate(spec.layers)
        )

    @staticmethod
    def input_scale() -> torch.Tensor:
        """Scale of the input codes: pixels 0..255 represent 0..1."""
        return torch.tensor(1 / 255, dtype=torch.float32)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (real units) for raw pixel images ``(N, C, H, W)``."""
        if tuple(images.shape[1:]) != tuple(self.spec.input_shape):
            raise ValueError(f"images must have shape (N, {self.spec.input_shape}), got {tuple(images.shape)}")
        x = images.to(torch.float32)
        scale = self.input_scale()
        for layer in self.layers:
            if layer.spec.kind == "dense" and x.ndim > 2:
                x = x.flatten(1)  # (C, H, W) order, as in the integer path
            x, scale = layer(x, scale)
        return x


def build_net(net: str | NetSpec, *, seed: int = 0) -> QATNet:
    """A freshly initialized fake-quant network.

    Parameters
    ----------
    net:
        Built-in name (see :data:`NET_NAMES`) or a :class:`NetSpec`.
    seed:
        Seed of the initial weights.

    Returns
    -------
    QATNet
        In train mode, activation ranges not yet observed.
    """
    return QATNet(_as_spec(net), torch.Generator().manual_seed(seed))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (weights and biases).

    Parameters
    ----------
    model:
        Any torch module.

    Returns
    -------
    int
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (all of them enter the cache key).

    Parameters
    ----------
    epochs:
        Passes over the training set.
    seed:
        Seed of initial weights, batch order and augmentation.
    batch_size:
        Images per step (the last, smaller batch of an epoch is kept).
    lr:
        Peak Adam learning rate; cosine decay to 0 over all steps.
    weight_decay:
        Adam L2 penalty.
    shift:
        Augmentation: random translation by up to this many pixels in each
        direction (zero fill); 0 disables it.
    flip:
        Augmentation: random horizontal flips (useful for CIFAR-10, not MNIST).
    """

    epochs: int = 20
    seed: int = 0
    batch_size: int = 64
    lr: float = 5e-3
    weight_decay: float = 0.0
    shift: int = 2
    flip: bool = False


def default_config(net: str | NetSpec) -> TrainConfig:
    """Default training hyper-parameters of a network.

    ``"lenet5"``: 20 epochs, Adam lr 5e-3, batch 64, shifts of up to 2 px (98.4 %
    and 98.5 % test accuracy on the embedded split for seeds 0 and 1).
    ``"lenet_paper"``: 15 epochs, lr 1e-3 (5e-3 diverges to poor minima for its
    3136-input dense layer). ``"alexnet"``: 30 epochs, lr 1e-4, shifts of up to
    4 px and horizontal flips, the usual CIFAR-10 augmentation; not tuned here (no
    CIFAR-10 on the development machines). Any other spec: :class:`TrainConfig`
    defaults.

    Parameters
    ----------
    net:
        Network name or spec.

    Returns
    -------
    TrainConfig
    """
    name = net.name if isinstance(net, NetSpec) else net_spec(net).name
    if name == "lenet_paper":
        return TrainConfig(epochs=15, lr=1e-3)
    if name == "alexnet":
        return TrainConfig(epochs=30, lr=1e-4, shift=4, flip=True)
    return TrainConfig()


def _config(net: str | NetSpec, **overrides: object) -> TrainConfig:
    """The network's default config with the non-None ``overrides`` applied."""
    return dataclasses.replace(default_config(net), **{k: v for k, v in overrides.items() if v is not None})


@contextlib.contextmanager
def _deterministic_torch() -> Iterator[None]:
    """One intra-op thread and torch's deterministic algorithms, the caller's settings
    restored afterwards: float sums in a fixed order, so training does not depend on
    how many threads the caller (or the machine) has."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.set_num_threads(threads)


def _augment(images: torch.Tensor, config: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """Random translations (and flips) of a uint8 batch, drawn from ``generator``."""
    n, c, h, w = images.shape
    if config.shift > 0:
        s = config.shift
        padded = F.pad(images, (s, s, s, s))
        dy = torch.randint(0, 2 * s + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * s + 1, (n,), generator=generator)
        rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
        images = padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    if config.flip:
        flip = torch.rand(n, generator=generator) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(3), images)
    return images


def train(
    net_name: str | NetSpec,
    train_set: Dataset,
    *,
    epochs: int,
    seed: int,
    batch_size: int | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
    shift: int | None = None,
    flip: bool | None = None,
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
) -> QATNet:
    """Quantization-aware training with cross-entropy and Adam.

    Parameters
    ----------
    net_name:
        Built-in network name or a :class:`NetSpec`.
    train_set:
        Training images and labels.
    epochs, seed, batch_size, lr, weight_decay, shift, flip:
        See :class:`TrainConfig`; ``None`` takes the network's
        :func:`default_config` value.
    threads:
        Kept for older callers: ``None`` or 1 only. Training always runs on one torch
        thread (see the module docstring), whatever the caller's thread count.
    log:
        Called with one line per epoch (mean loss), e.g. ``print``.

    Returns
    -------
    QATNet
        The trained model in eval mode (activation scales frozen).

    Notes
    -----
    Deterministic given ``seed``, on any thread count: see the module docstring.
    """
    if threads not in (None, 1):
        raise ValueError(f"threads must be None or 1 (training always runs on one thread), got {threads!r}")
    spec = _as_spec(net_name)
    config = _config(
        spec, epochs=epochs, seed=seed, batch_size=batch_size, lr=lr,
        weight_decay=weight_decay, shift=shift, flip=flip,
    )  # fmt: skip
    if tuple(train_set.images.shape[1:]) != tuple(spec.input_shape):
        raise ValueError(
            f"train_set images {train_set.images.shape[1:]} do not fit {spec.name} input {spec.input_shape}"
        )
    state = run_pinned(
        "remeco.models.nn:_train_pinned",
        {"images": np.ascontiguousarray(train_set.images), "labels": np.ascontiguousarray(train_set.labels)},
        {"spec": dataclasses.asdict(spec), "config": dataclasses.asdict(config)},
        log=log,
    )
    model = QATNet(spec)
    model.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
    model.eval()
    return model


def _spec_from_dict(data: dict) -> NetSpec:
    """Inverse of ``dataclasses.asdict`` on a :class:`NetSpec`."""
    layers = tuple(LayerSpec(**layer) for layer in data["layers"])
    return NetSpec(data["name"], tuple(data["input_shape"]), int(data["num_classes"]), layers)


def _train_pinned(arrays: dict, args: dict, log: Callable[[str], None]) -> dict[str, np.ndarray]:
    """The training loop, run by :func:`train` in the pinned child process
    (:mod:`remeco.models.portable`); returns the trained model's ``state_dict``."""
    spec = _spec_from_dict(args["spec"])
    config = TrainConfig(**args["config"])
    model = _train_here(spec, torch.from_numpy(arrays["images"]), torch.from_numpy(arrays["labels"]), config, log)
    return {name: value.detach().numpy() for name, value in model.state_dict().items()}


def _train_here(
    spec: NetSpec, images: torch.Tensor, labels: torch.Tensor, config: TrainConfig, log: Callable[[str], None] | None
) -> QATNet:
    """Quantization-aware training in this process, on its float kernels (see
    :func:`train`, which runs this in a pinned child process)."""
    generator = torch.Generator().manual_seed(config.seed)
    model = QATNet(spec, generator)
    n = len(labels)
    batch_size, epochs = config.batch_size, config.epochs
    steps_per_epoch = math.ceil(n / batch_size)
    total = max(1, epochs * steps_per_epoch)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    model.train()
    with _deterministic_torch():
        for epoch in range(epochs):
            order = torch.randperm(n, generator=generator)
            loss_sum = 0.0
            for start in range(0, n, batch_size):
                index = order[start : start + batch_size]
                batch = _augment(images[index], config, generator)
                loss = F.cross_entropy(model(batch), labels[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                loss_sum += float(loss.detach()) * len(index)
            if log is not None:
                log(f"{spec.name} epoch {epoch + 1}/{epochs}: loss {loss_sum / n:.4f}")
    model.eval()
    return model


def predict_logits(model: QATNet, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Float logits of the fake-quant model in eval mode.

    Parameters
    ----------
    model:
        A trained (calibrated) model; it is switched to eval mode.
    images:
        ``uint8`` ``(N, C, H, W)`` raw pixels.
    batch_size:
        Images per forward pass.

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(N, num_classes)``.
    """
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            # np.array copies: torch refuses read-only arrays such as Dataset images.
            out.append(model(torch.from_numpy(np.array(images[start : start + batch_size]))).numpy())
    return np.concatenate(out) if out else np.zeros((0, model.spec.num_classes), np.float32)


def evaluate(model: QATNet, dataset: Dataset) -> float:
    """Top-1 accuracy (fraction 0..1) of the fake-quant model on a data set.

    Parameters
    ----------
    model:
        A trained model.
    dataset:
        Images and labels.

    Returns
    -------
    float
    """
    return float(np.mean(predict_logits(model, dataset.images).argmax(1) == dataset.labels))


def export(model: QATNet) -> QuantizedNetwork:
    """Export a trained fake-quant model to its integer network.

    The codes and the fixed-point ratios come from the same torch functions as the
    model's forward pass, so the two compute the same integers (see the module
    docstring for the one remaining difference).

    Parameters
    ----------
    model:
        A trained model whose activation ranges have been observed.

    Returns
    -------
    QuantizedNetwork

    Raises
    ------
    RuntimeError
        If a hidden layer never saw a training batch.
    """
    spec = model.spec
    shapes = spec.shapes()
    layers = []
    in_scale = QATNet.input_scale()
    with torch.no_grad():
        for index, layer in enumerate(model.layers):
            w_codes, w_scale = layer.weight_codes()
            b_codes = layer.bias_codes(in_scale, w_scale)
            weight = w_codes.to(torch.int64).numpy().astype(np.int8)
            matrix = np.ascontiguousarray(weight.reshape(weight.shape[0], -1).T)
            if layer.last:
                out_scale = in_scale * w_scale
                multiplier, shift = 0, 0
            else:
                if not bool(layer.observed):
                    raise RuntimeError(f"layer {index}: activation scale not calibrated")
                out_scale = layer.output_scale()
                multiplier, shift = quantize_multiplier(float(layer.ratio(in_scale, w_scale)))
            s = layer.spec
            layers.append(
                QuantizedLayer(
                    kind=s.kind,
                    weight=matrix,
                    bias=b_codes.to(torch.int64).numpy().astype(np.int32),
                    weight_shape=tuple(weight.shape),
                    input_shape=shapes[index] if s.kind == "conv" else (int(np.prod(shapes[index])),),
                    kernel=s.kernel,
                    stride=s.stride,
                    padding=s.padding,
                    pool=s.pool,
                    input_scale=float(in_scale),
                    weight_scale=float(w_scale),
                    output_scale=float(out_scale),
                    multiplier=multiplier,
                    shift=shift,
                    relu=not layer.last,
                )
            )
            in_scale = out_scale
    return QuantizedNetwork(spec.name, spec.input_shape, spec.num_classes, layers)


# ----------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """``$REMECO_CACHE`` if set, else ``~/.cache/remeco``.

    Returns
    -------
    pathlib.Path
    """
    env = os.environ.get("REMECO_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "remeco"


def cache_key(spec: NetSpec, config: TrainConfig, train_hash: str, test_hash: str) -> str:
    """Key of a trained model: SHA-256 (first 20 hex digits) of its whole recipe.

    Parameters
    ----------
    spec:
        Network architecture.
    config:
        Training hyper-parameters.
    train_hash, test_hash:
        :attr:`Dataset.content_hash` of the training and test sets (the test set is
        part of the key because the stored accuracies are measured on it).

    Returns
    -------
    str
    """
    recipe = {
        "format": _FORMAT_VERSION,
        "training": TRAINING_VERSION,
        "act_momentum": ACT_MOMENTUM,
        "multiplier_bits": MULTIPLIER_BITS,
        "spec": dataclasses.asdict(spec),
        "config": dataclasses.asdict(config),
        "train": train_hash,
        "test": test_hash,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:20]


@dataclass(eq=False)
class TrainedModel:
    """A trained network with its integer export and measured accuracies.

    Parameters
    ----------
    net_name:
        Network name.
    config:
        Training hyper-parameters.
    network:
        The exported integer network.
    model:
        The fake-quant float model (eval mode), e.g. for sensitivity analysis.
    float_accuracy:
        Test accuracy (0..1) of ``model``.
    int_accuracy:
        Test accuracy (0..1) of ``network.forward_int``.
    agreement:
        Fraction of test images on which both predict the same class.
    train_seconds:
        Wall time of the training run (of the original run when loaded from cache).
    path:
        Cache file.
    from_cache:
        True when loaded rather than trained.
    """

    net_name: str
    config: TrainConfig
    network: QuantizedNetwork
    model: QATNet
    float_accuracy: float
    int_accuracy: float
    agreement: float
    train_seconds: float
    path: Path
    from_cache: bool


def get_trained(
    net_name: str,
    train_set: Dataset,
    test_set: Dataset,
    *,
    epochs: int | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
    shift: int | None = None,
    flip: bool | None = None,
    cache_dir: str | Path | None = None,
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainedModel:
    """Train a network once and reload it from the cache afterwards.

    Parameters
    ----------
    net_name:
        Built-in network name.
    train_set, test_set:
        Data; their content hashes are part of the cache key.
    epochs, seed, batch_size, lr, weight_decay, shift, flip:
        Training hyper-parameters (see :class:`TrainConfig`); ``None`` takes the
        network's :func:`default_config` value.
    cache_dir:
        Cache folder; default :func:`default_cache_dir`. Entries live in
        ``<cache_dir>/nn/<net_name>-<key>.npz``.
    threads, log:
        Passed to :func:`train`.

    Returns
    -------
    TrainedModel

    Notes
    -----
    A cache entry that cannot be used (empty, truncated, another version, wrong
    fields) is named in one warning line (:func:`remeco.models.cachefile.warn_damaged`),
    retrained and replaced.
    """
    spec = net_spec(net_name)
    config = _config(
        spec, epochs=epochs, seed=seed, batch_size=batch_size, lr=lr,
        weight_decay=weight_decay, shift=shift, flip=flip,
    )  # fmt: skip
    key = cache_key(spec, config, train_set.content_hash, test_set.content_hash)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / "nn" / f"{spec.name}-{key}.npz"
    if path.exists():
        try:
            return _load_trained(path, spec, config, key)
        except (*DAMAGED, zipfile.BadZipFile, zlib.error, RuntimeError) as exc:
            # Empty, truncated, foreign or hand-edited: one warning line, then retrain.
            warn_damaged(path, exc)
    start = time.perf_counter()
    model = train(spec, train_set, **dataclasses.asdict(config), threads=threads, log=log)
    seconds = time.perf_counter() - start
    network = export(model)
    float_pred = predict_logits(model, test_set.images).argmax(1)
    int_pred = network.predict(test_set.images)
    stats = {
        "float_accuracy": float(np.mean(float_pred == test_set.labels)),
        "int_accuracy": float(np.mean(int_pred == test_set.labels)),
        "agreement": float(np.mean(float_pred == int_pred)),
        "train_seconds": seconds,
    }
    arrays = network.to_arrays()
    arrays.update({f"float.{k}": v.detach().numpy() for k, v in model.state_dict().items()})
    arrays["train.meta"] = np.array(json.dumps({"key": key, "torch": torch.__version__, **stats}))
    _atomic_savez(path, arrays)
    return TrainedModel(spec.name, config, network, model, path=path, from_cache=False, **stats)


def save_network_once(network: QuantizedNetwork, path: str | Path) -> Path:
    """Make ``path`` hold ``network`` (a content-named file shared by runs): kept when it
    loads and equals ``network``, else (missing, damaged, different) written atomically.
    A damaged file is named in one warning line."""
    path = Path(path)
    if path.exists():
        try:
            if QuantizedNetwork.load(path) == network:
                return path
            raise ValueError("holds another network")
        except (*DAMAGED, zipfile.BadZipFile, zlib.error) as exc:
            warn_damaged(path, exc)
    network.save(path)
    return path


_STATS = ("float_accuracy", "int_accuracy", "agreement", "train_seconds")


def _load_trained(path: Path, spec: NetSpec, config: TrainConfig, key: str) -> TrainedModel:
    """Read and validate a cache entry; any problem raises (the caller retrains)."""
    if not path.is_file():
        raise ValueError("not a file")
    if path.stat().st_size == 0:
        raise ValueError("empty file")
    with np.load(path, allow_pickle=False) as arrays:
        if not hasattr(arrays, "files"):
            raise ValueError("not an .npz archive")
        network = QuantizedNetwork.from_arrays(arrays)
        meta = json.loads(str(arrays["train.meta"][()]))
        model = QATNet(spec)
        state = {
            k[len("float.") :]: torch.from_numpy(np.array(arrays[k])) for k in arrays.files if k.startswith("float.")
        }
    if not isinstance(meta, dict) or meta.get("key") != key:
        raise ValueError("train.meta does not name this entry's key")
    if network.name != spec.name or tuple(network.input_shape) != tuple(spec.input_shape) \
            or network.num_classes != spec.num_classes or len(network.layers) != len(spec.layers):
        raise ValueError(f"the stored network is not a {spec.name}")
    model.load_state_dict(state)  # strict: a missing, extra or mis-shaped tensor raises RuntimeError
    model.eval()
    stats = {k: float(meta[k]) for k in _STATS}
    if not all(math.isfinite(v) for v in stats.values()) or not all(0 <= stats[k] <= 1 for k in _STATS[:3]):
        raise ValueError(f"train.meta holds impossible statistics {stats}")
    return TrainedModel(spec.name, config, network, model, path=path, from_cache=True, **stats)
