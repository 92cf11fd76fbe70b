"""AlexNet on CIFAR-10 python batches through ``remeco`` (issue 11).

The batches are small synthetic ones in the real format: pickled dicts with ``b'data'``
(uint8, N x 3072, red then green then blue plane, each row-major), ``b'labels'`` (a list of
ints), ``b'batch_label'`` and ``b'filenames'``, plus ``batches.meta``, as files
``data_batch_1`` .. ``data_batch_5`` and ``test_batch`` in ``cifar-10-batches-py/``.

Default run: the loader on that format, AlexNet trained and exported from it by
``remeco train``, and every bad batch is one line from ``reproduce`` and both ``search``
methods before any training.

``slow``: ``reproduce`` and ``search`` (heuristic, pareto) on AlexNet, end to end through the
commands, the default engine and the JSON, with every chip instance *ideal* (its cell codes
are the target codes; :func:`ideal_chips`). Simulating the devices is out of reach here:
AlexNet's base plan alone is ~1.2e8 devices, and programming one instance of it ran >10 min
and held >9 GB on the 2-core development machine (committee and layer averaging twice that).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from remeco.host.cli import main
from remeco.models.data import load_dataset
from remeco.models.redundancy import PLAN_NAMES

PER_BATCH = 8  # images per batch: 40 training, 8 test
ALEXNET_PARAMETERS = 58_294_666
ALEXNET_LAYERS = [96, 256, 384, 384, 256, 4096, 4096, 10]  # neurons per layer (models.nn docstring)


def write_batch(path: Path, data: np.ndarray, labels, protocol: int = 2) -> None:
    """One CIFAR-10 python batch as the originals hold it (keys are bytes)."""
    batch = {b"batch_label": path.name.encode(), b"labels": [int(v) for v in labels], b"data": data,
             b"filenames": [f"img_{i}.png".encode() for i in range(len(data))]}
    path.write_bytes(pickle.dumps(batch, protocol=protocol))


def write_cifar(root: Path, *, per_batch: int = PER_BATCH, seed: int = 0, protocol: int = 2) -> Path:
    """``root/cifar-10-batches-py`` with five training batches, a test batch and the meta file.

    The classes differ in brightness, so one short epoch can already learn something."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, per_batch)
        data = np.clip(labels[:, None] * 24 + rng.integers(0, 40, (per_batch, 3072)), 0, 255).astype(np.uint8)
        write_batch(folder / name, data, labels, protocol)
    meta = {b"label_names": [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                                  "horse", "ship", "truck")],
            b"num_cases_per_batch": per_batch, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return folder


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> Path:
    """The folder holding ``cifar-10-batches-py/`` (what a user passes as ``--data-dir``)."""
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(root)
    return root


# ----------------------------------------------------------------------------- the loader


@pytest.mark.parametrize("protocol", [2, 5])
def test_batches_load_as_images_in_channel_planes(tmp_path, protocol):
    folder = write_cifar(tmp_path, protocol=protocol)
    raw = [pickle.loads((folder / f"data_batch_{i}").read_bytes()) for i in range(1, 6)]
    for data_dir in (tmp_path, folder):  # the parent or the batches folder itself
        train, test = load_dataset("cifar10", data_dir)
        assert train.images.shape == (5 * PER_BATCH, 3, 32, 32) and test.images.shape == (PER_BATCH, 3, 32, 32)
        # data_batch_1 .. 5 in order; a row is 1024 red, 1024 green, 1024 blue values, row-major
        assert np.array_equal(train.labels, np.concatenate([b[b"labels"] for b in raw]))
        row = raw[1][b"data"][3]
        image = train.images[PER_BATCH + 3]
        for c in range(3):
            assert np.array_equal(image[c], row[1024 * c:1024 * (c + 1)].reshape(32, 32))
        assert image[1, 0, 5] == row[1024 + 5] and image[2, 31, 0] == row[2048 + 31 * 32]


# ----------------------------------------------------------------------------- bad input


def _no_training(*_a, **_k):
    raise AssertionError("work started before the arguments and the data were checked")


def _break(folder: Path, case: str) -> str:
    """Damage the batches as ``case`` says; returns what the error line must name."""
    if case == "no batches":
        for p in folder.iterdir():
            p.unlink()
        return f"{folder}: no CIFAR-10 python batches"
    if case == "missing batch":
        (folder / "data_batch_3").unlink()
        return f"{folder / 'data_batch_3'}: file not found"
    if case == "truncated batch":
        path = folder / "test_batch"
        path.write_bytes(path.read_bytes()[:5000])
        return f"{path}: truncated or not a CIFAR-10 python batch"
    if case == "text file":
        (folder / "data_batch_1").write_text("airplane,automobile\n")
        return f"{folder / 'data_batch_1'}: truncated or not a CIFAR-10 python batch"
    if case == "wrong shape":
        write_batch(folder / "data_batch_2", np.zeros((4, 32 * 32), np.uint8), [0] * 4)
        return "b'data' is uint8 (4, 1024), expected uint8 of shape (N, 3072)"
    if case == "float labels":
        write_batch(folder / "test_batch", np.zeros((2, 3072), np.uint8), [0, 1])
        batch = pickle.loads((folder / "test_batch").read_bytes())
        batch[b"labels"] = [0.0, 1.5]
        (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
        return f"{folder / 'test_batch'}: b'labels' is not a list of integers"
    if case == "empty batch":
        write_batch(folder / "test_batch", np.zeros((0, 3072), np.uint8), [])
        return f"{folder / 'test_batch'}: b'data' holds no images"
    raise AssertionError(case)


CASES = ["no batches", "missing batch", "truncated batch", "text file", "wrong shape", "float labels", "empty batch"]
COMMANDS = [["reproduce"], ["search", "--method", "heuristic"], ["search", "--method", "pareto"]]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("command", COMMANDS, ids=["reproduce", "heuristic", "pareto"])
def test_bad_batches_are_one_line_before_training(tmp_path, capsys, monkeypatch, command, case):
    import remeco.host.reproduce as reproduce

    monkeypatch.setattr(reproduce, "get_trained", _no_training)
    folder = write_cifar(tmp_path / "data")
    expected = _break(folder, case)
    argv = [*command, "--net", "alexnet", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"),
            "--epochs", "1", "--instances", "1", "--test-images", "2", "--out", str(tmp_path / "out"), "--json"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith(f"remeco {command[0]}: error: ") and expected in lines[0], lines[0]
    assert captured.out == ""


@pytest.mark.parametrize("command", COMMANDS, ids=["reproduce", "heuristic", "pareto"])
@pytest.mark.parametrize("net,dataset,message", [
    ("lenet5", "cifar10", "--net lenet5 takes 1x28x28 images; --dataset cifar10 has 3x32x32"),
    ("alexnet", "mnist5k", "--net alexnet takes 3x32x32 images; --dataset mnist5k has 1x28x28"),
])
def test_network_and_data_that_do_not_fit_are_one_line(cifar, tmp_path, capsys, monkeypatch, command, net, dataset,
                                                        message):
    import remeco.host.reproduce as reproduce

    monkeypatch.setattr(reproduce, "load_dataset", _no_training)
    argv = [*command, "--net", net, "--dataset", dataset, "--epochs", "1", "--instances", "1",
            "--test-images", "2", "--out", str(tmp_path), "--json"]
    if dataset == "cifar10":
        argv += ["--data-dir", str(cifar)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"remeco {command[0]}: error: {message}"


# ----------------------------------------------------------------------------- AlexNet, end to end


def test_train_alexnet_on_the_batches(cifar, capsys):
    assert main(["train", "--net", "alexnet", "--dataset", "cifar10", "--data-dir", str(cifar), "--epochs", "1",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["net"] == "alexnet" and out["parameters"] == ALEXNET_PARAMETERS
    for key in ("float_accuracy", "int_accuracy", "agreement"):
        assert 0 <= out[key] <= 1
    assert len(out["network_sha256"]) == 64


@pytest.fixture
def ideal_chips(monkeypatch):
    """Campaign tasks program every chip instance as the ideal chip: cell codes = target codes
    (a codes-only :class:`~remeco.models.network.ProgrammedNetwork`, as a bundle holds one)."""
    import remeco.host.reproduce as reproduce
    from remeco.models.network import ProgrammedNetwork

    def program(mapped, params, *, seed, instance):
        codes = tuple(layer.target_levels() << mapped.fmt.code_frac for layer in mapped.layers)
        return ProgrammedNetwork((), (codes,) * (1 << mapped.plan.committee_log2))

    monkeypatch.setattr(reproduce, "program_network", program)


def _run_json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    return json.loads(captured.out)


def _common(cifar: Path, out: Path, epochs: int = 1) -> list[str]:
    return ["--net", "alexnet", "--dataset", "cifar10", "--data-dir", str(cifar), "--epochs", str(epochs),
            "--instances", "1", "--test-images", "2", "--executor", "serial", "--out", str(out), "--json"]


def _check_alexnet(result: dict, cifar: Path, out: Path) -> None:
    config = result["config"]
    assert config["net"] == "alexnet" and config["dataset"] == "cifar10" and config["data_dir"] == str(cifar)
    assert config["test_images"] == 2
    assert 0 <= result["software_accuracy"] <= 1
    from remeco.models.quantized import QuantizedNetwork

    (file,) = out.glob("network-alexnet-*.npz")
    network = QuantizedNetwork.load(file)
    assert network.sha256() == result["network_sha256"]
    assert [layer.out_features for layer in network.layers] == ALEXNET_LAYERS
    assert network.num_parameters == ALEXNET_PARAMETERS


@pytest.mark.slow
def test_reproduce_alexnet(cifar, tmp_path, capsys, ideal_chips):
    out = tmp_path / "reproduce"
    result = _run_json(capsys, ["reproduce", *_common(cifar, out)])
    _check_alexnet(result, cifar, out)
    assert [r["plan"] for r in result["rows"]] == list(PLAN_NAMES)
    by_plan = {r["plan"]: r for r in result["rows"]}
    for r in result["rows"]:
        assert r["accuracy_mean"] in (0.0, 0.5, 1.0)  # one chip instance, two images
        assert r["area_mm2"] > 0 and r["energy_j_per_10k_images"] > 0
    assert by_plan["committee"]["area_mm2"] > by_plan["base"]["area_mm2"]
    assert json.loads((out / "reproduce.json").read_text()) == result


@pytest.mark.slow
def test_search_heuristic_alexnet(cifar, tmp_path, capsys, ideal_chips):
    out = tmp_path / "search"
    result = _run_json(capsys, ["search", "--method", "heuristic", *_common(cifar, out)])
    _check_alexnet(result, cifar, out)
    assert result["trials"] and all(0 <= t["accuracy"] <= 1 for t in result["trials"])
    assert result["trials"][0]["kept"]  # the first, full-redundancy trial is the reference
    assert len(result["chosen"]["copies_log2"]) == len(ALEXNET_LAYERS)


@pytest.mark.slow
def test_search_pareto_alexnet(cifar, tmp_path, capsys, ideal_chips):
    out = tmp_path / "pareto"
    # recovery needs a network that classifies something: 3 epochs get 1 of the 8 test images
    result = _run_json(capsys, ["search", "--method", "pareto", "--trials", "1", *_common(cifar, out, epochs=3)])
    assert result["evaluated"] >= 1 and result["front"]
    for r in result["front"]:
        assert 0 <= r["accuracy_mean"] <= 1 and r["area_mm2"] > 0
    assert (out / "pareto.sqlite3").exists()


def test_trials_of_a_search_calibrate_the_adcs_once(tmp_path, monkeypatch):
    """Every trial plan is a campaign of its own; the ADC shifts are the network's, computed once."""
    import remeco.host.reproduce as reproduce
    from remeco.models.redundancy import make_plan

    calls = []
    real = reproduce.calibrate_adc_shifts
    monkeypatch.setattr(reproduce, "calibrate_adc_shifts", lambda *a, **k: calls.append(1) or real(*a, **k))
    ctx = reproduce.prepare(net="lenet5", epochs=1, test_images=20, out_dir=tmp_path, plot=False, log=lambda *_: None)
    sizes = [layer.out_features for layer in ctx["network"].layers]
    plans = [make_plan(name, sizes, ctx["sensitivity"], n_slices=ctx["fmt"].n_slices) for name in ("base", "msb")]
    first = [reproduce.run_plans(ctx, {p.name: p}, instances=1, executor="serial")[p.name] for p in plans]
    assert len(calls) == 1
    reproduce._SHIFTS.clear()
    reproduce._MEMO.clear()
    (tmp_path / "results.sqlite").unlink()
    again = reproduce.run_plans(ctx, {p.name: p for p in plans}, instances=1, executor="serial")
    assert len(calls) == 2 and [a.tolist() for a in first] == [again[p.name].tolist() for p in plans]


def test_pareto_refuses_a_network_that_classifies_nothing(tmp_path, capsys, monkeypatch):
    """Recovery is accuracy / software accuracy: a useless network (AlexNet after one step on
    a few images) is one line after training, not a ZeroDivisionError after the search."""
    import types

    import remeco.host.reproduce as reproduce

    useless = {"trained": types.SimpleNamespace(int_accuracy=0.0), "test_images": 2}
    monkeypatch.setattr(reproduce, "prepare", lambda **_: useless)
    monkeypatch.setattr(reproduce, "run_plans", _no_training)
    assert main(["search", "--method", "pareto", "--trials", "1", "--instances", "1", "--test-images", "2",
                 "--out", str(tmp_path), "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("remeco search: error: the trained lenet5 classifies none of the test images") and \
        len(err.splitlines()) == 1
