"""Property-based robustness (hypothesis, issue 12): random and mutated input to the file
loaders (IDX, CIFAR batches, bundles and the network inside them, caches, presets, chip
files, results databases) and the CLI parsers (every campaign option, ``--engine`` and
``--device`` included) ends in the loader's own one-line error (a ``ValueError`` family
the CLI prints as one line, exit 2) or a valid result, never a traceback of another kind,
and no file is left half-written.

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
from remeco.models.chip import ChipParams
from remeco.models.chipfile import ChipConfigError, to_toml
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
           "--workers", "--scheduler", "--size", "--epochs", "--tolerance", "--bundle", "--executor", "--timeout",
           "--engine", "--device", "--area-model", "--chip", "--instance"]
VALUES = ["-1", "0", "nan", "inf", "1e400", "x", "", "/dev/null", "/", "tcp://", "99999999999999999999", "0.5", "base",
          "native", "torch", "reference", "cpu", "cuda", "cuda:7", "cpu:-1", "meta", "tiles", "paper", "isaac",
          "chip.toml"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(COMMANDS),
       args=st.lists(st.tuples(st.sampled_from(OPTIONS), st.sampled_from(VALUES)), min_size=1, max_size=3))
def test_cli_parsers(command, args, monkeypatch, capsys):
    """Hostile arguments: argparse's usage error (exit 2) or one line, exit 2, before any work."""
    import remeco.host.demo as demo
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
                         (dse, "load_dataset"), (reproduce, "prepare"), (demo, "run_demo")]:
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


# -- chip files (ChipParams.load) ----------------------------------------------------------------
def _preset_text() -> bytes:
    from importlib import resources

    return (resources.files("remeco.models.presets") / "chips" / "isaac.toml").read_bytes()


_CHIP = ChipParams().to_dict()
_CHIP_KEYS = [(k,) for k, v in _CHIP.items() if not isinstance(v, dict)] + \
    [(k, sub) for k, v in _CHIP.items() if isinstance(v, dict) for sub in v] + [("bogus",), ("device", "bogus")]
chip_values = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=4),
                        st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _load_chip(path: Path) -> None:
    try:
        chip = ChipParams.load(path)
    except ChipConfigError as exc:
        assert len(str(exc).splitlines()) == 1 and str(path) in str(exc), str(exc)
    else:
        assert chip.device.levels == chip.datapath.levels  # a chip that loads is one the mapping can use


@FAST
@given(mut=mutations, suffix=st.sampled_from([".toml", ".json"]))
def test_chip_file_bytes(mut, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"chip{suffix}"
        path.write_bytes(_mutate(_preset_text(), *mut))
        _load_chip(path)


@FAST
@given(edits=st.lists(st.tuples(st.sampled_from(_CHIP_KEYS), chip_values), min_size=1, max_size=3),
       suffix=st.sampled_from([".toml", ".json"]))
def test_chip_file_values(edits, suffix):
    data = json.loads(json.dumps(_CHIP))
    for key, value in edits:
        target = data
        for part in key[:-1]:
            target = target[part] if isinstance(target.get(part), dict) else target.setdefault(part, {})
        target[key[-1]] = value
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"chip{suffix}"
        try:
            path.write_text(to_toml(data) if suffix == ".toml" else json.dumps(data))
        except (TypeError, ValueError):  # a value TOML / JSON cannot hold: nothing to load
            return
        _load_chip(path)


# -- the network and plans inside a bundle (structure, not bytes) ------------------------------------
@pytest.fixture(scope="module")
def bundle_arrays(tmp_path_factory):
    """The arrays of a small valid bundle: random conv (1 x 8 x 8 -> 4 x 3 x 3 after pooling) and
    dense layers (no torch, nothing trained), two plans, an ideal chip, expected logits."""
    from remeco.host.bundle import Bundle, save_bundle
    from remeco.host.engines import EngineCache
    from remeco.models.emulation import EmulationFormat
    from remeco.models.network import calibrate_adc_shifts, map_network, program_network
    from remeco.models.quantized import QuantizedLayer, QuantizedNetwork
    from remeco.models.redundancy import make_plan

    rng = np.random.default_rng(0)

    def layer(kind, k, n, input_shape, relu, **geo):
        weight = rng.integers(-127, 128, size=(k, n)).astype(np.int8)
        bias = rng.integers(-500, 500, size=n).astype(np.int32)
        return QuantizedLayer(kind, weight, bias, (n, k), input_shape, geo.get("kernel", 1), 1, 0, geo.get("pool", 1),
                              1.0, 1.0, 1.0, *((1 << 14, 22) if relu else (0, 0)), relu)

    net = QuantizedNetwork("fuzz", (1, 8, 8), 10, [layer("conv", 9, 4, (1, 8, 8), True, kernel=3, pool=2),
                                                   layer("dense", 36, 10, (36,), False)])
    images = rng.integers(0, 256, size=(4, 1, 8, 8)).astype(np.uint8)
    fmt = EmulationFormat()
    shifts = calibrate_adc_shifts(net, fmt, images)
    mapped = {n: map_network(net, make_plan(n, [4, 10], n_slices=fmt.n_slices), fmt, shifts)
              for n in ("base", "layer_averaging")}
    chips = {(n, 0): program_network(m, ChipParams.ideal(), seed=0, instance=0) for n, m in mapped.items()}
    expected = {k: EngineCache("reference").logits(mapped[k[0]], images, c) for k, c in chips.items()}
    bundle = Bundle(mapped, chips, images, np.arange(4), {}, expected)
    path = save_bundle(tmp_path_factory.mktemp("bundle") / "b.npz", bundle)
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _json_paths(doc, prefix=()):
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _json_paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _json_paths(v, prefix + (i,))
    if prefix:
        yield prefix


meta_values = st.one_of(st.none(), st.booleans(), st.sampled_from([-1, 0, 1, 2, 5, 40, 63, 2**31, 2**70]),
                        st.floats(), st.text(max_size=3), st.just([]), st.just({}), st.just([1, 28, 28]))
ARRAY_EDITS = ("negate", "add300", "zeros", "float", "halve", "drop")


@FAST
@given(data=st.data())
# Found by this test: an AttributeError (a layer entry that is not an object) and a TypeError
# at run time (a padding of [] accepted by the loader).
@example(data="layer-not-object")
@example(data="padding-list")
def test_bundle_structure(bundle_arrays, data):
    """A bundle whose network, plans or chips were edited: BundleError (one line) or a bundle
    every part of which has the sizes, ranges and shifts inference will use."""
    q = json.loads(str(bundle_arrays["qnet.meta"][()]))
    b = json.loads(str(bundle_arrays["bundle.meta"][()]))
    arrays = dict(bundle_arrays)
    if data == "layer-not-object":
        q["layers"][1] = 7
    elif data == "padding-list":
        q["layers"][0]["padding"] = []
    else:
        for doc in (q, b):
            paths = [p for p in _json_paths(doc) if p[0] != "info"]
            for path, value in data.draw(st.lists(st.tuples(st.sampled_from(paths), meta_values), max_size=2)):
                target = doc
                try:
                    for part in path[:-1]:
                        target = target[part]
                    target[path[-1]] = value
                except (TypeError, IndexError, KeyError):  # an earlier edit changed the structure
                    pass
        names = sorted(k for k in arrays if not k.endswith("meta"))
        for name, how in data.draw(st.lists(st.tuples(st.sampled_from(names), st.sampled_from(ARRAY_EDITS)), max_size=2)):
            a = arrays.get(name)
            if a is None:
                continue
            arrays[name] = {"negate": lambda: -a - 1 if a.dtype.kind == "i" else a,
                            "add300": lambda: (a.astype(np.int64) + 300).astype(a.dtype),
                            "zeros": lambda: np.zeros_like(a), "float": lambda: a.astype(np.float64),
                            "halve": lambda: a.reshape(-1)[: max(1, a.size // 2)], "drop": lambda: None}[how]()
    arrays = {k: v for k, v in arrays.items() if v is not None}
    arrays["qnet.meta"], arrays["bundle.meta"] = np.array(json.dumps(q)), np.array(json.dumps(b))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "b.npz"
        np.savez_compressed(path, **arrays)
        try:
            bundle = load_bundle(path)
        except BundleError as exc:
            assert len(str(exc).splitlines()) == 1 and str(path) in str(exc), str(exc)
            return
        # Loaded: every chip instance runs on the emulation model without another error.
        from remeco.models.network import infer

        for (plan, instance), chip in bundle.chips.items():
            logits = infer(bundle.mapped[plan], bundle.images, executor="emulation", programmed=chip)
            assert logits.shape == (len(bundle.images), bundle.network.num_classes)
