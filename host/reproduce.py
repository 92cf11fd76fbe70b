"""``remeco reproduce``: the ReMeCo Table 4 analogue on our models (the README's main job).

Steps (each a function of plain data; the campaign part is resumable):

1. load the data (embedded MNIST-5k by default) and train or reload the 8-bit network;
2. back-propagation sensitivity on training images;
3. the six redundancy plans (:data:`remeco.models.redundancy.PLAN_NAMES`);
4. a campaign: ``instances`` chip instances x plans, each (instance, plan) the accuracy of
   the emulated accelerator on the test set, stored row by row in SQLite;
5. area and energy of every plan (:mod:`remeco.models.cost`), the table, the JSON
   summary and the box plot of accuracies over chip instances (the paper's Fig. 5).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from remeco.host.campaign import check_scheduler, limit_worker_threads, run_campaign
from remeco.host.cli import UserError, command
from remeco.host.engines import DEFAULT_ENGINE, EngineCache, check_engine
from remeco.host.evaluate import COLUMNS as EVALUATE_COLUMNS
from remeco.host.options import (add_campaign_arguments, check_campaign_arguments, check_count, check_epochs,
                                 check_export, check_plot_formats, load_chip, result_header, write_export)
from remeco.host.paths import check_out_dir
from remeco.host.store import ResultStore
from remeco.models.chip import DEVICE_KEYING, ChipParams
from remeco.models.cost import AREA_MODELS, estimate
from remeco.models.data import load_dataset
from remeco.models.emulation import EmulationFormat
from remeco.models.mapping import map_layer
from remeco.models.network import calibrate_adc_shifts, infer, map_network, program_network
from remeco.models.plotstyle import PAGE_IN, check_plot_path, paper_figure, plot_files, reference_line
from remeco.models.nn import QuantizedNetwork, get_trained, save_network_once
from remeco.models.redundancy import PLAN_NAMES, RedundancyPlan, make_plan
from remeco.models.sensitivity import cached_sensitivity, neuron_sensitivity, plot_histograms
from remeco.models.stats import paired_difference, summarize

__all__ = ["prepare", "campaign_rows", "run_plans", "reproduce", "evaluate_instance", "plan_costs", "plan_rows",
           "export_rows", "plot_box"]

# Per-process memo of what every task of one campaign shares (network, mapped plans,
# test images). Keyed by the campaign's spec hash, so it can never serve another campaign.
_MEMO: dict[str, dict] = {}
# ADC shifts by (network, format, calibration images): every trial of a search is a campaign
# of its own, and calibrating AlexNet's ADCs took ~1 min of each trial (the shifts are the same).
_SHIFTS: dict[tuple, tuple[int, ...]] = {}


def _spec_key(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _context(spec: dict) -> dict:
    key = _spec_key(spec)
    if key not in _MEMO:
        _MEMO.clear()
        network = QuantizedNetwork.load(spec["network_file"])
        train, test = load_dataset(spec["dataset"], spec.get("data_dir"))
        fmt = EmulationFormat(**spec["format"])
        calibration = train.images[: spec["calibration_images"]]
        shifts_key = (network.sha256(), json.dumps(spec["format"], sort_keys=True),
                      hashlib.sha256(calibration.tobytes()).hexdigest(), calibration.shape)
        if shifts_key not in _SHIFTS:
            _SHIFTS.clear()  # one network at a time; a few ints, but no unbounded growth
            _SHIFTS[shifts_key] = calibrate_adc_shifts(network, fmt, calibration)
        shifts = _SHIFTS[shifts_key]
        mapped = {
            name: map_network(network, RedundancyPlan.from_dict(plan), fmt, shifts)
            for name, plan in spec["plans"].items()
        }
        n = spec["test_images"]
        _MEMO[key] = {
            "engines": {},  # (engine, device) -> EngineCache
            "mapped": mapped,
            "images": test.images[:n],
            "labels": test.labels[:n],
            "params": ChipParams.from_dict(spec["chip"]),
        }
    return _MEMO[key]


def evaluate_instance(spec: dict, instance: int, plans: list[str], engine: str = DEFAULT_ENGINE,
                      device: str | None = None) -> dict[str, dict]:
    """Campaign task: accuracy of every plan on chip instance ``(spec["seed"], instance)``.

    ``engine`` / ``device`` choose the executor (:mod:`remeco.host.engines`); they are
    bound with :func:`functools.partial`, outside the spec, because every engine gives the
    same rows.
    """
    limit_worker_threads()
    ctx = _context(spec)
    if spec["executor"] != "emulation":  # only the reference executor has the other contracts
        engine, device = "reference", None
    engines = ctx["engines"].setdefault((engine, device), EngineCache(engine, device))
    out = {}
    for name in plans:
        mapped = ctx["mapped"][name]
        chip = program_network(mapped, ctx["params"], seed=spec["seed"], instance=instance)
        if engine == "reference":
            logits = infer(mapped, ctx["images"], executor=spec["executor"], programmed=chip, params=ctx["params"])
        else:
            logits = engines.logits(mapped, ctx["images"], chip, ctx["params"])
        correct = int((logits.argmax(axis=1) == ctx["labels"]).sum())
        out[name] = {"accuracy": correct / len(ctx["labels"]), "correct": correct, "images": len(ctx["labels"])}
    return out


def plan_costs(network: QuantizedNetwork, plan: RedundancyPlan, fmt: EmulationFormat, preset: str,
               area_model: str = "columns") -> dict:
    """Area and energy of a network under a plan: ``{"area_mm2", "energy_j_per_image",
    "energy_j_per_10k_images"}`` (inference of one image; 10,000 images plus programming
    the chip once, the paper's Table 4 unit).

    ``area_model``: ``"columns"`` (devices and column periphery in use, the paper's
    accounting) or ``"tiles"`` (whole crossbars), see :mod:`remeco.models.cost`.
    """
    layers = [map_layer(layer.weight.astype(np.int64), fmt, k) for layer, k in zip(network.layers, plan.copies_log2)]
    vectors = [int(np.prod(layer.positions)) for layer in network.layers]
    copies = 1 << plan.committee_log2
    report = estimate(layers * copies, preset, images=10_000, vectors_per_image=vectors * copies,
                      area_model=area_model)
    return {"area_mm2": report.area_mm2, "energy_j_per_image": report.energy_per_image_j,
            "energy_j_per_10k_images": report.energy_j}


def plan_rows(acc: dict[str, np.ndarray]) -> list[dict]:
    """Accuracy statistics of every plan over the (paired) chip instances.

    Per plan: mean, median, std, the 95 % t-interval of the mean (``accuracy_ci95``) and the
    paired difference against ``base`` and ``committee`` (``diff_vs_base`` /
    ``diff_vs_committee``: ``{"mean", "ci95"}``), see :mod:`remeco.models.stats`. An
    interval is ``None`` with one instance; a difference is ``None`` when the reference
    plan was not run.
    """
    rows = []
    for name, a in acc.items():
        s = summarize(a)
        rows.append({
            "plan": name,
            "accuracy_mean": s["mean"],
            "accuracy_median": s["median"],
            "accuracy_std": s["std"],
            "accuracy_ci95": s["ci95"],
            "diff_vs_base": paired_difference(a, acc["base"]) if "base" in acc else None,
            "diff_vs_committee": paired_difference(a, acc["committee"]) if "committee" in acc else None,
        })
    return rows


def prepare(
    *,
    net: str = "lenet5",
    dataset: str = "mnist5k",
    data_dir: str | None = None,
    test_images: int | None = None,
    seed: int = 0,
    out_dir: str | Path = "results",
    chip: ChipParams | None = None,
    epochs: int | None = None,
    plot: bool = True,
    plot_formats: Sequence[str] = ("png",),
    log=print,
) -> dict:
    """Steps 1-2: data, trained network (cached), its file in ``out_dir``, sensitivity.

    ``chip`` (default the paper's, :class:`~remeco.models.chip.ChipParams`) is recorded in
    the context; its ``datapath`` is the format every plan is mapped with. With ``plot``,
    the sensitivity histograms are written as ``sensitivity.<format>`` for each of
    ``plot_formats`` (``--plot-format``).
    Returns a plain dict context used by :func:`run_plans`.
    """
    chip = chip or ChipParams()
    if chip.device.levels != chip.datapath.levels:
        raise UserError(f"--chip: device.levels ({chip.device.levels}) must equal 2**datapath.slice_bits "
                        f"({chip.datapath.levels})")
    check_epochs(epochs)
    plot_formats = check_plot_formats(plot_formats)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train, test = load_dataset(dataset, data_dir)
    n_test = len(test.images) if test_images is None else int(test_images)
    if not 1 <= n_test <= len(test.images):
        raise UserError(f"--test-images must be in [1, {len(test.images)}], got {n_test}")
    trained = get_trained(net, train, test, seed=seed, epochs=epochs, log=None)
    network = trained.network
    log(
        f"{net}: software (8-bit) accuracy {trained.int_accuracy:.4f} on {len(test.images)} test images "
        f"({'cached' if trained.from_cache else f'trained in {trained.train_seconds:.0f} s'})"
    )
    # Named by content, so a retrained (different) network never reuses a stale file.
    network_file = out / f"network-{net}-{network.sha256()[:16]}.npz"
    save_network_once(network, network_file)  # a damaged copy is rewritten
    sens_file = out / f"sensitivity-{network_file.stem}.json"
    n_sens = min(1000, len(train.images))
    sens = cached_sensitivity(sens_file, lambda: neuron_sensitivity(trained.model, train.images[:n_sens], train.labels[:n_sens]),
                              [layer.out_features for layer in network.layers])
    if plot:
        for path in plot_files(out, "sensitivity", plot_formats):
            plot_histograms(sens, path)
    log("layer sensitivity: " + ", ".join(f"{v:.2e}" for v in sens.layer()))
    return {
        "out": out, "net": net, "dataset": dataset, "data_dir": data_dir, "test_images": n_test, "seed": seed,
        "trained": trained, "network": network, "network_file": network_file, "sensitivity": sens,
        "epochs": int(trained.config.epochs), "chip": chip, "fmt": chip.datapath,
    }


def run_plans(
    ctx: dict, plans: dict[str, RedundancyPlan], *, instances: int, executor: str = "process",
    scheduler: str | None = None, workers: int | None = None, engine: str = DEFAULT_ENGINE,
    device: str | None = None,
) -> dict[str, np.ndarray]:
    """Step 4: accuracy of every plan on chip instances ``0..instances-1`` (resumable campaign).

    ``engine`` / ``device``: see :mod:`remeco.host.engines` (the rows do not depend on them).
    Returns plan name -> accuracies over instances (in instance order).
    """
    rows = campaign_rows(ctx, plans, instances=instances, executor=executor, scheduler=scheduler,
                         workers=workers, engine=engine, device=device)
    return {name: np.array([r["metrics"]["accuracy"] for r in rows if r["plan"] == name]) for name in plans}


def campaign_rows(
    ctx: dict, plans: dict[str, RedundancyPlan], *, instances: int, executor: str = "process",
    scheduler: str | None = None, workers: int | None = None, engine: str = DEFAULT_ENGINE,
    device: str | None = None,
) -> list[dict]:
    """The stored rows of :func:`run_plans`'s campaign, ``{"instance", "plan", "metrics"}``,
    ordered by instance (metrics: ``accuracy``, ``correct``, ``images``)."""
    if instances < 1:
        raise UserError(f"--instances must be >= 1, got {instances}")
    spec = {
        "kind": "reproduce",
        "net": ctx["net"],
        "dataset": ctx["dataset"],
        "data_dir": ctx["data_dir"],
        "network_file": str(ctx["network_file"].resolve()),
        "network_sha256": hashlib.sha256(ctx["network_file"].read_bytes()).hexdigest(),
        "format": ctx["fmt"].to_dict(),
        "chip": ctx["chip"].to_dict(),
        "plans": {k: v.to_dict() for k, v in plans.items()},
        "seed": ctx["seed"],
        "test_images": ctx["test_images"],
        "calibration_images": 500,
        "executor": "emulation",
        "device_keying": DEVICE_KEYING,
    }
    with ResultStore(ctx["out"] / "results.sqlite") as store:
        cid = run_campaign(
            spec, functools.partial(evaluate_instance, engine=engine, device=device), instances=instances,
            plans=list(plans), store=store,
            executor=executor, scheduler=scheduler, workers=workers, group_by_instance=True,
            progress=sys.stderr.isatty(),
        )
        rows = [r for r in store.results(cid) if r["instance"] < instances and r["plan"] in plans]
        store.require_metrics(rows)
    return sorted(rows, key=lambda r: r["instance"])


def run_config(ctx: dict, **extra) -> dict:
    """The configuration in force of a campaign prepared by :func:`prepare` (network, data,
    training epochs, test images, ``extra``, the chip as a description and as its
    parameters), as result JSON records it."""
    chip: ChipParams = ctx["chip"]
    return {
        "net": ctx["net"], "dataset": ctx["dataset"],
        "data_dir": None if ctx["data_dir"] is None else str(ctx["data_dir"]),
        "epochs": ctx["epochs"], "test_images": ctx["test_images"], **extra,
        "chip_description": chip.describe(), "chip": chip.to_dict(),
    }


#: Columns of ``remeco reproduce --export``: those of :func:`remeco.evaluate`'s table, and the area model.
EXPORT_COLUMNS = (*EVALUATE_COLUMNS, "area_model")


def export_rows(ctx: dict, plans: dict[str, RedundancyPlan], stored: list[dict], costs: dict[str, dict], *,
                cost_preset: str, area_model: str) -> list[dict]:
    """One row per (instance, plan) of a campaign, with the columns of :func:`remeco.evaluate`'s
    table (:data:`remeco.host.evaluate.COLUMNS`) and ``area_model``: accuracy, costs, the plan's
    extra columns and committee copies, the chip's description, seed and network."""
    network: QuantizedNetwork = ctx["network"]
    n = ctx["test_images"]
    _, test = load_dataset(ctx["dataset"], ctx["data_dir"])
    reference = float(np.mean(network.predict(test.images[:n]) == test.labels[:n]))
    description, name = ctx["chip"].describe(), f"{network.name}@{network.sha256()[:12]}"
    out = []
    for r in stored:
        plan, m = plans[r["plan"]], r["metrics"]
        out.append({
            "instance": r["instance"], "plan": r["plan"], "accuracy": m["accuracy"], "correct": m["correct"],
            "images": m.get("images", n), "reference_accuracy": reference, **costs[r["plan"]],
            "extra_columns": plan.extra_columns_fraction, "copies": 1 << plan.committee_log2,
            "chip": description, "seed": int(ctx["seed"]), "network": name, "cost_preset": cost_preset,
            "area_model": area_model,
        })
    return out


def reproduce(
    *,
    net: str = "lenet5",
    dataset: str = "mnist5k",
    data_dir: str | None = None,
    instances: int = 20,
    test_images: int | None = None,
    seed: int = 0,
    out_dir: str | Path = "results",
    executor: str = "process",
    scheduler: str | None = None,
    workers: int | None = None,
    chip: ChipParams | None = None,
    cost_preset: str = "remeco_table2",
    epochs: int | None = None,
    plot: bool = True,
    plot_formats: Sequence[str] = ("png",),
    log=print,
    engine: str = DEFAULT_ENGINE,
    device: str | None = None,
    area_model: str = "columns",
    export: str | Path | None = None,
) -> dict:
    """Run the whole flow; returns the object written to ``reproduce.json``: the keys of
    :func:`remeco.host.options.result_header` (remeco version, seed, network hash,
    ``config``: network, data, chip and campaign size in force, ``units``), then
    ``software_accuracy``, ``area_model`` and ``rows`` (accuracies as fractions; row keys
    in :func:`plan_rows`, plus those of :func:`plan_costs`).

    ``chip`` (default the paper's) is the chip, and its ``datapath`` the format every plan
    is mapped with. ``engine`` / ``device`` choose the campaign's executor
    (:mod:`remeco.host.engines`); the result does not depend on them. ``area_model``: see
    :func:`plan_costs`. ``export``: also write one row per (instance, plan) to this CSV /
    parquet file (:func:`export_rows`). ``plot``: write ``accuracy_boxplot`` (:func:`plot_box`)
    and ``sensitivity`` plots in each of ``plot_formats`` (``png``, ``pdf``, ``svg``).
    """
    check_count("--instances", instances)
    if area_model not in AREA_MODELS:
        raise UserError(f"--area-model must be one of {', '.join(AREA_MODELS)}, got {area_model!r}")
    check_export(export)
    plot_formats = check_plot_formats(plot_formats)
    t0 = time.perf_counter()
    ctx = prepare(net=net, dataset=dataset, data_dir=data_dir, test_images=test_images, seed=seed,
                  out_dir=out_dir, chip=chip, epochs=epochs, plot=plot, plot_formats=plot_formats, log=log)
    network, fmt, out = ctx["network"], ctx["fmt"], ctx["out"]
    sizes = [layer.out_features for layer in network.layers]
    plans = {name: make_plan(name, sizes, ctx["sensitivity"], n_slices=fmt.n_slices) for name in PLAN_NAMES}
    stored = campaign_rows(ctx, plans, instances=instances, executor=executor, scheduler=scheduler,
                           workers=workers, engine=engine, device=device)
    acc = {name: np.array([r["metrics"]["accuracy"] for r in stored if r["plan"] == name]) for name in PLAN_NAMES}
    rows = plan_rows(acc)
    costs = {name: plan_costs(network, plans[name], fmt, cost_preset, area_model) for name in PLAN_NAMES}
    for row in rows:
        row.update(costs[row["plan"]])
    software = float(ctx["trained"].int_accuracy)
    config = run_config(ctx, instances=instances, cost_preset=cost_preset)
    result = result_header(seed=seed, network_sha256=network.sha256(), config=config,
                           units=("accuracy", "area_mm2", "energy_j_per_image", "energy_j_per_10k_images"))
    result.update({"software_accuracy": software, "area_model": area_model, "rows": rows})
    (out / "reproduce.json").write_text(json.dumps(result, indent=2))
    if export is not None:
        write_export(export_rows(ctx, plans, stored, costs, cost_preset=cost_preset, area_model=area_model),
                     export, EXPORT_COLUMNS)
        log(f"exported {len(stored)} rows to {export}")
    if plot:
        for path in plot_files(out, "accuracy_boxplot", plot_formats):
            plot_box(acc, rows, software, path, instances)
    log(f"done in {time.perf_counter() - t0:.0f} s; results in {out}/")
    return result


def plot_box(acc: dict[str, np.ndarray], rows: list[dict], software: float, path: str | Path, instances: int):
    """Accuracy over chip instances per plan as box plots (the paper's Fig. 5); returns the figure.

    ``acc``: plan -> per-instance accuracies (fractions); ``rows``: :func:`plan_rows` of
    them. Beside each box its mean with the 95 % interval; under it the paired difference
    to base in percentage points [95 % interval]; the software (8-bit) accuracy as a
    dashed line kept in range; the number of chip instances in the title. Page width; PNG,
    PDF or SVG by the suffix of ``path`` (:mod:`remeco.models.plotstyle`).
    """
    check_plot_path(path)
    with paper_figure(path, width=PAGE_IN, height=3.0) as (fig, axes):
        ax = axes[0][0]
        ax.boxplot([100 * acc[n] for n in PLAN_NAMES], tick_labels=[n.replace("_", "\n") for n in PLAN_NAMES],
                   flierprops={"markersize": 3}, medianprops={"color": "black"})
        # The mean with its 95 % interval beside each box, and the paired difference to the
        # base (what the plan buys on the same chips) written under it.
        by_plan = {r["plan"]: r for r in rows}
        for x, name in enumerate(PLAN_NAMES, start=1):
            r = by_plan[name]
            mean, ci = 100 * r["accuracy_mean"], r["accuracy_ci95"]
            err = [[mean - 100 * ci[0]], [100 * ci[1] - mean]] if ci else None
            ax.errorbar(x + 0.3, mean, yerr=err, fmt="o", color="tab:red", capsize=3,
                        label="mean, 95 % CI" if x == 1 else None)
            d = r["diff_vs_base"]
            if name != "base" and d is not None:
                text = f"{100 * d['mean']:+.1f}" + (f"\n[{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}]"
                                                      if d["ci95"] else "")
                ax.annotate(text, (x, 0), xycoords=("data", "axes fraction"), xytext=(0, 3),
                            textcoords="offset points", ha="center", va="bottom", color="tab:red")
        reference_line(ax, 100 * software, "software (8-bit)")
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo - 0.25 * (hi - lo), hi + 0.12 * (hi - lo))  # room for the differences and the legend
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"Accuracy over {instances} chip instance{'s' if instances != 1 else ''} per plan; "
                     f"bottom: paired difference to base, pp [95 % CI]")
        ax.legend(loc="upper left", ncol=2)
    return fig


def _add_arguments(p: argparse.ArgumentParser) -> None:
    add_campaign_arguments(p, instances=20, test_images=None, out="results")
    p.add_argument("--area-model", default="columns", choices=AREA_MODELS,
                   help="columns (default): devices and column periphery in use, the paper's accounting; "
                        "tiles: whole crossbars of the chip's tile size")


@command("reproduce", "ReMeCo Table 4 analogue: accuracy, area, energy of the six redundancy plans.")(_add_arguments)
def _run(args: argparse.Namespace) -> int:
    check_campaign_arguments(args)
    check_out_dir(args.out)
    check_scheduler(args.scheduler)
    check_engine(args.engine, args.device)
    chip = load_chip(args.chip)
    executor = "dask" if args.scheduler else args.executor
    log = (lambda *_: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    result = reproduce(
        net=args.net, dataset=args.dataset, data_dir=args.data_dir, instances=args.instances,
        test_images=args.test_images, seed=0 if args.seed is None else args.seed, out_dir=args.out,
        executor=executor, scheduler=args.scheduler, workers=args.workers, chip=chip, epochs=args.epochs, log=log,
        engine=args.engine, device=args.device, area_model=args.area_model, export=args.export,
        plot_formats=check_plot_formats(args.plot_format),
    )
    if args.json:
        print(json.dumps(result))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ReMeCo on {args.net} ({args.instances} chip instances, chip {args.chip or 'paper'}); software accuracy "
                        f"{100 * result['software_accuracy']:.2f} %; area model {result['area_model']}",
                  caption="intervals: 95 % t-intervals over chip instances; differences paired per instance, in pp")
    for col in ("plan", "acc. %", "95 % CI", "median", "std", "vs base, pp", "vs committee, pp", "area mm^2",
                "J / 10k img"):
        table.add_column(col, justify="left" if col == "plan" else "right")

    def interval(ci, fmt="{:.1f}"):
        return "n/a" if ci is None else f"[{fmt.format(100 * ci[0])},{fmt.format(100 * ci[1])}]"

    def diff(d):
        return "" if d is None else f"{100 * d['mean']:+.2f} {interval(d['ci95'], fmt='{:+.1f}')}"

    for r in result["rows"]:
        table.add_row(r["plan"], f"{100 * r['accuracy_mean']:.2f}", interval(r["accuracy_ci95"]),
                      f"{100 * r['accuracy_median']:.2f}", f"{100 * r['accuracy_std']:.2f}",
                      diff(r["diff_vs_base"]) if r["plan"] != "base" else "",
                      diff(r["diff_vs_committee"]) if r["plan"] != "committee" else "",
                      f"{r['area_mm2']:.4g}", f"{r['energy_j_per_10k_images']:.4g}")
    Console().print(table)
    return 0
