"""The integer network (:mod:`remeco.models.quantized`) without torch: one definition, importable and exact."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

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
