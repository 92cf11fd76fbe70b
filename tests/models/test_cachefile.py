"""Damaged cache entries heal (:mod:`remeco.models.cachefile`): one warning line naming the
file, then the entry is rebuilt; never a crash.

Each failure the issue reported is reproduced: an empty trained-network file (an
``EOFError`` traceback before), a truncated one, one with the wrong fields (``KeyError`` /
``TypeError``), and the same for the sensitivity cache.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest

from remeco.models import nn as rn
from remeco.models.cachefile import atomic_write_text, warn_damaged
from remeco.models.sensitivity import Sensitivity, cached_sensitivity


@pytest.fixture(scope="module")
def small_data(mnist5k):
    train, test = mnist5k
    return train.subset(range(200)), test.subset(range(50))


def _get(small_data, cache):
    train, test = small_data
    return rn.get_trained("lenet5", train, test, epochs=1, seed=3, threads=1, cache_dir=cache)


@pytest.fixture(scope="module")
def entry(small_data, tmp_path_factory):
    """A good cache entry's path and bytes (trained once for the module)."""
    cache = tmp_path_factory.mktemp("nn-cache")
    tm = _get(small_data, cache)
    assert not tm.from_cache
    return cache, tm.path, tm.path.read_bytes()


def _damaged_warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "remeco.cache"]


def _with_arrays(good: bytes, tmp_path, change) -> bytes:
    """The entry's .npz with ``change(arrays)`` applied, as bytes."""
    src = tmp_path / "good.npz"
    src.write_bytes(good)
    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    out = tmp_path / "bad.npz"
    with open(out, "wb") as fh:
        np.savez(fh, **arrays)
    return out.read_bytes()


def _drop_meta(arrays):
    del arrays["train.meta"]


def _meta_wrong_types(arrays):
    arrays["train.meta"] = np.array(json.dumps({"key": "x", "float_accuracy": [1]}))


def _meta_not_json(arrays):
    arrays["train.meta"] = np.array("{not json")


def _float_weight_wrong_shape(arrays):
    name = next(k for k in arrays if k.startswith("float.") and k.endswith("weight"))
    arrays[name] = np.zeros(3, dtype=np.float32)


def _drop_qnet_entry(arrays):
    del arrays[next(k for k in arrays if k.startswith("qnet."))]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda good, tmp: b"", id="empty"),
        pytest.param(lambda good, tmp: good[: len(good) // 2], id="truncated"),
        pytest.param(lambda good, tmp: b"PK\x03\x04" + b"\x00" * 64, id="zip-garbage"),
        pytest.param(lambda good, tmp: _with_arrays(good, tmp, _drop_meta), id="no-meta"),
        pytest.param(lambda good, tmp: _with_arrays(good, tmp, _meta_wrong_types), id="meta-wrong-fields"),
        pytest.param(lambda good, tmp: _with_arrays(good, tmp, _meta_not_json), id="meta-not-json"),
        pytest.param(lambda good, tmp: _with_arrays(good, tmp, _float_weight_wrong_shape), id="weight-shape"),
        pytest.param(lambda good, tmp: _with_arrays(good, tmp, _drop_qnet_entry), id="qnet-entry-missing"),
    ],
)
def test_damaged_trained_network_is_named_and_retrained(entry, small_data, tmp_path, caplog, damage):
    cache, path, good = entry
    path.write_bytes(damage(good, tmp_path))
    with caplog.at_level(logging.WARNING, logger="remeco.cache"):
        tm = _get(small_data, cache)
    assert not tm.from_cache
    (msg,) = _damaged_warnings(caplog)
    assert str(path) in msg and "\n" not in msg and "rebuilding" in msg
    # healed: the next call is served from the cache, silently
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="remeco.cache"):
        again = _get(small_data, cache)
    assert again.from_cache and _damaged_warnings(caplog) == []
    assert again.network == tm.network


def test_a_folder_in_place_of_the_entry_is_replaced(entry, small_data, caplog):
    cache, path, _ = entry
    path.unlink()
    path.mkdir()
    (path / "junk").write_text("x")
    with caplog.at_level(logging.WARNING, logger="remeco.cache"):
        tm = _get(small_data, cache)
    assert not tm.from_cache and path.is_file()
    assert len(_damaged_warnings(caplog)) == 1


def test_network_file_is_rewritten_when_damaged(entry, small_data, tmp_path, caplog):
    tm = _get(small_data, entry[0])
    target = tmp_path / "network.npz"
    rn.save_network_once(tm.network, target)
    stamp = target.stat().st_mtime_ns
    rn.save_network_once(tm.network, target)  # intact: kept as it is
    assert target.stat().st_mtime_ns == stamp
    target.write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="remeco.cache"):
        rn.save_network_once(tm.network, target)
    assert rn.QuantizedNetwork.load(target) == tm.network
    assert len(_damaged_warnings(caplog)) == 1


# -- sensitivity -------------------------------------------------------------------------
NEURONS = [6, 16, 10]


def _sens() -> Sensitivity:
    rng = np.random.default_rng(0)
    signed = tuple(rng.normal(size=n) for n in NEURONS)
    return Sensitivity(signed, tuple(np.abs(s) * 2 for s in signed), 40)


class Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return _sens()


GOOD = json.dumps(_sens().to_dict())


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param(GOOD[: len(GOOD) // 2], id="truncated"),
        pytest.param("[1, 2]", id="not-an-object"),
        pytest.param(json.dumps({"signed": [[1.0]]}), id="missing-fields"),
        pytest.param(json.dumps({"signed": 3, "magnitude": 4, "images": 1}), id="wrong-types"),
        pytest.param(json.dumps({"signed": [["a"]], "magnitude": [[1]], "images": 1}), id="strings"),
        pytest.param(json.dumps({**_sens().to_dict(), "images": 0}), id="no-images"),
        pytest.param(json.dumps({**_sens().to_dict(), "magnitude": [[-1.0] * n for n in NEURONS]}), id="negative"),
        pytest.param(json.dumps({"signed": [[1.0]] * 3, "magnitude": [[1.0]] * 3, "images": 5}), id="other-network"),
        pytest.param("\udcff", id="not-utf8"),
    ],
)
def test_damaged_sensitivity_is_named_and_recomputed(tmp_path, caplog, text):
    path = tmp_path / "sensitivity.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    compute = Counter()
    with caplog.at_level(logging.WARNING, logger="remeco.cache"):
        sens = cached_sensitivity(path, compute, NEURONS)
    assert compute.calls == 1
    (msg,) = _damaged_warnings(caplog)
    assert str(path) in msg and "\n" not in msg
    assert [a.size for a in sens.signed] == NEURONS
    # the rewritten file is whole and is used next time
    again = cached_sensitivity(path, compute, NEURONS)
    assert compute.calls == 1
    for a, b in zip(again.signed, sens.signed):
        np.testing.assert_array_equal(a, b)


def test_sensitivity_cache_round_trip_and_no_temporary_left(tmp_path):
    path = tmp_path / "deep" / "sensitivity.json"
    compute = Counter()
    cached_sensitivity(path, compute, NEURONS)
    cached_sensitivity(path, compute, NEURONS)
    assert compute.calls == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["sensitivity.json"]


def test_atomic_write_leaves_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "entry.json"
    atomic_write_text(path, "old")

    def boom(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["entry.json"]


def test_warning_is_one_line_even_for_multi_line_errors(tmp_path, caplog):
    victim = tmp_path / "x"
    victim.write_text("1")
    with caplog.at_level(logging.WARNING, logger="remeco.cache"):
        warn_damaged(victim, ValueError("first line\nsecond line"))
    (msg,) = _damaged_warnings(caplog)
    assert "first line" in msg and "second" not in msg and not victim.exists()


def test_atomic_files_get_the_mode_open_would_give(tmp_path):
    # mkstemp makes 0600 files: a bundle or network file written atomically was private
    from remeco.models.quantized import atomic_savez

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        atomic_savez(tmp_path / "b.npz", {"x": np.zeros(2)})
        os.umask(0o077)
        atomic_write_text(tmp_path / "c.json", "{}")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"a.json": 0o644, "b.npz": 0o644, "c.json": 0o600}
