"""The engine's torch path: emulation steps 2-7 with torch ops only, on any torch device.

Exactness: the bit planes are 0/1 and the cell codes integers with ``rows * |code| <
2**24``, so a float32 GEMM of planes by codes gives every column sum exactly (integers
below 2**24 are exact in float32, and an exact sum is exact whatever the order);
TF32 / reduced-precision reductions are switched off for the call. From the ADC on,
everything is int64. im2col, max pooling and requantization are written with torch ops
so the whole network stays on the device.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["TorchLayer", "forward_network"]


@contextmanager
def _exact_float32():
    """Full-precision float32 matmuls (no TF32 on GPUs, no reduced-precision reductions)."""
    matmul = torch.backends.cuda.matmul
    saved = (torch.get_float32_matmul_precision(), matmul.allow_tf32, matmul.allow_fp16_reduced_precision_reduction)
    torch.set_float32_matmul_precision("highest")
    matmul.allow_tf32 = False
    matmul.allow_fp16_reduced_precision_reduction = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved[0])
        matmul.allow_tf32, matmul.allow_fp16_reduced_precision_reduction = saved[1], saved[2]


def _round_shift(v: torch.Tensor, shift) -> torch.Tensor:
    """``floor((v + 2**(shift-1)) / 2**shift)`` on int64, shift a scalar or a tensor (0 passes)."""
    shift = torch.as_tensor(shift, dtype=torch.int64, device=v.device)
    half = torch.where(shift > 0, torch.ones_like(shift) << (shift - 1).clamp(min=0), torch.zeros_like(shift))
    return (v + half) >> shift


class TorchLayer:
    """One layer of one chip instance as device tensors."""

    def __init__(self, mapped_layer, quantized_layer, adc_shift: int, codes2: np.ndarray, groups, device) -> None:
        fmt = mapped_layer.fmt
        if fmt.rows * max(-fmt.code_min, fmt.code_max) >= 1 << 24:
            raise ValueError("format too wide for the torch path's exact float32 sums (rows * |code| >= 2**24)")
        dev = torch.device(device or "cpu")
        self.device = dev
        self.fmt = fmt
        self.fan_in = mapped_layer.fan_in
        self.neurons = mapped_layer.neurons
        self.adc_shift = int(adc_shift)
        self.codes = [torch.as_tensor(codes2[t, : min(fmt.rows, self.fan_in - t * fmt.rows)].astype(np.float32),
                                      device=dev) for t in range(mapped_layer.row_tiles)]
        # Column -> (neuron, slice) group for the copy sums; per-group copies_log2.
        group = np.empty(mapped_layer.physical_columns, dtype=np.int64)
        group[groups.cols] = np.repeat(np.arange(len(groups.k)), np.diff(groups.start))
        self.group = torch.as_tensor(group, device=dev)
        self.k = torch.as_tensor(groups.k.astype(np.int64), device=dev)
        self.bias = torch.as_tensor(quantized_layer.bias.astype(np.int64), device=dev)
        self.relu = bool(quantized_layer.relu)
        self.multiplier = int(quantized_layer.multiplier)
        self.shift = int(quantized_layer.shift)
        self.q = quantized_layer

    def forward(self, rows: torch.Tensor, index: int) -> torch.Tensor:
        """uint8 rows ``(R, K)`` on the device -> uint8 ``(R, N)`` (hidden) or int64 ``(R, N)`` (last)."""
        fmt = self.fmt
        r = rows.shape[0]
        xi = rows.to(torch.int64)
        if xi.numel() and int(xi.max()) >> fmt.input_bits:  # as the reference's bit planes refuse them
            raise ValueError(f"layer {index}: inputs must be in [0, {(1 << fmt.input_bits) - 1}]")
        y = torch.zeros((r, self.group.numel()), dtype=torch.int64, device=self.device)
        bits = torch.arange(fmt.input_bits, device=self.device, dtype=torch.int64)
        half = float(1 << (self.adc_shift - 1)) if self.adc_shift else 0.0
        scale = float(1 << self.adc_shift)
        for t, ct in enumerate(self.codes):
            xt = xi[:, t * fmt.rows : t * fmt.rows + ct.shape[0]]
            planes = ((xt.unsqueeze(0) >> bits.view(-1, 1, 1)) & 1).to(torch.float32)  # (B, R, kt)
            acc = planes @ ct  # step 2: exact integer sums
            adc = torch.floor((acc + half) / scale).clamp_(0, fmt.adc_max).to(torch.int64)  # step 3
            y += (adc << bits.view(-1, 1, 1)).sum(dim=0)  # step 4
        sums = torch.zeros((r, self.k.numel()), dtype=torch.int64, device=self.device)
        sums.index_add_(1, self.group, y)
        avg = _round_shift(sums, self.k).view(r, self.neurons, fmt.n_slices)  # step 5
        weights = torch.tensor([1 << (fmt.slice_bits * s) for s in range(fmt.n_slices)], dtype=torch.int64,
                               device=self.device)
        combined = (avg * weights).sum(dim=2)
        x_sum = xi.sum(dim=1, keepdim=True)
        z = (combined << self.adc_shift) - ((fmt.weight_offset * x_sum) << fmt.code_frac)  # step 6
        t = _round_shift(z, fmt.code_frac) + self.bias  # step 7
        if t.numel() and (int(t.max()) > 2**31 - 1 or int(t.min()) < -(2**31)):
            raise OverflowError(f"layer {index}: accumulator outside int32")
        if not self.relu:
            return t
        return _round_shift(t * self.multiplier, self.shift).clamp_(0, 255).to(torch.uint8)


def _input_rows(q, x: torch.Tensor) -> torch.Tensor:
    """im2col of uint8 activations on the device, in :func:`remeco.models.quantized.im2col` order."""
    if q.kind != "conv":
        return x.reshape(x.shape[0], -1)
    if q.padding:
        x = torch.nn.functional.pad(x, (q.padding,) * 4)
    k, s = q.kernel, q.stride
    win = x.unfold(2, k, s).unfold(3, k, s)  # (N, C, Ho, Wo, k, k)
    return win.permute(0, 2, 3, 1, 4, 5).reshape(-1, x.shape[1] * k * k)


def _arrange(q, codes: torch.Tensor, n: int) -> torch.Tensor:
    """Device version of :meth:`~remeco.models.quantized.QuantizedLayer.arrange_outputs`."""
    if q.kind == "dense":
        return codes.reshape(n, q.out_features)
    h, w = q.positions
    x = codes.reshape(n, h, w, q.out_features).permute(0, 3, 1, 2)
    p = q.pool
    if p > 1:
        hp, wp = h // p, w // p
        x = x[:, :, : hp * p, : wp * p].reshape(n, q.out_features, hp, p, wp, p).amax(dim=(3, 5))
    return x.contiguous()


def forward_network(net, layers, images: np.ndarray, batch_size: int, device) -> np.ndarray:
    """int64 logits of one committee copy: every layer with :class:`TorchLayer` on ``device``."""
    dev = torch.device(device or "cpu")
    outs = []
    with torch.no_grad(), _exact_float32():
        for start in range(0, len(images), batch_size):
            x = torch.as_tensor(np.array(images[start : start + batch_size]), device=dev)  # a writable copy
            n = x.shape[0]
            for index, (q, layer) in enumerate(zip(net.layers, layers)):
                out = layer.forward(_input_rows(q, x), index)
                x = _arrange(q, out, n) if q.relu else out.reshape(n, -1)
            outs.append(x.cpu().numpy().astype(np.int64))
    return np.concatenate(outs)
