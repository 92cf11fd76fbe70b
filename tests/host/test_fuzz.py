"""Property-based robustness (hypothesis, issue 12): random and mutated input to the file
loaders and the CLI parsers ends in the loader's own one-line error (a ``ValueError``
family the CLI prints as one line, exit 2) or a valid result, never a traceback of
another kind, and no file is left half-written.

Kept to about a minute in the default run (few examples each, no deadline).
"""

from __future__ import annotations

import json
import shlex
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from remeco.host.bundle import BundleError, load_bundle
from remeco.host.cli import main
from remeco.host.store import ResultStore, SchemaError
from remeco.models.cost import load_preset
from remeco.models.data import DataError, load_cifar10, read_idx
from remeco.models.sensitivity import Sensitivity, cached_sensitivity

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    buf = bytearray(data)
    for pos, value in edits:
        if buf:
            buf[pos % len(buf)] = value
    return bytes(buf[:cut] if cut is not None else buf)


mutations = st.tuples(st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=6),
                      st.one_of(st.none(), st.integers(0, 400)))


def _good_idx() -> bytes:
    arr = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    return struct.pack(">IIII", 0x803, 2, 28, 28) + arr.tobytes()


@FAST
@given(mut=mutations)
def test_idx_loader(mut):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "images-idx3-ubyte"
        path.write_bytes(_mutate(_good_idx(), *mut))
        try:
            arr = read_idx(path, 3, (28, 28))
        except DataError as exc:
            assert str(path) in str(exc) or path.name in str(exc)
        else:
            assert arr.shape[1:] == (28, 28) and arr.dtype == np.uint8


@FAST
@given(data=st.binary(max_size=300))
# BINUNICODE8 with a length beyond any file: once an OverflowError and a MemoryError.
@example(data=b"\x8d\x00\x00\x00\x00\x00\x00\x00\x80")
@example(data=b"\x8d\x00\x00\x00\x00\x00\x00\x00\x01")
def test_cifar_batches(data):
    with tempfile.TemporaryDirectory() as tmp:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            Path(tmp, name).write_bytes(data)
        with pytest.raises(DataError):
            load_cifar10(tmp)


@FAST
@given(data=st.binary(max_size=400), zip_head=st.booleans())
def test_bundle_loader(data, zip_head):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "b.npz"
        path.write_bytes((b"PK\x03\x04" if zip_head else b"") + data)
        with pytest.raises(BundleError):
            load_bundle(path)


json_values = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=4),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                           max_leaves=10)


@FAST
@given(value=st.one_of(json_values, st.fixed_dictionaries({"signed": json_values, "magnitude": json_values,
                                                           "images": json_values})),
       raw=st.one_of(st.none(), st.binary(max_size=50)))
def test_sensitivity_cache(value, raw):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.json"
        path.write_bytes(raw if raw is not None else json.dumps(value).encode())
        fresh = Sensitivity((np.ones(2),), (np.ones(2),), 1)
        sens = cached_sensitivity(path, lambda: fresh, [2])
        assert [a.size for a in sens.signed] == [2]
        assert Sensitivity.from_dict(json.loads(path.read_text())).images >= 1  # whole, valid file
        assert sorted(p.name for p in Path(tmp).iterdir()) == ["s.json"]


@FAST
@given(value=json_values)
def test_cost_presets(value):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.json"
        path.write_text(json.dumps(value))
        try:
            load_preset(path)
        except ValueError:
            pass


@FAST
@given(data=st.binary(max_size=600), sqlite_head=st.booleans())
def test_results_database(data, sqlite_head):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.db"
        path.write_bytes((b"SQLite format 3\x00" if sqlite_head else b"") + data)
        try:
            with ResultStore(path) as store:
                store.campaigns()
        except (SchemaError, ValueError):
            pass


COMMANDS = ["reproduce", "run", "bundle", "dse", "train", "sensitivity", "search", "demo"]
OPTIONS = ["--instances", "--test-images", "--images", "--seed", "--out", "--plan", "--backend", "--faults",
           "--workers", "--scheduler", "--size", "--epochs", "--tolerance", "--bundle", "--executor", "--timeout"]
VALUES = ["-1", "0", "nan", "inf", "1e400", "x", "", "/dev/null", "/", "tcp://", "99999999999999999999", "0.5", "base"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(COMMANDS),
       args=st.lists(st.tuples(st.sampled_from(OPTIONS), st.sampled_from(VALUES)), min_size=1, max_size=3))
def test_cli_parsers(command, args, monkeypatch, capsys):
    """Hostile arguments: argparse's usage error (exit 2) or one line, exit 2, before any work."""
    import remeco.host.dse as dse
    import remeco.host.network_cli as network_cli
    import remeco.host.reproduce as reproduce
    import remeco.host.run_cli as run_cli

    class Work(Exception):
        pass

    def work(*_a, **_k):
        raise Work

    for module, name in [(reproduce, "get_trained"), (reproduce, "load_dataset"), (run_cli, "load_network"),
                         (run_cli, "open_accelerator"), (run_cli, "load_dataset"), (network_cli, "load_dataset"),
                         (dse, "load_dataset"), (reproduce, "prepare")]:
        monkeypatch.setattr(module, name, work)
    argv = [command] + [x for pair in args for x in pair]
    with tempfile.TemporaryDirectory() as tmp:
        monkeypatch.chdir(tmp)
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse: usage line(s) and exit 2
            assert exc.code == 2, shlex.join(argv)
            return
        except Work:
            return  # the arguments were valid enough to start work
        finally:
            err = capsys.readouterr().err
        assert "Traceback" not in err
        if status == 2:
            assert len(err.strip().splitlines()) == 1, (shlex.join(argv), err)
