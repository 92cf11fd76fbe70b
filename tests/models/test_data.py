"""Tests of remeco.models.data: the embedded split and the IDX / CIFAR-10 readers."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from remeco.models.data import (
    DataError,
    Dataset,
    load_cifar10,
    load_dataset,
    load_mnist5k,
    load_mnist_idx,
    mnist5k_path,
    read_idx,
)

# ----------------------------------------------------------------------------- embedded subset


@pytest.fixture(scope="module")
def mnist5k() -> tuple[Dataset, Dataset]:
    return load_dataset()


def test_embedded_split_sizes_types_and_balance(mnist5k):
    train, test = mnist5k
    assert (len(train), len(test)) == (4000, 1000)
    for ds in (train, test):
        assert ds.images.dtype == np.uint8 and ds.images.shape[1:] == (1, 28, 28)
        assert ds.labels.dtype == np.int64
        assert ds.labels.min() == 0 and ds.labels.max() == 9
    assert np.bincount(train.labels).tolist() == [400] * 10
    assert np.bincount(test.labels).tolist() == [100] * 10
    # Real digits use the whole 8-bit range and are mostly background.
    assert train.images.max() == 255 and 0.7 < np.mean(train.images == 0) < 0.9


def test_embedded_split_is_a_shuffled_partition_of_the_csv(mnist5k):
    train, test = mnist5k
    table = np.loadtxt(mnist5k_path(), delimiter=",", dtype=np.int64)
    rows = {hashlib.sha1(r.astype(np.uint8).tobytes()).hexdigest() for r in table}
    split = [
        hashlib.sha1(np.append(img.ravel(), lab).astype(np.uint8).tobytes()).hexdigest()
        for ds in (train, test)
        for img, lab in zip(ds.images, ds.labels)
    ]
    assert len(set(split)) == 5000 and set(split) == rows
    # The CSV is sorted by label; the split must not be (classes interleaved).
    assert len(np.unique(train.labels[:50])) == 10


def test_embedded_split_is_deterministic(mnist5k):
    train, test = mnist5k
    train2, test2 = load_mnist5k()
    assert np.array_equal(train.images, train2.images) and np.array_equal(test.labels, test2.labels)
    assert (train.content_hash, test.content_hash) == (train2.content_hash, test2.content_hash)
    assert train.content_hash != test.content_hash and len(train.content_hash) == 16


def test_content_hash_follows_content_not_name(mnist5k):
    train, _ = mnist5k
    a = train.subset(100, name="a")
    b = Dataset("b", a.images.copy(), a.labels.copy())
    assert a.content_hash == b.content_hash
    flipped = a.images.copy()
    flipped[0, 0, 0, 0] ^= 1
    assert Dataset("a", flipped, a.labels.copy()).content_hash != a.content_hash
    assert not train.images.flags.writeable  # frozen, so the hash stays true


def test_dataset_validates_arrays():
    with pytest.raises(ValueError, match="uint8"):
        Dataset("x", np.zeros((2, 1, 4, 4), np.float32), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="labels"):
        Dataset("x", np.zeros((2, 1, 4, 4), np.uint8), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="0..9"):
        Dataset("x", np.zeros((1, 1, 4, 4), np.uint8), np.array([10]))


def test_load_dataset_rejects_unknown_name_and_missing_dir():
    with pytest.raises(ValueError, match=r"name must be one of .*'imagenet'"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="data_dir is required"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="data_dir is required"):
        load_dataset("cifar10")


def test_mnist5k_csv_errors(tmp_path):
    bad = tmp_path / "short.csv"
    bad.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(DataError, match=r"short\.csv.*785 columns"):
        load_mnist5k(bad)
    with pytest.raises(DataError, match=r"nothere\.csv.*not found"):
        load_mnist5k(tmp_path / "nothere.csv")


# ----------------------------------------------------------------------------- IDX (MNIST)


def _idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """An IDX file in the real format: magic, big-endian dims, raw bytes."""
    magic = (0x08 << 8) | array.ndim if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_mnist(folder: Path, n_train: int = 7, n_test: int = 3, gz: bool = False, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        data = _idx_bytes(array)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_idx_loader_reads_real_format(tmp_path, gz):
    arrays = _write_mnist(tmp_path, gz=gz)
    train, test = load_dataset("mnist", tmp_path)
    assert train.images.shape == (7, 1, 28, 28) and test.images.shape == (3, 1, 28, 28)
    assert np.array_equal(train.images[:, 0], arrays["train-images-idx3-ubyte"])
    assert np.array_equal(test.labels, arrays["t10k-labels-idx1-ubyte"].astype(np.int64))
    assert train.labels.dtype == np.int64 and train.name == "mnist/train"


def test_idx_loader_finds_torchvision_layout(tmp_path):
    arrays = _write_mnist(tmp_path / "MNIST" / "raw")
    train, _ = load_mnist_idx(tmp_path)
    assert np.array_equal(train.labels, arrays["train-labels-idx1-ubyte"])


def test_idx_missing_file_named(tmp_path):
    _write_mnist(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.*not found"):
        load_dataset("mnist", tmp_path)


def test_idx_bad_magic_named(tmp_path):
    _write_mnist(tmp_path)
    images = np.zeros((7, 28, 28), np.uint8)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(images, magic=0x00000801))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: bad magic number 0x00000801, expected 0x00000803"):
        load_dataset("mnist", tmp_path)


def test_idx_truncated_payload_named(tmp_path):
    _write_mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: truncated: 2342 data bytes, expected 2352"):
        load_dataset("mnist", tmp_path)


def test_idx_truncated_header_and_gzip_named(tmp_path):
    (tmp_path / "a").write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match=r"a: truncated"):
        read_idx(tmp_path / "a", 1)
    (tmp_path / "b").write_bytes(_idx_bytes(np.zeros((3, 28, 28), np.uint8))[:10])
    with pytest.raises(DataError, match=r"b: truncated header"):
        read_idx(tmp_path / "b", 3)
    blob = gzip.compress(_idx_bytes(np.arange(100, dtype=np.uint8)))
    (tmp_path / "c.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"c\.gz: truncated or corrupt gzip"):
        read_idx(tmp_path / "c.gz", 1)


def test_idx_count_mismatch_named(tmp_path):
    _write_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(6, np.uint8)))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: 6 labels, expected 7"):
        load_dataset("mnist", tmp_path)


def test_idx_wrong_dims_and_trailing_bytes_named(tmp_path):
    _write_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(np.zeros((7, 27, 28), np.uint8)))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: item dimensions \(27, 28\), expected \(28, 28\)"):
        load_dataset("mnist", tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(np.zeros((7, 28, 28), np.uint8)))
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: 1 bytes beyond"):
        load_dataset("mnist", tmp_path)


def test_idx_label_out_of_range_named(tmp_path):
    _write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.array([1, 12, 3], np.uint8)))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: label 12"):
        load_dataset("mnist", tmp_path)


# ----------------------------------------------------------------------------- CIFAR-10


def _write_cifar(folder: Path, per_batch: int = 2, n_test: int = 3, protocol: int = 2, seed: int = 2) -> dict:
    """Batches in the real format: pickled dicts with bytes keys, uint8 (N, 3072) data."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else per_batch
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img{i}.png".encode() for i in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        written[name] = batch
    return written


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar_loader_reads_real_format(tmp_path, protocol):
    written = _write_cifar(tmp_path / "cifar-10-batches-py", protocol=protocol)
    train, test = load_dataset("cifar10", tmp_path)
    assert train.images.shape == (10, 3, 32, 32) and test.images.shape == (3, 3, 32, 32)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    # Row layout: 1024 red, then green, then blue values, each plane row-major.
    row = written["data_batch_2"][b"data"][1]
    image = train.images[3]
    assert image[0, 0, 0] == row[0] and image[1, 0, 0] == row[1024] and image[2, 31, 31] == row[3071]
    assert image[0, 1, 5] == row[32 + 5]
    expected = sum((written[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert train.labels.tolist() == expected
    assert test.labels.tolist() == written["test_batch"][b"labels"]


def test_cifar_loader_accepts_the_batches_folder_itself(tmp_path):
    _write_cifar(tmp_path)
    train, _ = load_cifar10(tmp_path)
    assert len(train) == 10


def test_cifar_missing_batch_named(tmp_path):
    _write_cifar(tmp_path)
    os.remove(tmp_path / "data_batch_4")
    with pytest.raises(DataError, match=r"data_batch_4: file not found"):
        load_dataset("cifar10", tmp_path)


def test_cifar_truncated_batch_named(tmp_path):
    _write_cifar(tmp_path)
    path = tmp_path / "test_batch"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"test_batch: truncated or not a CIFAR-10 python batch"):
        load_dataset("cifar10", tmp_path)


def test_cifar_garbage_named(tmp_path):
    _write_cifar(tmp_path)
    (tmp_path / "data_batch_1").write_bytes(b"GIF89a not a pickle at all")
    with pytest.raises(DataError, match=r"data_batch_1: truncated or not a CIFAR-10 python batch"):
        load_dataset("cifar10", tmp_path)


def test_cifar_count_mismatch_named(tmp_path):
    written = _write_cifar(tmp_path)
    batch = written["data_batch_3"]
    batch[b"labels"] = batch[b"labels"][:1]
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_3: 1 labels, expected 2"):
        load_dataset("cifar10", tmp_path)


def test_cifar_wrong_shape_and_keys_named(tmp_path):
    written = _write_cifar(tmp_path)
    batch = dict(written["data_batch_5"])
    batch[b"data"] = batch[b"data"][:, :3071]
    (tmp_path / "data_batch_5").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_5: b'data' is uint8 \(2, 3071\), expected uint8 of shape \(N, 3072\)"):
        load_dataset("cifar10", tmp_path)
    (tmp_path / "data_batch_5").write_bytes(pickle.dumps({b"pixels": 1}, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_5: expected a pickled dict"):
        load_dataset("cifar10", tmp_path)


class _Hostile:
    """Unpickling this would call os.getpid (harmless stand-in for arbitrary code)."""

    def __reduce__(self):
        return (os.getpid, ())


def test_cifar_refuses_code_in_pickles(tmp_path):
    _write_cifar(tmp_path)
    (tmp_path / "data_batch_2").write_bytes(pickle.dumps({b"data": _Hostile(), b"labels": []}, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_2: .*getpid is not allowed"):
        load_dataset("cifar10", tmp_path)
