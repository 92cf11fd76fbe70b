"""The ``board`` backend (:mod:`remeco.host.board`).

pynq 4.0 pins numpy<2, so it lives in ``.venv-board`` (made by ``scripts/setup.sh``), not in
this environment: :func:`test_pynq_device_on_simulated_zynq` runs
``tests/board_env/check_board.py`` there, where :class:`~remeco.host.board.PynqDevice`
drives pynq's own ``Overlay``, ``MMIO``, ``allocate`` and ``AxiDMA`` driver on a simulated
Zynq that pynq discovers through ``pynq.Device``. The rest runs here, without pynq.

The board path end to end, as on a PYNQ-Z2 without torch: this environment maps the
session's LeNet-5 under two plans, writes a bundle (:mod:`remeco.host.bundle`) and the
``model`` backend's logits with run-time faults injected; in ``.venv-board`` (no torch,
SciPy or Amaranth) the simulated Zynq then carries the accelerator model behind pynq's
DMA, and ``Accelerator(PynqDevice(...))`` and ``remeco run --backend board --bundle`` must
reproduce those logits bit for bit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from remeco.host import board, driver
from remeco.host.bundle import Bundle, save_bundle
from remeco.host.driver import Accelerator
from remeco.host.run_cli import CALIBRATION_IMAGES, STUCK_ON_FRACTION
from remeco.models.chip import ChipParams
from remeco.models.emulation import EmulationFormat
from remeco.models.fabric import FabricConfig
from remeco.models.network import calibrate_adc_shifts, map_network, program_network
from remeco.models.redundancy import make_plan
from remeco.rtl import ip

ROOT = Path(__file__).resolve().parents[2]
BOARD_PYTHON = ROOT / ".venv-board" / "bin" / "python"
CHECK = ROOT / "tests" / "board_env" / "check_board.py"
FIXTURES = Path(__file__).resolve().parent / "board_fixtures"

EXPECTED_CHECKS = {
    "discovery",
    "pynq_plain_download_on_zynq7000",
    "open_downloads_and_binds",
    "satisfies_the_driver_protocol",
    "registers",
    "bus_errors_refused_before_the_bus",
    "echo_round_trips",
    "large_round",
    "returned_words_are_a_copy",
    "load_stream_mm2s_only",
    "s2mm_timeout_names_the_channel_and_recovers",
    "mm2s_timeout_names_the_channel_and_recovers",
    "short_and_long_packets",
    "argument_checks",
    "close_frees_buffers",
    "reopen_without_download",
    "open_errors",
    "overlay_binds_remeco_ip_by_vlnv",
    "another_register_map_gets_pynqs_default_ip",
    "dma_configuration_checks",
    "torch_is_not_importable",
    "bundle_loads_with_numpy_only",
    "lenet_on_the_accelerator_behind_pynq",
    "remeco_ip_infers_as_the_model_backend",
    "the_notebook_on_the_board_backend",
    "remeco_run_board_from_the_bundle",
    "torch_was_never_imported",
}
#: What the board runs, each on 16 images with faults from the on-chip generator: through the
#: driver API, and through ``remeco run`` (committee: two copies of the network, averaged).
CASES = [
    {"via": "driver", "plan": "layer_averaging", "instance": 3, "images": 16, "batch_size": 8,
     "fault_seed": 5, "rate": 0.02, "on_fraction": STUCK_ON_FRACTION},
    {"via": "cli", "plan": "committee", "instance": 3, "images": 16, "batch_size": 16,
     "fault_seed": 7, "rate": 0.05, "on_fraction": STUCK_ON_FRACTION},
]


def test_without_pynq_the_error_names_the_board_environment(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynq", None)  # import pynq -> ImportError, as in this venv
    with pytest.raises(ImportError) as info:
        board.PynqDevice(FIXTURES / "remeco.bit")
    message = str(info.value)
    for needle in ("pynq==4.0.0", "remeco[board]", ".venv-board", "numpy<2"):
        assert needle in message, message


def test_bus_error_is_the_drivers_class():
    # so that ``except BusError`` around the driver catches the board's refusals
    assert board.BusError is driver.BusError


def test_fixture_is_a_bit_and_hwh_pair():
    bit, hwh = FIXTURES / "remeco.bit", FIXTURES / "remeco.hwh"
    assert bit.read_bytes()[:2] == b"\x00\x09" and b"7z020clg400" in bit.read_bytes()
    text = hwh.read_text()
    for needle in ("xilinx.com:ip:processing_system7:5.5", "xilinx.com:ip:axi_dma:7.1",
                   f'INSTANCE="{ip.INSTANCE_NAME}"', 'NAME="c_include_sg" VALUE="0"'):
        assert needle in text
    # the accelerator as the block design packages it: the VLNV defined in remeco.rtl.ip
    assert f'INSTANCE="{ip.INSTANCE_NAME}" IPTYPE="PERIPHERAL" IS_ENABLE="1" MODCLASS="PERIPHERAL" ' \
           f'MODTYPE="{ip.NAME}" VLNV="{ip.VLNV}"' in text


@pytest.fixture(scope="module")
def board_files(tmp_path_factory, lenet5_small, mnist5k):
    """A bundle of the session's LeNet-5 and the model backend's logits for :data:`CASES`: (bundle, expected)."""
    _, net = lenet5_small
    train, test = mnist5k
    fmt = EmulationFormat()
    shifts = calibrate_adc_shifts(net, fmt, train.images[:CALIBRATION_IMAGES])
    sizes = [layer.out_features for layer in net.layers]
    mapped, chips = {}, {}
    for plan in dict.fromkeys(c["plan"] for c in CASES):
        mapped[plan] = map_network(net, make_plan(plan, sizes, n_slices=fmt.n_slices), fmt, shifts)
    for c in CASES:
        chips[c["plan"], c["instance"]] = program_network(mapped[c["plan"]], ChipParams(), seed=0, instance=c["instance"])
    n = max(c["images"] for c in CASES)
    folder = tmp_path_factory.mktemp("board")
    bundle = save_bundle(folder / "lenet.npz", Bundle(mapped, chips, test.images[:n], test.labels[:n], {"test": "board"}))
    expected = {}
    for index, c in enumerate(CASES):
        # from the freshly mapped network, not the file: the board proves the round trip too
        with Accelerator("model", cfg=FabricConfig(fmt=fmt)) as acc:
            acc.load(mapped[c["plan"]], chips[c["plan"], c["instance"]])
            acc.inject_faults(c["fault_seed"], c["rate"], c["on_fraction"])
            expected[f"logits.{index}"] = acc.infer(test.images[: c["images"]], batch_size=c["batch_size"])
            acc.clear_faults()
            clean = acc.infer(test.images[: c["images"]])
        assert not np.array_equal(clean, expected[f"logits.{index}"]), "the faults change no logit: proves nothing"
    np.savez(folder / "expected.npz", cases=np.array(json.dumps(CASES)), **expected)
    return bundle, folder / "expected.npz"


def test_pynq_device_on_simulated_zynq(board_files):
    if not BOARD_PYTHON.exists():
        pytest.skip(".venv-board is absent (scripts/setup.sh creates it): the pynq check cannot run")
    bundle, expected = board_files
    proc = subprocess.run(
        [str(BOARD_PYTHON), str(CHECK), "--bundle", str(bundle), "--expected", str(expected)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{proc.stderr[-3000:]}"
    summary = json.loads(lines[-1])
    failed = {k: v for k, v in summary["checks"].items() if v != "ok"}
    assert not failed, "\n".join(lines[:-1])[-6000:]
    assert summary["ok"] and proc.returncode == 0, proc.stderr[-3000:]
    assert set(summary["checks"]) == EXPECTED_CHECKS
    assert summary["pynq"] == "4.0.0" and summary["numpy"].startswith("1.")
    print(json.dumps(summary["info"], indent=1))


class _BeatDevice:
    """``stream()`` built on ModelDevice's two sides, a few words at a time, as the simulated DMA moves them."""

    def __init__(self, cfg: FabricConfig) -> None:
        self.model = driver.ModelDevice(cfg)
        self.read, self.write, self.close = self.model.read, self.model.write, self.model.close
        self.runs = 0

    def stream(self, words, receive=0, *, timeout=10.0):
        words = np.asarray(words, dtype=np.uint32)
        sent, got = 0, []
        while sent < len(words) or sum(map(len, got)) < receive:
            taken = self.model.send(words[sent : sent + 5])
            sent += taken
            ready = self.model.ready_words
            out, last = self.model.receive(min(3, receive - sum(map(len, got))))
            assert len(out) <= ready
            got.append(out)
            done = sum(map(len, got)) == receive
            assert last == (done and receive > 0), "TLAST must mark exactly the run's last word"
            if not taken and not len(out):
                raise TimeoutError("no progress")
        self.runs += bool(receive)
        return np.concatenate(got) if got else np.zeros(0, np.uint32)


def test_model_device_send_and_receive_are_its_stream(board_files):
    """The sides the simulated Zynq's DMA uses give the logits of ModelDevice.stream, TLAST on each run's end."""
    from remeco.host.bundle import load_bundle

    bundle = load_bundle(board_files[0])
    cfg = FabricConfig(fmt=bundle.fmt)
    plan = CASES[0]["plan"]
    logits = []
    beats = _BeatDevice(cfg)
    for make in (lambda: Accelerator("model", cfg=cfg), lambda: Accelerator(beats)):
        with make() as acc:
            acc.load(bundle.mapped[plan], bundle.chip(plan, CASES[0]["instance"]))
            acc.inject_faults(9, 0.03, 0.5)
            logits.append(acc.infer(bundle.images[:4]))
    np.testing.assert_array_equal(logits[0], logits[1])
    assert beats.runs >= len(bundle.network.layers)
    with pytest.raises(ValueError, match="count must be a non-negative integer"):
        driver.ModelDevice(cfg).receive(-1)
