"""``remeco train``, ``remeco sensitivity`` and ``remeco search``: the network steps alone.

``train``        trains (or reloads from the cache) an 8-bit network and reports accuracy.
``sensitivity``  back-propagation sensitivity per neuron and layer, histogram PNG (Fig. 4).
``search``       ReMeCo's plan-reduction heuristic (:func:`remeco.models.redundancy.reduce_plan`):
                 every trial plan is evaluated on chip instances through a resumable
                 campaign; prints the accuracy / overhead trade-off.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from remeco.host.cli import UserError, command
from remeco.host.engines import add_engine_arguments, check_engine
from remeco.host.paths import check_out_dir
from remeco.models.cachefile import atomic_write_text
from remeco.models.data import load_dataset
from remeco.models.nn import NET_NAMES, get_trained
from remeco.models.sensitivity import MODES, neuron_sensitivity, plot_histograms

__all__: list[str] = []


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--net", default="lenet5", choices=NET_NAMES)
    p.add_argument("--dataset", default="mnist5k", help="mnist5k (embedded, default), mnist or cifar10")
    p.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files or CIFAR-10 batches")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the network's)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _trained(args):
    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {args.epochs}")
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
    p.add_argument("--images", type=int, default=1000, help="training images averaged (default 1000)")
    p.add_argument("--mode", default="paper", choices=MODES)
    p.add_argument("--out", default="results", help="folder for sensitivity.png / sensitivity.json")


@command("sensitivity", "Back-propagation sensitivity of every neuron and layer (ReMeCo Fig. 4).")(_sens_args)
def _sensitivity(args: argparse.Namespace) -> int:
    out = check_out_dir(args.out)
    train, _, tm = _trained(args)
    if not 1 <= args.images <= len(train.images):
        raise UserError(f"--images must be in [1, {len(train.images)}], got {args.images}")
    sens = neuron_sensitivity(tm.model, train.images[: args.images], train.labels[: args.images])
    atomic_write_text(out / "sensitivity.json", json.dumps(sens.to_dict()))
    plot_histograms(sens, out / "sensitivity.png", mode=args.mode)
    layers = sens.layer(args.mode)
    if args.json:
        print(json.dumps({"layer_sensitivity": layers.tolist(), "mode": args.mode}))
        return 0
    order = np.argsort(layers)
    for i, v in enumerate(layers):
        print(f"layer {i}: sensitivity {v:.3e}" + ("  (least sensitive)" if i == order[0] else ""))
    print(f"histograms: {out / 'sensitivity.png'}")
    return 0


def _search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--instances", type=int, default=5, help="chip instances per trial (default 5)")
    p.add_argument("--test-images", type=int, default=500, help="test images per trial (default 500)")
    p.add_argument("--tolerance", type=float, default=0.005, help="accuracy one may give up (default 0.005)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the network's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/search")
    p.add_argument("--executor", default="process", choices=("process", "serial", "dask"))
    add_engine_arguments(p)
    p.add_argument("--json", action="store_true")


@command("search", "ReMeCo's heuristic: drop redundancy from insensitive neurons/slices/layers while accuracy holds.")(
    _search_args
)
def _search(args: argparse.Namespace) -> int:
    from remeco.host.reproduce import prepare, run_plans
    from remeco.models.redundancy import reduce_plan

    if not 0 <= args.tolerance < 1:
        raise UserError(f"--tolerance must be in [0, 1), got {args.tolerance}")
    log = (lambda *_: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {args.epochs}")
    check_out_dir(args.out)
    check_engine(args.engine, args.device)
    ctx = prepare(out_dir=args.out, seed=args.seed, test_images=args.test_images, epochs=args.epochs, log=log)
    sizes = [layer.out_features for layer in ctx["network"].layers]

    def evaluate(plan):
        acc = run_plans(ctx, {"trial": plan}, instances=args.instances, executor=args.executor,
                        engine=args.engine, device=args.device)["trial"]
        log(f"  {plan.name}: {100 * acc.mean():.2f} %, +{100 * plan.extra_columns_fraction:.0f} % columns")
        return float(acc.mean())

    best, trials = reduce_plan(evaluate, sizes, ctx["sensitivity"], tolerance=args.tolerance,
                               n_slices=ctx["fmt"].n_slices)
    rows = [{"step": t.step, "accuracy": t.accuracy, "extra_columns": t.overhead, "kept": t.kept} for t in trials]
    atomic_write_text(Path(args.out, "search.json"), json.dumps({"trials": rows, "chosen": best.to_dict()}))
    if args.json:
        print(json.dumps({"trials": rows}))
        return 0
    for r in rows:
        print(f"{r['step']:<36} {100 * r['accuracy']:6.2f} %  +{100 * r['extra_columns']:5.1f} % columns  "
              f"{'kept' if r['kept'] else 'rejected'}")
    return 0
