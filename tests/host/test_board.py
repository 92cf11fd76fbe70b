"""The ``board`` backend (:mod:`remeco.host.board`).

pynq 4.0 pins numpy<2, so it lives in ``.venv-board`` (made by ``scripts/setup.sh``), not in
this environment: :func:`test_pynq_device_on_simulated_zynq` runs
``tests/board_env/check_board.py`` there, where :class:`~remeco.host.board.PynqDevice`
drives pynq's own ``Overlay``, ``MMIO``, ``allocate`` and ``AxiDMA`` driver on a simulated
Zynq that pynq discovers through ``pynq.Device``. The rest runs here, without pynq.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from remeco.host import board, driver

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
    "dma_configuration_checks",
}


def test_without_pynq_the_error_names_the_board_environment(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynq", None)  # import pynq -> ImportError, as in this venv
    with pytest.raises(ImportError) as info:
        board.PynqDevice(FIXTURES / "remeco.bit")
    message = str(info.value)
    for needle in ("pynq==4.0.0", "remeco[board]", ".venv-board", "numpy<2"):
        assert needle in message, message


def test_bus_error_is_the_drivers_class():
    err = board._bus_error("SLVERR: test")
    assert type(err) is driver.BusError


def test_fixture_is_a_bit_and_hwh_pair():
    bit, hwh = FIXTURES / "remeco.bit", FIXTURES / "remeco.hwh"
    assert bit.read_bytes()[:2] == b"\x00\x09" and b"7z020clg400" in bit.read_bytes()
    text = hwh.read_text()
    for needle in ("xilinx.com:ip:processing_system7:5.5", "xilinx.com:ip:axi_dma:7.1",
                   "xilinx.com:module_ref:remeco_axi:1.0", 'NAME="c_include_sg" VALUE="0"'):
        assert needle in text


def test_pynq_device_on_simulated_zynq():
    if not BOARD_PYTHON.exists():
        pytest.skip(".venv-board is absent (scripts/setup.sh creates it): the pynq check cannot run")
    proc = subprocess.run(
        [str(BOARD_PYTHON), str(CHECK)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{proc.stderr[-3000:]}"
    summary = json.loads(lines[-1])
    failed = {k: v for k, v in summary["checks"].items() if v != "ok"}
    assert not failed, "\n".join(lines[:-1])[-6000:]
    assert summary["ok"] and proc.returncode == 0, proc.stderr[-3000:]
    assert set(summary["checks"]) == EXPECTED_CHECKS
    assert summary["pynq"] == "4.0.0" and summary["numpy"].startswith("1.")
