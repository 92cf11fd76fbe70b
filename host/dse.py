"""``remeco dse``: the paper's Fig. 2 sweeps of single non-idealities on LeNet.

Three sweeps, each point the mean accuracy of the emulated accelerator over chip
instances, with every other non-ideality off (so each panel isolates one effect):

``stuck``  stuck-at rate, all faults stuck-on vs all stuck-off (Fig. 2a);
``wires``  crossbar size x wire resistance per segment, IR-drop only (Fig. 2b);
``d2d``    device-to-device sigma of A_p / A_n, open loop vs write-and-verify (Fig. 2c-d).

Every point modifies one *base chip* (``--chip``; default: the paper's device and
datapath with every non-ideality off, :meth:`ChipParams.ideal`): a point sets the swept
fields (and, in ``wires``, the tile size) and keeps the rest of the base chip, so a chip
file with its own datapath or faults is swept as it is.

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
from dataclasses import replace
from pathlib import Path

import numpy as np

from remeco.host.campaign import check_scheduler, limit_worker_threads, run_campaign
from remeco.host.cli import UserError, command
from remeco.host.engines import DEFAULT_ENGINE, EngineCache, check_engine
from remeco.host.options import (add_campaign_arguments, check_campaign_arguments, check_count, check_epochs,
                                 check_export, check_plot_formats, load_chip, result_header, write_export)
from remeco.host.paths import check_out_dir
from remeco.host.store import ResultStore
from remeco.models.chip import DEVICE_KEYING, ChipParams
from remeco.models.cachefile import atomic_write_text
from remeco.models.data import load_dataset
from remeco.models.network import calibrate_adc_shifts, map_network, program_network
from remeco.models.plotstyle import PAGE_IN, check_plot_path, paper_figure, plot_files, reference_line
from remeco.models.nn import QuantizedNetwork, get_trained, save_network_once
from remeco.models.redundancy import make_plan

__all__ = ["SWEEPS", "sweep_points", "evaluate_point", "run_dse", "plot_dse"]

SWEEPS = ("stuck", "wires", "d2d")
STUCK_RATES = (0.0, 0.005, 0.01, 0.02, 0.05)
SIZES = (32, 64, 128, 256)
WIRES = (0.0, 1.0, 2.0, 4.0, 8.0)
D2D_SIGMAS = (0.0, 0.1, 0.2, 0.3)

_MEMO: dict[str, dict] = {}


def sweep_points(sweeps=SWEEPS, base: ChipParams | None = None) -> dict[str, dict]:
    """Point name -> {"sweep", "size", "chip": changes to the base chip, "x", "series"}.

    ``base`` (default :meth:`ChipParams.ideal`) gives the tile size of the sweeps that do
    not vary it."""
    base = ChipParams.ideal() if base is None else base
    size0 = base.datapath.rows
    points: dict[str, dict] = {}
    for sweep in sweeps:
        if sweep not in SWEEPS:
            raise UserError(f"--sweeps entries must be among {SWEEPS}, got {sweep!r}")
        if sweep == "stuck":
            for kind, frac in (("stuck-on", 1.0), ("stuck-off", 0.0)):
                for r in STUCK_RATES:
                    points[f"stuck:{kind}:{r}"] = {
                        "sweep": sweep, "size": size0, "x": r, "series": kind,
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
                        "sweep": sweep, "size": size0, "x": s,
                        "series": "write-and-verify" if wv else "open loop",
                        "chip": {"d2d_sigma": s, "write_verify": wv},
                    }
    return points


def _point_chip(spec: dict, size: int, changes: dict) -> ChipParams:
    """The base chip of ``spec`` with ``size`` x ``size`` tiles and a point's ``changes``."""
    base = ChipParams.from_dict(spec["base_chip"])
    return base.with_(datapath=replace(base.datapath, rows=size, cols=size), **changes)


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
        fmt = _point_chip(spec, size, {}).datapath
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
        params = _point_chip(spec, point["size"], point["chip"])
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
    engine: str = DEFAULT_ENGINE, device: str | None = None, net: str = "lenet5", dataset: str = "mnist5k",
    data_dir: str | None = None, epochs: int | None = None, chip: ChipParams | None = None,
    export: str | Path | None = None, plot_formats=("png",),
) -> dict:
    """Run the sweeps; returns the object written to ``dse.json``: the keys of
    :func:`remeco.host.options.result_header` (version, seed, network hash, ``config`` with
    the base chip, ``units``), ``software_accuracy`` and ``points``: ``[{name, sweep,
    series, size, x, chip, accuracy_mean, accuracy_std}]`` (``chip``: the point's chip,
    described; accuracies as fractions).

    ``chip``: the base chip every point modifies (default :meth:`ChipParams.ideal`, see the
    module docstring). ``net``, ``dataset``, ``data_dir``, ``epochs``: the network and
    its data (as ``remeco reproduce``). ``engine`` / ``device``: the campaign's executor
    (:mod:`remeco.host.engines`); the result does not depend on them. ``export``: also
    write one row per (instance, point) to a CSV / parquet file. The panels are written as
    ``dse.<format>`` for each of ``plot_formats`` (``png``, ``pdf``, ``svg``; :func:`plot_dse`).
    """
    check_count("--instances", instances)
    check_epochs(epochs)
    check_export(export)
    plot_formats = check_plot_formats(plot_formats)
    base = ChipParams.ideal() if chip is None else chip
    if base.device.levels != base.datapath.levels:
        raise UserError(f"--chip: device.levels ({base.device.levels}) must equal 2**datapath.slice_bits "
                        f"({base.datapath.levels})")
    points = sweep_points(sweeps, base)  # bad --sweeps before any training
    if not points:
        raise UserError(f"--sweeps must name at least one of {', '.join(SWEEPS)}")
    out = check_out_dir(out_dir)
    t0 = time.perf_counter()
    train, test = load_dataset(dataset, data_dir)
    if not 1 <= test_images <= len(test.images):
        raise UserError(f"--test-images must be in [1, {len(test.images)}], got {test_images}")
    trained = get_trained(net, train, test, seed=seed, epochs=epochs)
    network = trained.network
    sha = network.sha256()
    network_file = out / f"network-{net}-{sha[:16]}.npz"  # named as remeco reproduce names it
    save_network_once(network, network_file)  # a damaged copy is rewritten
    spec = {
        "kind": "dse", "dataset": dataset, "data_dir": None if data_dir is None else str(data_dir),
        "network_file": str(network_file.resolve()), "seed": seed, "test_images": test_images,
        "base_chip": base.to_dict(), "points": points, "device_keying": DEVICE_KEYING,
    }
    with ResultStore(out / "results.sqlite") as store:
        task = functools.partial(evaluate_point, engine=engine, device=device)
        cid = run_campaign(spec, task, instances=instances, plans=list(points), store=store,
                           executor=executor, scheduler=scheduler, workers=workers, group_by_instance=True,
                           progress=sys.stderr.isatty())
        rows = sorted((r for r in store.results(cid) if r["instance"] < instances), key=lambda r: r["instance"])
        store.require_metrics(rows, ("accuracy", "correct"))
    described = {name: _point_chip(spec, p["size"], p["chip"]).describe() for name, p in points.items()}
    result = []
    for name, p in points.items():
        acc = np.array([r["metrics"]["accuracy"] for r in rows if r["plan"] == name])
        result.append({"name": name, "sweep": p["sweep"], "series": p["series"], "size": p["size"], "x": p["x"],
                       "chip": described[name], "accuracy_mean": float(acc.mean()),
                       "accuracy_std": float(acc.std(ddof=1)) if acc.size > 1 else 0.0})
    config = {"net": net, "dataset": dataset, "data_dir": spec["data_dir"], "epochs": int(trained.config.epochs),
              "instances": instances, "test_images": test_images, "sweeps": list(dict.fromkeys(sweeps)),
              "base_chip_description": base.describe(), "base_chip": base.to_dict()}
    summary = result_header(seed=seed, network_sha256=sha, config=config, units=("accuracy",))
    summary.update({"software_accuracy": float(trained.int_accuracy), "points": result})
    atomic_write_text(out / "dse.json", json.dumps(summary, indent=2))
    for path in plot_files(out, "dse", plot_formats):
        plot_dse(summary, path, net)
    if export is not None:
        network_name = f"{network.name}@{sha[:12]}"
        table = [{"instance": r["instance"], "point": r["plan"], "sweep": points[r["plan"]]["sweep"],
                  "series": points[r["plan"]]["series"], "x": points[r["plan"]]["x"], "size": points[r["plan"]]["size"],
                  "accuracy": r["metrics"]["accuracy"], "correct": r["metrics"]["correct"], "images": test_images,
                  "chip": described[r["plan"]], "seed": int(seed), "network": network_name} for r in rows]
        write_export(table, export, EXPORT_COLUMNS)
        log(f"exported {len(table)} rows to {export}")
    log(f"done in {time.perf_counter() - t0:.0f} s; results in {out}/")
    return summary


#: Columns of ``remeco dse --export``, one row per (chip instance, sweep point).
EXPORT_COLUMNS = ("instance", "point", "sweep", "series", "x", "size", "accuracy", "correct", "images", "chip",
                  "seed", "network")


#: Per sweep: the x-axis label (with its unit) and the factor from the stored x to the axis.
_X_AXES = {
    "stuck": ("stuck-at rate (% of devices)", 100.0),
    "wires": ("wire resistance per segment (Ω)", 1.0),
    "d2d": ("D2D σ of $A_p$, $A_n$ (% of nominal)", 100.0),
}


def plot_dse(summary: dict, path: str | Path, net: str = "lenet5"):
    """The sweeps of ``summary`` (a :func:`run_dse` result) side by side (the paper's Fig. 2); returns the figure.

    One panel per sweep at page width, accuracy (%) on a y-axis shared by all panels, the
    mean over chip instances with +-1 s.d. bars, and the software (8-bit) accuracy as a
    dashed line kept in range; the number of chip instances and test images is in the
    title. PNG, PDF or SVG by the suffix of ``path`` (:mod:`remeco.models.plotstyle`).
    """
    check_plot_path(path)
    pts = summary["points"]
    sweeps = [s for s in SWEEPS if any(p["sweep"] == s for p in pts)]
    config = summary.get("config", {})
    with paper_figure(path, width=PAGE_IN, height=2.7, ncols=len(sweeps), sharey=True) as (fig, axes):
        for ax, sweep in zip(axes[0], sweeps):
            label, scale = _X_AXES[sweep]
            for series in dict.fromkeys(p["series"] for p in pts if p["sweep"] == sweep):
                ps = [p for p in pts if p["sweep"] == sweep and p["series"] == series]
                ax.errorbar([scale * p["x"] for p in ps], [100 * p["accuracy_mean"] for p in ps],
                            yerr=[100 * p["accuracy_std"] for p in ps], marker="o", capsize=2, label=series)
            ax.set_xlabel(label)
        axes[0][0].set_ylabel("accuracy (%)")
        for ax in axes[0]:  # after all panels are drawn: the shared limits must hold every line
            reference_line(ax, 100 * summary["software_accuracy"], "software (8-bit)")
            ax.legend(loc="best")
        count, images = config.get("instances"), config.get("test_images")
        what = "mean ± s.d." if count is None else f"mean ± s.d. over {count} chip instance{'s' * (count != 1)}"
        fig.suptitle(f"{net} under single non-idealities; {what}" + (f", {images:,} test images" if images else ""))
    return fig


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sweeps", default=",".join(SWEEPS), metavar="LIST",
                   help=f"comma-separated subset of {','.join(SWEEPS)} (default all)")
    add_campaign_arguments(p, instances=5, test_images=500, out="results/dse", what="point")


@command("dse", "Fig. 2 sweeps: stuck-on vs stuck-off, crossbar size x wire resistance, D2D with/without write-verify.")(_add_arguments)
def _run(args: argparse.Namespace) -> int:
    log = (lambda *_: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    check_campaign_arguments(args)
    check_out_dir(args.out)
    check_scheduler(args.scheduler)
    check_engine(args.engine, args.device)
    chip = load_chip(args.chip, ChipParams.ideal())
    res = run_dse(sweeps=[s.strip() for s in args.sweeps.split(",") if s.strip()], instances=args.instances,
                  test_images=args.test_images, seed=0 if args.seed is None else args.seed, out_dir=args.out,
                  executor="dask" if args.scheduler else args.executor, scheduler=args.scheduler,
                  workers=args.workers, log=log, engine=args.engine, device=args.device, net=args.net,
                  dataset=args.dataset, data_dir=args.data_dir, epochs=args.epochs, chip=chip, export=args.export,
                  plot_formats=check_plot_formats(args.plot_format))
    if args.json:
        print(json.dumps(res))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"DSE of {args.net} (accuracy mean over chip instances); base chip: "
                        f"{res['config']['base_chip_description']}")
    for col in ("sweep", "series", "x", "accuracy"):
        table.add_column(col)
    for p in res["points"]:
        table.add_row(p["sweep"], p["series"], f"{p['x']:g}", f"{100 * p['accuracy_mean']:.2f} %")
    Console().print(table)
    return 0
