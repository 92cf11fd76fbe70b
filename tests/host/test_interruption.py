"""Concurrency and interruption of campaigns on one results database (issue 12).

Two campaigns writing one database at once share it safely (no row lost, duplicated or
changed), and a campaign killed with ``kill -9`` at many random points, resumed after
each kill, ends with the database an uninterrupted run writes. The runs are
``tests/host/campaign_helper.py`` processes (a small, deterministic, slow-enough task).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from remeco.host.campaign import run_campaign
from remeco.host.store import ResultStore

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
import campaign_helper as helper  # noqa: E402

TOTAL = helper.SLOW_INSTANCES * len(helper.SLOW_PLANS)


def _start(db: Path, executor: str = "process") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HERE / "campaign_helper.py"), str(db), executor],
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _rows(db: Path) -> list[tuple]:
    """Every row but its timing, in key order (the timing is the only thing runs may differ in)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            return con.execute("SELECT campaign, instance, plan, metrics FROM results "
                               "ORDER BY campaign, instance, plan").fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []


def _clean(tmp_path: Path) -> list[tuple]:
    db = tmp_path / "clean.db"
    with ResultStore(db) as store:
        run_campaign(helper.SLOW_SPEC, helper.slow_task, instances=helper.SLOW_INSTANCES,
                     plans=helper.SLOW_PLANS, store=store, executor="serial")
    return _rows(db)


def _finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return err


def test_two_campaigns_share_one_database(tmp_path):
    db = tmp_path / "shared.db"
    procs = [_start(db), _start(db, "serial")]
    errors = [_finish(p) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert all("Traceback" not in e for e in errors), errors
    rows = _rows(db)
    assert len(rows) == TOTAL == len({r[:3] for r in rows})  # none lost, none duplicated
    assert rows == _clean(tmp_path)  # none changed


def _kill_and_resume(tmp_path: Path, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    db = tmp_path / "killed.db"
    done_kills = 0
    while done_kills < kills:
        proc = _start(db)
        # A random moment: from start-up (before any row) to late in the campaign.
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            done_kills += 1
        proc.wait()
        proc.stderr.close()
        rows = _rows(db)
        assert len(rows) == len({r[:3] for r in rows})
        if len(rows) == TOTAL:  # finished before the kill: start over so every kill lands in a run
            db.unlink()
            for extra in tmp_path.glob("killed.db-*"):
                extra.unlink()
    last = _start(db)
    err = _finish(last)
    assert last.returncode == 0, err
    assert _rows(db) == _clean(tmp_path)


def test_kill_9_at_random_points_then_resume_equals_clean_run(tmp_path):
    _kill_and_resume(tmp_path, kills=3, seed=1)


@pytest.mark.slow
def test_kill_9_at_twenty_random_points_then_resume_equals_clean_run(tmp_path):
    _kill_and_resume(tmp_path, kills=20, seed=2)


def _write_idx(path: Path, arr) -> None:
    import struct

    import numpy as np

    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    head = struct.pack(">I", {1: 0x801, 3: 0x803}[arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    path.write_bytes(head + arr.tobytes())


@pytest.mark.slow  # trains a LeNet-5 on 300 images and runs a process-pool campaign: minutes on 2 cores
def test_ctrl_c_during_reproduce_is_one_line_and_resumes(tmp_path, mnist5k):
    train, test = mnist5k
    data = tmp_path / "mnist"
    data.mkdir()
    _write_idx(data / "train-images-idx3-ubyte", train.images[:300, 0])
    _write_idx(data / "train-labels-idx1-ubyte", train.labels[:300])
    _write_idx(data / "t10k-images-idx3-ubyte", test.images[:60, 0])
    _write_idx(data / "t10k-labels-idx1-ubyte", test.labels[:60])
    out = tmp_path / "out"
    cmd = [str(Path(sys.executable).with_name("remeco")), "reproduce", "--dataset", "mnist", "--data-dir", str(data),
           "--instances", "12", "--workers", "1", "--out", str(out), "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        end = time.monotonic() + 600
        while len(_rows(out / "results.sqlite")) < 1:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < end
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
        err = _finish(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted" in lines[0] and "resume" in lines[0], err
    survivors = _rows(out / "results.sqlite")
    assert 1 <= len(survivors) < 12 * 6
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    final = _rows(out / "results.sqlite")
    assert len(final) == 12 * 6 == len({r[:3] for r in final}) and set(survivors) <= set(final)
