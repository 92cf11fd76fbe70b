"""Bundles (:mod:`remeco.host.bundle`): round trip bit for bit, the model's expected logits and
``remeco run --bundle``'s verdict on them, and one clear error per bad file."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from remeco.host import run_cli
from remeco.host.bundle import BUNDLE_VERSION, Bundle, BundleError, load_bundle, save_bundle
from remeco.host.cli import main
from remeco.host.driver import Accelerator
from remeco.host.engines import EngineCache
from remeco.host.run_cli import CALIBRATION_IMAGES, build_bundle, run
from remeco.models.chip import ChipParams
from remeco.models.emulation import EmulationFormat
from remeco.models.fabric import FabricConfig
from remeco.models.network import ProgrammedNetwork, calibrate_adc_shifts, infer, map_network, program_network
from remeco.models.redundancy import make_plan

FMT = EmulationFormat()
PLANS = ("base", "committee", "layer_averaging")
IMAGES = 24


@pytest.fixture(scope="module")
def fresh(lenet5_small, mnist5k):
    """The session's LeNet-5 mapped under three plans, chip instances 0 and 1 of each, with the
    native engine's expected logits: a Bundle."""
    _, net = lenet5_small
    train, test = mnist5k
    shifts = calibrate_adc_shifts(net, FMT, train.images[:CALIBRATION_IMAGES])
    sizes = [layer.out_features for layer in net.layers]
    mapped = {p: map_network(net, make_plan(p, sizes, n_slices=FMT.n_slices), FMT, shifts) for p in PLANS}
    chips = {(p, i): program_network(mapped[p], ChipParams(), seed=0, instance=i) for p in PLANS for i in (0, 1)}
    engines = EngineCache("native")
    expected = {key: engines.logits(mapped[key[0]], test.images[:IMAGES], chip) for key, chip in chips.items()}
    return Bundle(mapped, chips, test.images[:IMAGES], test.labels[:IMAGES], {"seed": 0, "note": "test"}, expected)


@pytest.fixture(scope="module")
def saved(fresh, tmp_path_factory):
    return save_bundle(tmp_path_factory.mktemp("bundle") / "lenet.npz", fresh)


def test_round_trip_is_exact(fresh, saved):
    back = load_bundle(saved)
    assert back.network == fresh.network and back.fmt == fresh.fmt and back.adc_shifts == fresh.adc_shifts
    assert back.plans == PLANS and back.info == {"seed": 0, "note": "test"}
    assert back.instances("committee") == (0, 1)
    np.testing.assert_array_equal(back.images, fresh.images)
    np.testing.assert_array_equal(back.labels, fresh.labels)
    assert back.images.dtype == np.uint8 and back.labels.dtype == np.int64
    for p in PLANS:
        a, b = fresh.mapped[p], back.mapped[p]
        assert a.plan.committee_log2 == b.plan.committee_log2
        for la, lb in zip(a.layers, b.layers):
            for name in ("weights", "copies_log2", "col_neuron", "col_slice", "col_copy"):
                np.testing.assert_array_equal(getattr(la, name), getattr(lb, name))
        for i in (0, 1):
            ca, cb = fresh.chip(p, i), back.chip(p, i)
            assert cb.copies == () and len(cb.codes) == len(ca.codes) == 1 << a.plan.committee_log2
            for xa, xb in zip(ca.codes, cb.codes):
                for ya, yb in zip(xa, xb):
                    assert ya.dtype == yb.dtype
                    np.testing.assert_array_equal(ya, yb)


@pytest.mark.parametrize("plan", PLANS)
def test_loaded_bundle_gives_the_fresh_logits(fresh, saved, plan):
    """Model backend with on-chip faults and the emulation executor: the loaded bundle == the mapped network."""
    back = load_bundle(saved)
    images = fresh.images
    with Accelerator("model", cfg=FabricConfig(fmt=FMT)) as acc:
        logits = []
        for b in (fresh, back):
            acc.load(b.mapped[plan], b.chip(plan, 1))
            acc.inject_faults(3, 0.02, 0.838)
            logits.append(acc.infer(images))
    np.testing.assert_array_equal(logits[0], logits[1])
    ideal = infer(fresh.mapped[plan], images, executor="emulation", programmed=fresh.chip(plan, 1))
    np.testing.assert_array_equal(ideal, infer(back.mapped[plan], images, executor="emulation",
                                               programmed=back.chip(plan, 1)))
    assert not np.array_equal(ideal, logits[0]), "the faults changed nothing: the comparison proves little"


def test_codes_only_chip_refuses_the_physics_executor(saved):
    back = load_bundle(saved)
    with pytest.raises(ValueError, match="cell codes only"):
        infer(back.mapped["base"], back.images[:2], executor="physics", programmed=back.chip("base", 0))


def test_lookups_name_what_the_bundle_has(saved):
    back = load_bundle(saved)
    with pytest.raises(ValueError, match="no plan 'msb'; it has base, committee, layer_averaging"):
        back.chip("msb", 0)
    with pytest.raises(ValueError, match="no chip instance 5 of plan 'base'; it has 0, 1"):
        back.chip("base", 5)


def test_runs_without_torch_or_scipy(saved, fresh, tmp_path):
    """The board's import path in this environment: torch, SciPy and Amaranth blocked."""
    with Accelerator("model", cfg=FabricConfig(fmt=FMT)) as acc:
        acc.load(fresh.mapped["layer_averaging"], fresh.chip("layer_averaging", 0))
        want = acc.infer(fresh.images[:8])
    np.save(tmp_path / "want.npy", want)
    code = f"""
import sys
for name in ("torch", "scipy", "amaranth"):
    sys.modules[name] = None  # import -> ImportError
import numpy as np
from remeco.host.bundle import load_bundle
from remeco.host.driver import Accelerator
from remeco.host.run_cli import run
b = load_bundle({str(saved)!r})
with Accelerator("model") as acc:
    acc.load(b.mapped["layer_averaging"], b.chip("layer_averaging", 0))
    got = acc.infer(b.images[:8])
assert (got == np.load({str(tmp_path / "want.npy")!r})).all()
res = run("model", 8, bundle={str(saved)!r}, plan="layer_averaging")
assert res["images"] == 8 and res["matches_model"] is True, res
print("ok", sorted(m for m in sys.modules if m.startswith("remeco.")))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.startswith("ok"), proc.stderr[-3000:]


# -- the model's expected logits and run's verdict ------------------------------------------


def test_expected_logits_are_the_reference_executors(fresh, saved):
    back = load_bundle(saved)
    assert set(back.expected) == set(fresh.chips)
    for (plan, instance), chip in back.chips.items():
        want = infer(back.mapped[plan], back.images, executor="emulation", programmed=chip)
        got = back.expected_logits(plan, instance)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got, fresh.expected[plan, instance])


@pytest.mark.parametrize("engine", ["native", "torch", "reference"])
def test_build_bundle_stores_the_reference_logits_with_any_engine(fresh, monkeypatch, engine):
    """build_bundle's expected logits (training and programming replaced by the fixture's)."""
    from types import SimpleNamespace

    test = SimpleNamespace(images=fresh.images, labels=fresh.labels)
    trained = SimpleNamespace(config=SimpleNamespace(epochs=1), int_accuracy=0.5)
    ctx = {"net": "lenet5", "dataset": "mnist5k", "data_dir": None, "trained": trained, "chip": ChipParams(),
           "network": fresh.mapped["committee"].network}
    chips = {key: chip for key, chip in fresh.chips.items() if key[0] == "committee"}
    monkeypatch.setattr(run_cli, "_map", lambda *a, **k: (ctx, test, {"committee": fresh.mapped["committee"]}, chips))
    built = build_bundle(("committee",), (0, 1), engine=engine)
    for key, chip in chips.items():
        want = infer(fresh.mapped["committee"], fresh.images, executor="emulation", programmed=chip)
        np.testing.assert_array_equal(built.expected[key], want)


def test_run_from_the_bundle_matches_the_model(saved):
    res = run("model", bundle=saved, plan="layer_averaging", instance=1)
    assert res["matches_model"] is True and res["model_accuracy"] == res["accuracy"]
    res = run("model", 10, bundle=saved, plan="committee")  # the first 10 images: compared over those
    assert res["images"] == 10 and res["matches_model"] is True and res["model_accuracy"] == res["accuracy"]


def test_a_tampered_expected_array_does_not_match(saved, tmp_path):
    def tamper(arrays):
        arrays["expected.2.1"] = arrays["expected.2.1"].copy()
        arrays["expected.2.1"][5, 3] += 1  # one logit of one image

    path = _rewrite(saved, tmp_path / "tampered.npz", tamper)
    assert run("model", bundle=path, plan="layer_averaging", instance=1)["matches_model"] is False
    assert run("model", 5, bundle=path, plan="layer_averaging", instance=1)["matches_model"] is True  # before image 5
    assert run("model", bundle=path, plan="layer_averaging", instance=0)["matches_model"] is True


def test_run_time_faults_give_no_verdict(saved):
    res = run("model", bundle=saved, plan="base", instance=0, faults=0.02, fault_seed=3)
    assert res["matches_model"] is None
    assert res["model_accuracy"] == run("model", bundle=saved, plan="base", instance=0)["model_accuracy"]


def test_an_old_bundle_without_expected_logits_loads_and_runs(saved, tmp_path):
    def strip(arrays):
        for key in [k for k in arrays if k.startswith("expected.")]:
            del arrays[key]
        meta = json.loads(str(arrays["bundle.meta"][()]))
        for entry in meta["chips"]:
            del entry["expected"]
        arrays["bundle.meta"] = np.array(json.dumps(meta))

    old = load_bundle(_rewrite(saved, tmp_path / "old.npz", strip))
    assert old.expected == {} and old.expected_logits("base", 0) is None
    res = run("model", bundle=tmp_path / "old.npz")
    assert res["model_accuracy"] is None and res["matches_model"] is None
    assert res["logits_sha256"] == run("model", bundle=saved)["logits_sha256"]


def test_run_text_names_the_verdict(saved, capsys):
    assert main(["run", "--backend", "model", "--bundle", str(saved), "--plan", "committee"]) == 0
    out = capsys.readouterr().out
    assert "logits equal the model's" in out


def test_bundle_engine_options_are_checked_before_training(tmp_path, capsys, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("trained before checking --engine/--device")

    monkeypatch.setattr(run_cli, "_map", boom)
    assert main(["bundle", str(tmp_path / "b.npz"), "--engine", "native", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("remeco bundle: error: --device selects") and err.count("\n") == 1, err


# -- bad files ------------------------------------------------------------------------------


def _rewrite(src, dst, edit):
    """Copy bundle ``src`` to ``dst`` with ``edit(arrays)`` applied."""
    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    edit(arrays)
    np.savez(dst, **arrays)
    return dst


def _edit_meta(**changes):
    def edit(arrays):
        meta = json.loads(str(arrays["bundle.meta"][()]))
        meta.update(changes)
        arrays["bundle.meta"] = np.array(json.dumps(meta))

    return edit


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_bundle(tmp_path / "absent.npz")


def test_not_a_zip(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("hello")
    with pytest.raises(BundleError, match=r"not an \.npz \(zip\) file"):
        load_bundle(path)


def test_truncated(saved, tmp_path):
    path = tmp_path / "cut.npz"
    path.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    with pytest.raises(BundleError, match="truncated|not a readable bundle"):
        load_bundle(path)


def test_corrupted_member_fails_its_checksum(saved, tmp_path):
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as z:
        info = z.getinfo("images.npy")
    # the middle of the compressed images: the zip's CRC-32 (or inflate) must catch it
    at = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
    data[at] ^= 0xFF
    path = tmp_path / "flipped.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="not a readable bundle"):
        load_bundle(path)


def test_another_npz_is_not_a_bundle(fresh, tmp_path):
    path = tmp_path / "network.npz"
    fresh.network.save(path)
    with pytest.raises(BundleError, match="not a remeco bundle .no bundle.meta"):
        load_bundle(path)


@pytest.mark.parametrize("changes, message", [
    ({"version": BUNDLE_VERSION + 1}, f"bundle version {BUNDLE_VERSION + 1}; this remeco reads version {BUNDLE_VERSION}"),
    ({"version": None}, "bundle version None"),
    ({"kind": "something"}, "not a remeco bundle .kind 'something'"),
    ({"fmt": {**FMT.to_dict(), "rows": 64}}, r"copy 0 layer 0: codes must be integers \(1, 1, 64, 128\), got int64 \(1, 1, 128, 128\)"),
    ({"adc_shifts": [0]}, "adc_shifts has 1 entries"),
])
def test_mismatched_metadata(saved, tmp_path, changes, message):
    path = _rewrite(saved, tmp_path / "edited.npz", _edit_meta(**changes))
    with pytest.raises(BundleError, match=message):
        load_bundle(path)


def _edit_network(edit):
    def apply(arrays):
        meta = json.loads(str(arrays["qnet.meta"][()]))
        edit(meta)
        arrays["qnet.meta"] = np.array(json.dumps(meta))

    return apply


@pytest.mark.parametrize("edit, message", [
    # The network inside is checked against what inference will do with it (issue 12): before,
    # these loaded and failed later deep in im2col / requantize, or ran (a fractional shift).
    (_edit_network(lambda m: m["layers"][0].update(padding=[])), r"padding must be an integer >= 0"),
    (_edit_network(lambda m: m["layers"][0].update(stride=0)), r"stride must be an integer >= 1"),
    (_edit_network(lambda m: m["layers"][0].update(shift=-1)), r"shift must be an integer >= 0, got -1"),
    (_edit_network(lambda m: m["layers"][0].update(shift=63)), r"requantization multiplier \d+ / shift 63 outside"),
    (_edit_network(lambda m: m["layers"][1].update(input_shape=[6, 12, 13])), r"layer 1 \(conv\) takes \(6, 12, 13\)"),
    (_edit_network(lambda m: m["layers"][0].update(relu=False)), r"layer 0: every layer but the last must have relu"),
    (_edit_network(lambda m: m["layers"].__setitem__(1, 7)), r"layer objects"),
    (_edit_meta(adc_shifts=[4.7] * 5), r"adc_shifts entry must be an integer, got 4.7"),
])
def test_the_network_inside_is_checked_against_its_use(saved, tmp_path, capsys, edit, message):
    path = _rewrite(saved, tmp_path / "edited.npz", edit)
    with pytest.raises(BundleError, match=message):
        load_bundle(path)
    assert main(["run", "--backend", "model", "--bundle", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "Traceback" not in err[0], err


def test_missing_entry_is_named(saved, tmp_path):
    path = _rewrite(saved, tmp_path / "short.npz", lambda a: a.pop("chip.1.0.1.3"))
    with pytest.raises(BundleError, match="entry 'chip.1.0.1.3' is missing"):
        load_bundle(path)


def test_inconsistent_arrays(saved, tmp_path):
    def shrink(arrays):
        arrays["plan.0.2"] = arrays["plan.0.2"][:5]

    with pytest.raises(BundleError, match=r"plan layer 2 has shape \(5, 2\)"):
        load_bundle(_rewrite(saved, tmp_path / "bad.npz", shrink))

    def bad_labels(arrays):
        arrays["labels"] = arrays["labels"][:3]

    with pytest.raises(BundleError, match=r"labels must be integers of shape \(24,\)"):
        load_bundle(_rewrite(saved, tmp_path / "bad2.npz", bad_labels))


def test_bad_expected_entries(saved, tmp_path):
    def flag(value):
        def edit(arrays):
            meta = json.loads(str(arrays["bundle.meta"][()]))
            meta["chips"][0]["expected"] = value
            arrays["bundle.meta"] = np.array(json.dumps(meta))
        return edit

    with pytest.raises(BundleError, match="'expected' must be true or false, got 'yes'"):
        load_bundle(_rewrite(saved, tmp_path / "flag.npz", flag("yes")))
    with pytest.raises(BundleError, match="entry 'expected.0.0' is missing"):
        load_bundle(_rewrite(saved, tmp_path / "gone.npz", lambda a: a.pop("expected.0.0")))

    def widen(arrays):
        arrays["expected.1.1"] = arrays["expected.1.1"].astype(np.int64)

    with pytest.raises(BundleError, match=r"expected\[\('committee', 1\)\] must be int32 logits \(24, 10\)"):
        load_bundle(_rewrite(saved, tmp_path / "wide.npz", widen))


def test_bundle_checks_its_parts(fresh):
    base = fresh.mapped["base"]
    chip = fresh.chip("base", 0)
    args = (fresh.images, fresh.labels)
    with pytest.raises(ValueError, match="the key must be the plan's name"):
        Bundle({"other": base}, {("other", 0): chip}, *args)
    with pytest.raises(ValueError, match="chips key"):
        Bundle({"base": base}, {("msb", 0): chip}, *args)
    with pytest.raises(ValueError, match="must hold 2 copies"):
        Bundle({"committee": fresh.mapped["committee"]}, {("committee", 0): chip}, *args)
    with pytest.raises(ValueError, match="codes must be integers"):
        Bundle({"base": base}, {("base", 0): ProgrammedNetwork((), ((chip.codes[0][0],) * 5,))}, *args)
    with pytest.raises(ValueError, match="images must be uint8"):
        Bundle({"base": base}, {("base", 0): chip}, fresh.images.astype(np.int16), fresh.labels)
    with pytest.raises(ValueError, match="JSON-serialisable"):
        Bundle({"base": base}, {("base", 0): chip}, *args, info={"x": object()})
    logits = fresh.expected["base", 0]
    with pytest.raises(ValueError, match=r"expected key \('base', 1\) must be a \(plan, instance\) of chips"):
        Bundle({"base": base}, {("base", 0): chip}, *args, expected={("base", 1): logits})
    with pytest.raises(ValueError, match=r"must be int32 logits \(24, 10\) .images x classes., got int32 \(23, 10\)"):
        Bundle({"base": base}, {("base", 0): chip}, *args, expected={("base", 0): logits[:23]})
