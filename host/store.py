"""Results store: one SQLite file holding campaigns and their per-(instance, plan) metrics.

A *campaign* is identified by the SHA-256 of the canonical JSON of its spec (sorted keys,
no whitespace), so the same spec always maps to the same campaign, whichever process,
machine or day registers it, and extending a campaign with more instances or plans adds
rows to the same campaign. A *result* is one row per ``(campaign, instance, plan)``: the
task's metrics as a JSON object and the seconds the task took.

Crash safety
------------
Every :meth:`ResultStore.put` is its own transaction, so a run interrupted by Ctrl-C or
``kill -9`` keeps every row that was committed and never leaves half a row. The database
is in WAL mode with ``synchronous=FULL``. WAL with ``NORMAL`` would already survive
``kill -9`` (a commit is in the operating system's page cache once ``COMMIT`` returns),
but not a power cut or kernel crash, which can roll back the last commits. ``FULL`` also
syncs the WAL at each commit; that costs about a millisecond per row, against seconds to
minutes of chip evaluation behind each row, so rows are made durable rather than cheap.
WAL also lets readers (a report, a progress poll) read while a campaign writes.

File format
-----------
``PRAGMA application_id`` marks the file as a remeco results store and
``PRAGMA user_version`` holds :data:`SCHEMA_VERSION`. Opening a file with another
application id, or a schema this code does not know, raises :class:`SchemaError` instead
of guessing.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from os import PathLike
from typing import Any

import numpy as np

__all__ = ["ResultStore", "SchemaError", "campaign_id", "canonical_json", "SCHEMA_VERSION", "APPLICATION_ID"]

#: Version of the table layout below; bump it (and add a migration) on any change.
SCHEMA_VERSION = 1
#: ``PRAGMA application_id`` of a remeco results store: ASCII "ReMC".
APPLICATION_ID = 0x52654D43

_SCHEMA = """
CREATE TABLE campaigns (
    id      TEXT PRIMARY KEY,
    spec    TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE results (
    campaign TEXT    NOT NULL REFERENCES campaigns(id),
    instance INTEGER NOT NULL CHECK (instance >= 0),
    plan     TEXT    NOT NULL,
    metrics  TEXT    NOT NULL,
    seconds  REAL    NOT NULL,
    PRIMARY KEY (campaign, instance, plan)
) WITHOUT ROWID;
"""


class SchemaError(ValueError):
    """The file is not a remeco results store, or uses a schema this version cannot read."""


def _plain(value: Any) -> Any:
    # json.dumps hook: NumPy scalars and small arrays are what tasks naturally return,
    # and they have exact plain-Python equivalents.
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def canonical_json(value: Any, name: str = "value") -> str:
    """Canonical JSON text of ``value``: sorted keys, no whitespace, no NaN or infinity.

    Parameters
    ----------
    value:
        A JSON-able object (dicts with string keys, lists, strings, numbers, booleans,
        ``None``; NumPy scalars and arrays are converted to their Python equivalents).
    name:
        Argument name used in the error message.

    Raises
    ------
    ValueError
        If ``value`` cannot be represented as strict JSON.
    """
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_plain)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be JSON-serializable (string keys, finite numbers): {exc}") from None


def campaign_id(spec: Mapping[str, Any]) -> str:
    """The campaign id of a spec: hex SHA-256 of its canonical JSON.

    Parameters
    ----------
    spec:
        JSON-able dict that fully describes the campaign.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"spec must be a dict, got {type(spec).__name__}")
    return hashlib.sha256(canonical_json(dict(spec), "spec").encode("utf-8")).hexdigest()


class ResultStore:
    """Campaign results in one SQLite database file.

    Parameters
    ----------
    path:
        Database file; created with the current schema if it does not exist or is empty.
    timeout:
        Seconds to wait for another process's write lock before failing.

    Raises
    ------
    SchemaError
        If the file is not an SQLite database, belongs to another application, or has a
        schema version this code does not read.

    Notes
    -----
    One process should write a campaign at a time (the campaign runner writes from its
    parent process only); concurrent writers are safe but wait on each other. The object
    is a context manager that closes the connection on exit. A store object is used from
    the thread that created it.

    Examples
    --------
    >>> with ResultStore(":memory:") as store:
    ...     cid = store.register({"seed": 0})
    ...     store.put(cid, 0, "none", {"accuracy": 0.5}, seconds=1.0)
    ...     store.results(cid)[0]["metrics"]
    True
    {'accuracy': 0.5}
    """

    def __init__(self, path: str | PathLike[str], *, timeout: float = 30.0) -> None:
        self.path = str(path)
        try:
            # Autocommit mode: transactions are opened explicitly in _transaction, so
            # each one is exactly what we say it is.
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise ValueError(f"path: cannot open {self.path!r}: {exc}") from None
        try:
            self._open()
        except BaseException:
            self._db.close()
            raise

    def _open(self) -> None:
        try:
            self._check_schema(create=False)
        except sqlite3.OperationalError:
            raise  # e.g. "database is locked": a real file, just busy
        except sqlite3.DatabaseError as exc:
            raise SchemaError(f"{self.path!r} is not an SQLite database ({exc})") from None
        # journal_mode is persistent in the file; on file systems without WAL support
        # SQLite keeps the rollback journal, which is just as crash-safe with FULL.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")

    def _check_schema(self, create: bool) -> None:
        app_id = self._db.execute("PRAGMA application_id").fetchone()[0]
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        tables = self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id == 0 and version == 0 and tables == 0:
            if create:
                # Statement by statement: executescript() would commit the open transaction.
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA application_id={APPLICATION_ID}")
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                return
            # Re-check under a write lock so two processes creating the same new
            # file do not both create the tables.
            with self._transaction():
                self._check_schema(create=True)
            return
        if app_id != APPLICATION_ID:
            raise SchemaError(
                f"{self.path!r} is not a remeco results store (application_id {app_id:#x}, expected {APPLICATION_ID:#x})"
            )
        if version != SCHEMA_VERSION:
            newer = "a newer" if version > SCHEMA_VERSION else "an older"
            raise SchemaError(
                f"{self.path!r} uses results-store schema version {version}, written by {newer} remeco; "
                f"this version reads schema {SCHEMA_VERSION} only"
            )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so a read-then-write sequence inside
        # cannot be invalidated by another writer. Rollback on BaseException: a Ctrl-C
        # between statements must not leave an open transaction behind.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- context manager ----------------------------------------------------------------

    def close(self) -> None:
        """Close the database connection (idempotent)."""
        self._db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultStore({self.path!r})"

    # -- campaigns ----------------------------------------------------------------------

    def register(self, spec: Mapping[str, Any]) -> str:
        """Record a campaign spec (if new) and return its id.

        Parameters
        ----------
        spec:
            JSON-able dict that fully describes the campaign.

        Returns
        -------
        str
            The campaign id, :func:`campaign_id` of ``spec``. Registering the same spec
            again returns the same id and keeps the original creation time.
        """
        cid = campaign_id(spec)
        text = canonical_json(dict(spec), "spec")
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._transaction() as db:
            db.execute("INSERT INTO campaigns (id, spec, created) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (cid, text, created))
        return cid

    def _require(self, campaign_id: str) -> None:
        row = self._db.execute("SELECT 1 FROM campaigns WHERE id = ?", (campaign_id,)).fetchone() if isinstance(campaign_id, str) else None
        if row is None:
            raise ValueError(f"campaign_id {campaign_id!r} is not registered in {self.path!r}")

    def spec(self, campaign_id: str) -> dict[str, Any]:
        """The spec of a registered campaign, as stored (canonical JSON decoded)."""
        self._require(campaign_id)
        (text,) = self._db.execute("SELECT spec FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()
        return json.loads(text)

    def campaigns(self) -> list[dict[str, Any]]:
        """All registered campaigns as ``{"id", "created", "results"}`` dicts, oldest first."""
        rows = self._db.execute(
            "SELECT c.id, c.created, (SELECT count(*) FROM results r WHERE r.campaign = c.id) "
            "FROM campaigns c ORDER BY c.created, c.id"
        ).fetchall()
        return [{"id": cid, "created": created, "results": n} for cid, created, n in rows]

    # -- results ------------------------------------------------------------------------

    def done(self, campaign_id: str) -> set[tuple[int, str]]:
        """The ``(instance, plan)`` pairs that already have a result."""
        self._require(campaign_id)
        rows = self._db.execute("SELECT instance, plan, metrics, seconds FROM results WHERE campaign = ?", (campaign_id,))
        return {(r["instance"], r["plan"]) for r in (self._row(campaign_id, *row) for row in rows)}

    def _row(self, campaign_id: str, instance, plan, metrics, seconds) -> dict[str, Any]:
        """One stored result as a dict; :class:`SchemaError` naming the database and the row if
        a value is not what :meth:`put` writes (a hand-edited or damaged database)."""
        why = None
        if isinstance(instance, bool) or not isinstance(instance, int) or instance < 0:
            why = f"instance {instance!r} is not a non-negative integer"
        elif not isinstance(plan, str):
            why = f"plan {plan!r} is not text"
        elif isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            why = f"seconds {seconds!r} is not a number"
        else:
            try:
                metrics = json.loads(metrics) if isinstance(metrics, str) else None
            except ValueError:
                metrics = None
            if not isinstance(metrics, dict):
                why = "its metrics are not a JSON object"
        if why is not None:
            raise SchemaError(f"{self.path}: result (instance {instance!r}, plan {plan!r}) of campaign {campaign_id[:12]} "
                              f"is damaged: {why}; delete that row (or the database) to compute it again")
        return {"instance": instance, "plan": plan, "metrics": metrics, "seconds": float(seconds)}

    def require_metrics(self, rows: Sequence[Mapping[str, Any]], keys: Sequence[str] = ("accuracy",)) -> None:
        """:class:`SchemaError` naming the database and the row if a row of :meth:`results`
        lacks a numeric metric in ``keys`` (a hand-edited or foreign row), before a
        command aggregates them."""
        for row in rows:
            for key in keys:
                value = row["metrics"].get(key)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                    raise SchemaError(f"{self.path}: result (instance {row['instance']!r}, plan {row['plan']!r}) has no "
                                      f"numeric {key!r} metric; delete that row (or the database) to compute it again")

    def put(self, campaign_id: str, instance: int, plan: str, metrics: Mapping[str, Any], seconds: float) -> bool:
        """Store one result in its own transaction.

        Parameters
        ----------
        campaign_id:
            Id returned by :meth:`register`.
        instance:
            Chip-instance index, a non-negative integer.
        plan:
            Redundancy-plan name, a non-empty string.
        metrics:
            Dict with string keys and JSON-able values (finite numbers; NumPy scalars and
            arrays are converted).
        seconds:
            Wall time the task took, finite and non-negative.

        Returns
        -------
        bool
            ``True`` if the row was written, ``False`` if the key already had a row. The
            first row is kept; a duplicate with *different* metrics means the task is not
            a deterministic function of ``(spec, instance, plan)`` and is reported with a
            :class:`RuntimeWarning`.
        """
        if isinstance(instance, bool) or not isinstance(instance, (int, np.integer)) or instance < 0:
            raise ValueError(f"instance must be a non-negative integer, got {instance!r}")
        if not isinstance(plan, str) or not plan:
            raise ValueError(f"plan must be a non-empty string, got {plan!r}")
        if not isinstance(metrics, Mapping) or not all(isinstance(k, str) for k in metrics):
            raise ValueError(f"metrics must be a dict with string keys, got {type(metrics).__name__}")
        text = canonical_json(dict(metrics), "metrics")
        try:
            seconds = float(seconds)
        except (TypeError, ValueError):
            raise ValueError(f"seconds must be a number, got {seconds!r}") from None
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"seconds must be finite and non-negative, got {seconds!r}")
        self._require(campaign_id)
        with self._transaction() as db:
            cur = db.execute(
                "INSERT INTO results (campaign, instance, plan, metrics, seconds) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (campaign_id, int(instance), plan, text, seconds),
            )
            if cur.rowcount == 1:
                return True
            (old,) = db.execute(
                "SELECT metrics FROM results WHERE campaign = ? AND instance = ? AND plan = ?", (campaign_id, int(instance), plan)
            ).fetchone()
        if old != text:
            warnings.warn(
                f"result ({int(instance)}, {plan!r}) of campaign {campaign_id[:12]} already stored with different metrics; "
                "kept the first (is the task deterministic?)",
                RuntimeWarning,
                stacklevel=2,
            )
        return False

    def results(self, campaign_id: str) -> list[dict[str, Any]]:
        """All results of a campaign, ordered by instance then plan name.

        Returns
        -------
        list of dict
            ``{"instance": int, "plan": str, "metrics": dict, "seconds": float}`` per row.
        """
        self._require(campaign_id)
        rows = self._db.execute(
            "SELECT instance, plan, metrics, seconds FROM results WHERE campaign = ? ORDER BY instance, plan", (campaign_id,)
        )
        return [self._row(campaign_id, *row) for row in rows]

    def summary(self, campaign_id: str, metric: str = "accuracy") -> dict[str, dict[str, float]]:
        """Per-plan statistics of one metric over the chip instances.

        Parameters
        ----------
        campaign_id:
            Id returned by :meth:`register`.
        metric:
            Key of a numeric metric present in every row.

        Returns
        -------
        dict
            ``{plan: {"n", "mean", "median", "std", "min", "max"}}``, plans sorted by name.
            ``std`` is the sample standard deviation (``ddof=1``), the estimate of the
            spread over the population of chips; it is ``nan`` for a single instance.
        """
        if not isinstance(metric, str):
            raise ValueError(f"metric must be a string, got {metric!r}")
        values: dict[str, list[float]] = {}
        for row in self.results(campaign_id):
            if metric not in row["metrics"]:
                raise ValueError(f"metric {metric!r} is missing from result ({row['instance']}, {row['plan']!r})")
            value = row["metrics"][metric]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"metric {metric!r} is not a number in result ({row['instance']}, {row['plan']!r}): {value!r}")
            values.setdefault(row["plan"], []).append(float(value))
        out: dict[str, dict[str, float]] = {}
        for plan in sorted(values):
            x = np.asarray(values[plan])
            out[plan] = {
                "n": int(x.size),
                "mean": float(x.mean()),
                "median": float(np.median(x)),
                "std": float(x.std(ddof=1)) if x.size > 1 else math.nan,
                "min": float(x.min()),
                "max": float(x.max()),
            }
        return out
