"""``remeco search --method pareto``: a multi-objective, multi-fidelity search of redundancy plans.

Search space (per layer ``i``, so ``3 * layers`` parameters)
------------------------------------------------------------
``copies_i``    1, 2 or 4 copies of the layer's redundant neurons (1: no copies in the layer);
``slices_i``    ``all`` slices of a redundant neuron copied, or the ``msb`` slice only;
``fraction_i``  the most sensitive fraction of the layer's neurons that get copies,
                0.1 .. 1.0 in steps of 0.1 (sensitivity as in :mod:`remeco.models.sensitivity`).

A layer's copies are those :func:`remeco.models.redundancy.make_plan` gives (``sensitive_neuron``
for ``all``, ``msb`` for ``msb``), so the paper's plans are points of the space: base,
layer averaging, sensitive neuron, MSB and sensitive layer are the first five trials of a
new study (a warm start; the committee machine copies whole networks and is not in it).

Objectives
----------
Accuracy over chip instances, its mean and its 10 % quantile (maximised), area (mm^2,
``columns`` area model: the devices and column periphery a plan uses, the paper's
accounting) and energy (J per 10,000 images), minimised; area and energy from
:func:`remeco.host.reproduce.plan_costs` with the ``remeco_table2`` preset.

Sampler and storage
-------------------
optuna's multi-objective TPE (default) or NSGA-II, seeded with ``--seed``. The study lives
in an SQLite file next to the campaign results (``<out>/pareto.sqlite3`` beside
``<out>/results.sqlite``) and is named by everything that changes a trial's values (network,
data, fidelities, sampler), so running the same command again resumes it: ``--trials`` is the
number of finished trials wanted in total. A trial that was running when the process died
(``kill -9``) is marked failed and its plan asked again first; the plan's (instance) rows
already in the results database are reused, not recomputed.

Multi-fidelity (asynchronous successive halving)
------------------------------------------------
In the spirit of the continuous-fidelity search CF-MESMO (cheap, correlated evaluations
steer where the expensive ones are spent), but with the simple rule of asynchronous
successive halving (ASHA) instead of an entropy criterion: every trial is first evaluated
at **low fidelity**, ``ceil(instances / 3)`` chip instances x ``ceil(test_images / 3)``
test images. It is **promoted** to full fidelity (``instances`` x ``test_images``) when it
is in the best third of all low-fidelity results so far, ranked by non-dominated sorting
on (low-fidelity mean accuracy, area, energy), ties by accuracy; the warm-start trials are
always promoted. A trial reports its best fidelity's values to the sampler; the front
(``--json`` ``front``) holds full-fidelity trials only. Every evaluation is a campaign of
:func:`remeco.host.reproduce.run_plans` with one plan named by its content, so a (plan,
instance) result is computed once and reused by any later trial, run or fidelity level
with the same images.

The heuristic's path (:func:`remeco.models.redundancy.reduce_plan`, full fidelity) is
evaluated too and drawn on the plot with the front and the paper's Table 4 plans.

The front's accuracies are measured on the instances the plans were selected on, so they
are optimistic (selection among noisy estimates): check a chosen plan on other chip
instances (``instances`` .. N-1) before quoting it. Measured on LeNet-5 (80 trials, 5 x 500
at full fidelity): the best plans lost 1-2 points on 20 held-out instances, the paper's
plans none.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from remeco.host.cli import UserError
from remeco.host.options import check_plot_formats
from remeco.models.cachefile import atomic_write_text
from remeco.models.plotstyle import PAGE_IN, check_plot_path, paper_figure, plot_files, reference_line
from remeco.models.redundancy import RedundancyPlan, make_plan, reduce_plan

__all__ = ["SAMPLERS", "ETA", "PAPER_TABLE4", "plan_from_params", "paper_params", "non_dominated",
           "search_pareto", "plot_front"]

#: ``--sampler`` choices.
SAMPLERS = ("tpe", "nsga2")
#: Successive-halving ratio: low fidelity uses 1/ETA of the instances and images, and the best
#: 1/ETA of the low-fidelity trials are promoted.
ETA = 3
#: Cost preset of the objectives (the paper's Table 2).
COST_PRESET = "remeco_table2"
#: The paper's LeNet Table 4 (shared/REFERENCE.md): plan -> (area / base, recovery = accuracy / software).
PAPER_TABLE4 = {
    "committee": (1.885, 0.979), "layer_averaging": (1.887, 0.982), "sensitive_neuron": (1.708, 0.982),
    "msb": (1.354, 0.984), "sensitive_layer": (1.041, 0.974),
}
#: The paper's plans that are points of the search space (warm start, in this order).
WARM_START = ("base", "layer_averaging", "sensitive_neuron", "msb", "sensitive_layer")
#: Area overheads at which the best recovery is reported (the paper's sensitive layer and MSB).
OVERHEAD_LIMITS = (0.04, 0.35)
_FRACTIONS = [round(0.1 * i, 1) for i in range(1, 11)]
_SPACE_VERSION = 1  # part of the study name: bump when the space or the objectives change


def plan_from_params(params: dict, layer_neurons, sensitivity, n_slices: int) -> RedundancyPlan:
    """The plan of one trial's parameters (``copies_i``, ``slices_i``, ``fraction_i`` per layer),
    named by its content (``p-<digest>``) so the same plan is always the same campaign."""
    layers = []
    for i, _ in enumerate(layer_neurons):
        copies = int(params[f"copies_{i}"])
        if copies == 1:
            layers.append(np.zeros((int(layer_neurons[i]), n_slices), dtype=np.int64))
            continue
        kind = "sensitive_neuron" if params[f"slices_{i}"] == "all" else "msb"
        full = make_plan(kind, layer_neurons, sensitivity, n_slices=n_slices, copies=copies,
                         neuron_fraction=float(params[f"fraction_{i}"]))
        layers.append(full.copies_log2[i])
    plan = RedundancyPlan("trial", tuple(layers))
    return replace(plan, name=_content_name(plan))


def _content_name(plan: RedundancyPlan) -> str:
    body = json.dumps({"committee_log2": int(plan.committee_log2),
                       "copies_log2": [np.asarray(k).tolist() for k in plan.copies_log2]})
    return "p-" + hashlib.sha256(body.encode()).hexdigest()[:12]


def paper_params(name: str, layer_neurons, sensitivity, n_slices: int) -> dict:
    """Trial parameters that give the paper's plan ``name`` (one of :data:`WARM_START`)."""
    n = len(layer_neurons)
    copies = {"base": 1}.get(name, 2)
    slices = "msb" if name in ("msb", "sensitive_layer") else "all"
    fraction = 1.0 if name == "layer_averaging" else 0.8
    params = {}
    dropped = set()
    if name == "sensitive_layer":
        ref = make_plan(name, layer_neurons, sensitivity, n_slices=n_slices)
        dropped = {i for i, k in enumerate(ref.copies_log2) if not np.asarray(k).any()}
    for i in range(n):
        params[f"copies_{i}"] = 1 if i in dropped else copies
        params[f"slices_{i}"] = slices
        params[f"fraction_{i}"] = fraction
    return params


def _suggest(trial, n_layers: int) -> dict:
    for i in range(n_layers):
        trial.suggest_categorical(f"copies_{i}", [1, 2, 4])
        trial.suggest_categorical(f"slices_{i}", ["all", "msb"])
        trial.suggest_categorical(f"fraction_{i}", _FRACTIONS)
    return dict(trial.params)


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``points`` (to be *minimised* column-wise) that no other row
    dominates (no worse in every column and better in one); equal rows all stay."""
    pts = np.asarray(points, dtype=float)
    keep = np.ones(len(pts), dtype=bool)
    for i, p in enumerate(pts):
        dominated = np.all(pts <= p, axis=1) & np.any(pts < p, axis=1)
        keep[i] = not dominated.any()
    return keep


def _pareto_ranks(points: np.ndarray) -> np.ndarray:
    """Non-dominated sorting: 0 for the first front, 1 for the next, ..."""
    ranks = np.full(len(points), -1)
    left = np.arange(len(points))
    r = 0
    while left.size:
        front = non_dominated(points[left])
        ranks[left[front]] = r
        left = left[~front]
        r += 1
    return ranks


def _promoted(low: list[tuple[float, float, float]], mine: int) -> bool:
    """ASHA rule: is low-fidelity result ``mine`` in the best ``1 / ETA`` of ``low``
    ((accuracy_mean, area, energy) tuples), by non-dominated rank, then accuracy?"""
    pts = np.array([(-a, area, e) for a, area, e in low])
    ranks = _pareto_ranks(pts)
    order = sorted(range(len(low)), key=lambda j: (ranks[j], pts[j, 0], j))
    return mine in order[: len(low) // ETA]


def _objectives(acc: np.ndarray, costs: dict) -> dict:
    # plan_costs names the 10k-image energy "energy_j_per_10k_images" (older: "energy_j")
    energy = costs["energy_j_per_10k_images"] if "energy_j_per_10k_images" in costs else costs["energy_j"]
    return {"accuracy_mean": float(acc.mean()), "accuracy_q10": float(np.quantile(acc, 0.1)),
            "area_mm2": float(costs["area_mm2"]), "energy_j_per_10k_images": float(energy)}


def _values(obj: dict) -> list[float]:
    return [obj["accuracy_mean"], obj["accuracy_q10"], obj["area_mm2"], obj["energy_j_per_10k_images"]]


def _fail_stale_trials(study, log) -> None:
    """Trials left RUNNING by a killed process: mark them failed and ask their plans again first
    (their stored campaign rows make the retry cheap). One search per study at a time."""
    import optuna

    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        if "plan" in t.user_attrs:  # all its parameters were drawn (a kill can come between two)
            study.enqueue_trial(t.params, user_attrs=dict(t.user_attrs), skip_if_exists=False)
        log(f"trial {t.number} was interrupted: marked failed, its plan is asked again")


def _sampler(name: str, seed: int):
    import optuna

    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=20)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=10, multivariate=True)


def search_pareto(
    *, net: str = "lenet5", dataset: str = "mnist5k", data_dir: str | None = None, epochs: int | None = None,
    seed: int = 0, trials: int = 40, instances: int = 5, test_images: int = 500, sampler: str = "tpe",
    tolerance: float = 0.005, out_dir: str | Path = "results/search", chip=None, executor: str = "serial",
    scheduler: str | None = None, workers: int | None = None, engine: str = "native", device: str | None = None,
    plot: bool = True, plot_formats=("png",), heuristic: bool = True, holdout: int = 0, log=print,
) -> dict:
    """Run (or resume) the Pareto search; returns the ``--json`` object (see the module docstring).

    Keys: ``front`` (full-fidelity non-dominated trials, each with ``plan``, ``trial``,
    ``accuracy_mean``, ``accuracy_q10``, ``area_mm2``, ``energy_j_per_10k_images``,
    ``area_overhead``, ``recovery``, ``params``), ``evaluated`` (finished trials), ``promoted``
    (of which at full fidelity), ``software_accuracy``, ``base``, ``paper_plans``,
    ``heuristic``, ``best_at_overhead``, ``fidelity``, ``study``. ``heuristic=False`` skips the
    heuristic's path (``heuristic`` is then ``[]``). ``holdout`` > 0 evaluates the front and
    the paper's plans on chip instances ``instances .. instances + holdout - 1``, which took no
    part in the selection (row key ``holdout``: ``{"instances", "accuracy_mean",
    "accuracy_q10", "recovery"}``; ``None`` without it). With ``plot``, :func:`plot_front` is
    written as ``pareto.<format>`` for each of ``plot_formats`` (``png``, ``pdf``, ``svg``).
    """
    if isinstance(holdout, bool) or not isinstance(holdout, int) or holdout < 0:
        raise UserError(f"--holdout must be >= 0, got {holdout}")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise UserError(f"--trials must be >= 1, got {trials}")
    if isinstance(instances, bool) or not isinstance(instances, int) or instances < 1:
        raise UserError(f"--instances must be >= 1, got {instances}")
    plot_formats = check_plot_formats(plot_formats)
    if sampler not in SAMPLERS:
        raise UserError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if not 0 <= tolerance < 1:
        raise UserError(f"--tolerance must be in [0, 1), got {tolerance}")
    import optuna

    from remeco.host.reproduce import plan_costs, prepare, run_plans

    full_ctx = prepare(net=net, dataset=dataset, data_dir=data_dir, test_images=test_images, seed=seed,
                       out_dir=out_dir, epochs=epochs, chip=chip, plot=False, log=log)
    if not full_ctx["trained"].int_accuracy > 0:  # before the search: recovery = accuracy / software
        raise UserError(f"the trained {net} classifies none of the test images (software accuracy 0), so recovery "
                        "is undefined; train it longer (--epochs) or on more data")
    low_images = math.ceil(full_ctx["test_images"] / ETA)
    low_instances = math.ceil(instances / ETA)
    low_ctx = prepare(net=net, dataset=dataset, data_dir=data_dir, test_images=low_images, seed=seed,
                      out_dir=out_dir, epochs=epochs, chip=chip, plot=False, log=lambda *_: None)
    network, fmt, sens, out = full_ctx["network"], full_ctx["fmt"], full_ctx["sensitivity"], full_ctx["out"]
    sizes = [layer.out_features for layer in network.layers]
    software = float(full_ctx["trained"].int_accuracy)

    def accuracy(plan: RedundancyPlan, full: bool) -> np.ndarray:
        ctx, n = (full_ctx, instances) if full else (low_ctx, low_instances)
        return run_plans(ctx, {plan.name: plan}, instances=n, executor=executor, scheduler=scheduler,
                         workers=workers, engine=engine, device=device)[plan.name]

    cost_memo: dict[str, dict] = {}

    def costs(plan: RedundancyPlan) -> dict:
        if plan.name not in cost_memo:
            cost_memo[plan.name] = plan_costs(network, plan, fmt, COST_PRESET, "columns")
        return cost_memo[plan.name]

    identity = {
        "version": _SPACE_VERSION, "net": net, "dataset": dataset, "data_dir": data_dir, "seed": seed,
        "network_sha256": network.sha256(), "chip": full_ctx["chip"].to_dict(), "instances": instances, "test_images": full_ctx["test_images"],
        "low": [low_instances, low_images], "sampler": sampler, "eta": ETA,
    }
    study_name = "pareto-" + hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    storage_path = out / "pareto.sqlite3"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = optuna.storages.RDBStorage(f"sqlite:///{storage_path.resolve()}")
    study = optuna.create_study(study_name=study_name, storage=storage, load_if_exists=True,
                                directions=["maximize", "maximize", "minimize", "minimize"],
                                sampler=_sampler(sampler, seed))
    study.set_metric_names(["accuracy_mean", "accuracy_q10", "area_mm2", "energy_j_per_10k_images"])
    if not study.get_trials(deepcopy=False):
        for name in WARM_START:
            study.enqueue_trial(paper_params(name, sizes, sens, fmt.n_slices), user_attrs={"paper_plan": name})
    _fail_stale_trials(study, log)

    complete = optuna.trial.TrialState.COMPLETE
    while (done := len(study.get_trials(deepcopy=False, states=(complete,)))) < trials:
        trial = study.ask()
        plan = plan_from_params(_suggest(trial, len(sizes)), sizes, sens, fmt.n_slices)
        trial.set_user_attr("plan", plan.to_dict())  # marks the parameters complete (see _fail_stale_trials)
        c = costs(plan)
        low = _objectives(accuracy(plan, full=False), c)
        trial.set_user_attr("low", low)
        history = [(t.user_attrs["low"]["accuracy_mean"], t.user_attrs["low"]["area_mm2"],
                    t.user_attrs["low"]["energy_j_per_10k_images"])
                   for t in study.get_trials(deepcopy=False, states=(complete,)) if "low" in t.user_attrs]
        history.append((low["accuracy_mean"], low["area_mm2"], low["energy_j_per_10k_images"]))
        promote = "paper_plan" in trial.user_attrs or _promoted(history, len(history) - 1)
        obj = _objectives(accuracy(plan, full=True), c) if promote else low
        trial.set_user_attr("fidelity", "full" if promote else "low")
        trial.set_user_attr("objectives", obj)
        study.tell(trial, _values(obj))
        log(f"trial {trial.number} ({done + 1}/{trials}) {plan.name}: {'full' if promote else 'low '} "
            f"{100 * obj['accuracy_mean']:.2f} % (q10 {100 * obj['accuracy_q10']:.2f}), "
            f"{obj['area_mm2']:.4g} mm^2, {obj['energy_j_per_10k_images']:.4g} J")

    base_area = costs(plan_from_params(paper_params("base", sizes, sens, fmt.n_slices), sizes, sens,
                                       fmt.n_slices))["area_mm2"]

    def row(plan: dict, obj: dict, **extra) -> dict:
        return {"plan": plan, **obj, "area_overhead": obj["area_mm2"] / base_area - 1,
                "recovery": obj["accuracy_mean"] / software, **extra}

    finished = study.get_trials(deepcopy=False, states=(complete,))
    full = {}
    for t in finished:  # one entry per plan (a retried or re-asked plan gives the same values)
        if t.user_attrs.get("fidelity") == "full":
            full.setdefault(t.user_attrs["plan"]["name"], t)
    full_trials = list(full.values())
    rows = [row(t.user_attrs["plan"], t.user_attrs["objectives"], trial=t.number, params=t.params,
                paper_plan=t.user_attrs.get("paper_plan")) for t in full_trials]
    pts = np.array([[-r["accuracy_mean"], -r["accuracy_q10"], r["area_mm2"], r["energy_j_per_10k_images"]]
                    for r in rows]).reshape(len(rows), 4)
    front = [r for r, keep in zip(rows, non_dominated(pts)) if keep]
    front.sort(key=lambda r: r["area_mm2"])
    for r in rows:  # selection is optimistic: unbiased accuracies come from other chips
        r["holdout"] = None
        if holdout and (r["paper_plan"] or any(r is f for f in front)):
            plan = RedundancyPlan.from_dict(r["plan"])
            acc = run_plans(full_ctx, {plan.name: plan}, instances=instances + holdout, executor=executor,
                            scheduler=scheduler, workers=workers, engine=engine, device=device)[plan.name]
            acc = acc[instances:]
            r["holdout"] = {"instances": [instances, instances + holdout - 1], "accuracy_mean": float(acc.mean()),
                            "accuracy_q10": float(np.quantile(acc, 0.1)), "recovery": float(acc.mean()) / software}

    def heuristic_eval(plan: RedundancyPlan) -> float:
        return float(accuracy(replace(plan, name=_content_name(plan)), full=True).mean())

    steps = reduce_plan(heuristic_eval, sizes, sens, tolerance=tolerance, n_slices=fmt.n_slices)[1] if heuristic else []
    path = []
    for s in steps:
        plan = replace(s.plan, name=_content_name(s.plan))
        path.append({"step": s.step, "kept": s.kept, "accuracy_mean": s.accuracy,
                          "area_overhead": costs(plan)["area_mm2"] / base_area - 1,
                          "recovery": s.accuracy / software})
    best = []
    for limit in OVERHEAD_LIMITS:
        ok = [r for r in rows if r["area_overhead"] <= limit + 1e-12]
        top = max(ok, key=lambda r: r["accuracy_mean"], default=None)
        best.append({"max_area_overhead": limit, "recovery": None if top is None else top["recovery"],
                     "accuracy_mean": None if top is None else top["accuracy_mean"],
                     "area_overhead": None if top is None else top["area_overhead"],
                     "trial": None if top is None else top["trial"],
                     "holdout": None if top is None else top["holdout"]})
    result = {
        "front": front,
        "evaluated": len(finished),
        "promoted": len(full_trials),
        "software_accuracy": software,
        "base": next((r for r in rows if r["paper_plan"] == "base"), None),
        "paper_plans": {r["paper_plan"]: {k: r[k] for k in ("accuracy_mean", "accuracy_q10", "area_overhead",
                                                             "recovery", "trial", "holdout")}
                        for r in rows if r["paper_plan"]},
        "heuristic": path,
        "best_at_overhead": best,
        "fidelity": {"low": {"instances": low_instances, "test_images": low_images},
                     "full": {"instances": instances, "test_images": full_ctx["test_images"]}},
        "study": {"storage": str(storage_path), "name": study_name, "sampler": sampler},
    }
    atomic_write_text(out / "pareto.json", json.dumps(result))
    if plot:
        for file in plot_files(out, "pareto", plot_formats):
            plot_front(rows, front, path, result, file)
    return result


def plot_front(rows: list[dict], front: list[dict], heuristic: list[dict], result: dict, path: str | Path):
    """The search's trials, front, heuristic path and the paper's plans, recovery vs area; returns the figure.

    Recovery (accuracy / software accuracy, %) against area overhead over the base plan
    (%, ``columns`` model); the software accuracy (100 % recovery) as a dashed line kept in
    range; the trial count and the full fidelity (chip instances x test images) in the
    title. Page width; PNG, PDF or SVG by the suffix of ``path``
    (:mod:`remeco.models.plotstyle`).
    """
    check_plot_path(path)
    with paper_figure(path, width=PAGE_IN, height=3.4) as (fig, axes):
        ax = axes[0][0]
        ax.scatter([100 * r["area_overhead"] for r in rows], [100 * r["recovery"] for r in rows], s=10,
                   color="0.7", label="full-fidelity trials")
        ax.scatter([100 * r["area_overhead"] for r in front], [100 * r["recovery"] for r in front], s=18,
                   color="tab:red", label="Pareto front (4 objectives)", zorder=3)
        # The 2-D staircase (recovery vs area) of the front, the trade-off the paper's table shows.
        stair, best = [], -1.0
        for r in sorted(rows, key=lambda r: r["area_overhead"]):
            if r["recovery"] > best:
                best = r["recovery"]
                stair.append((100 * r["area_overhead"], 100 * r["recovery"]))
        if stair:
            ax.step(*zip(*stair), where="post", color="tab:red", lw=1)
        hx = [100 * h["area_overhead"] for h in heuristic]
        hy = [100 * h["recovery"] for h in heuristic]
        ax.plot(hx, hy, "-", color="tab:blue", lw=0.8, alpha=0.6)
        ax.scatter(hx, hy, marker="s", s=14, facecolors=["tab:blue" if h["kept"] else "none" for h in heuristic],
                   edgecolors="tab:blue", label="heuristic path (filled: kept)", zorder=4)
        for name, (ratio, rec) in PAPER_TABLE4.items():
            ax.scatter([100 * (ratio - 1)], [100 * rec], marker="*", s=50, color="black", zorder=5,
                       label="paper Table 4" if name == "committee" else None)
            # committee and layer averaging sit on almost the same point: one label above, one below
            below = name == "committee"
            ax.annotate(name.replace("_", " "), (100 * (ratio - 1), 100 * rec), xytext=(3, -3 if below else 3),
                        textcoords="offset points", va="top" if below else "baseline")
        for name, r in result["paper_plans"].items():
            ax.scatter([100 * r["area_overhead"]], [100 * r["recovery"]], marker="D", s=18, facecolors="none",
                       edgecolors="tab:green", zorder=5, label="paper's plans, ours" if name == "base" else None)
        for limit in OVERHEAD_LIMITS:
            ax.axvline(100 * limit, color="0.5", ls=":", lw=0.8)
        reference_line(ax, 100.0, "software accuracy (100 %)", color="0.3")
        ax.set_xlabel("area overhead vs base (%, columns model)")
        ax.set_ylabel("recovery: accuracy / software (%)")
        fid = result["fidelity"]["full"]
        ax.set_title(f"Pareto search: {result['evaluated']} trials, {result['promoted']} at full fidelity "
                     f"({fid['instances']} chip instances x {fid['test_images']} test images)")
        ax.legend(loc="lower right")
    return fig


def print_result(result: dict) -> None:
    """The human-readable summary of :func:`search_pareto`'s result."""
    print(f"{result['evaluated']} trials, {result['promoted']} at full fidelity; software accuracy "
          f"{100 * result['software_accuracy']:.2f} %; study {result['study']['storage']}")
    print(f"{'trial':>5} {'acc. %':>7} {'q10 %':>7} {'recovery':>8} {'area +%':>8} {'J/10k img':>10} "
          f"{'held-out %':>10}  paper plan")
    for r in result["front"]:
        print(f"{r['trial']:>5} {100 * r['accuracy_mean']:7.2f} {100 * r['accuracy_q10']:7.2f} "
              f"{100 * r['recovery']:7.1f}% {100 * r['area_overhead']:7.1f}% {r['energy_j_per_10k_images']:10.4g}  "
              f"{'' if r['holdout'] is None else format(100 * r['holdout']['accuracy_mean'], '.2f'):>10}  "
              f"{r['paper_plan'] or ''}")
    for b in result["best_at_overhead"]:
        paper = {0.04: "97.4 % (sensitive layer)", 0.35: "98.4 % (MSB)"}.get(b["max_area_overhead"], "")
        found = "none" if b["recovery"] is None else (f"{100 * b['recovery']:.1f} % at "
                                                       f"+{100 * b['area_overhead']:.1f} % (trial {b['trial']})")
        if b["holdout"] is not None:
            found += f", {100 * b['holdout']['recovery']:.1f} % on held-out instances"
        print(f"best recovery at <= {100 * b['max_area_overhead']:.0f} % area: {found}; paper {paper}")


def run_command(args: argparse.Namespace, *, chip, seed: int, log) -> int:
    """``remeco search --method pareto``: arguments parsed and checked by :mod:`remeco.host.network_cli`."""
    if args.export is not None:
        raise UserError("--export is not available with --method pareto; the trials are in --json and pareto.json")
    executor = "dask" if args.scheduler else (args.executor or "serial")
    result = search_pareto(
        net=args.net, dataset=args.dataset, data_dir=args.data_dir, epochs=args.epochs, seed=seed,
        trials=args.trials, instances=args.instances, test_images=args.test_images, sampler=args.sampler,
        tolerance=args.tolerance, out_dir=args.out, chip=chip, executor=executor, scheduler=args.scheduler,
        workers=args.workers, engine=args.engine, device=args.device, holdout=args.holdout, log=log,
        plot_formats=check_plot_formats(args.plot_format),
    )
    if args.json:
        print(json.dumps(result))
    else:
        print_result(result)
        formats = check_plot_formats(args.plot_format)
        print(f"plot: {', '.join(str(p) for p in plot_files(args.out, 'pareto', formats))}", file=sys.stdout)
    return 0
