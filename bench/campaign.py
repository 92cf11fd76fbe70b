"""Campaign throughput: (test image x chip instance) pairs per second, engine against its peers.

One run measures, side by side, on the same network, images and chip instances:

- the engine (:mod:`remeco.models.engine`, the default of every campaign) on one core and
  on two single-threaded worker processes, each task programming its chip instance and
  evaluating every image, as ``remeco reproduce`` does;
- the reference executor (``models.network.infer(executor="emulation")``) on one core;
- ideal float PyTorch of the same network (dequantized weights) on 1 and 2 threads;
- IBM aihwkit's analog inference of the same network, when an interpreter with aihwkit
  is given (``--aihwkit-python`` / ``REMECO_AIHWKIT_PYTHON``: aihwkit ships as a source
  distribution only and is not part of remeco's environment);

checks that the engine's logits equal the reference's (``bit_exact``), prints the ratios
and the time split (programming, engine preparation, inference) and projects a
1,000 instances x 1,000 images x 6 plans campaign from the measured six-plan rate.

Targets (issue 9), LeNet-5 on two cores: >= 20,000 pairs/s (base plan), >= 0.4 of the ideal
float network's images/s, >= 10x the reference per core; paper LeNet >= 10x the reference
per core; the projected campaign <= 10 minutes.

Run: ``python bench/campaign.py [--net lenet5|lenet_paper] [--images 1000] [--instances 8] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

TARGET_PAIRS = 20_000
TARGET_FLOAT_FRACTION = 0.4
TARGET_REFERENCE_RATIO = 10.0
CAMPAIGN = (1_000, 1_000, 6)  # instances x images x plans
TARGET_CAMPAIGN_S = 600.0


def _setup(net: str, images: int) -> dict:
    """Network, the six plans mapped, test images: what every worker shares."""
    from remeco.host.reproduce import prepare
    from remeco.models.network import calibrate_adc_shifts, map_network
    from remeco.models.redundancy import PLAN_NAMES, make_plan

    out = os.path.join(tempfile.gettempdir(), f"remeco-bench-campaign-{net}")
    ctx = prepare(net=net, out_dir=out, plot=False, log=lambda *_: None)
    network, fmt = ctx["network"], ctx["fmt"]
    from remeco.models.data import load_dataset

    train, test = load_dataset(ctx["dataset"])
    shifts = calibrate_adc_shifts(network, fmt, train.images[:500])
    sizes = [layer.out_features for layer in network.layers]
    mapped = {name: map_network(network, make_plan(name, sizes, ctx["sensitivity"], n_slices=fmt.n_slices), fmt, shifts)
              for name in PLAN_NAMES}
    n = min(images, len(test.images))
    return {"network": network, "software": float(ctx["trained"].int_accuracy), "mapped": mapped,
            "images": test.images[:n], "labels": test.labels[:n], "chip": ctx["chip"]}


_STATE: dict = {}


def _init_worker(state: dict, warm: bool = False) -> None:
    from remeco.host.campaign import limit_worker_threads

    limit_worker_threads()
    _STATE.clear()
    _STATE.update(state)
    _STATE["engines"] = {}
    if warm:  # every worker loads the kernel, builds its engines and programs once before timing
        _task((10_000, list(state["mapped"]), "native", 8))


def _task(args) -> dict:
    """One chip instance under the given plans, as a campaign task: program, then evaluate.

    Returns pairs, correct and the seconds spent programming, preparing and inferring.
    """
    instance, plans, engine, images = args
    from remeco.models.engine import Engine
    from remeco.models.network import infer, program_network

    x, y = _STATE["images"][:images], _STATE["labels"][:images]
    out = {"pairs": 0, "correct": 0, "program_s": 0.0, "prepare_s": 0.0, "infer_s": 0.0}
    for name in plans:
        mapped = _STATE["mapped"][name]
        t0 = time.perf_counter()
        chip = program_network(mapped, _STATE["chip"], seed=0, instance=instance)
        t1 = time.perf_counter()
        if engine == "reference":
            t2 = t1
            logits = infer(mapped, x, executor="emulation", programmed=chip)
        else:
            eng = _STATE["engines"].get(name) or _STATE["engines"].setdefault(name, Engine(mapped, engine))
            prepared = eng.prepare(chip)
            t2 = time.perf_counter()
            logits = eng.infer(x, prepared)
        t3 = time.perf_counter()
        out["pairs"] += len(x)
        out["correct"] += int((logits.argmax(1) == y).sum())
        out["program_s"] += t1 - t0
        out["prepare_s"] += t2 - t1
        out["infer_s"] += t3 - t2
    return out


def _serial(state: dict, instances, plans, engine: str, images: int) -> dict:
    """Tasks in this process (one core); the first instance is a warm-up, not counted."""
    _init_worker(state)
    _task((instances[0], plans, engine, images))
    return _sum([_task((i, plans, engine, images)) for i in instances[1:]])


def _sum(parts: list[dict]) -> dict:
    return {k: sum(p[k] for p in parts) for k in parts[0]}


def _pool(state: dict, workers: int, instances, plans, engine: str, images: int) -> tuple[dict, float]:
    """Tasks on ``workers`` single-threaded processes; returns the sums and the wall time."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(state, True)) as pool:
        # pool.map of one warm-up task per worker may hand both to one worker: wait until
        # every worker has started (each warms itself up in the initializer)
        list(pool.map(time.sleep, [0.5] * (2 * workers)))
        t0 = time.perf_counter()
        parts = list(pool.map(_task, [(i, plans, engine, images) for i in instances]))
        wall = time.perf_counter() - t0
    return _sum(parts), wall


def _bit_exact(state: dict, plans, images: int) -> bool:
    """The engine's logits equal the reference executor's on one chip instance per plan."""
    from remeco.models.engine import Engine
    from remeco.models.network import infer, program_network

    x = state["images"][:images]
    for name in plans:
        mapped = state["mapped"][name]
        chip = program_network(mapped, state["chip"], seed=0, instance=7)
        ref = infer(mapped, x, executor="emulation", programmed=chip)
        if not np.array_equal(Engine(mapped).infer(x, chip), ref):
            return False
    return True


def _float_model(network):
    import torch
    import torch.nn.functional as F

    layers = []
    for layer in network.layers:
        w = torch.tensor(layer.weight.astype(np.float32) * layer.weight_scale)
        b = torch.tensor(layer.bias.astype(np.float32) * layer.input_scale * layer.weight_scale)
        layers.append((layer, w, b))

    def forward(x):
        for layer, w, b in layers:
            if layer.kind == "conv":
                wt = w.T.reshape(layer.weight_shape)
                x = F.conv2d(x, wt, b, stride=layer.stride, padding=layer.padding)
            else:
                x = F.linear(x.flatten(1), w.T, b)
            if layer.relu:
                x = F.relu(x)
                if layer.pool > 1:
                    x = F.max_pool2d(x, layer.pool)
        return x

    return forward


def _float_rate(network, images: np.ndarray, threads: int) -> tuple[float, float]:
    import torch

    torch.set_num_threads(threads)
    forward = _float_model(network)
    x = torch.tensor(images, dtype=torch.float32) / 255.0
    with torch.no_grad():
        forward(x[:50])
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            out = forward(x)
            best = min(best, time.perf_counter() - t0)
    return len(x) / best, out.numpy()


# Runs inside the aihwkit interpreter: LeNet-5 from the given float weights, converted to
# analog tiles, programmed once per chip instance, timed on the given images.
_AIHWKIT_SCRIPT = r"""
import json, sys, time
import numpy as np, torch
from torch import nn
from aihwkit.nn.conversion import convert_to_analog
from aihwkit.simulator.configs import InferenceRPUConfig
torch.set_num_threads(1)
d = np.load(sys.argv[1])
instances = int(sys.argv[2])
layers, i = [], 0
while f"w{i}" in d:
    w, b, kind = torch.tensor(d[f"w{i}"]), torch.tensor(d[f"b{i}"]), str(d[f"k{i}"])
    if kind == "conv":
        m = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2])
    else:
        layers.append(nn.Flatten()) if i and str(d[f"k{i-1}"]) == "conv" else None
        m = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        m.weight.copy_(w); m.bias.copy_(b)
    layers.append(m)
    if f"w{i+1}" in d:
        layers.append(nn.ReLU())
        if int(d[f"p{i}"]) > 1:
            layers.append(nn.MaxPool2d(int(d[f"p{i}"])))
    i += 1
digital = nn.Sequential(*layers).eval()
x = torch.tensor(d["x"]); y = d["y"]
analog = convert_to_analog(digital, InferenceRPUConfig()).eval()
correct, t0 = 0, time.perf_counter()
with torch.no_grad():
    for inst in range(instances):
        torch.manual_seed(inst)
        analog.program_analog_weights()
        out = torch.cat([analog(x[k:k + 250]) for k in range(0, len(x), 250)])
        correct += int((out.argmax(1).numpy() == y).sum())
dt = time.perf_counter() - t0
import aihwkit
print(json.dumps({"pairs_per_s": instances * len(x) / dt, "accuracy": correct / (instances * len(x)),
                  "version": aihwkit.__version__}))
"""


def _aihwkit_rate(python: str, network, images: np.ndarray, labels: np.ndarray, instances: int) -> dict:
    arrays = {"x": images.astype(np.float32) / 255.0, "y": labels}
    for i, layer in enumerate(network.layers):
        arrays[f"w{i}"] = (layer.weight.astype(np.float32) * layer.weight_scale).T.reshape(layer.weight_shape)
        arrays[f"b{i}"] = layer.bias.astype(np.float32) * layer.input_scale * layer.weight_scale
        arrays[f"k{i}"] = np.array(layer.kind)
        arrays[f"p{i}"] = np.array(layer.pool)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "lenet.npz")
        np.savez(path, **arrays)
        done = subprocess.run([python, "-c", _AIHWKIT_SCRIPT, path, str(instances)], capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"})
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "aihwkit run failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--net", default="lenet5", choices=("lenet5", "lenet_paper"))
    ap.add_argument("--images", type=int, default=1000, help="test images per chip instance (default 1000)")
    ap.add_argument("--instances", type=int, default=8, help="chip instances per measurement (default 8)")
    ap.add_argument("--reference-images", type=int, default=None,
                    help="images per instance for the reference executor (default: --images for lenet5, 100 for "
                         "lenet_paper)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--aihwkit-python", default=os.environ.get("REMECO_AIHWKIT_PYTHON"),
                    help="python interpreter of an environment with aihwkit installed")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args()
    if args.instances < 2 or args.images < 1 or args.workers < 1:
        ap.error("--instances must be >= 2, --images and --workers >= 1")
    say = (lambda *a: None) if args.json else print
    from remeco.models.engine import Engine
    from remeco.models.redundancy import PLAN_NAMES

    state = _setup(args.net, args.images)
    n = len(state["images"])
    ref_images = args.reference_images or (n if args.net == "lenet5" else min(n, 100))
    isa = Engine(state["mapped"]["base"]).isa or "torch path"
    say(f"{args.net}, {n} test images, software accuracy {100 * state['software']:.2f} %; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}; engine kernel: {isa}")
    base, six = ["base"], list(PLAN_NAMES)
    instances = list(range(args.instances))

    exact = _bit_exact(state, six, min(n, 200))
    one = _serial(state, instances[:3], base, "native", n)  # 2 counted instances, one core
    ref = _serial(state, instances[:3], base, "reference", ref_images)
    two, wall2 = _pool(state, args.workers, instances, base, "native", n)
    mix, wall6 = _pool(state, args.workers, instances[: max(2, args.instances // 2)], six, "native", n)
    f1, _ = _float_rate(state["network"], state["images"], 1)
    f2, logits = _float_rate(state["network"], state["images"], args.workers)

    def rate(r: dict) -> float:
        return r["pairs"] / (r["program_s"] + r["prepare_s"] + r["infer_s"])

    rate1, rate_ref, rate2, rate6 = rate(one), rate(ref), two["pairs"] / wall2, mix["pairs"] / wall6
    campaign_s = CAMPAIGN[0] * CAMPAIGN[1] * CAMPAIGN[2] / rate6
    split = {k: one[k] / one["pairs"] * 1e6 for k in ("program_s", "prepare_s", "infer_s")}
    result = {
        "network": args.net, "images": n, "workers": args.workers, "isa": isa, "bit_exact": exact,
        "pairs_per_s_1c": rate1, "pairs_per_s_2w": rate2, "pairs_per_s_2w_six_plans": rate6,
        "reference_pairs_per_s_1c": rate_ref, "ideal_images_per_s_1t": f1, "ideal_images_per_s_2t": f2,
        "ratio_vs_reference_1c": rate1 / rate_ref, "ratio_vs_ideal_2t": rate2 / f2,
        "us_per_pair_1c": {k[:-2]: v for k, v in split.items()},
        "projected_campaign_s": campaign_s,
        "accuracy_engine": one["correct"] / one["pairs"], "accuracy_ideal": float((logits.argmax(1) == state["labels"]).mean()),
        "targets": {
            "pairs_per_s_2w": TARGET_PAIRS if args.net == "lenet5" else None,
            "ratio_vs_ideal_2t": TARGET_FLOAT_FRACTION if args.net == "lenet5" else None,
            "ratio_vs_reference_1c": TARGET_REFERENCE_RATIO,
            "projected_campaign_s": TARGET_CAMPAIGN_S if args.net == "lenet5" else None,
        },
    }
    if args.aihwkit_python:
        try:
            ai = _aihwkit_rate(args.aihwkit_python, state["network"], state["images"], state["labels"], 2)
            result["aihwkit_pairs_per_s_1t"] = ai["pairs_per_s"]
            result["ratio_vs_aihwkit_1c"] = rate1 / ai["pairs_per_s"]
        except (OSError, RuntimeError) as exc:
            say(f"aihwkit: could not run with {args.aihwkit_python}: {exc}")
    if args.json:
        print(json.dumps(result))
        return
    w = args.workers
    print(f"\nbit-exact with the reference executor on every plan: {'yes' if exact else 'NO'}")
    print("throughput (image x chip-instance pairs per second, programming included; base plan unless noted)")
    rows = [
        ("engine, 1 core", rate1), (f"engine, {w} workers", rate2), (f"engine, {w} workers, six plans", rate6),
        ("reference executor, 1 core", rate_ref), ("ideal float PyTorch, 1 thread", f1),
        (f"ideal float PyTorch, {w} threads", f2),
    ]
    if "aihwkit_pairs_per_s_1t" in result:
        rows.append(("aihwkit analog, 1 thread", result["aihwkit_pairs_per_s_1t"]))
    for name, r in rows:
        print(f"  {name:<34} {r:12,.0f}")
    print(f"per pair on one core: programming {split['program_s']:.1f} us, engine preparation "
          f"{split['prepare_s']:.1f} us, inference {split['infer_s']:.1f} us")
    print(f"ratios: engine / reference (1 core) {rate1 / rate_ref:.1f}x; engine {w} workers / ideal float {w} threads "
          f"{rate2 / f2:.3f}" + (f"; engine / aihwkit (1 core) {result['ratio_vs_aihwkit_1c']:.2f}x"
                                  if "ratio_vs_aihwkit_1c" in result else ""))
    if not args.aihwkit_python:
        print("aihwkit: not measured (source distribution only; build it in its own environment and pass "
              "--aihwkit-python)")
    print(f"projected {CAMPAIGN[0]:,} instances x {CAMPAIGN[1]:,} images x {CAMPAIGN[2]} plans on {w} workers: "
          f"{campaign_s / 60:.1f} min")
    t = result["targets"]
    checks = [("ratio_vs_reference_1c", rate1 / rate_ref, ">=")]
    if t["pairs_per_s_2w"]:
        checks += [("pairs_per_s_2w", rate2, ">="), ("ratio_vs_ideal_2t", rate2 / f2, ">="),
                   ("projected_campaign_s", campaign_s, "<=")]
    for key, value, op in checks:
        ok = value >= t[key] if op == ">=" else value <= t[key]
        print(f"target {key} {op} {t[key]:,}: {value:,.2f} -> {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
