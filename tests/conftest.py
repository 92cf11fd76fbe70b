"""Shared fixtures: a briefly trained LeNet-5 (a few seconds) reused across test modules."""

from __future__ import annotations

import pytest

from remeco.models import nn as rn
from remeco.models.data import load_dataset


@pytest.fixture(scope="session", autouse=True)
def remeco_cache(tmp_path_factory):
    """A private trained-model cache for the session: tests never touch ~/.cache."""
    path = tmp_path_factory.mktemp("remeco-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("REMECO_CACHE", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="session")
def mnist5k():
    """The embedded MNIST-5k split (train, test)."""
    return load_dataset()


@pytest.fixture(scope="session")
def lenet5_small(mnist5k):
    """LeNet-5 trained on 2,000 images for 5 epochs, one thread: (QATNet, QuantizedNetwork)."""
    train, _ = mnist5k
    model = rn.train("lenet5", train.subset(range(2000)), epochs=5, seed=0, threads=1)
    return model, rn.export(model)
