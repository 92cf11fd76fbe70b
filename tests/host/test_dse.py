"""``remeco dse`` on a small budget: sweeps start from the given chip, results name their configuration."""

import json

import pytest

import remeco
from remeco.host.cli import main
from remeco.host.dse import EXPORT_COLUMNS, sweep_points
from remeco.models.chip import ChipParams

EPOCHS = 4  # as tests/host/test_reproduce.py: the training cache is shared


def _dse(capsys, out, *args) -> dict:
    code = main(["dse", "--sweeps", "stuck", "--instances", "2", "--test-images", "40", "--executor", "serial",
                 "--epochs", str(EPOCHS), "--out", str(out), "--json", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_sweeps_modify_the_given_chip():
    ideal = sweep_points(["stuck", "d2d"])
    isaac = ChipParams.load("isaac")
    assert set(ideal) == set(sweep_points(["stuck", "d2d"], isaac))  # the same points, on another base chip
    small = ChipParams.ideal().with_(datapath=ChipParams.ideal().datapath.__class__(rows=64, cols=64))
    assert {p["size"] for p in sweep_points(["stuck"], small).values()} == {64}
    assert {p["size"] for p in sweep_points(["wires"], small).values()} == {32, 64, 128, 256}


def test_dse_json_export_and_chip(tmp_path, capsys):
    table = tmp_path / "points.csv"
    res = _dse(capsys, tmp_path / "ideal", "--export", str(table))
    assert res["remeco_version"] == remeco.__version__ and res["seed"] == 0
    assert res["config"]["base_chip"] == ChipParams.ideal().to_dict() and res["config"]["epochs"] == EPOCHS
    assert res["units"] == {"accuracy": "fraction of test images classified correctly, 0..1"}
    assert len(res["points"]) == 10 and all(0 <= p["accuracy_mean"] <= 1 for p in res["points"])
    clean = next(p for p in res["points"] if p["name"] == "stuck:stuck-on:0.0")
    assert "stuck-at 0 %" in clean["chip"] and "D2D 0" in clean["chip"]
    import pandas as pd

    df = pd.read_csv(table)
    assert list(df.columns) == list(EXPORT_COLUMNS) and len(df) == 10 * 2
    assert (df["network"].str.endswith(res["network_sha256"][:12])).all() and (df["images"] == 40).all()
    for p in res["points"]:
        assert df[df["point"] == p["name"]]["accuracy"].mean() == pytest.approx(p["accuracy_mean"])

    # the paper's chip as the base: its D2D variation and wires stay on in every point of the stuck sweep
    paper = _dse(capsys, tmp_path / "paper", "--chip", "paper")
    assert paper["config"]["base_chip"] == ChipParams().to_dict()
    assert paper["network_sha256"] == res["network_sha256"]
    point = next(p for p in paper["points"] if p["name"] == "stuck:stuck-on:0.0")
    assert "D2D 0.1" in point["chip"] and "IR-drop fast" in point["chip"]
    assert json.loads((tmp_path / "paper" / "dse.json").read_text()) == paper
