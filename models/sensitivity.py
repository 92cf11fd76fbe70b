"""Back-propagation sensitivity of neurons and layers (ReMeCo, Section 3).

ReMeCo defines the sensitivity of an output neuron as the mean, over training instances
and over the neuron's weights, of dE/dw (E: the training loss, here cross-entropy on the
logits of the fake-quantized network; gradients pass the quantizers straight through).
A layer's sensitivity is the mean over its output neurons. Two readings are computed in
one pass over the data, from per-instance gradients:

``"paper"``
    ``|mean_n mean_w dE_n/dw|``: the definition as written (signed mean, then its
    magnitude, which is what the paper's histograms show).
``"magnitude"``
    ``mean_n |mean_w dE_n/dw|``: the per-instance magnitude, which does not let
    instances with opposite gradients cancel (a trained network's mean gradient is
    close to zero by construction).

Layer sensitivity is the mean of the chosen neuron score over the layer's neurons.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from .cachefile import DAMAGED, atomic_write_text, warn_damaged

__all__ = ["MODES", "Sensitivity", "cached_sensitivity", "neuron_sensitivity", "plot_histograms"]

MODES = ("paper", "magnitude")


@dataclass(frozen=True)
class Sensitivity:
    """Per-neuron sensitivities of every layer (plain data).

    Attributes
    ----------
    signed:
        Per layer, ``(out_features,)`` mean over instances and weights of dE/dw.
    magnitude:
        Per layer, ``(out_features,)`` mean over instances of ``|mean_w dE/dw|``.
    images:
        Number of training instances averaged.
    """

    signed: tuple[np.ndarray, ...]
    magnitude: tuple[np.ndarray, ...]
    images: int

    def neuron(self, mode: str = "paper") -> tuple[np.ndarray, ...]:
        """Non-negative neuron scores per layer for ``mode`` (see the module docstring)."""
        if mode == "paper":
            return tuple(np.abs(s) for s in self.signed)
        if mode == "magnitude":
            return self.magnitude
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")

    def layer(self, mode: str = "paper") -> np.ndarray:
        """Layer sensitivities ``(layers,)``: mean neuron score of each layer."""
        return np.array([float(s.mean()) for s in self.neuron(mode)])

    def to_dict(self) -> dict:
        """JSON-friendly view."""
        return {
            "signed": [s.tolist() for s in self.signed],
            "magnitude": [s.tolist() for s in self.magnitude],
            "images": self.images,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Sensitivity":
        """Inverse of :meth:`to_dict`; ``ValueError`` naming the field if ``data`` is not one."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        missing = [k for k in ("signed", "magnitude", "images") if k not in data]
        if missing:
            raise ValueError(f"missing field(s) {', '.join(missing)}")
        images = data["images"]
        if isinstance(images, bool) or not isinstance(images, int) or images < 1:
            raise ValueError(f"images must be a positive integer, got {images!r}")
        layers = {}
        for key in ("signed", "magnitude"):
            value = data[key]
            if not isinstance(value, list) or not value or not all(isinstance(v, list) and v for v in value):
                raise ValueError(f"{key} must be a non-empty list of non-empty per-layer lists")
            if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for v in value for x in v):
                raise ValueError(f"{key} must hold numbers only")
            arrays = tuple(np.asarray(v, dtype=np.float64) for v in value)
            if not all(np.isfinite(a).all() for a in arrays):
                raise ValueError(f"{key} holds a non-finite number")
            layers[key] = arrays
        if [a.shape for a in layers["signed"]] != [a.shape for a in layers["magnitude"]]:
            raise ValueError("signed and magnitude differ in layers or neurons")
        if any((a < 0).any() for a in layers["magnitude"]):
            raise ValueError("magnitude holds a negative number")
        return cls(layers["signed"], layers["magnitude"], images)


def cached_sensitivity(path: str | Path, compute: Callable[[], "Sensitivity"], neurons: Sequence[int]) -> "Sensitivity":
    """The sensitivity stored at ``path`` (JSON of :meth:`Sensitivity.to_dict`), or ``compute()``'s, stored there.

    The stored entry must parse and have ``neurons[i]`` neurons in layer ``i``; anything
    else (empty, truncated, wrong fields, another network) is named in one warning line
    and recomputed (:func:`remeco.models.cachefile.warn_damaged`). The file is written
    atomically, so an interrupted run never leaves half of it.
    """
    path = Path(path)
    want = [int(n) for n in neurons]
    if path.exists():
        try:
            sens = Sensitivity.from_dict(json.loads(path.read_text(encoding="utf-8")))
            got = [a.size for a in sens.signed]
            if got != want:
                raise ValueError(f"neurons per layer {got}, the network has {want}")
            return sens
        except DAMAGED as exc:
            warn_damaged(path, exc)
    sens = compute()
    atomic_write_text(path, json.dumps(sens.to_dict()))
    return sens


def neuron_sensitivity(
    model: torch.nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int = 200,
) -> Sensitivity:
    """Sensitivity of every output neuron of every layer of a fake-quant network.

    Parameters
    ----------
    model:
        A trained :class:`remeco.models.nn.QATNet` (its ``layers`` each hold a ``weight``
        with the output neuron on axis 0). It is evaluated in eval mode; its state is not
        changed.
    images:
        uint8 training images ``(N, C, H, W)``.
    labels:
        Integer labels ``(N,)``.
    batch_size:
        Instances per vectorized gradient batch (memory bound).
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty (N, C, H, W) array, got shape {images.shape}")
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},), got {labels.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    names = [f"layers.{i}.weight" for i in range(len(model.layers))]
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def loss(p, x, y):
        logits = functional_call(model, (p, buffers), (x[None],))
        return F.cross_entropy(logits, y[None])

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))
    signed = [torch.zeros(params[n].shape[0], dtype=torch.float64) for n in names]
    magnitude = [torch.zeros_like(s) for s in signed]
    try:
        for start in range(0, len(images), batch_size):
            x = torch.tensor(images[start : start + batch_size], dtype=torch.float32)
            y = torch.tensor(labels[start : start + batch_size], dtype=torch.int64)
            grads = per_sample(params, x, y)
            for i, n in enumerate(names):
                g = grads[n].flatten(2).mean(dim=2).to(torch.float64)  # (B, out): mean over the neuron's weights
                signed[i] += g.sum(dim=0)
                magnitude[i] += g.abs().sum(dim=0)
    finally:
        model.train(was_training)
    n_images = len(images)
    return Sensitivity(
        tuple((s / n_images).numpy() for s in signed),
        tuple((m / n_images).numpy() for m in magnitude),
        n_images,
    )


def plot_histograms(sens: Sensitivity, path, *, mode: str = "paper", layer_names=None):
    """Histograms of neuron sensitivity, one panel per layer (the paper's Fig. 4); returns the figure.

    Panels share both axes so layers compare at a glance: a log-scaled sensitivity axis
    with the same bins in every panel (scores span decades between layers), and the
    share of the layer's neurons in %; a dashed line marks the layer's mean (its layer
    sensitivity). Neurons with a score of exactly 0 cannot sit on a log axis and are
    counted in the panel instead. The title names the mode and the number of training
    images averaged. Written as PNG, PDF or SVG by the suffix of ``path``
    (:mod:`remeco.models.plotstyle`; another suffix is a ``ValueError`` before drawing).
    """
    from .plotstyle import PAGE_IN, paper_figure

    scores = sens.neuron(mode)  # a bad mode is a ValueError before the file is touched
    names = layer_names or [f"layer {i + 1}" for i in range(len(scores))]
    positive = np.concatenate([s[s > 0] for s in scores])
    if positive.size:
        lo, hi = np.log10(positive.min()), np.log10(positive.max())
        bins = np.logspace(np.floor(lo), np.ceil(hi) if hi > lo else np.floor(lo) + 1, 25)
    else:
        bins = np.logspace(-1, 0, 25)  # all zero: empty panels, zeros counted in each
    n = len(scores)
    ncols = n if n <= 5 else -(-n // 2)
    nrows = -(-n // ncols)
    # dE/dw: cross-entropy (natural log, so nats) per unit of the (dimensionless) weight.
    xlabel = {"paper": "|mean dE/dw| (nat per unit weight)",
              "magnitude": "mean |dE/dw| (nat per unit weight)"}[mode]
    with paper_figure(path, width=PAGE_IN, height=1.0 + 1.3 * nrows, nrows=nrows, ncols=ncols,
                      sharex=True, sharey=True) as (fig, axes):
        flat = axes.ravel()
        for ax, s, name in zip(flat, scores, names):
            s = np.asarray(s, dtype=np.float64)
            weights = np.full(s.size, 100.0 / s.size)
            ax.hist(s[s > 0], bins=bins, weights=weights[s > 0], color="tab:blue")
            ax.set_xscale("log")
            if (s > 0).any():
                ax.axvline(s.mean(), color="tab:red", ls="--", lw=1.0)
            zeros = int((s == 0).sum())
            ax.set_title(f"{name}, {s.size} neurons", pad=3)
            if zeros:
                ax.text(0.02, 0.97, f"{zeros} at 0", transform=ax.transAxes, ha="left", va="top")
        for ax in flat[n:]:
            ax.set_visible(False)
        for ax in axes[:, 0]:
            ax.set_ylabel("neurons (% of layer)")
        fig.supxlabel(xlabel)
        # The key in the title: a legend inside a 1.4 in panel covers the bars it explains.
        fig.suptitle(f"Neuron sensitivity ({mode} mode), averaged over {sens.images:,} training images; "
                     "dashed: layer mean")
    return fig
