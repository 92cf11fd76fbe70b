"""``remeco.evaluate``: a network on chip instances under redundancy plans, as a table.

The Python face of the campaign machinery that ``remeco reproduce`` uses: the network is
mapped with the chip's datapath under every plan (:func:`~remeco.models.network.map_network`,
ADC ranges from :func:`~remeco.models.network.calibrate_adc_shifts` on calibration images,
never on the evaluated ones), every chip instance ``(seed, instance)`` is programmed
(:func:`~remeco.models.network.program_network`) and run by the engine
(:class:`~remeco.host.engines.EngineCache`), one row per (instance, plan), through
:func:`~remeco.host.campaign.run_campaign`. With ``store`` naming a SQLite file the rows
are kept in a :class:`~remeco.host.store.ResultStore` as they finish: an interrupted call
repeated with the same arguments computes only the missing rows, and a finished one
computes nothing.

The campaign's identity (its spec) holds the content hashes of the network and of the
images and labels, the chip, the plans, the ADC shifts and the seed; the data themselves
are written next to the store (``<store>.data/``, named by content) for the workers to
load. The engine and the number of workers are not part of it: they do not change the rows.

Sensitivity
-----------
The plans ``sensitive_neuron``, ``msb`` and ``sensitive_layer`` need the network's neuron
sensitivity. Pass ``sensitivity=`` either a :class:`~remeco.models.sensitivity.Sensitivity`
or a pair ``(train_images, train_labels)``: it is then computed by
:func:`remeco.models.convert.compute_sensitivity` from the float model the network
carries when it came from :func:`remeco.from_torch` (or from ``module=``, the torch
module it was made from). Training data, as the paper does; never the test images.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from remeco.host.campaign import _instances, limit_worker_threads, run_campaign
from remeco.host.cli import UserError
from remeco.host.engines import DEFAULT_ENGINE, ENGINES, EngineCache, check_engine
from remeco.host.paths import check_out_dir, check_out_file
from remeco.host.store import ResultStore, canonical_json
from remeco.models.cachefile import DAMAGED, warn_damaged
from remeco.models.chip import ChipParams, network_datapath_problem
from remeco.models.quantized import QuantizedNetwork, atomic_savez
from remeco.models.redundancy import PLAN_NAMES, RedundancyPlan, make_plan

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

    from remeco.models.sensitivity import Sensitivity

__all__ = ["EvaluationError", "SENSITIVITY_PLANS", "COLUMNS", "evaluate"]

#: Named plans that need the network's sensitivity.
SENSITIVITY_PLANS = ("sensitive_neuron", "msb", "sensitive_layer")

#: Columns of the table :func:`evaluate` returns, in order.
COLUMNS = (
    "instance", "plan", "accuracy", "correct", "images", "reference_accuracy", "area_mm2",
    "energy_j_per_image", "energy_j_per_10k_images", "extra_columns", "copies", "chip", "seed", "network",
    "cost_preset",
)


class EvaluationError(ValueError):
    """Bad arguments to :func:`evaluate` (one line naming the argument)."""


# ----------------------------------------------------------------------------- worker side

# Per-process memo of one campaign's shared state, keyed by the spec's canonical JSON.
_MEMO: dict[str, dict] = {}


def _context(spec: dict, data_dir: str) -> dict:
    from remeco.models.emulation import EmulationFormat
    from remeco.models.network import map_network

    key = canonical_json(spec)
    if key not in _MEMO:
        _MEMO.clear()
        folder = Path(data_dir)
        network = QuantizedNetwork.load(folder / f"network-{spec['network_sha256'][:16]}.npz")
        with np.load(folder / f"images-{spec['images_sha256'][:16]}.npz", allow_pickle=False) as data:
            images, labels = data["images"], data["labels"]
        fmt = EmulationFormat(**spec["chip"]["datapath"])
        shifts = tuple(spec["adc_shifts"])
        _MEMO[key] = {
            "engines": {},
            "mapped": {name: map_network(network, RedundancyPlan.from_dict(plan), fmt, shifts)
                       for name, plan in spec["plans"].items()},
            "images": images,
            "labels": labels,
            "params": ChipParams.from_dict(spec["chip"]),
        }
    return _MEMO[key]


def evaluate_instance(spec: dict, instance: int, plans: list[str], *, data_dir: str,
                      engine: str = DEFAULT_ENGINE, device: str | None = None,
                      pool_worker: bool = True) -> dict[str, dict]:
    """Campaign task: accuracy of every plan in ``plans`` on chip instance ``(spec["seed"], instance)``.

    ``data_dir`` (where the network and images are), ``engine``, ``device`` and
    ``pool_worker`` are bound with :func:`functools.partial`, outside the spec: they do not
    change the rows. A pool worker is made single-threaded (one worker per core); in the
    caller's own process the thread settings are left alone.
    """
    from remeco.models.network import program_network

    if pool_worker:
        limit_worker_threads()
    ctx = _context(spec, data_dir)
    engines = ctx["engines"].setdefault((engine, device), EngineCache(engine, device))
    out = {}
    for name in plans:
        mapped = ctx["mapped"][name]
        chip = program_network(mapped, ctx["params"], seed=spec["seed"], instance=instance)
        logits = engines.logits(mapped, ctx["images"], chip, ctx["params"])
        correct = int((logits.argmax(axis=1) == ctx["labels"]).sum())
        out[name] = {"accuracy": correct / len(ctx["labels"]), "correct": correct, "images": len(ctx["labels"])}
    return out


# ----------------------------------------------------------------------------- caller side


def _sha256(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.data)
    return digest.hexdigest()


def _load_images(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return data["images"], data["labels"]


def _keep(path: Path, digest: str, digest_of, write) -> None:
    """Make the content-named data file ``path`` (shared by resumed calls, read by the
    workers) hold the data of ``digest``: kept when it loads and matches, else written
    atomically; a damaged one (truncated, edited) is named in one warning line
    (:mod:`remeco.models.cachefile`), never handed to the workers."""
    if path.exists():
        try:
            if digest_of(path) == digest:
                return
            raise ValueError("its content is not the data its name says")
        except (*DAMAGED, zipfile.BadZipFile, zlib.error) as exc:
            warn_damaged(path, exc)
    write(path)


def _chip(chip: ChipParams | str | os.PathLike | None) -> ChipParams:
    if chip is None:
        return ChipParams()
    if isinstance(chip, ChipParams):
        return chip
    if isinstance(chip, (str, os.PathLike)):
        return ChipParams.load(chip)
    raise EvaluationError(f"chip must be a ChipParams, a preset name or a .json/.toml file, got {type(chip).__name__}")


def _sensitivity(network, sensitivity, module) -> Sensitivity | None:
    from remeco.models.sensitivity import Sensitivity

    if sensitivity is None or isinstance(sensitivity, Sensitivity):
        return sensitivity
    if isinstance(sensitivity, (tuple, list)) and len(sensitivity) == 2:
        from remeco.models.convert import compute_sensitivity

        return compute_sensitivity(network, sensitivity[0], sensitivity[1], module=module)
    raise EvaluationError("sensitivity must be a remeco Sensitivity or a pair (train_images, train_labels), got "
                          f"{type(sensitivity).__name__}")


def _plans(plans, network: QuantizedNetwork, n_slices: int, sensitivity, module) -> dict[str, RedundancyPlan]:
    if isinstance(plans, (str, RedundancyPlan)) or not isinstance(plans, Sequence) or not plans:
        raise EvaluationError(f"plans must be a non-empty sequence of plan names ({', '.join(PLAN_NAMES)}) or "
                              "RedundancyPlan objects")
    sizes = [layer.out_features for layer in network.layers]
    needs = [p for p in plans if isinstance(p, str) and p in SENSITIVITY_PLANS]
    if needs and sensitivity is None:
        raise EvaluationError(f"plan {needs[0]!r} needs the network's sensitivity: pass sensitivity=(train_images, "
                              "train_labels) or a Sensitivity")
    sens = _sensitivity(network, sensitivity, module) if needs else None
    out: dict[str, RedundancyPlan] = {}
    for p in plans:
        if isinstance(p, str):
            if p not in PLAN_NAMES:
                raise EvaluationError(f"unknown plan {p!r}; named plans: {', '.join(PLAN_NAMES)} (or pass a "
                                      "RedundancyPlan)")
            plan = make_plan(p, sizes, sens, n_slices=n_slices)
        elif isinstance(p, RedundancyPlan):
            plan = p
            shapes = [np.asarray(k).shape for k in plan.copies_log2]
            if shapes != [(n, n_slices) for n in sizes]:
                raise EvaluationError(f"plan {plan.name!r} has layers of shape {shapes}; the network on this chip "
                                      f"needs {[(n, n_slices) for n in sizes]} (neurons, slices)")
        else:
            raise EvaluationError(f"plans must hold plan names or RedundancyPlan objects, got {type(p).__name__}")
        if plan.name in out:
            raise EvaluationError(f"plan name {plan.name!r} appears twice")
        out[plan.name] = plan
    return out


def _array(name: str, value) -> np.ndarray:
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested lists and the like
        raise EvaluationError(f"{name} must be an array, got {type(value).__name__} NumPy cannot convert "
                              f"({str(exc).splitlines()[0]})") from None


def _check_data(network: QuantizedNetwork, images, labels) -> tuple[np.ndarray, np.ndarray]:
    images, labels = _array("images", images), _array("labels", labels)
    if images.dtype != np.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != tuple(network.input_shape) \
            or len(images) == 0:
        raise EvaluationError(f"images must be non-empty uint8 raw pixels of shape (N, {tuple(network.input_shape)}), "
                              f"got {images.dtype} {images.shape}")
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise EvaluationError(f"labels must be {len(images)} integers, got {labels.dtype} {labels.shape}")
    if labels.min() < 0 or labels.max() >= network.num_classes:
        raise EvaluationError(f"labels must lie in 0..{network.num_classes - 1}")
    return images, labels.astype(np.int64)


def _costs(mapped, preset: str) -> dict[str, float]:
    from remeco.models.cost import estimate

    copies = 1 << mapped.plan.committee_log2
    vectors = [int(np.prod(layer.positions)) for layer in mapped.network.layers]
    report = estimate(list(mapped.layers) * copies, preset, images=10_000, vectors_per_image=vectors * copies)
    return {"area_mm2": report.area_mm2, "energy_j_per_image": report.energy_per_image_j,
            "energy_j_per_10k_images": report.energy_j}


def evaluate(
    network: QuantizedNetwork,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    plans: Sequence[str | RedundancyPlan] = ("base",),
    instances: int | Sequence[int] = 10,
    chip: ChipParams | str | os.PathLike | None = None,
    seed: int = 0,
    workers: int | None = None,
    store: str | os.PathLike | None = None,
    engine: str = DEFAULT_ENGINE,
    device: str | None = None,
    sensitivity: Sensitivity | tuple[np.ndarray, np.ndarray] | None = None,
    module: nn.Module | None = None,
    calibration_images: np.ndarray | None = None,
    cost: str | os.PathLike = "remeco_table2",
    progress: bool = False,
) -> pd.DataFrame:
    """Accuracy, area and energy of a network on chip instances under redundancy plans.

    Parameters
    ----------
    network:
        The integer network: from :func:`remeco.from_torch`, or
        :func:`remeco.models.nn.export` of a built-in one.
    images, labels:
        uint8 raw pixels ``(N, C, H, W)`` and integer labels to measure accuracy on.
    plans:
        Plan names (:data:`remeco.models.redundancy.PLAN_NAMES`: ``base``, ``committee``,
        ``layer_averaging``, ``sensitive_neuron``, ``msb``, ``sensitive_layer``) and/or
        :class:`~remeco.models.redundancy.RedundancyPlan` objects (user-defined plans,
        e.g. from :func:`~remeco.models.redundancy.make_plan` with other parameters).
    instances:
        Number of chip instances (indices ``0..n-1``) or the indices themselves.
    chip:
        :class:`~remeco.models.chip.ChipParams`, a preset name (``"paper"``, ``"isaac"``)
        or a ``.json`` / ``.toml`` file; default the paper's chip. Its ``datapath`` is the
        mapping's format (tile size, slices, ADC bits).
    seed:
        Campaign seed: chip instance ``i`` is drawn from ``(seed, i)`` only, so every plan
        meets the same chip instances.
    workers:
        ``None`` or 1: evaluate in this process. More: a process pool of that many workers
        (the calling script must then guard its top level with
        ``if __name__ == "__main__":``, as for any ``spawn`` pool).
    store:
        A SQLite file to keep the rows in and resume from (its data folder is
        ``<store>.data``); ``None``: a temporary one, removed afterwards.
    engine:
        ``"native"`` (fused kernel), ``"torch"`` or ``"reference"``; identical rows.
    device:
        Torch device of the ``"torch"`` engine (``"cpu"`` by default, ``"cuda"``, ...).
    sensitivity:
        For the sensitivity-guided plans: a ``Sensitivity`` or ``(train_images,
        train_labels)`` (see the module docstring).
    module:
        The torch module the network was made from, if the network carries no float
        model (only used to compute the sensitivity).
    calibration_images:
        uint8 training images for the ADC ranges; default the ones kept by
        :func:`remeco.from_torch`. Required for other networks.
    cost:
        Area / energy preset (:func:`remeco.models.cost.load_preset`): ``"remeco_table2"``
        (default), ``"isaac"`` or a JSON file.
    progress:
        Show a progress bar on a terminal.

    Returns
    -------
    pandas.DataFrame
        One row per (instance, plan), ordered by instance then plan, with the columns of
        :data:`COLUMNS`: ``accuracy`` and ``reference_accuracy`` (the exact integer
        network, no crossbar) as fractions 0..1; ``area_mm2``; ``energy_j_per_image``
        (inference) and ``energy_j_per_10k_images`` (10,000 images plus programming once,
        the paper's Table 4 unit); ``extra_columns`` (physical columns added by the plan,
        a fraction of the base's); ``copies`` (committee copies); ``chip``
        (:meth:`ChipParams.describe`); ``network`` (name and hash prefix). ``df.attrs``
        holds the chip parameters, the plans and the campaign id.

    Raises
    ------
    EvaluationError
        One line naming the bad argument (a ``ValueError``); also
        :class:`~remeco.models.chipfile.ChipConfigError` for a bad chip file.
    """
    import pandas as pd

    from remeco.models.network import calibrate_adc_shifts, map_network

    if not isinstance(network, QuantizedNetwork):
        raise EvaluationError(f"network must be a QuantizedNetwork (remeco.from_torch(module, calibration_images) "
                              f"makes one), got {type(network).__name__}")
    images, labels = _check_data(network, images, labels)
    params = _chip(chip)
    fmt = params.datapath
    problem = network_datapath_problem(params)
    if problem:
        raise EvaluationError(f"chip: {problem}")
    if engine not in ENGINES:
        raise EvaluationError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    try:
        check_engine(engine, device)
    except UserError as exc:  # the command line's wording names --device; say device=
        raise EvaluationError(str(exc).replace("--device", "device").replace("--engine", "engine")) from None
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise EvaluationError(f"workers must be a positive integer or None, got {workers!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise EvaluationError(f"seed must be a non-negative integer, got {seed!r}")
    try:
        wanted_list = _instances(instances)
    except ValueError as exc:
        raise EvaluationError(str(exc)) from None
    if not wanted_list:
        raise EvaluationError(f"instances must name at least one chip instance, got {instances!r}")
    if not isinstance(cost, (str, os.PathLike)):
        raise EvaluationError(f"cost must be a cost preset name or a .json file, got {type(cost).__name__}")
    if store is not None:
        if not isinstance(store, (str, os.PathLike)):
            raise EvaluationError(f"store must be a path of a SQLite file or None, got {type(store).__name__}")
        try:
            check_out_file(store, "store")
            check_out_dir(Path(store).expanduser().with_name(Path(store).name + ".data"), "store's data folder")
        except UserError as exc:
            raise EvaluationError(str(exc)) from None
    calib = calibration_images if calibration_images is not None else getattr(network, "calibration_images", None)
    if calib is None:
        raise EvaluationError("calibration_images (training images for the ADC ranges) are required for a network "
                              "that did not come from remeco.from_torch")
    calib = _array("calibration_images", calib)
    if calib.dtype != np.uint8 or tuple(calib.shape[1:]) != tuple(network.input_shape) or len(calib) == 0:
        raise EvaluationError(f"calibration_images must be uint8 of shape (N, {tuple(network.input_shape)}), got "
                              f"{calib.dtype} {calib.shape}")
    plan_map = _plans(plans, network, fmt.n_slices, sensitivity, module)
    try:
        shifts = calibrate_adc_shifts(network, fmt, calib)
        mapped = {name: map_network(network, plan, fmt, shifts) for name, plan in plan_map.items()}
        costs = {name: _costs(m, cost) for name, m in mapped.items()}
    except ValueError as exc:
        raise EvaluationError(str(exc).splitlines()[0]) from None
    network_sha = network.sha256()
    images_sha = _sha256(images, labels)
    spec = {
        "kind": "evaluate",
        "network": network.name,
        "network_sha256": network_sha,
        "images_sha256": images_sha,
        "images": len(images),
        "chip": params.to_dict(),
        "plans": {name: plan.to_dict() for name, plan in plan_map.items()},
        "adc_shifts": list(shifts),
        "seed": int(seed),
    }
    with ExitStack() as stack:
        if store is None:
            db = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="remeco-evaluate-"))) / "results.sqlite"
        else:
            db = Path(store).expanduser()
        data_dir = db.with_name(db.name + ".data")
        data_dir.mkdir(parents=True, exist_ok=True)
        _keep(data_dir / f"network-{network_sha[:16]}.npz", network_sha,
              lambda path: QuantizedNetwork.load(path).sha256(), network.save)
        _keep(data_dir / f"images-{images_sha[:16]}.npz", images_sha, lambda path: _sha256(*_load_images(path)),
              lambda path: atomic_savez(path, {"images": images, "labels": labels}))
        result_store = stack.enter_context(ResultStore(db))
        serial = workers is None or workers == 1
        task = functools.partial(evaluate_instance, data_dir=str(data_dir), engine=engine, device=device,
                                 pool_worker=not serial)
        cid = run_campaign(spec, task, instances=instances, plans=list(plan_map), store=result_store,
                           executor="serial" if serial else "process", workers=None if serial else workers,
                           group_by_instance=True, progress=progress)
        wanted = set(wanted_list)
        rows = [r for r in result_store.results(cid) if r["instance"] in wanted and r["plan"] in plan_map]
    reference = float(np.mean(network.predict(images) == labels))
    description = params.describe()
    order = {name: i for i, name in enumerate(plan_map)}
    table = []
    for r in sorted(rows, key=lambda r: (r["instance"], order[r["plan"]])):
        plan = plan_map[r["plan"]]
        m = r["metrics"]
        table.append({
            "instance": r["instance"], "plan": r["plan"], "accuracy": m["accuracy"], "correct": m["correct"],
            "images": m["images"], "reference_accuracy": reference, **costs[r["plan"]],
            "extra_columns": plan.extra_columns_fraction, "copies": 1 << plan.committee_log2,
            "chip": description, "seed": int(seed), "network": f"{network.name}@{network_sha[:12]}",
            "cost_preset": str(cost),
        })
    df = pd.DataFrame(table, columns=list(COLUMNS))
    df.attrs.update({"campaign": cid, "chip": params.to_dict(), "plans": spec["plans"], "adc_shifts": list(shifts)})
    return df
