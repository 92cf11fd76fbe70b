import hashlib
import json
import math
import sqlite3

import numpy as np
import pytest

from remeco.host.store import APPLICATION_ID, SCHEMA_VERSION, ResultStore, SchemaError, campaign_id

SPEC = {"seed": 3, "model": {"name": "lenet", "bits": 8}, "plans": ["none", "msb"]}


@pytest.fixture
def store(tmp_path):
    with ResultStore(tmp_path / "results.db") as s:
        yield s


def test_round_trip_survives_reopen(tmp_path):
    path = tmp_path / "results.db"
    with ResultStore(path) as s:
        cid = s.register(SPEC)
        assert s.put(cid, 0, "none", {"accuracy": 0.97, "correct": 970, "images": 1000, "per_class": [1, 2]}, 1.5) is True
        assert s.put(cid, 1, "none", {"accuracy": 0.1 + 0.2, "correct": np.int64(5), "ratio": np.float32(0.25)}, 0.25)
    with ResultStore(path) as s:
        assert s.spec(cid) == SPEC
        assert s.done(cid) == {(0, "none"), (1, "none")}
        rows = s.results(cid)
    assert rows == [
        {"instance": 0, "plan": "none", "metrics": {"accuracy": 0.97, "correct": 970, "images": 1000, "per_class": [1, 2]}, "seconds": 1.5},
        # floats come back bit-exact; NumPy scalars as the equal Python numbers
        {"instance": 1, "plan": "none", "metrics": {"accuracy": 0.1 + 0.2, "correct": 5, "ratio": 0.25}, "seconds": 0.25},
    ]
    assert type(rows[1]["metrics"]["correct"]) is int


def test_campaign_id_is_sha256_of_canonical_json_and_key_order_free(store):
    expected = hashlib.sha256(json.dumps(SPEC, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    reordered = {"plans": ["none", "msb"], "model": {"bits": 8, "name": "lenet"}, "seed": 3}
    assert campaign_id(SPEC) == campaign_id(reordered) == expected
    assert store.register(SPEC) == store.register(reordered) == expected
    assert campaign_id({**SPEC, "seed": 4}) != expected
    assert [c["id"] for c in store.campaigns()] == [expected]


def test_crash_safety_settings(tmp_path):
    path = tmp_path / "results.db"
    ResultStore(path).close()
    # journal_mode is a property of the file, so another connection sees it
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_put_is_idempotent(store):
    cid = store.register(SPEC)
    assert store.put(cid, 4, "msb", {"accuracy": 0.5}, 1.0) is True
    assert store.put(cid, 4, "msb", {"accuracy": 0.5}, 2.0) is False
    with pytest.warns(RuntimeWarning, match="different metrics"):
        assert store.put(cid, 4, "msb", {"accuracy": 0.6}, 3.0) is False
    assert store.results(cid) == [{"instance": 4, "plan": "msb", "metrics": {"accuracy": 0.5}, "seconds": 1.0}]


def test_results_order_is_instance_then_plan(store):
    cid = store.register(SPEC)
    other = store.register({"seed": 99})
    keys = [(10, "b"), (2, "a"), (10, "a"), (0, "z"), (2, "b"), (1, "m")]
    for i, (instance, plan) in enumerate(keys):
        store.put(cid, instance, plan, {"k": i}, 0.0)
    store.put(other, 0, "a", {"k": -1}, 0.0)  # other campaigns' rows stay out
    assert [(r["instance"], r["plan"]) for r in store.results(cid)] == sorted(keys)
    assert store.results(other) == [{"instance": 0, "plan": "a", "metrics": {"k": -1}, "seconds": 0.0}]


def test_summary_by_hand(store):
    cid = store.register(SPEC)
    for instance, acc in enumerate([0.5, 0.9, 0.7]):
        store.put(cid, instance, "none", {"accuracy": acc, "images": 10}, 0.0)
    for instance, acc in enumerate([3, 1, 10, 2]):
        store.put(cid, instance, "msb", {"accuracy": acc}, 0.0)
    store.put(cid, 0, "solo", {"accuracy": 0.25}, 0.0)
    s = store.summary(cid)
    assert list(s) == ["msb", "none", "solo"]
    # none: mean 0.7, median 0.7, sample std sqrt((0.04 + 0 + 0.04) / 2) = 0.2
    assert s["none"]["n"] == 3
    assert s["none"]["mean"] == pytest.approx(0.7)
    assert s["none"]["median"] == pytest.approx(0.7)
    assert s["none"]["std"] == pytest.approx(0.2)
    assert (s["none"]["min"], s["none"]["max"]) == (0.5, 0.9)
    # msb: mean 4, median (2 + 3) / 2, sample std sqrt((1 + 9 + 36 + 4) / 3)
    assert s["msb"] == {"n": 4, "mean": 4.0, "median": 2.5, "std": pytest.approx(math.sqrt(50 / 3)), "min": 1.0, "max": 10.0}
    assert s["solo"]["n"] == 1 and s["solo"]["mean"] == 0.25 and math.isnan(s["solo"]["std"])
    with pytest.raises(ValueError, match="'images' is missing"):
        store.summary(cid, "images")  # msb rows have no images
    assert store.summary(store.register({"seed": 1})) == {}


def test_summary_rejects_non_numeric_metric(store):
    cid = store.register(SPEC)
    store.put(cid, 0, "none", {"accuracy": "high"}, 0.0)
    with pytest.raises(ValueError, match="not a number"):
        store.summary(cid)


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "results.db"
    ResultStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(SchemaError, match=f"schema version {SCHEMA_VERSION + 1}.*newer"):
        ResultStore(path)


def test_other_sqlite_database_is_refused(tmp_path):
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE results (x)")
    db.commit()
    db.close()
    with pytest.raises(SchemaError, match="not a remeco results store"):
        ResultStore(path)
    # and it was left untouched
    assert sqlite3.connect(path).execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID


def test_non_database_file_is_refused(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("these are not the rows you are looking for\n" * 100)
    with pytest.raises(SchemaError, match="not an SQLite database"):
        ResultStore(path)


def test_missing_folder_names_path(tmp_path):
    with pytest.raises(ValueError, match="path"):
        ResultStore(tmp_path / "nowhere" / "results.db")


def test_unknown_campaign_id(store):
    store.register(SPEC)
    for call in (store.done, store.results, store.summary, store.spec, lambda c: store.put(c, 0, "none", {}, 0.0)):
        with pytest.raises(ValueError, match="campaign_id"):
            call("0" * 64)
    with pytest.raises(ValueError, match="campaign_id"):
        store.done(None)


@pytest.mark.parametrize(
    "metrics",
    [{"accuracy": object()}, {"accuracy": float("nan")}, {"accuracy": float("inf")}, {1: 0.5}, [("accuracy", 0.5)], None],
)
def test_bad_metrics(store, metrics):
    cid = store.register(SPEC)
    with pytest.raises(ValueError, match="metrics"):
        store.put(cid, 0, "none", metrics, 0.0)
    assert store.results(cid) == []


@pytest.mark.parametrize(
    "args, name",
    [((-1, "none", 0.0), "instance"), ((True, "none", 0.0), "instance"), ((1.0, "none", 0.0), "instance"),
     ((0, "", 0.0), "plan"), ((0, 3, 0.0), "plan"), ((0, "none", -1.0), "seconds"), ((0, "none", float("nan")), "seconds"),
     ((0, "none", "fast"), "seconds")],
)  # fmt: skip
def test_bad_keys_and_seconds(store, args, name):
    cid = store.register(SPEC)
    instance, plan, seconds = args
    with pytest.raises(ValueError, match=name):
        store.put(cid, instance, plan, {"accuracy": 0.5}, seconds)
    assert store.results(cid) == []


@pytest.mark.parametrize("spec", [{"s": {1, 2}}, {"x": float("nan")}, [1, 2], "seed=1"])
def test_bad_spec(store, spec):
    with pytest.raises(ValueError, match="spec"):
        store.register(spec)
    assert store.campaigns() == []


@pytest.mark.parametrize("column, value, words", [
    ("metrics", "'not json'", "its metrics are not a JSON object"),
    ("metrics", "'[1, 2]'", "its metrics are not a JSON object"),
    ("instance", "'x'", "instance 'x' is not a non-negative integer"),  # text passes CHECK (instance >= 0)
    ("seconds", "'soon'", "seconds 'soon' is not a number"),
])
def test_a_damaged_row_is_named_not_a_traceback(tmp_path, column, value, words):
    """A hand-edited or damaged row was a JSONDecodeError / int() ValueError naming nothing,
    or (metrics a list) handed on to the campaign's consumer."""
    db = tmp_path / "r.db"
    with ResultStore(db) as s:
        cid = s.register({"k": 1})
        s.put(cid, 0, "base", {"accuracy": 0.5}, 1.0)
        s.put(cid, 1, "base", {"accuracy": 0.75}, 1.0)
    with sqlite3.connect(db) as con:
        con.execute(f"UPDATE results SET {column} = {value} WHERE plan = 'base' AND metrics LIKE '%0.75%'")
    with ResultStore(db) as s:
        for read in (s.results, s.done):
            with pytest.raises(SchemaError) as err:
                read(cid)
            message = str(err.value)
            assert "\n" not in message and str(db) in message and words in message and "delete that row" in message


def test_rows_without_the_metric_a_command_needs_are_named(store):
    cid = store.register(SPEC)
    store.put(cid, 0, "none", {"accuracy": 0.5, "correct": 5}, 0.1)
    store.put(cid, 1, "none", {"correct": 7}, 0.1)  # e.g. written by another tool
    store.put(cid, 2, "msb", {"accuracy": "high", "correct": 7}, 0.1)
    rows = store.results(cid)
    store.require_metrics(rows[:1], ("accuracy", "correct"))  # complete rows pass
    with pytest.raises(SchemaError, match=r"instance 1, plan 'none'\) has no numeric 'accuracy'"):
        store.require_metrics(rows)
    with pytest.raises(SchemaError, match=r"instance 2, plan 'msb'\) has no numeric 'accuracy'"):
        store.require_metrics(rows[2:])
