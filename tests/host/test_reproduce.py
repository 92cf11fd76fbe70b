"""The README's main job on a small budget: real training, real chips, real accuracy."""

import json

import pytest

import remeco
from remeco.host.cli import main
from remeco.host.reproduce import reproduce
from remeco.models.chip import ChipParams
from remeco.models.quantized import QuantizedNetwork

EPOCHS = 4  # a short training keeps the test quick; the software accuracy is still ~97 %


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    res = reproduce(instances=3, test_images=250, out_dir=out, executor="serial", epochs=EPOCHS, log=lambda *_: None)
    return res, out


def test_json_shape_and_files(result):
    res, out = result
    assert set(res) == {"remeco_version", "seed", "network_sha256", "config", "units", "software_accuracy",
                        "area_model", "rows"} and res["area_model"] == "columns"
    # the configuration in force, the network's identity and the units travel with the numbers
    assert res["remeco_version"] == remeco.__version__ and res["seed"] == 0
    assert res["config"]["chip"] == ChipParams().to_dict() and res["config"]["epochs"] == EPOCHS
    assert res["config"]["instances"] == 3 and res["config"]["test_images"] == 250
    assert res["config"]["net"] == "lenet5" and "stuck-at 1 %" in res["config"]["chip_description"]
    assert (out / f"network-lenet5-{res['network_sha256'][:16]}.npz").exists()
    assert set(res["units"]) == {"accuracy", "area_mm2", "energy_j_per_image", "energy_j_per_10k_images"}
    assert [r["plan"] for r in res["rows"]] == [
        "base", "committee", "layer_averaging", "sensitive_neuron", "msb", "sensitive_layer"]
    for r in res["rows"]:
        assert set(r) == {"plan", "accuracy_mean", "accuracy_median", "accuracy_std", "accuracy_ci95",
                          "diff_vs_base", "diff_vs_committee", "area_mm2", "energy_j_per_image",
                          "energy_j_per_10k_images"}
        assert 0 <= r["accuracy_mean"] <= 1 and r["area_mm2"] > 0
        assert r["energy_j_per_10k_images"] > 10_000 * r["energy_j_per_image"] > 0  # plus programming once
        lo, hi = r["accuracy_ci95"]
        assert lo <= r["accuracy_mean"] <= hi
        for ref in ("base", "committee"):
            d = r[f"diff_vs_{ref}"]
            assert set(d) == {"mean", "ci95"} and d["ci95"][0] <= d["mean"] <= d["ci95"][1]
    by_plan = {r["plan"]: r for r in res["rows"]}
    assert by_plan["base"]["diff_vs_base"] == {"mean": 0.0, "ci95": [0.0, 0.0]}
    assert by_plan["committee"]["diff_vs_base"]["mean"] == pytest.approx(
        by_plan["committee"]["accuracy_mean"] - by_plan["base"]["accuracy_mean"])
    assert json.loads((out / "reproduce.json").read_text()) == res
    assert (out / "accuracy_boxplot.png").stat().st_size > 1000
    assert (out / "sensitivity.png").stat().st_size > 1000


def test_one_instance_gives_null_intervals_and_tiles_area_model(result):
    _, out = result
    res = reproduce(instances=1, test_images=250, out_dir=out, executor="serial", epochs=EPOCHS, plot=False,
                    area_model="tiles", log=lambda *_: None)
    assert json.loads(json.dumps(res, allow_nan=False)) == res  # valid JSON: null, never NaN
    assert res["area_model"] == "tiles"
    for r in res["rows"]:
        assert r["accuracy_ci95"] is None and r["accuracy_std"] == 0.0
        assert r["diff_vs_base"]["ci95"] is None and r["diff_vs_committee"]["ci95"] is None
    area = {r["plan"]: r["area_mm2"] for r in res["rows"]}
    columns = {r["plan"]: r["area_mm2"] for r in result[0]["rows"]}
    assert area["sensitive_layer"] == area["base"]  # whole crossbars: the few extra columns fit
    assert columns["sensitive_layer"] > columns["base"]  # columns: they are charged
    assert area["base"] > columns["base"]


def test_redundancy_recovers_accuracy_lost_to_non_idealities(result):
    res, _ = result
    acc = {r["plan"]: r["accuracy_mean"] for r in res["rows"]}
    assert acc["base"] < res["software_accuracy"]
    assert acc["committee"] > acc["base"]
    assert acc["layer_averaging"] > acc["base"]


def test_area_ordering_as_in_table_4(result):
    res, _ = result
    area = {r["plan"]: r["area_mm2"] for r in res["rows"]}
    assert 1.8 <= area["committee"] / area["base"] <= 2.2
    assert area["base"] < area["msb"] < area["sensitive_neuron"] <= area["layer_averaging"]
    assert area["sensitive_layer"] <= 1.1 * area["base"]


def test_rerun_is_served_from_the_store(result, monkeypatch):
    res, out = result
    import remeco.host.reproduce as rep

    def boom(*a, **k):  # any recomputation would call the task
        raise AssertionError("finished campaign recomputed")

    monkeypatch.setattr(rep, "evaluate_instance", boom)
    assert rep.reproduce(instances=3, test_images=250, out_dir=out, executor="serial", epochs=EPOCHS, log=lambda *_: None) == res


def test_bad_arguments_are_one_line_errors(capsys, tmp_path):
    assert main(["reproduce", "--instances", "0", "--out", str(tmp_path)]) == 2
    assert "instances" in capsys.readouterr().err
    for flag, value in (("--dataset", "imagenet"), ("--area-model", "devices"), ("--net", "resnet")):
        with pytest.raises(SystemExit) as exc:  # argparse choices: usage and one error line
            main(["reproduce", flag, value, "--out", str(tmp_path)])
        assert exc.value.code == 2 and flag in capsys.readouterr().err
    with pytest.raises(ValueError, match="name must be one of"):  # the Python API checks it too
        reproduce(dataset="imagenet", out_dir=tmp_path, log=lambda *_: None)
    for args, words in ((["--chip", "nosuch"], "--chip: unknown chip preset 'nosuch'"),
                        (["--chip", str(tmp_path / "missing.toml")], "--chip: cannot read chip file"),
                        (["--export", str(tmp_path / "rows.xlsx")], "--export"),
                        (["--epochs", "0"], "--epochs must be >= 1"),
                        (["--test-images", "0"], "--test-images must be >= 1")):
        assert main(["reproduce", *args, "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, err


def test_search_reports_the_trade_off(result, capsys):
    _, out = result
    table = out / "trials.csv"
    code = main(["search", "--instances", "2", "--test-images", "60", "--out", str(out), "--executor", "serial",
                 "--epochs", str(EPOCHS), "--export", str(table), "--json"])
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    trials = res["trials"]
    assert trials[0]["step"] == "layer averaging" and trials[0]["extra_columns"] == 1.0
    assert all(t["extra_columns"] < 1.0 for t in trials[1:])
    assert res["network_sha256"] == result[0]["network_sha256"] and res["config"]["chip"] == ChipParams().to_dict()
    assert res["config"]["tolerance"] == 0.005 and set(res["units"]) == {"accuracy", "extra_columns"}
    assert json.loads((out / "search.json").read_text()) == res
    import pandas as pd

    df = pd.read_csv(table)
    assert len(df) == 2 * len(trials) and sorted(set(df["trial"])) == list(range(len(trials)))
    for i, t in enumerate(trials):
        assert df[df["trial"] == i]["accuracy"].mean() == pytest.approx(t["accuracy"])
        assert (df[df["trial"] == i]["step"] == t["step"]).all()


def test_train_and_sensitivity_commands(result, capsys, tmp_path):
    # the module fixture trained this configuration: the command must find it in the cache
    assert main(["train", "--epochs", str(EPOCHS), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["from_cache"] and info["parameters"] == 44426 and info["int_accuracy"] > 0.9
    # one identity of the network: the digest train prints names reproduce's network file
    network_file = result[1] / f"network-lenet5-{info['network_sha256'][:16]}.npz"
    assert QuantizedNetwork.load(network_file).sha256() == info["network_sha256"]
    assert main(["sensitivity", "--epochs", str(EPOCHS), "--train-images", "50", "--out", str(tmp_path), "--json",
                 "--plot-format", "pdf,svg"]) == 0
    layers = json.loads(capsys.readouterr().out)["layer_sensitivity"]
    assert len(layers) == 5 and not (tmp_path / "sensitivity.png").exists()
    assert (tmp_path / "sensitivity.pdf").read_bytes().startswith(b"%PDF-")
    assert "averaged over 50 training images" in (tmp_path / "sensitivity.svg").read_text(encoding="utf-8")
    assert main(["train", "--epochs", "0"]) == 2


def test_export_writes_one_row_per_instance_and_plan(result, capsys):
    res, out = result
    table = out / "rows.csv"
    code = main(["reproduce", "--instances", "3", "--test-images", "250", "--out", str(out), "--executor", "serial",
                 "--epochs", str(EPOCHS), "--export", str(table), "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out) == res  # served from the store: the same result
    import pandas as pd

    from remeco.host.evaluate import COLUMNS

    df = pd.read_csv(table)
    assert list(df.columns) == [*COLUMNS, "area_model"] and len(df) == 3 * 6
    assert sorted(set(df["instance"])) == [0, 1, 2] and (df["seed"] == 0).all()
    assert (df["network"] == f"lenet5@{res['network_sha256'][:12]}").all()
    assert (df["chip"] == res["config"]["chip_description"]).all()
    for row in res["rows"]:  # the table's rows are the JSON's per-instance numbers
        plan = df[df["plan"] == row["plan"]]
        assert plan["accuracy"].mean() == pytest.approx(row["accuracy_mean"])
        assert (plan["correct"] == (plan["accuracy"] * 250).round()).all()
        assert plan["energy_j_per_10k_images"].iloc[0] == pytest.approx(row["energy_j_per_10k_images"])


def test_parquet_export_holds_the_csv_rows(result, capsys, tmp_path):
    """--export FILE.parquet writes the same table as FILE.csv (pyarrow is a dependency)."""
    import pandas as pd

    res, out = result
    tables = {}
    for suffix in ("csv", "parquet"):
        path = tmp_path / f"rows.{suffix}"
        assert main(["reproduce", "--instances", "3", "--test-images", "250", "--out", str(out), "--executor",
                     "serial", "--epochs", str(EPOCHS), "--export", str(path), "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == res
        tables[suffix] = pd.read_csv(path) if suffix == "csv" else pd.read_parquet(path)
    assert (tmp_path / "rows.parquet").read_bytes()[:4] == b"PAR1" and len(tables["parquet"]) == 3 * 6
    pd.testing.assert_frame_equal(tables["parquet"], tables["csv"], check_dtype=False)


def test_parquet_export_needs_pyarrow(tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError("No module named 'pyarrow'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    assert main(["reproduce", "--export", str(tmp_path / "rows.parquet"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "parquet needs the pyarrow package" in err and len(err.strip().splitlines()) == 1


def test_chip_file_changes_the_datapath(result, tmp_path, capsys):
    """--chip isaac maps every plan on 4 slices of 2-bit cells: other area, recorded in the JSON."""
    res, out = result
    code = main(["reproduce", "--chip", "isaac", "--instances", "1", "--test-images", "60", "--out", str(tmp_path),
                 "--executor", "serial", "--epochs", str(EPOCHS), "--json"])
    assert code == 0
    isaac = json.loads(capsys.readouterr().out)
    assert isaac["config"]["chip"] == ChipParams.load("isaac").to_dict()
    assert isaac["config"]["chip"]["datapath"]["n_slices"] == 4
    assert isaac["network_sha256"] == res["network_sha256"]  # the chip does not change the network
    area = {r["plan"]: r["area_mm2"] for r in isaac["rows"]}
    paper = {r["plan"]: r["area_mm2"] for r in res["rows"]}
    assert area["base"] > paper["base"]  # twice the columns of (smaller) 2-bit cells
    assert json.loads((tmp_path / "reproduce.json").read_text()) == isaac
