"""Campaign runner: every (chip instance, redundancy plan) of a spec, on any executor, resumable.

A campaign is ``instances x plans`` tasks over one spec. The runner registers the spec in
a :class:`~remeco.host.store.ResultStore`, asks it which ``(instance, plan)`` pairs are
already done, runs only the missing ones and stores each result as soon as it arrives.
Stopping a run at any point (an exception, Ctrl-C, ``kill -9``) and calling
:func:`run_campaign` again therefore finishes the campaign without redoing finished work,
and a finished campaign costs nothing to "run" again.

The task contract
-----------------
``task(spec, instance, plan) -> dict`` is a top-level function (workers import it by its
module and name, so it must not be a lambda, a closure or defined in ``__main__`` of an
interactive session). It must be a deterministic function of its arguments: the chip
instance is drawn from ``(spec["seed"], instance)`` inside the task (see
:func:`remeco.models.random.rng_for`), never from a global or shared generator, so the
numbers do not depend on the executor, the worker, or the order of execution. The task
receives the spec as decoded from its canonical JSON, a fresh copy per call, so every
executor (and every resumed run) hands it exactly the same input.

With ``group_by_instance=True`` the task is ``task(spec, instance, plans) -> {plan:
metrics}`` and is called once per instance with the plans still missing for it, so work
shared between plans (building and programming the chip instance) is done once. It must
give each plan the same metrics whichever subset of plans it is called with: a resumed
run may ask for only some of them.

Executors
---------
``"serial"``
    In this process, one task after the other; for debugging (breakpoints, profilers).
``"process"`` (default)
    A :class:`concurrent.futures.ProcessPoolExecutor` of ``workers`` processes
    (default ``os.cpu_count()``), started with the ``spawn`` method: the same import
    contract as dask workers on every platform, and no ``fork`` of a process that already
    runs threads (the progress bar, the pool's own manager thread).
``"dask"``
    A :class:`dask.distributed.Client` on the scheduler at ``scheduler``
    (``"tcp://host:port"``), or on a :class:`dask.distributed.LocalCluster` of ``workers``
    single-threaded worker processes on the loopback interface when no scheduler is given.

Workers only compute; the parent process is the only writer of the store, so there is no
database locking between workers and nothing for a worker to leave half-written. At most
two tasks per worker slot are submitted ahead, which keeps every worker busy while
bounding what has to be cancelled on a stop.

Interruption
------------
On Ctrl-C (or an exception from a task or from the store) the runner stops submitting,
cancels the tasks that have not started, stores the results of tasks that had already
finished, and re-raises. With the process pool, tasks that are running are interrupted
too when the signal comes from the terminal (it reaches the whole process group; idle
workers ignore it), otherwise the runner waits for them and keeps their results. Dask
tasks that are running are released and their results dropped. In every case each stored
row is complete, and the next run recomputes only what is missing.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from remeco.host.store import ResultStore, canonical_json

__all__ = ["run_campaign", "check_scheduler", "EXECUTORS", "SchedulerUnreachable", "SCHEDULER_TIMEOUT"]

#: Names accepted by ``run_campaign(executor=...)``.
EXECUTORS = ("serial", "process", "dask")

#: Seconds to reach a dask scheduler before giving up (dask's own default is 30 s).
SCHEDULER_TIMEOUT = 5.0


class SchedulerUnreachable(ConnectionError, ValueError):
    """The dask scheduler address does not answer (a ``ValueError`` too: it is a bad argument)."""


def check_scheduler(scheduler: str | None) -> None:
    """Raise :class:`SchedulerUnreachable` unless ``scheduler`` (``None``: none asked for) accepts
    TCP connections; cheap, so a command calls it before any work."""
    if scheduler is not None:
        _probe(scheduler)


def _probe(scheduler: str) -> str:
    import socket

    hint = "start one with `dask scheduler` (and workers), or leave out --scheduler for a local cluster"
    scheme, _, rest = scheduler.rpartition("://")
    if scheme in ("", "tcp"):
        host, _, port = rest.rpartition(":")
        if not host or not port.isdigit():
            raise SchedulerUnreachable(f"dask scheduler address {scheduler!r} is not tcp://HOST:PORT")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=SCHEDULER_TIMEOUT).close()
        except OSError as exc:
            raise SchedulerUnreachable(f"dask scheduler {scheduler} is unreachable ({exc.strerror or exc}); {hint}") from None
    return hint


def _connect(scheduler: str):
    """A :class:`distributed.Client` on ``scheduler``, or :class:`SchedulerUnreachable` within
    about :data:`SCHEDULER_TIMEOUT` seconds (a TCP probe first, so a closed port fails at once)."""
    from distributed import Client

    hint = _probe(scheduler)
    try:
        return Client(scheduler, timeout=SCHEDULER_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - whatever answers there, it is not a usable scheduler
        # Something that is not a dask scheduler can accept the connection and answer
        # garbage (seen: a proxy, giving a multi-exabyte "frame length"); say so in one line.
        raise SchedulerUnreachable(f"dask scheduler {scheduler} did not answer as a dask scheduler within "
                                   f"{SCHEDULER_TIMEOUT:g} s ({type(exc).__name__}); {hint}") from None


#: One finished row as it travels from a worker to the parent: (plan, metrics, seconds).
Row = tuple[str, dict[str, Any], float]


@dataclass(frozen=True)
class _Unit:
    """One submission: an instance and the plans to compute for it (one unless grouped)."""

    instance: int
    plans: tuple[str, ...]


def _run_unit(task: Callable[..., Any], spec_json: str, instance: int, plans: tuple[str, ...], grouped: bool) -> list[Row]:
    """Run one unit wherever it lands (this process or a worker) and return its rows."""
    # Decoded here, per call: a task that mutates its spec cannot affect the next call,
    # whatever the executor.
    spec = json.loads(spec_json)
    start = time.perf_counter()
    if not grouped:
        metrics = task(spec, instance, plans[0])
        seconds = time.perf_counter() - start
        if not isinstance(metrics, Mapping):
            raise TypeError(f"task returned {type(metrics).__name__} for ({instance}, {plans[0]!r}); expected a dict of metrics")
        return [(plans[0], dict(metrics), seconds)]
    out = task(spec, instance, list(plans))
    # The group's time is shared equally: per-plan times are not observable from outside.
    seconds = (time.perf_counter() - start) / len(plans)
    if not isinstance(out, Mapping) or set(out) != set(plans):
        got = sorted(out) if isinstance(out, Mapping) else type(out).__name__
        raise ValueError(f"grouped task for instance {instance} must return a dict keyed by exactly {list(plans)}, got {got}")
    for plan in plans:
        if not isinstance(out[plan], Mapping):
            raise TypeError(f"task returned {type(out[plan]).__name__} for ({instance}, {plan!r}); expected a dict of metrics")
    return [(plan, dict(out[plan]), seconds) for plan in plans]


def _pool_worker_init(parent_pid: int) -> None:
    """Set up a process-pool worker: ignore Ctrl-C while idle, exit if the parent dies."""
    # An idle worker hit by a terminal Ctrl-C would die with a traceback and break the
    # pool; the parent alone decides what a Ctrl-C means. _run_unit_in_pool re-enables it
    # while a task runs, so a Ctrl-C still stops long tasks promptly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # After a kill -9 of the parent nobody would ever send this worker its shutdown
    # sentinel (it holds both ends of its queues), so it would idle forever.
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), name="remeco-parent-watch", daemon=True).start()


def _exit_with_parent(parent_pid: int, period: float = 0.5) -> None:
    while os.getppid() == parent_pid:
        time.sleep(period)
    os._exit(1)


def _run_unit_in_pool(task: Callable[..., Any], spec_json: str, instance: int, plans: tuple[str, ...], grouped: bool) -> list[Row]:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _run_unit(task, spec_json, instance, plans, grouped)
    finally:
        signal.signal(signal.SIGINT, previous)


def _drive(
    units: Sequence[_Unit],
    running: dict[Any, _Unit],
    submit: Callable[[_Unit], Any],
    wait_first: Callable[[set[Any]], set[Any]],
    window: int,
    write: Callable[[_Unit, list[Row]], None],
) -> None:
    """Keep ``window`` units in flight and write each result as it completes.

    ``running`` is owned by the caller so that, when this raises, the caller can still
    store the results of futures that had finished (they are removed once written).
    """
    queue = deque(units)
    while queue or running:
        while queue and len(running) < window:
            unit = queue.popleft()
            running[submit(unit)] = unit
        for future in wait_first(set(running)):
            unit = running.pop(future)
            try:
                rows = future.result()
            except Exception as exc:
                exc.add_note(f"in campaign task: instance {unit.instance}, plans {list(unit.plans)}")
                raise
            write(unit, rows)


def _run_serial(units: Sequence[_Unit], args: Callable[[_Unit], tuple], write: Callable[[_Unit, list[Row]], None]) -> None:
    for unit in units:
        try:
            rows = _run_unit(*args(unit))
        except Exception as exc:
            exc.add_note(f"in campaign task: instance {unit.instance}, plans {list(unit.plans)}")
            raise
        write(unit, rows)


def _run_process(
    units: Sequence[_Unit], args: Callable[[_Unit], tuple], write: Callable[[_Unit, list[Row]], None], workers: int
) -> None:
    pool = cf.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_pool_worker_init,
        initargs=(os.getpid(),),
    )
    running: dict[cf.Future, _Unit] = {}
    try:
        _drive(
            units,
            running,
            lambda unit: pool.submit(_run_unit_in_pool, *args(unit)),
            lambda futures: cf.wait(futures, return_when=cf.FIRST_COMPLETED).done,
            2 * workers,
            write,
        )
    finally:
        # Only reached with work outstanding when stopping early: drop what has not
        # started, let what runs finish (or be interrupted), keep what succeeded.
        pool.shutdown(wait=True, cancel_futures=True)
        for future, unit in running.items():
            if future.done() and not future.cancelled() and future.exception() is None:
                write(unit, future.result())


def _run_dask(
    units: Sequence[_Unit],
    args: Callable[[_Unit], tuple],
    write: Callable[[_Unit, list[Row]], None],
    workers: int | None,
    scheduler: str | None,
) -> None:
    # Imported here: dask is heavy and only needed for this executor.
    from distributed import Client, LocalCluster, wait

    with ExitStack() as stack:
        if scheduler is None:
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers or os.cpu_count() or 1,
                    threads_per_worker=1,  # tasks are CPU-bound NumPy/torch: one per process
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                )
            )
            client = stack.enter_context(Client(cluster))
        else:
            client = stack.enter_context(_connect(scheduler))
        slots = max(1, sum(client.nthreads().values()))
        running: dict[Any, _Unit] = {}
        try:
            _drive(
                units,
                running,
                # pure=False: every submission runs; nothing is served from dask's cache
                # of an earlier (possibly failed) run under the same key.
                lambda unit: client.submit(_run_unit, *args(unit), pure=False),
                lambda futures: set(wait(list(futures), return_when="FIRST_COMPLETED").done),
                2 * slots,
                write,
            )
        finally:
            unfinished = [future for future in running if not future.done()]
            if unfinished:
                client.cancel(unfinished)
            for future, unit in running.items():
                if future.status == "finished":
                    write(unit, future.result())


@contextmanager
def _progress_bar(total: int, enabled: bool, label: str) -> Iterator[Callable[[], None]]:
    """Yield a callable advancing a rich progress bar by one row (a no-op when disabled)."""
    if enabled and total:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        console = Console(stderr=True)
        # Not a terminal (a pipe, a log file, pytest's capture): a bar would only add noise.
        if console.is_terminal:
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
            with Progress(*columns, console=console) as bar:
                task_id = bar.add_task(label, total=total)
                yield lambda: bar.advance(task_id)
            return
    yield lambda: None


#: Most chip instances one campaign runs (its instance list is held in memory), and the
#: largest instance index (the results database stores it as a signed 64-bit integer).
MAX_INSTANCES = 10_000_000
MAX_INSTANCE_INDEX = 2**63 - 1


def _instances(instances: int | Sequence[int]) -> list[int]:
    if isinstance(instances, bool):
        raise ValueError(f"instances must be a count or a sequence of indices, got {instances!r}")
    if isinstance(instances, int):
        if instances < 0:
            raise ValueError(f"instances must be non-negative, got {instances}")
        if instances > MAX_INSTANCES:
            raise ValueError(f"instances must be at most {MAX_INSTANCES:,} per campaign, got {instances:,}")
        return list(range(instances))
    if isinstance(instances, (str, bytes)) or not isinstance(instances, Sequence):
        raise ValueError(f"instances must be a count or a sequence of indices, got {type(instances).__name__}")
    if len(instances) > MAX_INSTANCES:
        raise ValueError(f"instances must be at most {MAX_INSTANCES:,} per campaign, got {len(instances):,}")
    out = []
    for i in instances:
        if isinstance(i, bool) or not hasattr(i, "__index__") or not 0 <= int(i) <= MAX_INSTANCE_INDEX:
            raise ValueError(f"instances must be integers in 0..2**63-1, got {i!r}")
        out.append(int(i))
    if len(set(out)) != len(out):
        raise ValueError("instances contains duplicates")
    return out


def _plans(plans: Sequence[str]) -> list[str]:
    if isinstance(plans, str) or not isinstance(plans, Sequence):
        raise ValueError(f"plans must be a sequence of plan names, got {plans!r}")
    out = list(plans)
    if not out or not all(isinstance(p, str) and p for p in out):
        raise ValueError(f"plans must be a non-empty sequence of non-empty strings, got {out!r}")
    if len(set(out)) != len(out):
        raise ValueError("plans contains duplicates")
    return out


def run_campaign(
    spec: Mapping[str, Any],
    task: Callable[..., Any],
    *,
    instances: int | Sequence[int],
    plans: Sequence[str],
    store: ResultStore,
    executor: Literal["serial", "process", "dask"] = "process",
    workers: int | None = None,
    scheduler: str | None = None,
    group_by_instance: bool = False,
    progress: bool = True,
) -> str:
    """Run the missing ``(instance, plan)`` tasks of a campaign and store each result.

    Parameters
    ----------
    spec:
        JSON-able dict that fully describes the campaign (seed, model, data, chip
        parameters, ...). Its canonical JSON is the campaign's identity in the store.
    task:
        Top-level function ``task(spec, instance, plan) -> metrics dict``, or with
        ``group_by_instance`` ``task(spec, instance, plans) -> {plan: metrics dict}``;
        see the module documentation for the contract.
    instances:
        Number of chip instances (indices ``0 .. n-1``) or an explicit sequence of
        distinct non-negative indices.
    plans:
        Distinct redundancy-plan names.
    store:
        Where results are read from (to skip finished pairs) and written to.
    executor:
        ``"serial"``, ``"process"`` or ``"dask"``.
    workers:
        Worker processes for ``"process"`` and for a local dask cluster; default
        ``os.cpu_count()``. Ignored by ``"serial"``; not allowed with ``scheduler`` (the
        cluster decides).
    scheduler:
        Address of a running dask scheduler, ``"tcp://host:port"``; only with
        ``executor="dask"``. Without it a local cluster is started and closed.
    group_by_instance:
        Call the task once per instance with all its missing plans.
    progress:
        Show a progress bar on standard error when it is a terminal.

    Returns
    -------
    str
        The campaign id.

    Raises
    ------
    ValueError
        For invalid arguments (named in the message), before anything is run or stored.
    KeyboardInterrupt
        Re-raised after a Ctrl-C, once the store holds everything that had finished.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}; got {executor!r}")
    if not callable(task):
        raise ValueError(f"task must be callable, got {type(task).__name__}")
    if not isinstance(store, ResultStore):
        raise ValueError(f"store must be a ResultStore, got {type(store).__name__}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if scheduler is not None:
        if executor != "dask":
            raise ValueError(f"scheduler is only used with executor='dask', got executor={executor!r}")
        if not isinstance(scheduler, str) or not scheduler:
            raise ValueError(f"scheduler must be an address such as 'tcp://127.0.0.1:8786', got {scheduler!r}")
        if workers is not None:
            raise ValueError("workers cannot be set together with scheduler: the running cluster decides")
    instance_list = _instances(instances)
    plan_list = _plans(plans)
    if not isinstance(spec, Mapping):
        raise ValueError(f"spec must be a dict, got {type(spec).__name__}")
    spec_json = canonical_json(dict(spec), "spec")

    cid = store.register(spec)
    done = store.done(cid)
    missing = {i: tuple(p for p in plan_list if (i, p) not in done) for i in instance_list}
    if group_by_instance:
        units = [_Unit(i, ps) for i, ps in missing.items() if ps]
    else:
        units = [_Unit(i, (p,)) for i, ps in missing.items() for p in ps]
    total = sum(len(ps) for ps in missing.values())
    if not units:
        return cid

    def args(unit: _Unit) -> tuple:
        return (task, spec_json, unit.instance, unit.plans, group_by_instance)

    with _progress_bar(total, progress, f"campaign {cid[:8]}") as advance:

        def write(unit: _Unit, rows: list[Row]) -> None:
            # One transaction per row, in the parent: this is what makes the run resumable.
            for plan, metrics, seconds in rows:
                store.put(cid, unit.instance, plan, metrics, seconds)
                advance()

        if executor == "serial":
            _run_serial(units, args, write)
        elif executor == "process":
            _run_process(units, args, write, workers or os.cpu_count() or 1)
        else:
            _run_dask(units, args, write, workers, scheduler)
    return cid


def limit_worker_threads() -> None:
    """Make the calling campaign task single-threaded (torch and the BLAS pools), and let
    its process reuse freed memory (:func:`reuse_freed_memory`).

    The executors run one worker process per core; a task that also spreads over every
    core through torch or OpenBLAS oversubscribes the machine, which makes BLAS-heavy
    code several times slower. Call it at the start of a task; it is cheap to repeat.
    """
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)
    reuse_freed_memory()


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def reuse_freed_memory() -> bool:
    """Let the calling process keep the memory it frees for reuse (glibc's malloc; a no-op
    returning False elsewhere). Results do not depend on it, only the time.

    A campaign task allocates and frees the same large temporaries thousands of times
    (programming a chip instance works on arrays of 10^5 to 10^6 devices). With glibc's
    defaults a freed block above the mmap threshold, or beyond the trim threshold at the
    top of the heap, goes back to the kernel and returns as fresh zero-filled pages: the
    page faults cost ~20 % of programming a chip instance (LeNet-5: 93-105 -> 78-85 ms,
    paper LeNet six plans 5.5 -> 4.6 s CPU, measured in alternating runs). Blocks up to
    32 MB now come from the heap, which keeps up to 1 GB of free memory and grows by 64 MB
    at a time; the peak footprint is unchanged (a paper-LeNet task: 610 MB either way),
    the process just does not shrink below it.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in
               ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20)))
