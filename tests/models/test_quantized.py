"""The integer network (:mod:`remeco.models.quantized`) without torch: one definition, importable and exact."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from remeco.models import nn, quantized


def test_nn_re_exports_the_one_definition():
    for name in ("QuantizedNetwork", "QuantizedLayer", "requantize", "quantize_multiplier", "im2col",
                 "exact_matmul", "MatmulFn", "MULTIPLIER_BITS", "MAX_SHIFT"):
        assert getattr(nn, name) is getattr(quantized, name), name
        assert name in nn.__all__ and name in quantized.__all__
    assert nn._FORMAT_VERSION == quantized.FORMAT_VERSION  # the training cache key follows the file layout


def test_inference_modules_import_and_run_without_torch_or_scipy(lenet5_small, mnist5k, tmp_path):
    """With torch and SciPy unimportable, a saved network loads and forward_int gives the same logits."""
    _, net = lenet5_small
    images = mnist5k[1].images[:64]
    net.save(tmp_path / "net.npz")
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "want.npy", net.forward_int(images))
    code = f"""
import sys
sys.modules["torch"] = sys.modules["scipy"] = None  # import -> ImportError
import numpy as np
import remeco.models.network, remeco.models.redundancy, remeco.models.fabric
from remeco.models.quantized import QuantizedNetwork
net = QuantizedNetwork.load({str(tmp_path / "net.npz")!r})
got = net.forward_int(np.load({str(tmp_path / "images.npy")!r}), batch_size=7)
assert got.dtype == np.int32 and (got == np.load({str(tmp_path / "want.npy")!r})).all()
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


# -- a network is checked against what its arrays and numbers will be used for ---------------------
def _net(**changes) -> "quantized.QuantizedNetwork":
    """conv (1 x 8 x 8, kernel 3, pool 2) -> dense 36 -> 10; ``changes`` edit layer fields
    (``conv_<field>`` / ``dense_<field>``) or the network's (``input_shape``, ``num_classes``)."""
    rng = np.random.default_rng(0)
    conv = dict(kind="conv", weight=rng.integers(-127, 128, (9, 4)).astype(np.int8), bias=np.zeros(4, np.int32),
                weight_shape=(4, 1, 3, 3), input_shape=(1, 8, 8), kernel=3, stride=1, padding=0, pool=2,
                input_scale=1.0, weight_scale=1.0, output_scale=1.0, multiplier=1 << 14, shift=20, relu=True)
    dense = dict(conv, kind="dense", weight=rng.integers(-127, 128, (36, 10)).astype(np.int8),
                 bias=np.zeros(10, np.int32), weight_shape=(10, 36), input_shape=(36,), kernel=1, pool=1,
                 multiplier=0, shift=0, relu=False)
    net = {"input_shape": (1, 8, 8), "num_classes": 10}
    for key, value in changes.items():
        target, _, name = key.partition("_")
        {"conv": conv, "dense": dense}.get(target, net)[name if target in ("conv", "dense") else key] = value
    layers = [quantized.QuantizedLayer(**conv), quantized.QuantizedLayer(**dense)]
    return quantized.QuantizedNetwork("t", net["input_shape"], net["num_classes"], layers)


def test_a_consistent_network_builds_and_round_trips():
    net = _net()
    assert quantized.QuantizedNetwork.from_arrays(net.to_arrays()) == net
    assert net.forward_int(np.zeros((2, 1, 8, 8), np.uint8)).shape == (2, 10)


@pytest.mark.parametrize("changes, message", [
    ({"conv_kind": "pool"}, "layer kind must be 'conv' or 'dense'"),
    ({"conv_stride": 0}, "stride must be an integer >= 1"),
    ({"conv_padding": -1}, "padding must be an integer >= 0"),
    ({"conv_pool": 0}, "pool must be an integer >= 1"),
    ({"conv_kernel": 2.0}, "kernel must be an integer"),
    ({"conv_shift": -1}, "shift must be an integer >= 0"),
    ({"conv_shift": 63}, "requantization multiplier 16384 / shift 63 outside"),
    ({"conv_multiplier": 0}, "requantization multiplier 0 / shift 20 outside"),
    ({"conv_relu": "yes"}, "relu must be true or false"),
    ({"conv_kernel": 2}, "has 4 weight rows, the weight matrix 9"),
    ({"conv_kernel": 3, "conv_input_shape": (1, 2, 2)}, "leave no output"),
    ({"conv_pool": 7}, "leave no output"),
    ({"conv_weight_shape": (4, 1, 3, 4)}, "does not hold the"),
    ({"dense_input_shape": (35,)}, "input_shape must be \\(36,\\)"),
    ({"conv_input_shape": (1, 10, 8), "input_shape": (1, 10, 8)}, "layer 1 \\(dense\\) takes \\(36,\\), the layer before gives \\(4, 4, 3\\)"),
    ({"input_shape": (1, 9, 9)}, "layer 0 \\(conv\\) takes \\(1, 8, 8\\), the layer before gives \\(1, 9, 9\\)"),
    ({"dense_relu": True, "dense_multiplier": 1 << 14}, "every layer but the last must have relu true, the last false"),
    ({"num_classes": 11}, "num_classes must equal the last layer's 10 outputs"),
])
def test_inconsistent_networks_are_one_line_value_errors(changes, message):
    with pytest.raises(ValueError, match=message) as err:
        _net(**changes)
    assert len(str(err.value).splitlines()) == 1


def test_from_arrays_refuses_meta_that_is_not_a_network():
    arrays = _net().to_arrays()
    for meta in ([], {"format": quantized.FORMAT_VERSION, "name": "t", "layers": [7]},
                 {"format": quantized.FORMAT_VERSION, "name": "t", "layers": []}):
        with pytest.raises(ValueError, match="qnet.meta must"):
            quantized.QuantizedNetwork.from_arrays({**arrays, "qnet.meta": np.array(json.dumps(meta))})
