"""``remeco train``, ``remeco sensitivity`` and ``remeco search``: the network steps alone.

``train``        trains (or reloads from the cache) an 8-bit network and reports accuracy.
``sensitivity``  back-propagation sensitivity per neuron and layer, histogram PNG (Fig. 4).
``search``       ReMeCo's plan-reduction heuristic (:func:`remeco.models.redundancy.reduce_plan`):
                 every trial plan is evaluated on chip instances through a resumable
                 campaign; prints the accuracy / overhead trade-off.
                 ``--method pareto``: a multi-objective, multi-fidelity search of plans
                 (:mod:`remeco.host.pareto`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from remeco.host.cli import UserError, command
from remeco.host.engines import check_engine
from remeco.host.options import (add_campaign_arguments, add_hidden_alias, add_json_argument, add_network_arguments,
                                 add_plot_argument, add_seed_argument, check_network_arguments, check_plot_formats)
from remeco.host.paths import check_out_dir
from remeco.models.cachefile import atomic_write_text
from remeco.models.data import load_dataset
from remeco.models.nn import get_trained
from remeco.models.plotstyle import plot_files
from remeco.models.sensitivity import MODES, neuron_sensitivity, plot_histograms

__all__: list[str] = []


def _common(p: argparse.ArgumentParser) -> None:
    add_network_arguments(p)
    add_seed_argument(p)
    add_json_argument(p)


def _trained(args):
    check_network_arguments(args)
    train, test = load_dataset(args.dataset, args.data_dir)
    log = None if args.json else (lambda msg: print(msg, file=sys.stderr))
    return train, test, get_trained(args.net, train, test, seed=args.seed, epochs=args.epochs, log=log)


@command("train", "Train (or reload from the cache) an 8-bit quantization-aware network.")(_common)
def _train(args: argparse.Namespace) -> int:
    _, test, tm = _trained(args)
    out = {
        "net": args.net,
        "float_accuracy": tm.float_accuracy,
        "int_accuracy": tm.int_accuracy,
        "agreement": tm.agreement,
        "parameters": tm.network.num_parameters,
        "network_sha256": tm.network.sha256(),  # the network's identity (QuantizedNetwork.sha256)
        "train_seconds": tm.train_seconds,
        "from_cache": tm.from_cache,
        "path": str(tm.path),
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(
            f"{args.net}: {out['parameters']:,} parameters; test accuracy float {100 * tm.float_accuracy:.2f} %, "
            f"8-bit integer {100 * tm.int_accuracy:.2f} % on {len(test.images)} images "
            f"({'from cache' if tm.from_cache else f'trained in {tm.train_seconds:.0f} s'}); {tm.path}"
        )
    return 0


def _sens_args(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--train-images", type=int, default=1000, metavar="N",
                   help="first N training images the sensitivity is averaged over (default 1000)")
    add_hidden_alias(p, "--images", "train_images", type=int)
    p.add_argument("--mode", default="paper", choices=MODES,
                   help="paper: |mean over images of dE/dw| as the paper defines it (default); magnitude: mean of "
                        "|dE/dw| per image (opposite gradients do not cancel)")
    p.add_argument("--out", default="results", metavar="DIR",
                   help="output folder for sensitivity.json and the histograms, sensitivity.png (or .pdf / .svg, "
                        "see --plot-format) (default ./results)")
    add_plot_argument(p, "the histograms")


@command("sensitivity", "Back-propagation sensitivity of every neuron and layer (ReMeCo Fig. 4).")(_sens_args)
def _sensitivity(args: argparse.Namespace) -> int:
    out = check_out_dir(args.out)
    plots = plot_files(out, "sensitivity", check_plot_formats(args.plot_format))  # before training
    train, _, tm = _trained(args)
    if not 1 <= args.train_images <= len(train.images):
        raise UserError(f"--train-images must be in [1, {len(train.images)}], got {args.train_images}")
    sens = neuron_sensitivity(tm.model, train.images[: args.train_images], train.labels[: args.train_images])
    atomic_write_text(out / "sensitivity.json", json.dumps(sens.to_dict()))
    for path in plots:
        plot_histograms(sens, path, mode=args.mode)
    layers = sens.layer(args.mode)
    if args.json:
        print(json.dumps({"layer_sensitivity": layers.tolist(), "mode": args.mode}))
        return 0
    order = np.argsort(layers)
    for i, v in enumerate(layers):
        print(f"layer {i}: sensitivity {v:.3e}" + ("  (least sensitive)" if i == order[0] else ""))
    print(f"histograms: {', '.join(str(p) for p in plots)}")
    return 0


def _search_args(p: argparse.ArgumentParser) -> None:
    add_campaign_arguments(p, instances=5, test_images=500, out="results/search", what="trial plan")
    p.add_argument("--tolerance", type=float, default=0.005, metavar="FRACTION",
                   help="accuracy one may give up against the first (full-redundancy) trial, as a fraction "
                        "(default 0.005: half a point)")
    p.add_argument("--method", default="heuristic", choices=("heuristic", "pareto"),
                   help="heuristic (default): the paper's plan reduction; pareto: a multi-objective, "
                        "multi-fidelity optuna search of plans, resumable (remeco.host.pareto)")
    p.add_argument("--trials", type=int, default=40, metavar="N",
                   help="pareto: finished trials wanted in total; a rerun resumes the study (default 40)")
    p.add_argument("--sampler", default="tpe", choices=("tpe", "nsga2"),
                   help="pareto: optuna's multi-objective sampler (default tpe)")
    p.add_argument("--holdout", type=int, default=0, metavar="N",
                   help="pareto: also evaluate the front and the paper's plans on N further chip instances that "
                        "took no part in the selection (default 0)")
    # None: process for the heuristic, serial for pareto (one plan per campaign: a pool costs more than it saves)
    p.set_defaults(executor=None)


#: Columns of ``remeco search --export``, one row per (chip instance, trial plan).
SEARCH_EXPORT_COLUMNS = ("trial", "step", "instance", "plan", "accuracy", "correct", "images", "extra_columns",
                         "kept", "chip", "seed", "network")


@command("search", "ReMeCo's heuristic: drop redundancy from insensitive neurons/slices/layers while accuracy holds.")(
    _search_args
)
def _search(args: argparse.Namespace) -> int:
    from remeco.host.campaign import check_scheduler
    from remeco.host.options import check_campaign_arguments, load_chip, result_header, write_export
    from remeco.host.reproduce import campaign_rows, prepare, run_config
    from remeco.models.redundancy import reduce_plan

    if not 0 <= args.tolerance < 1:
        raise UserError(f"--tolerance must be in [0, 1), got {args.tolerance}")
    log = (lambda *_: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    check_campaign_arguments(args)
    check_out_dir(args.out)
    check_scheduler(args.scheduler)
    check_engine(args.engine, args.device)
    chip = load_chip(args.chip)
    seed = 0 if args.seed is None else args.seed
    if args.method == "pareto":
        from remeco.host.pareto import run_command

        return run_command(args, chip=chip, seed=seed, log=log)
    args.executor = args.executor or "process"
    ctx = prepare(net=args.net, dataset=args.dataset, data_dir=args.data_dir, out_dir=args.out, seed=seed,
                  test_images=args.test_images, epochs=args.epochs, chip=chip, log=log,
                  plot_formats=check_plot_formats(args.plot_format))
    sizes = [layer.out_features for layer in ctx["network"].layers]
    per_trial: list[list[dict]] = []  # the stored rows of every trial, in the order reduce_plan tries them

    def evaluate(plan):
        rows = campaign_rows(ctx, {"trial": plan}, instances=args.instances,
                             executor="dask" if args.scheduler else args.executor, scheduler=args.scheduler,
                             workers=args.workers, engine=args.engine, device=args.device)
        per_trial.append(rows)
        acc = np.array([r["metrics"]["accuracy"] for r in rows])
        log(f"  {plan.name}: {100 * acc.mean():.2f} %, +{100 * plan.extra_columns_fraction:.0f} % columns")
        return float(acc.mean())

    best, trials = reduce_plan(evaluate, sizes, ctx["sensitivity"], tolerance=args.tolerance,
                               n_slices=ctx["fmt"].n_slices)
    rows = [{"step": t.step, "accuracy": t.accuracy, "extra_columns": t.overhead, "kept": t.kept} for t in trials]
    network = ctx["network"]
    result = result_header(seed=seed, network_sha256=network.sha256(),
                           config=run_config(ctx, instances=args.instances, tolerance=args.tolerance),
                           units=("accuracy", "extra_columns"))
    result.update({"software_accuracy": float(ctx["trained"].int_accuracy), "trials": rows, "chosen": best.to_dict()})
    atomic_write_text(Path(args.out, "search.json"), json.dumps(result))
    if args.export is not None:
        description, name = ctx["chip"].describe(), f"{network.name}@{network.sha256()[:12]}"
        table = [{"trial": i, "step": t.step, "instance": r["instance"], "plan": t.plan.name,
                  "accuracy": r["metrics"]["accuracy"], "correct": r["metrics"]["correct"],
                  "images": r["metrics"].get("images", ctx["test_images"]), "extra_columns": t.overhead,
                  "kept": t.kept, "chip": description, "seed": seed, "network": name}
                 for i, (t, stored) in enumerate(zip(trials, per_trial)) for r in stored]
        write_export(table, args.export, SEARCH_EXPORT_COLUMNS)
        log(f"exported {len(table)} rows to {args.export}")
    if args.json:
        print(json.dumps(result))
        return 0
    for r in rows:
        print(f"{r['step']:<36} {100 * r['accuracy']:6.2f} %  +{100 * r['extra_columns']:5.1f} % columns  "
              f"{'kept' if r['kept'] else 'rejected'}")
    return 0
