"""remeco.evaluate: a user network on chip instances under plans, as a DataFrame; resumable."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import remeco.host.evaluate as ev
from remeco.host.evaluate import COLUMNS, EvaluationError, evaluate
from remeco.host.store import ResultStore
from remeco.models.chip import ChipParams
from remeco.models.chipfile import ChipConfigError
from remeco.models.convert import from_torch
from remeco.models.data import load_dataset
from remeco.models.device import DeviceParams
from remeco.models.emulation import EmulationFormat
from remeco.models.redundancy import make_plan

N_TEST = 150


@pytest.fixture(scope="module")
def data():
    return load_dataset("mnist5k")


@pytest.fixture(scope="module")
def network(data):
    train, _ = data
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    x, y = torch.tensor(train.images, dtype=torch.float32) / 255, torch.tensor(train.labels)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for i in range(0, len(x), 50):
        opt.zero_grad()
        F.cross_entropy(net(x[i:i + 50]), y[i:i + 50]).backward()
        opt.step()
    return from_torch(net.eval(), train.images[:500])


def _test(data):
    return data[1].images[:N_TEST], data[1].labels[:N_TEST]


def test_rows_columns_and_costs(data, network):
    images, labels = _test(data)
    df = evaluate(network, images, labels, plans=("base", "layer_averaging"), instances=2)
    assert list(df.columns) == list(COLUMNS)
    assert list(zip(df.instance, df.plan)) == [(0, "base"), (0, "layer_averaging"), (1, "base"), (1, "layer_averaging")]
    assert ((df.accuracy >= 0) & (df.accuracy <= 1)).all() and (df.images == N_TEST).all()
    assert np.allclose(df.accuracy, df.correct / N_TEST)
    assert df.reference_accuracy.iloc[0] == pytest.approx(float(np.mean(network.predict(images) == labels)))
    assert df.reference_accuracy.iloc[0] > 0.8
    base, avg = df.iloc[0], df.iloc[1]
    # Area counts whole crossbars: both plans fit the same tiles here; energy follows the columns.
    assert avg.area_mm2 >= base.area_mm2 and avg.energy_j_per_10k_images > base.energy_j_per_10k_images
    assert avg.extra_columns == pytest.approx(1.0) and base.extra_columns == 0
    assert base.energy_j_per_10k_images > 10_000 * base.energy_j_per_image  # programming counted once
    assert "stuck-at 1 %" in base.chip and "83.8 % on" in base.chip
    assert df.attrs["chip"] == ChipParams().to_dict()


def test_ideal_chip_with_a_wide_adc_is_the_integer_reference(data, network):
    images, labels = _test(data)
    chip = ChipParams.ideal().with_(datapath=EmulationFormat(adc_bits=16))
    df = evaluate(network, images, labels, plans=("base", "committee"), instances=1, chip=chip)
    assert (df.accuracy == df.reference_accuracy).all(), df[["plan", "accuracy", "reference_accuracy"]]


def test_resumes_from_the_store_and_engines_give_the_same_rows(tmp_path, data, network, monkeypatch):
    images, labels = _test(data)
    db = tmp_path / "runs.sqlite"
    first = evaluate(network, images, labels, plans=("base",), instances=2, store=db)
    calls = []
    real = ev.evaluate_instance

    def counting(spec, instance, plans, **kw):
        calls.append((instance, tuple(plans)))
        return real(spec, instance, plans, **kw)

    monkeypatch.setattr(ev, "evaluate_instance", counting)
    more = evaluate(network, images, labels, plans=("base",), instances=3, store=db, engine="reference")
    assert calls == [(2, ("base",))]  # only the missing instance
    assert more.iloc[:2].equals(first)
    again = evaluate(network, images, labels, plans=("base",), instances=3, store=db, engine="torch")
    assert calls == [(2, ("base",))] and again.equals(more)
    with ResultStore(db) as store:
        assert len(store.campaigns()) == 1
    assert (tmp_path / "runs.sqlite.data").is_dir()


@pytest.mark.parametrize("damage", ["truncate", "other data"])
def test_damaged_data_files_next_to_the_store_are_named_and_rewritten(tmp_path, data, network, caplog, damage):
    """The network and image files beside the store are read by the workers: a truncated one
    was a BadZipFile traceback, one holding other images was evaluated silently."""
    images, labels = _test(data)
    db = tmp_path / "runs.sqlite"
    first = evaluate(network, images, labels, instances=1, store=db)
    ev._MEMO.clear()  # the workers' memo would hide the files
    for path in sorted((tmp_path / "runs.sqlite.data").iterdir()):
        if damage == "truncate":
            path.write_bytes(path.read_bytes()[:100])
        elif path.name.startswith("images-"):
            np.savez(path, images=images, labels=np.roll(labels, 1))  # wrong answers, same shapes
        else:
            other = from_torch(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval(), images[:20])
            other.save(path)
    with caplog.at_level("WARNING", logger="remeco.cache"):
        again = evaluate(network, images, labels, instances=2, store=db)
    warned = [r.getMessage() for r in caplog.records if "damaged cache entry" in r.getMessage()]
    assert len(warned) == 2 and all("runs.sqlite.data" in w for w in warned), warned
    assert again.iloc[:1].equals(first)
    ev._MEMO.clear()
    assert again.iloc[1:].reset_index(drop=True).equals(evaluate(network, images, labels, instances=[1]))


def test_sensitivity_plans_and_user_plans(data, network):
    train, _ = data
    images, labels = _test(data)
    with pytest.raises(EvaluationError, match="'msb' needs the network's sensitivity"):
        evaluate(network, images, labels, plans=("base", "msb"), instances=1)
    sens = (train.images[:200], train.labels[:200])
    from remeco.models.convert import compute_sensitivity

    s = compute_sensitivity(network, *sens)
    mine = make_plan("msb", [32, 10], s, neuron_fraction=0.5)
    mine = type(mine)("msb_half", mine.copies_log2)
    df = evaluate(network, images, labels, plans=("sensitive_layer", mine), instances=1, sensitivity=sens)
    assert list(df.plan) == ["sensitive_layer", "msb_half"]
    assert 0 < df.extra_columns.iloc[1] < 0.5


@pytest.mark.parametrize("kwargs, words", [
    ({"plans": ("base", "magic")}, ["unknown plan 'magic'"]),
    ({"plans": "base"}, ["plans must be"]),
    ({"chip": "paperr"}, ["unknown chip preset"]),
    ({"engine": "gpu"}, ["engine"]),
    ({"workers": 0}, ["workers"]),
    ({"engine": "native", "device": "cpu"}, ["device selects the torch engine"]),
    ({"engine": "torch", "device": "tpu:7"}, ["device 'tpu:7'"]),
    ({"plans": (make_plan("base", [5, 10]),)}, ["plan 'base' has layers of shape"]),
    ({"chip": ChipParams(device=DeviceParams(levels=8))}, ["device.levels (8)"]),
    # issue 12: before any work; these were an empty table, an OverflowError from SQLite after
    # the work, a NotADirectoryError, a 4-line torch TypeError
    ({"instances": 0}, ["instances must name at least one chip instance"]),
    ({"instances": []}, ["instances must name at least one chip instance"]),
    ({"instances": [2**70]}, ["instances must be integers in 0..2**63-1"]),
    ({"instances": 10**9}, ["instances must be at most 10,000,000"]),
    ({"store": "/etc/hostname/runs.sqlite"}, ["store /etc/hostname/runs.sqlite lies under /etc/hostname"]),
    ({"store": "/"}, ["store / is a folder"]),
    ({"store": 3}, ["store must be a path"]),
    ({"cost": 3}, ["cost must be a cost preset name"]),
    ({"engine": "torch", "device": []}, ["device must be a torch device name"]),
    ({"chip": ChipParams(datapath=EmulationFormat(input_bits=4))}, ["datapath.input_bits (4) must be >= 8"]),
])
def test_bad_arguments_are_one_line(data, network, kwargs, words):
    images, labels = _test(data)
    with pytest.raises((EvaluationError, ChipConfigError)) as info:
        evaluate(network, images, labels, **{"instances": 1, **kwargs})
    assert "\n" not in str(info.value)
    for word in words:
        assert word in str(info.value)


def test_serial_evaluation_leaves_the_callers_threads_alone(data, network):
    images, labels = _test(data)
    before = torch.get_num_threads()
    evaluate(network, images, labels, instances=1)
    assert torch.get_num_threads() == before


def test_bad_data_is_one_line(data, network):
    images, labels = _test(data)
    with pytest.raises(EvaluationError, match="uint8"):
        evaluate(network, images.astype(np.float32), labels, instances=1)
    with pytest.raises(EvaluationError, match="labels"):
        evaluate(network, images, labels[:-1], instances=1)
    with pytest.raises(EvaluationError, match="QuantizedNetwork"):
        evaluate(object(), images, labels, instances=1)
    with pytest.raises(EvaluationError, match="images must be an array, got list NumPy cannot convert"):
        evaluate(network, [[1], [1, 2]], labels, instances=1)


@pytest.mark.slow
def test_process_pool_gives_the_serial_rows(data, network):
    images, labels = _test(data)
    serial = evaluate(network, images, labels, plans=("base", "committee"), instances=2)
    pooled = evaluate(network, images, labels, plans=("base", "committee"), instances=2, workers=2)
    assert pooled.equals(serial)


def test_all_six_plans_work_for_a_converted_network(data, network):
    from remeco.models.redundancy import PLAN_NAMES

    train, _ = data
    images, labels = _test(data)
    df = evaluate(network, images, labels, plans=PLAN_NAMES, instances=1,
                  sensitivity=(train.images[:200], train.labels[:200]))
    assert tuple(df.plan) == PLAN_NAMES
    assert (df.accuracy > 0.5).all(), df[["plan", "accuracy"]]
    extra = dict(zip(df.plan, df.extra_columns))
    assert extra["base"] == 0 and extra["committee"] == pytest.approx(1.0)
    assert 0 < extra["msb"] < extra["sensitive_neuron"] < extra["layer_averaging"]


def test_the_isaac_preset_maps_with_its_own_datapath(data, network):
    images, labels = _test(data)
    df = evaluate(network, images, labels, instances=1, chip="isaac")
    assert "4x2-bit cells" in df.chip.iloc[0] and df.attrs["chip"]["datapath"]["n_slices"] == 4
    assert df.accuracy.iloc[0] > 0.5
