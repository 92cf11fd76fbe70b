"""``remeco dse``: the paper's Fig. 2 sweeps of single non-idealities on LeNet.

Three sweeps, each point the mean accuracy of the emulated accelerator over chip
instances, with every other non-ideality off (so each panel isolates one effect):

``stuck``  stuck-at rate, all faults stuck-on vs all stuck-off (Fig. 2a);
``wires``  crossbar size x wire resistance per segment, IR-drop only (Fig. 2b);
``d2d``    device-to-device sigma of A_p / A_n, open loop vs write-and-verify (Fig. 2c-d).

Points are campaign "plans" of one resumable campaign (:mod:`remeco.host.campaign`), so
an interrupted sweep continues where it stopped.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from remeco.host.campaign import check_scheduler, limit_worker_threads, run_campaign
from remeco.host.cli import UserError, command
from remeco.host.engines import DEFAULT_ENGINE, EngineCache, add_engine_arguments, check_engine
from remeco.host.paths import check_out_dir
from remeco.host.store import ResultStore
from remeco.models.chip import DEVICE_KEYING, ChipParams
from remeco.models.cachefile import atomic_write_text
from remeco.models.data import load_dataset
from remeco.models.emulation import EmulationFormat
from remeco.models.network import calibrate_adc_shifts, map_network, program_network
from remeco.models.nn import QuantizedNetwork, get_trained, save_network_once
from remeco.models.redundancy import make_plan

__all__ = ["SWEEPS", "sweep_points", "evaluate_point", "run_dse"]

SWEEPS = ("stuck", "wires", "d2d")
STUCK_RATES = (0.0, 0.005, 0.01, 0.02, 0.05)
SIZES = (32, 64, 128, 256)
WIRES = (0.0, 1.0, 2.0, 4.0, 8.0)
D2D_SIGMAS = (0.0, 0.1, 0.2, 0.3)

_MEMO: dict[str, dict] = {}


def sweep_points(sweeps=SWEEPS) -> dict[str, dict]:
    """Point name -> {"sweep", "size", "chip": changes to the ideal chip, "x", "series"}."""
    points: dict[str, dict] = {}
    for sweep in sweeps:
        if sweep not in SWEEPS:
            raise UserError(f"--sweeps entries must be among {SWEEPS}, got {sweep!r}")
        if sweep == "stuck":
            for kind, frac in (("stuck-on", 1.0), ("stuck-off", 0.0)):
                for r in STUCK_RATES:
                    points[f"stuck:{kind}:{r}"] = {
                        "sweep": sweep, "size": 128, "x": r, "series": kind,
                        "chip": {"stuck_at_rate": r, "stuck_on_fraction": frac},
                    }
        elif sweep == "wires":
            for size in SIZES:
                for w in WIRES:
                    points[f"wires:{size}:{w}"] = {
                        "sweep": sweep, "size": size, "x": w, "series": f"{size}x{size}",
                        "chip": {"wire_resistance": w, "ir_drop": "exact"},
                    }
        else:
            for wv in (False, True):
                for s in D2D_SIGMAS:
                    points[f"d2d:{'wv' if wv else 'ol'}:{s}"] = {
                        "sweep": sweep, "size": 128, "x": s,
                        "series": "write-and-verify" if wv else "open loop",
                        "chip": {"d2d_sigma": s, "write_verify": wv},
                    }
    return points


def _context(spec: dict, size: int) -> dict:
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    memo = _MEMO.setdefault(key, {})
    if not memo:
        _MEMO.clear()
        _MEMO[key] = memo
        train, test = load_dataset(spec["dataset"], spec.get("data_dir"))
        memo["network"] = QuantizedNetwork.load(spec["network_file"])
        memo["calib"] = train.images[:500]
        memo["images"] = test.images[: spec["test_images"]]
        memo["labels"] = test.labels[: spec["test_images"]]
    if size not in memo:
        net = memo["network"]
        fmt = EmulationFormat(rows=size, cols=size)
        shifts = calibrate_adc_shifts(net, fmt, memo["calib"])
        plan = make_plan("base", [layer.out_features for layer in net.layers])
        memo[size] = map_network(net, plan, fmt, shifts)
    return memo


def evaluate_point(spec: dict, instance: int, names: list[str], engine: str = DEFAULT_ENGINE,
                   device: str | None = None) -> dict[str, dict]:
    """Campaign task: accuracy of each sweep point on chip instance ``(spec["seed"], instance)``.

    ``engine`` / ``device`` (bound with :func:`functools.partial`, outside the spec): see
    :mod:`remeco.host.engines`; every engine gives the same rows.
    """
    limit_worker_threads()
    out = {}
    for name in names:
        point = spec["points"][name]
        memo = _context(spec, point["size"])
        params = ChipParams.ideal().with_(**point["chip"])
        mapped = memo[point["size"]]
        chip = program_network(mapped, params, seed=spec["seed"], instance=instance)
        engines = memo.setdefault(("engines", engine, device), EngineCache(engine, device))
        logits = engines.logits(mapped, memo["images"], chip, params)
        correct = int((logits.argmax(1) == memo["labels"]).sum())
        out[name] = {"accuracy": correct / len(memo["labels"]), "correct": correct}
    return out


def run_dse(
    *, sweeps=SWEEPS, instances: int = 5, test_images: int = 500, seed: int = 0, out_dir="results/dse",
    executor: str = "process", scheduler: str | None = None, workers: int | None = None, log=print,
    engine: str = DEFAULT_ENGINE, device: str | None = None,
) -> dict:
    """Run the sweeps; returns ``{"points": [{name, sweep, series, size, x, accuracy_mean, accuracy_std}]}``.

    ``engine`` / ``device``: the campaign's executor (:mod:`remeco.host.engines`); the
    result does not depend on them.
    """
    if instances < 1:
        raise UserError(f"--instances must be >= 1, got {instances}")
    out = check_out_dir(out_dir)
    t0 = time.perf_counter()
    train, test = load_dataset()
    if not 1 <= test_images <= len(test.images):
        raise UserError(f"--test-images must be in [1, {len(test.images)}], got {test_images}")
    trained = get_trained("lenet5", train, test, seed=seed)
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(v).tobytes()
                                     for _, v in sorted(trained.network.to_arrays().items()))).hexdigest()[:16]
    network_file = out / f"network-lenet5-{digest}.npz"
    save_network_once(trained.network, network_file)  # a damaged copy is rewritten
    points = sweep_points(sweeps)
    spec = {
        "kind": "dse", "dataset": "mnist5k", "data_dir": None, "network_file": str(network_file.resolve()),
        "seed": seed, "test_images": test_images, "points": points, "device_keying": DEVICE_KEYING,
    }
    with ResultStore(out / "results.sqlite") as store:
        task = functools.partial(evaluate_point, engine=engine, device=device)
        cid = run_campaign(spec, task, instances=instances, plans=list(points), store=store,
                           executor=executor, scheduler=scheduler, workers=workers, group_by_instance=True,
                           progress=sys.stderr.isatty())
        rows = [r for r in store.results(cid) if r["instance"] < instances]
    result = []
    for name, p in points.items():
        acc = np.array([r["metrics"]["accuracy"] for r in rows if r["plan"] == name])
        result.append({"name": name, "sweep": p["sweep"], "series": p["series"], "size": p["size"], "x": p["x"],
                       "accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std(ddof=1)) if acc.size > 1 else 0.0})
    summary = {"software_accuracy": float(trained.int_accuracy), "points": result}
    atomic_write_text(out / "dse.json", json.dumps(summary, indent=2))
    _plot(summary, out / "dse.png")
    log(f"done in {time.perf_counter() - t0:.0f} s; results in {out}/")
    return summary


def _plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = summary["points"]
    sweeps = [s for s in SWEEPS if any(p["sweep"] == s for p in pts)]
    labels = {"stuck": "stuck-at rate", "wires": "wire resistance per segment (ohm)", "d2d": "D2D sigma of A_p (relative)"}
    fig, axes = plt.subplots(1, len(sweeps), figsize=(4.2 * len(sweeps), 3.2), squeeze=False)
    for ax, sweep in zip(axes[0], sweeps):
        for series in dict.fromkeys(p["series"] for p in pts if p["sweep"] == sweep):
            ps = [p for p in pts if p["sweep"] == sweep and p["series"] == series]
            ax.errorbar([p["x"] for p in ps], [100 * p["accuracy_mean"] for p in ps],
                        yerr=[100 * p["accuracy_std"] for p in ps], marker="o", ms=3, capsize=2, label=series)
        ax.axhline(100 * summary["software_accuracy"], color="gray", ls="--", lw=0.8)
        ax.set_xlabel(labels[sweep], fontsize=8)
        ax.set_ylabel("accuracy (%)", fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle("LeNet-5 / MNIST-5k under single non-idealities (ReMeCo Fig. 2 analogue)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sweeps", default=",".join(SWEEPS), help="comma-separated subset of stuck,wires,d2d")
    p.add_argument("--instances", type=int, default=5, help="chip instances per point (default 5)")
    p.add_argument("--test-images", type=int, default=500, help="test images per point (default 500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/dse")
    p.add_argument("--executor", default="process", choices=("process", "serial", "dask"))
    p.add_argument("--scheduler", default=None, help="dask scheduler address tcp://HOST:PORT")
    p.add_argument("--workers", type=int, default=None)
    add_engine_arguments(p)
    p.add_argument("--json", action="store_true")


@command("dse", "Fig. 2 sweeps: stuck-on vs stuck-off, crossbar size x wire resistance, D2D with/without write-verify.")(_add_arguments)
def _run(args: argparse.Namespace) -> int:
    log = (lambda *_: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    check_out_dir(args.out)
    check_scheduler(args.scheduler)
    check_engine(args.engine, args.device)
    res = run_dse(sweeps=[s.strip() for s in args.sweeps.split(",") if s.strip()], instances=args.instances,
                  test_images=args.test_images, seed=args.seed, out_dir=args.out,
                  executor="dask" if args.scheduler else args.executor, scheduler=args.scheduler,
                  workers=args.workers, log=log, engine=args.engine, device=args.device)
    if args.json:
        print(json.dumps(res))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="DSE (accuracy mean over chip instances)")
    for col in ("sweep", "series", "x", "accuracy"):
        table.add_column(col)
    for p in res["points"]:
        table.add_row(p["sweep"], p["series"], f"{p['x']:g}", f"{100 * p['accuracy_mean']:.2f} %")
    Console().print(table)
    return 0
