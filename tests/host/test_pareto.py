"""``remeco search --method pareto`` on a small budget: LeNet-5 trained 4 epochs, a few trials,
two chip instances and 30 test images (low fidelity: one instance, 10 images)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from remeco.host.cli import main
from remeco.host.pareto import WARM_START, non_dominated, paper_params, plan_from_params, search_pareto
from remeco.models.redundancy import make_plan

EPOCHS = 4  # as tests/host/test_reproduce.py: the trained network is shared through the cache
SMALL = dict(instances=2, test_images=30, epochs=EPOCHS, executor="serial", heuristic=False, plot=False,
             log=lambda *_: None)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = tmp_path_factory.mktemp("pareto")
    return search_pareto(trials=7, out_dir=out, **SMALL), out


def _study(result):
    import optuna

    return optuna.load_study(study_name=result["study"]["name"],
                             storage=f"sqlite:///{result['study']['storage']}")


def test_non_dominated():
    pts = np.array([[0, 1], [1, 0], [1, 1], [0, 1], [2, 2]])
    assert non_dominated(pts).tolist() == [True, True, False, True, False]


def test_the_paper_plans_are_points_of_the_space():
    from remeco.host.reproduce import prepare

    ctx = prepare(test_images=10, epochs=EPOCHS, plot=False, log=lambda *_: None,
                  out_dir=os.environ.get("TMPDIR", "/tmp") + "/remeco-pareto-space")
    sizes = [layer.out_features for layer in ctx["network"].layers]
    n_slices = ctx["fmt"].n_slices
    for name in WARM_START:
        ours = plan_from_params(paper_params(name, sizes, ctx["sensitivity"], n_slices), sizes, ctx["sensitivity"],
                                n_slices)
        ref = make_plan(name, sizes, ctx["sensitivity"], n_slices=n_slices)
        assert all(np.array_equal(a, b) for a, b in zip(ours.copies_log2, ref.copies_log2)), name
    # named by content: the same plan is the same campaign
    assert ours.name == plan_from_params(paper_params(name, sizes, ctx["sensitivity"], n_slices), sizes,
                                         ctx["sensitivity"], n_slices).name


def test_front_is_non_dominated_and_covers_every_full_fidelity_trial(searched):
    res, _ = searched
    assert res["evaluated"] == 7 and 5 <= res["promoted"] <= 7  # the warm start is always promoted
    full = [t.user_attrs["objectives"] for t in _study(res).get_trials()
            if t.user_attrs.get("fidelity") == "full"]

    def key(o):  # all objectives to minimise
        return np.array([-o["accuracy_mean"], -o["accuracy_q10"], o["area_mm2"], o["energy_j_per_10k_images"]])

    front = [key(r) for r in res["front"]]
    for f in front:  # no full-fidelity trial dominates a front point
        assert not any(np.all(key(o) <= f) and np.any(key(o) < f) for o in full)
    for o in full:  # every full-fidelity trial is on the front or dominated by it
        k = key(o)
        assert any(np.all(f <= k) for f in front)
    assert set(res["paper_plans"]) == set(WARM_START)
    assert res["paper_plans"]["base"]["area_overhead"] == 0.0


def test_resume_after_kill_9_continues_the_trial_count(searched, tmp_path):
    import optuna

    res, out = searched
    # Each evaluation in the child is followed by 3 s of sleep, so a trial seen running is
    # still running when the kill lands (evaluations of 2 x 30 pairs take milliseconds).
    code = (f"import time\n"
            f"import remeco.host.pareto as pareto\n"
            f"import remeco.host.reproduce as reproduce\n"
            f"run_plans = reproduce.run_plans\n"
            f"def slow(*args, **kwargs):\n"
            f"    out = run_plans(*args, **kwargs)\n"
            f"    time.sleep(3)\n"
            f"    return out\n"
            f"reproduce.run_plans = slow  # search_pareto imports it from here when it runs\n"
            f"pareto.search_pareto(trials=100, out_dir={str(out)!r}, instances=2, test_images=30, epochs={EPOCHS}, "
            f"executor='serial', heuristic=False, plot=False, log=lambda *_: None)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    study = _study(res)
    running = None
    try:
        deadline = time.monotonic() + 300
        while running is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            trials = study.get_trials(deepcopy=False)
            done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
            live = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING and "plan" in t.user_attrs]
            if len(done) >= 8 and live:
                running = live[0]
        assert running is not None, proc.stderr.read().decode() if proc.poll() is not None else "timed out"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    again = search_pareto(trials=done + 2, out_dir=out, **SMALL)
    assert again["evaluated"] == done + 2
    trials = _study(res).get_trials(deepcopy=False)
    killed = trials[running.number]
    assert killed.state == optuna.trial.TrialState.FAIL and killed.params == running.params
    retried = [t for t in trials if t.number > running.number and t.params == killed.params]
    assert retried and retried[0].state == optuna.trial.TrialState.COMPLETE
    assert max(t.number for t in trials) > running.number  # numbering continues, nothing restarted
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]


def test_cli_json_shape_and_plot(searched, capsys):
    _, out = searched
    assert main(["search", "--method", "pareto", "--trials", "1", "--instances", "2", "--test-images", "30",
                 "--epochs", str(EPOCHS), "--out", str(out), "--holdout", "2", "--json", "--plot-format", "png,svg"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["evaluated"] >= 7 and res["front"]
    for r in res["front"]:
        assert {"plan", "accuracy_mean", "accuracy_q10", "area_mm2", "energy_j_per_10k_images", "area_overhead",
                "recovery", "trial"} <= set(r)
        assert 0 <= r["accuracy_q10"] <= r["accuracy_mean"] <= 1 and r["area_mm2"] > 0
        assert set(r["plan"]) == {"name", "committee_log2", "copies_log2"}
        held = r["holdout"]  # instances 2 and 3: not the ones the front was selected on
        assert held["instances"] == [2, 3] and 0 <= held["accuracy_q10"] <= held["accuracy_mean"] <= 1
    assert res["heuristic"][0]["step"] == "layer averaging"
    assert [b["max_area_overhead"] for b in res["best_at_overhead"]] == [0.04, 0.35]
    assert (out / "pareto.png").stat().st_size > 1000
    assert f"{res['evaluated']} trials" in (out / "pareto.svg").read_text(encoding="utf-8")
    assert json.loads((out / "pareto.json").read_text()) == res


@pytest.mark.parametrize("argv, message", [
    (["--trials", "0"], "--trials must be >= 1, got 0"),
    (["--instances", "0"], "--instances must be >= 1, got 0"),
    (["--tolerance", "2"], "--tolerance must be in [0, 1), got 2.0"),
    (["--holdout", "-1"], "--holdout must be >= 0, got -1"),
])
def test_bad_options_are_one_line_errors_before_any_work(argv, message, capsys, monkeypatch, tmp_path):
    import remeco.host.reproduce as reproduce

    monkeypatch.setattr(reproduce, "prepare", lambda *a, **k: pytest.fail("work started"))
    assert main(["search", "--method", "pareto", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"remeco search: error: {message}"]


def test_bad_sampler_is_an_argparse_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["search", "--method", "pareto", "--sampler", "grid", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "--sampler" in capsys.readouterr().err
