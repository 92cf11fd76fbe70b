"""Command-line options shared by several ``remeco`` commands, defined once.

One meaning per option name, in every command that has it:

``--net``, ``--dataset``, ``--data-dir``, ``--epochs``
    The network and the data it is trained and tested on (:func:`add_network_arguments`).
``--seed``
    Seed of training and of the chip instances: instance ``i`` is drawn from ``(seed, i)``.
``--chip FILE|PRESET``
    The chip (:class:`remeco.models.chip.ChipParams`): non-idealities *and* datapath
    (tile size, slices, ADC and input bits); the network is mapped with its datapath.
``--instances N``
    How many chip instances (indices ``0..N-1``); ``--instance I`` (``run``, ``bundle``)
    names one chip instance by its index.
``--test-images N``
    The first ``N`` test images (``--train-images``: training images).
``--out DIR``
    The folder a command writes its results to; ``--work-dir DIR`` (``run``, ``bundle``)
    the folder of the network and sensitivity files they build and reuse.
``--export FILE.csv|FILE.parquet``
    One row per (chip instance, plan or point) as a table (:func:`write_export`).
``--plot-format LIST``
    The formats plots are written in, by file suffix: ``png``, ``pdf``, ``svg`` or several,
    comma-separated (:func:`check_plot_formats`; styles in :mod:`remeco.models.plotstyle`).
``--json``
    Print one JSON object on standard output instead of a table.

A value the user can fix is a one-line :class:`~remeco.host.cli.UserError` (exit 2).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from remeco import __version__
from remeco.host.campaign import MAX_INSTANCES
from remeco.host.cli import UserError
from remeco.host.paths import check_out_file
from remeco.models.plotstyle import PLOT_SUFFIXES

__all__ = [
    "EXPORT_SUFFIXES", "PLOT_FORMATS", "UNITS", "add_network_arguments", "add_seed_argument", "add_chip_argument",
    "add_plot_argument", "check_plot_formats",
    "add_campaign_arguments", "add_export_argument", "add_json_argument", "add_hidden_alias",
    "check_network_arguments", "check_campaign_arguments", "check_epochs", "check_count", "load_chip", "check_export", "write_export", "result_header",
]

#: Table formats of ``--export``, by file suffix.
EXPORT_SUFFIXES = (".csv", ".parquet")

#: Values of ``--plot-format``: the plot file suffixes without the dot.
PLOT_FORMATS = tuple(s.lstrip(".") for s in PLOT_SUFFIXES)

#: Units of the numbers in result JSON and exported tables (also written into the JSON).
UNITS = {
    "accuracy": "fraction of test images classified correctly, 0..1",
    "area_mm2": "mm^2",
    "energy_j_per_image": "J per inference of one image",
    "energy_j_per_10k_images": "J for 10,000 images plus programming the chip once (the paper's Table 4 unit)",
    "extra_columns": "physical columns added by the plan, as a fraction of the base plan's",
}


def add_network_arguments(p: argparse.ArgumentParser, note: str = "", *, unset: bool = False) -> None:
    """``--net``, ``--dataset``, ``--data-dir``, ``--epochs`` (``note`` is appended to each
    help; ``unset``: the defaults are ``None``, for a command that must tell whether they
    were given, which then applies lenet5 and mnist5k itself)."""
    from remeco.models.data import DATASET_NAMES

    try:
        from remeco.models.nn import NET_NAMES
    except ModuleNotFoundError as exc:  # no torch (a PYNQ board running a bundle): checked where training is
        if (exc.name or "").startswith("remeco"):
            raise
        NET_NAMES = None
    p.add_argument("--net", default=None if unset else "lenet5", choices=NET_NAMES,
                   help=f"network: lenet5 (default), lenet_paper (the paper's LeNet) or alexnet{note}")
    p.add_argument("--dataset", default=None if unset else "mnist5k", choices=DATASET_NAMES,
                   help=f"data set: mnist5k (embedded, default), mnist or cifar10 (from --data-dir){note}")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help=f"folder with the MNIST IDX files or the CIFAR-10 python batches (nothing is downloaded){note}")
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help=f"training epochs (default: the network's; part of the training cache key){note}")


def add_seed_argument(p: argparse.ArgumentParser, note: str = "", default: int | None = 0) -> None:
    """``--seed``: training and chip instances (``default`` ``None`` lets a command tell
    whether it was given; 0 applies)."""
    p.add_argument("--seed", type=int, default=default, metavar="S",
                   help=f"seed of training and of the chip instances (default 0){note}")


def add_chip_argument(p: argparse.ArgumentParser, default_help: str = "paper", note: str = "") -> None:
    """``--chip FILE|PRESET`` (default ``None``: the command's default chip, named by ``default_help``)."""
    from remeco.models.chipfile import available_chip_presets

    p.add_argument("--chip", default=None, metavar="FILE|PRESET",
                   help=f"the chip: a preset ({', '.join(available_chip_presets())}) or a .json / .toml chip file "
                        f"(faults, wires, D2D, device, and the datapath the network is mapped with; default "
                        f"{default_help}){note}")


def add_json_argument(p: argparse.ArgumentParser) -> None:
    """``--json``."""
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def add_campaign_arguments(p: argparse.ArgumentParser, *, instances: int, test_images: int | None, out: str,
                           what: str = "plan") -> None:
    """What every chip-instance campaign takes (``reproduce``, ``dse``, ``search``): network,
    chip, instances, images, seed, output folder, executor, engine, ``--export``, ``--plot-format``,
    ``--json``."""
    from remeco.host.engines import add_engine_arguments

    add_network_arguments(p)
    add_chip_argument(p, "paper" if what != "point" else
                      "the paper's device and datapath with every non-ideality off, so each panel isolates one effect")
    p.add_argument("--instances", type=int, default=instances, metavar="N",
                   help=f"chip instances 0..N-1 per {what} (default {instances})")
    p.add_argument("--test-images", type=int, default=test_images, metavar="N",
                   help=f"first N test images per {what} and instance (default "
                        f"{'all' if test_images is None else test_images})")
    add_seed_argument(p)
    p.add_argument("--out", default=out, metavar="DIR",
                   help=f"output folder: results database, JSON, plots, network files (default ./{out})")
    p.add_argument("--executor", default="process", choices=("process", "serial", "dask"),
                   help="where chip instances run: process (a local pool, default), serial (this process) or "
                        "dask; identical results")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="address of a running dask scheduler (implies --executor dask)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes of the local pool (default: all cores)")
    add_engine_arguments(p)
    add_export_argument(p, what)
    add_plot_argument(p)
    add_json_argument(p)


def add_export_argument(p: argparse.ArgumentParser, what: str = "plan") -> None:
    """``--export FILE.csv|FILE.parquet``."""
    p.add_argument("--export", default=None, metavar="FILE.csv|FILE.parquet",
                   help=f"also write one row per (chip instance, {what}) with accuracy, the {what} and chip "
                        "description, seed and network hash (parquet needs pyarrow)")


def add_plot_argument(p: argparse.ArgumentParser, what: str = "the plots") -> None:
    """``--plot-format LIST`` (checked by :func:`check_plot_formats`)."""
    p.add_argument("--plot-format", default="png", metavar="LIST",
                   help=f"file format(s) of {what}: {', '.join(PLOT_FORMATS)}, or several comma-separated "
                        "(e.g. png,pdf); pdf and svg are vector graphics with text as text, sized for a paper "
                        "(default png)")


def check_plot_formats(value: str | Sequence[str]) -> tuple[str, ...]:
    """The formats of ``--plot-format`` (``"png,pdf"`` or a sequence) as a tuple without
    repeats, before any work; anything but :data:`PLOT_FORMATS` is a one-line :class:`UserError`."""
    items = value.split(",") if isinstance(value, str) else list(value)
    formats = tuple(dict.fromkeys(str(f).strip().lower().lstrip(".") for f in items if str(f).strip()))
    if not formats:
        raise UserError(f"--plot-format must name at least one of {', '.join(PLOT_FORMATS)}")
    bad = [f for f in formats if f not in PLOT_FORMATS]
    if bad:
        raise UserError(f"--plot-format: {bad[0]!r} is not a plot format; expected {', '.join(PLOT_FORMATS)} "
                        "(comma-separated for several)")
    return formats


def add_hidden_alias(p: argparse.ArgumentParser, old: str, dest: str, **kwargs) -> None:
    """Accept the old spelling ``old`` of an option (kept for scripts) without showing it in the help."""
    p.add_argument(old, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


def check_epochs(epochs: int | None) -> None:
    """``--epochs`` must be ``None`` or >= 1."""
    if epochs is not None and epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {epochs}")


def check_count(flag: str, value: int | None, *, minimum: int = 1) -> None:
    """A count option (``--instances``, ``--test-images``, ``--workers``) must be ``None`` or >= ``minimum``."""
    if value is not None and value < minimum:
        raise UserError(f"{flag} must be >= {minimum}, got {value}")


def check_network_arguments(args: argparse.Namespace) -> None:
    """The values :func:`add_network_arguments` adds (and ``--seed``), checked before any work."""
    check_epochs(args.epochs)
    check_count("--seed", getattr(args, "seed", None), minimum=0)
    dataset = args.dataset or "mnist5k"
    if args.data_dir is None and dataset != "mnist5k":
        raise UserError(f"--dataset {dataset} needs --data-dir DIR (the folder with its files; nothing is downloaded)")
    if args.data_dir is not None and not Path(args.data_dir).expanduser().is_dir():
        raise UserError(f"--data-dir {args.data_dir} is not a folder")
    net = getattr(args, "net", None) or "lenet5"
    try:
        from remeco.models.data import DATASET_SHAPES
        from remeco.models.nn import net_spec
    except ModuleNotFoundError as exc:  # no torch (a board): nothing is trained there
        if (exc.name or "").startswith("remeco"):
            raise
        return
    want, have = tuple(net_spec(net).input_shape), DATASET_SHAPES[dataset]
    if want != have:  # before loading or training, not after
        raise UserError(f"--net {net} takes {'x'.join(map(str, want))} images; --dataset {dataset} has "
                        f"{'x'.join(map(str, have))}")


def check_campaign_arguments(args: argparse.Namespace) -> None:
    """The values :func:`add_campaign_arguments` adds, checked before any work (one line each)."""
    check_network_arguments(args)
    check_count("--instances", args.instances)
    if args.instances is not None and args.instances > MAX_INSTANCES:  # before training, not after it
        raise UserError(f"--instances must be at most {MAX_INSTANCES:,} per campaign, got {args.instances:,}")
    check_count("--test-images", args.test_images)
    check_count("--workers", args.workers)
    check_export(args.export)
    check_plot_formats(args.plot_format)


def load_chip(source: str | os.PathLike | None, default=None):
    """The :class:`~remeco.models.chip.ChipParams` of ``--chip`` (``default`` or the paper's
    chip when ``None``); a bad preset or file is one line naming ``--chip``."""
    from remeco.models.chip import ChipParams
    from remeco.models.chipfile import ChipConfigError

    from remeco.models.chip import network_datapath_problem

    if source is None:
        return ChipParams() if default is None else default
    try:
        chip = ChipParams.load(source)
    except ChipConfigError as exc:
        raise UserError(f"--chip: {exc}") from None
    problem = network_datapath_problem(chip)
    if problem:  # before any training, not after it
        raise UserError(f"--chip {source}: {problem}")
    return chip


def check_export(path: str | os.PathLike | None) -> Path | None:
    """The ``--export`` file, checked before any work: a known suffix, a writable place, and
    pyarrow installed for parquet."""
    if path is None:
        return None
    p = Path(path).expanduser()
    suffix = p.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        raise UserError(f"--export {p}: expected a file name ending in {' or '.join(EXPORT_SUFFIXES)}")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401  (pandas writes parquet through it)
        except ImportError:
            raise UserError(f"--export {p}: parquet needs the pyarrow package, which is not installed "
                            "(pip install pyarrow, or export to a .csv file)") from None
    return check_out_file(p, "--export")


def write_export(rows: list[dict], path: str | os.PathLike, columns: list[str] | tuple[str, ...] | None = None) -> Path:
    """Write ``rows`` (one dict per row) as CSV or parquet by the suffix of ``path``."""
    import pandas as pd

    p = check_export(path)
    df = pd.DataFrame(rows, columns=list(columns) if columns is not None else None)
    tmp = p.with_name(f".{p.name}.tmp")
    if p.suffix.lower() == ".csv":
        df.to_csv(tmp, index=False)
    else:
        df.to_parquet(tmp, index=False)
    os.replace(tmp, p)  # a reader never sees half a table
    return p


def result_header(*, seed: int, network_sha256: str, config: dict, units: tuple[str, ...] = ()) -> dict:
    """The keys every result JSON starts with: remeco version, seed, network hash, the
    configuration in force (``config``: network, data, chip, ...) and the units of the
    fields named in ``units`` (:data:`UNITS`)."""
    return {
        "remeco_version": __version__,
        "seed": int(seed),
        "network_sha256": network_sha256,
        "config": config,
        "units": {k: UNITS[k] for k in units},
    }
