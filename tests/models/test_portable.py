"""Pinned float kernels (remeco.models.portable): the trained network does not depend on
the CPU's vector kernels, the caller's torch settings or thread count."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from remeco.models import nn as rn
from remeco.models import portable

#: The default LeNet-5 recipe on the embedded MNIST-5k split, seed 0 (`remeco train
#: --json`), trained with pinned kernels: measured on an AMD EPYC (Zen 4). Before the
#: pins the same recipe gave 80dec441... there and 43e8470f... on an Intel Xeon. A CI
#: machine of another CPU type that trains another network fails here.
LENET5_SHA256 = "54ed51d9844cb1bc87b865c99a97c9f9c1f29bf34baa04f629e3d1309c1b637f"

# Trains one epoch on 1,000 images, pinned (rn.train) or in this process's own kernels
# (rn._train_here, what training was before the pins), and prints a digest of every
# float parameter and buffer: far more sensitive than the 8-bit network.
_SCRIPT = """
import hashlib, sys
import torch
from remeco.models import nn as rn
from remeco.models.data import load_dataset
train, _ = load_dataset()
small = train.subset(1000)
if sys.argv[1] == "pinned":
    model = rn.train("lenet5", small, epochs=1, seed=0)
else:
    config = rn.TrainConfig(epochs=1, seed=0)
    model = rn._train_here(rn.net_spec("lenet5"), torch.from_numpy(small.images.copy()),
                           torch.from_numpy(small.labels.copy()), config, None)
print(hashlib.sha256(b"".join(v.numpy().tobytes() for v in model.state_dict().values())).hexdigest())
"""

_KNOBS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS")


def _digest(mode: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k not in _KNOBS}
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, mode], env={**base, **env}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip()


def _has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo") as handle:
            return " avx2" in handle.read()
    except OSError:
        return False


@pytest.mark.skipif(not _has_avx2(), reason="needs an x86-64 CPU with AVX2 (two ATen kernel sets to compare)")
def test_training_does_not_depend_on_the_float_kernels():
    """The caller's process picks other float kernels (ATen's vector width, MKL's
    branch, oneDNN's ISA, threads): unpinned training changes with them, pinned
    training does not."""
    vector = {"ATEN_CPU_CAPABILITY": "avx2"}
    baseline = {"ATEN_CPU_CAPABILITY": "default"}
    # The control: these settings do move unpinned training on this machine, so the
    # pinned comparison below has something to catch.
    assert _digest("here", **vector) != _digest("here", **baseline)
    pinned = {
        _digest("pinned"),
        _digest("pinned", **vector),
        _digest("pinned", ATEN_CPU_CAPABILITY="avx2", MKL_CBWR="AVX2", ONEDNN_MAX_CPU_ISA="AVX2", OMP_NUM_THREADS="2"),
    }
    assert len(pinned) == 1


def test_default_lenet5_is_the_same_network_on_every_machine(mnist5k):
    train, test = mnist5k
    trained = rn.get_trained("lenet5", train, test, seed=0)
    assert trained.network.sha256() == LENET5_SHA256


def test_pinned_child_settings_and_file_protocol():
    lines = []
    x = np.arange(12, dtype=np.int16).reshape(3, 4)
    out = portable.run_pinned("remeco.models.portable:probe", {"x": x}, {}, log=lines.append)
    settings = json.loads(str(out["settings"]))
    assert settings["capability"] == "DEFAULT" and settings["mkldnn"] == "False" and settings["threads"] == "1"
    assert {k: settings[k] for k in portable.PINNED_ENV} == dict(portable.PINNED_ENV)
    assert out["echo"].dtype == np.int16 and np.array_equal(out["echo"], x)
    assert lines == ["probe running"]


def test_pinned_child_failure_is_one_line():
    with pytest.raises(portable.PinnedProcessError) as info:
        portable.run_pinned("remeco.models.portable:no_such_function", {}, {})
    message = str(info.value)
    assert "\n" not in message and "AttributeError" in message and "no_such_function" in message


def test_check_pinned_refuses_an_unpinned_process(monkeypatch):
    # This test process runs with the machine's own kernels (or another value of a knob).
    monkeypatch.setenv("MKL_CBWR", "AUTO")
    with pytest.raises(RuntimeError, match="ATen runs|MKL_CBWR"):
        portable.check_pinned()


def test_training_logs_each_epoch_from_the_child(mnist5k):
    lines = []
    rn.train("lenet5", mnist5k[0].subset(100), epochs=2, seed=0, log=lines.append)
    assert [line.split(":")[0] for line in lines] == ["lenet5 epoch 1/2", "lenet5 epoch 2/2"]
