import os
import platform
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
# The tasks live in a plain module that worker processes import by name; spawned pool
# workers and dask workers inherit sys.path from this process.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
import campaign_helper as helper  # noqa: E402

SPEC = {"seed": 11, "images": 500, "p": 0.8}
PLANS = ["none", "msb", "layer-avg"]


def expected(spec, instances, plans):
    """What a complete campaign must hold, computed directly (without the runner)."""
    return [(i, p, helper.draw(spec, i, p)) for i in sorted(instances) for p in sorted(plans)]


def content(store, cid):
    """Rows without the timing, which is the only thing allowed to differ between runs."""
    return [(r["instance"], r["plan"], r["metrics"]) for r in store.results(cid)]


class Recorder:
    """In-process task that records its calls (serial executor only: it is not imported by workers)."""

    def __init__(self, grouped=False, interrupt_at=None):
        self.calls = []
        self.grouped = grouped
        self.interrupt_at = interrupt_at

    def __call__(self, spec, instance, plans):
        if instance == self.interrupt_at:
            raise KeyboardInterrupt
        self.calls.append((instance, plans))
        if self.grouped:
            return {p: helper.draw(spec, instance, p) for p in plans}
        return helper.draw(spec, instance, plans)


@pytest.fixture
def store(tmp_path):
    with ResultStore(tmp_path / "results.db") as s:
        yield s


def test_serial_campaign_fills_store(store):
    task = Recorder()
    cid = run_campaign(SPEC, task, instances=3, plans=PLANS, store=store, executor="serial")
    assert cid == store.register(SPEC)
    assert content(store, cid) == expected(SPEC, range(3), PLANS)
    # submission order: instance-major, plans in the order given
    assert task.calls == [(i, p) for i in range(3) for p in PLANS]


def test_resume_computes_only_missing_pairs(store):
    cid = run_campaign(SPEC, Recorder(), instances=[0, 2], plans=["none", "msb"], store=store, executor="serial")
    store.put(cid, 3, "layer-avg", helper.draw(SPEC, 3, "layer-avg"), 0.0)
    task = Recorder()
    # more instances and a new plan extend the same campaign
    assert run_campaign(SPEC, task, instances=4, plans=PLANS, store=store, executor="serial") == cid
    done_before = {(i, p) for i in (0, 2) for p in ("none", "msb")} | {(3, "layer-avg")}
    all_pairs = {(i, p) for i in range(4) for p in PLANS}
    assert sorted(task.calls) == sorted(all_pairs - done_before)
    assert content(store, cid) == expected(SPEC, range(4), PLANS)


@pytest.mark.parametrize("executor", ["serial", "process"])
def test_finished_campaign_is_a_no_op(store, executor):
    cid = run_campaign(SPEC, helper.slow_task, instances=2, plans=PLANS, store=store, executor="serial")
    before = store.results(cid)
    # never_called raises if it runs; the rows (timings included) must be untouched
    assert run_campaign(SPEC, helper.never_called, instances=2, plans=PLANS, store=store, executor=executor) == cid
    assert run_campaign(SPEC, helper.never_called, instances=[1], plans=PLANS[:1], store=store, executor=executor) == cid
    assert store.results(cid) == before


def test_group_by_instance_asks_for_missing_plans_only(store):
    cid = store.register(SPEC)
    store.put(cid, 0, "msb", helper.draw(SPEC, 0, "msb"), 0.0)
    store.put(cid, 2, "none", helper.draw(SPEC, 2, "none"), 0.0)
    store.put(cid, 2, "msb", helper.draw(SPEC, 2, "msb"), 0.0)
    store.put(cid, 2, "layer-avg", helper.draw(SPEC, 2, "layer-avg"), 0.0)
    task = Recorder(grouped=True)
    run_campaign(SPEC, task, instances=3, plans=PLANS, store=store, executor="serial", group_by_instance=True)
    assert task.calls == [(0, ["none", "layer-avg"]), (1, PLANS)]
    assert content(store, cid) == expected(SPEC, range(3), PLANS)


def test_group_by_instance_on_process_pool_matches_per_pair_rows(store):
    cid = run_campaign(SPEC, helper.grouped_task, instances=3, plans=PLANS, store=store, workers=2, group_by_instance=True)
    assert content(store, cid) == expected(SPEC, range(3), PLANS)


def test_grouped_task_with_wrong_plans_is_an_error(store):
    def bad(spec, instance, plans):
        return {"none": {"accuracy": 1.0}}

    with pytest.raises(ValueError, match="exactly"):
        run_campaign(SPEC, bad, instances=1, plans=PLANS, store=store, executor="serial", group_by_instance=True)
    assert store.results(store.register(SPEC)) == []


def test_task_gets_a_fresh_spec_per_call(store):
    cid = run_campaign(SPEC, helper.mutating_task, instances=2, plans=PLANS, store=store, executor="serial")
    assert content(store, cid) == expected(SPEC, range(2), PLANS)


def test_task_returning_non_dict_is_an_error(store):
    with pytest.raises(TypeError, match="expected a dict of metrics"):
        run_campaign(SPEC, lambda spec, i, p: 0.5, instances=1, plans=PLANS, store=store, executor="serial")


def test_failing_task_keeps_finished_rows_and_resumes(store):
    spec = {**SPEC, "fail_at": 2}
    with pytest.raises(RuntimeError, match="chip 2 exploded") as info:
        run_campaign(spec, helper.failing_task, instances=5, plans=PLANS, store=store, workers=2)
    assert any("instance 2" in note for note in getattr(info.value, "__notes__", []))
    cid = store.register(spec)
    rows = content(store, cid)
    full = expected(spec, range(5), PLANS)
    # whatever finished is stored, correct, and nothing of the failing instance
    assert rows and all(row in full for row in rows) and all(i != 2 for i, _, _ in rows)
    # "fix the task" (one that ignores fail_at) and resume
    run_campaign(spec, helper.slow_task, instances=5, plans=PLANS, store=store, workers=2)
    assert content(store, cid) == full


def test_keyboard_interrupt_keeps_finished_rows(store):
    with pytest.raises(KeyboardInterrupt):
        run_campaign(SPEC, Recorder(interrupt_at=2), instances=4, plans=PLANS, store=store, executor="serial")
    cid = store.register(SPEC)
    assert content(store, cid) == expected(SPEC, range(2), PLANS)
    task = Recorder()
    run_campaign(SPEC, task, instances=4, plans=PLANS, store=store, executor="serial")
    assert sorted(task.calls) == [(i, p) for i in (2, 3) for p in sorted(PLANS)]
    assert content(store, cid) == expected(SPEC, range(4), PLANS)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"executor": "gpu"}, "executor"),
        ({"executor": "process", "scheduler": "tcp://127.0.0.1:1"}, "scheduler"),
        ({"executor": "dask", "scheduler": "tcp://127.0.0.1:1", "workers": 2}, "workers"),
        ({"workers": 0}, "workers"),
        ({"instances": -1}, "instances"),
        ({"instances": [0, 1, 1]}, "instances"),
        ({"instances": [0, -3]}, "instances"),
        ({"instances": "3"}, "instances"),
        ({"plans": "none"}, "plans"),
        ({"plans": []}, "plans"),
        ({"plans": ["none", "none"]}, "plans"),
        ({"plans": ["none", ""]}, "plans"),
        ({"spec": [1, 2]}, "spec"),
        ({"spec": {"x": {1, 2}}}, "spec"),
        ({"task": "helper.slow_task"}, "task"),
        ({"store": "results.db"}, "store"),
    ],
)
def test_bad_arguments_are_named_and_nothing_is_stored(store, kwargs, name):
    args = {"spec": SPEC, "task": helper.never_called, "instances": 2, "plans": PLANS, "store": store, "executor": "serial"}
    args.update(kwargs)
    spec, task = args.pop("spec"), args.pop("task")
    with pytest.raises(ValueError, match=name):
        run_campaign(spec, task, **args)
    assert store.campaigns() == []


def test_executors_give_identical_rows(tmp_path):
    from distributed import LocalCluster

    rows = {}
    for executor in ("serial", "process", "dask"):
        with ResultStore(tmp_path / f"{executor}.db") as store:
            if executor == "dask":
                with LocalCluster(
                    n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
                ) as cluster:
                    cid = run_campaign(
                        SPEC, helper.slow_task, instances=4, plans=PLANS, store=store, executor="dask", scheduler=cluster.scheduler_address
                    )
            else:
                cid = run_campaign(SPEC, helper.slow_task, instances=4, plans=PLANS, store=store, executor=executor, workers=2)
            rows[executor] = content(store, cid)
    assert rows["serial"] == expected(SPEC, range(4), PLANS)
    assert rows["process"] == rows["serial"]
    assert rows["dask"] == rows["serial"]


def test_dask_local_cluster_grouped_resume(store):
    # the runner's own LocalCluster, grouped, on top of a partly filled campaign
    cid = run_campaign(SPEC, helper.slow_task, instances=[1], plans=PLANS[:2], store=store, executor="serial")
    run_campaign(SPEC, helper.grouped_task, instances=3, plans=PLANS, store=store, executor="dask", workers=2, group_by_instance=True)
    assert content(store, cid) == expected(SPEC, range(3), PLANS)


# -- interrupting a real run in a subprocess --------------------------------------------


def start_helper_run(db):
    # A new session, so that the test can clean up everything the run started.
    return subprocess.Popen(
        [sys.executable, str(HERE / "campaign_helper.py"), str(db), "process"],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def count_rows(db):
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            return con.execute("SELECT count(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def wait_for_rows(db, proc, minimum, deadline=60.0):
    end = time.monotonic() + deadline
    while count_rows(db) < minimum:
        assert proc.poll() is None, f"campaign ended early: {proc.stderr.read()}"
        assert time.monotonic() < end, "campaign produced no rows"
        time.sleep(0.02)


def live_group_members(pgid):
    """Processes of a group that are not zombies (this sandbox's init may not reap orphans)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def clean_run(tmp_path):
    with ResultStore(tmp_path / "clean.db") as store:
        cid = run_campaign(
            helper.SLOW_SPEC, helper.slow_task, instances=helper.SLOW_INSTANCES, plans=helper.SLOW_PLANS, store=store, workers=2
        )
        return cid, content(store, cid)


def resume_and_compare(tmp_path, db):
    with ResultStore(db) as store:
        cid = store.register(helper.SLOW_SPEC)
        survivors = store.results(cid)
        run_campaign(
            helper.SLOW_SPEC, helper.slow_task, instances=helper.SLOW_INSTANCES, plans=helper.SLOW_PLANS, store=store, workers=2
        )
        final = store.results(cid)
        resumed = content(store, cid)
    clean_cid, clean = clean_run(tmp_path)
    assert clean_cid == cid
    assert resumed == clean
    assert len(clean) == helper.SLOW_INSTANCES * len(helper.SLOW_PLANS)
    # rows that survived the interruption were kept as they were, not recomputed
    assert all(row in final for row in survivors)
    with sqlite3.connect(db) as con:
        n, distinct = con.execute("SELECT count(*), count(DISTINCT instance || '/' || plan) FROM results").fetchone()
    assert n == distinct == len(clean)
    return survivors


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_kill_9_then_resume_equals_clean_run(tmp_path):
    db = tmp_path / "killed.db"
    proc = start_helper_run(db)
    try:
        wait_for_rows(db, proc, 4)
        proc.send_signal(signal.SIGKILL)  # the runner only; its pool workers must notice
        proc.wait()
        end = time.monotonic() + 30
        while live_group_members(proc.pid) and time.monotonic() < end:
            time.sleep(0.1)
        assert live_group_members(proc.pid) == [], "pool workers outlived their killed parent"
    finally:
        if proc.poll() is None or live_group_members(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    survivors = resume_and_compare(tmp_path, db)
    assert 4 <= len(survivors) < helper.SLOW_INSTANCES * len(helper.SLOW_PLANS)


def test_ctrl_c_then_resume_equals_clean_run(tmp_path):
    db = tmp_path / "interrupted.db"
    proc = start_helper_run(db)
    try:
        wait_for_rows(db, proc, 4)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    survivors = resume_and_compare(tmp_path, db)
    assert 4 <= len(survivors) < helper.SLOW_INSTANCES * len(helper.SLOW_PLANS)


_FAULTS = r"""
import resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from remeco.host.campaign import reuse_freed_memory
    assert reuse_freed_memory()
from remeco.models.device import draw_devices, program_drawn
levels = np.random.default_rng(0).integers(0, 16, 1 << 17)
program_drawn(levels, draw_devices(levels.shape, 0, 0))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
program_drawn(levels, draw_devices(levels.shape, 0, 1))  # the same work again, other devices
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
def test_workers_reuse_freed_memory_instead_of_faulting_it_in_again():
    """Programming 2**17 devices a second time: with glibc's defaults its freed temporaries
    went back to the kernel and return as fresh pages (~4,500 page faults here); after
    reuse_freed_memory the heap keeps them (~500)."""
    faults = {mode: int(subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True,
                                       check=True).stdout) for mode in ("default", "tuned")}
    assert faults["tuned"] < faults["default"] / 4, faults
