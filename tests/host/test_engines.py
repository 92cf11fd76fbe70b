"""Campaigns with any engine (remeco.host.engines): same rows, engine outside the spec, one-line errors."""

from __future__ import annotations

import functools
import json

import pytest

from remeco.host import dse, reproduce as rep
from remeco.host.cli import UserError, main
from remeco.host.engines import EngineCache, check_engine
from remeco.models.chip import ChipParams
from remeco.models.emulation import EmulationFormat
from remeco.models.network import calibrate_adc_shifts, infer, map_network, program_network
from remeco.models.redundancy import make_plan

EPOCHS = 4  # as tests/host/test_reproduce.py: the same cached training


def test_engine_cache_gives_the_reference_logits(lenet5_small, mnist5k):
    _, net = lenet5_small
    train, test = mnist5k
    fmt = EmulationFormat()
    mapped = map_network(net, make_plan("layer_averaging", [l.out_features for l in net.layers], n_slices=fmt.n_slices), fmt,
                         calibrate_adc_shifts(net, fmt, train.images[:64]))
    chip = program_network(mapped, ChipParams(), seed=3, instance=1)
    images = test.images[:40]
    ref = infer(mapped, images, executor="emulation", programmed=chip)
    for engine, device in (("native", None), ("torch", None), ("torch", "cpu"), ("reference", None)):
        cache = EngineCache(engine, device)
        first = cache.logits(mapped, images, chip)
        assert (first == ref).all(), engine
        assert (cache.logits(mapped, images, chip) == ref).all()  # the engine built once is reused
    assert len(EngineCache("native")._engines) == 0  # nothing built before it is asked for


def test_reproduce_rows_do_not_depend_on_the_engine(tmp_path, monkeypatch):
    kwargs = dict(instances=2, test_images=120, executor="serial", epochs=EPOCHS, log=lambda *_: None, plot=False)
    results = {engine: rep.reproduce(out_dir=tmp_path / engine, engine=engine, **kwargs)
               for engine in ("native", "torch", "reference")}
    assert results["native"] == results["reference"] == results["torch"]
    assert (json.loads((tmp_path / "native" / "reproduce.json").read_text())
            == json.loads((tmp_path / "reference" / "reproduce.json").read_text()))

    # The engine is not part of the campaign's identity: another engine on the same
    # folder finds every row in the store and computes nothing.
    def boom(*a, **k):
        raise AssertionError("finished campaign recomputed")

    monkeypatch.setattr(rep, "evaluate_instance", boom)
    assert rep.reproduce(out_dir=tmp_path / "native", engine="reference", **kwargs) == results["native"]


def test_dse_point_rows_do_not_depend_on_the_engine(lenet5_small, tmp_path):
    _, net = lenet5_small
    network_file = tmp_path / "net.npz"
    net.save(network_file)
    points = {k: v for k, v in dse.sweep_points(["stuck", "wires"]).items()
              if k in ("stuck:stuck-on:0.02", "wires:64:2.0")}
    assert len(points) == 2, sorted(dse.sweep_points(["stuck", "wires"]))
    spec = {"kind": "dse", "dataset": "mnist5k", "data_dir": None, "network_file": str(network_file),
            "seed": 0, "test_images": 60, "base_chip": ChipParams.ideal().to_dict(), "points": points}
    rows = {engine: dse.evaluate_point(json.loads(json.dumps(spec)), 1, sorted(points), engine=engine)
            for engine in ("native", "torch", "reference")}
    assert rows["native"] == rows["torch"] == rows["reference"]
    task = functools.partial(dse.evaluate_point, engine="torch")
    assert task(json.loads(json.dumps(spec)), 1, sorted(points)) == rows["reference"]


def test_bad_engine_or_device_is_a_one_line_error(capsys, tmp_path):
    with pytest.raises(UserError, match="--engine torch"):
        check_engine("native", "cpu")
    with pytest.raises(UserError, match="not a torch device"):
        check_engine("torch", "toaster")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no cuda device"):
            check_engine("torch", "cuda")
    check_engine("torch", "cpu")  # fine
    with pytest.raises(SystemExit) as stop:
        main(["reproduce", "--engine", "fast", "--out", str(tmp_path / "out")])
    assert stop.value.code == 2 and "invalid choice: 'fast'" in capsys.readouterr().err
    for argv in (["dse", "--engine", "reference", "--device", "cpu"], ["search", "--engine", "torch", "--device", "toaster"],
                 ["reproduce", "--engine", "torch", "--device", "cuda:7"]):
        assert main(argv + ["--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert "--device" in err and "Traceback" not in err and len(err.splitlines()) == 1, err
