"""Campaign throughput: non-ideal LeNet-5 inference in (image x chip-instance) pairs per second.

The full stack per chip instance: stuck-at faults + D2D variation after write-and-verify
+ fast IR-drop + 2 x 4-bit slices + 8-bit ADC (the default ChipParams), programmed from
(seed, instance), then the fixed-point emulation model (bit-exact with the RTL) on the
test images. Printed side by side with:

- ideal float PyTorch inference of the same network (dequantized weights; the bound);
- IBM aihwkit's analog inference of the same network if it is installed (it ships as a
  source distribution only; the script says why it is not measured otherwise).

Targets: >= 20,000 pairs / s on this 2-core machine; a paper-scale campaign (1,000
instances x 10,000 images x 6 plans) projected at <= 1 hour.

Run: ``python bench/campaign.py [--images 1000] [--instances 4]``.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

TARGET_PAIRS = 20_000
PAPER_PAIRS = 1_000 * 10_000 * 6


def _setup(images: int):
    from remeco.models.data import load_dataset
    from remeco.models.emulation import EmulationFormat
    from remeco.models.network import calibrate_adc_shifts, map_network
    from remeco.models.nn import get_trained
    from remeco.models.redundancy import make_plan

    train, test = load_dataset()
    tm = get_trained("lenet5", train, test)
    net = tm.network
    fmt = EmulationFormat()
    mapped = map_network(net, make_plan("base", [l.out_features for l in net.layers]), fmt,
                         calibrate_adc_shifts(net, fmt, train.images[:500]))
    return tm, mapped, test.images[:images], test.labels[:images]


_STATE: dict = {}


def _worker_pairs(args) -> tuple[int, float, int]:
    """One chip instance: program it and run every image; returns (pairs, seconds, correct)."""
    instance, images, executor = args
    from remeco.host.campaign import limit_worker_threads
    from remeco.models.chip import ChipParams
    from remeco.models.network import infer, program_network

    limit_worker_threads()
    if images not in _STATE:
        _STATE.clear()
        _STATE[images] = _setup(images)
    _, mapped, x, y = _STATE[images]
    params = ChipParams()
    t0 = time.perf_counter()
    chip = program_network(mapped, params, seed=0, instance=instance)
    logits = infer(mapped, x, executor=executor, programmed=chip, params=params)
    dt = time.perf_counter() - t0
    return len(x), dt, int((logits.argmax(1) == y).sum())


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--instances", type=int, default=4, help="chip instances for the 2-worker run")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    tm, mapped, x, y = _setup(args.images)
    print(f"LeNet-5, {args.images} test images, software accuracy {100 * tm.int_accuracy:.2f} %; {cores} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")

    # one core, in process
    _STATE[args.images] = (tm, mapped, x, y)
    rows = []
    for executor in ("emulation", "physics"):
        _worker_pairs((0, args.images, executor))  # warm-up (caches, page faults)
        n, dt, correct = _worker_pairs((1, args.images, executor))
        rows.append((f"{executor}, 1 core", n / dt, correct / n))

    # all cores: a process pool, one instance per task (as a campaign runs)
    with ProcessPoolExecutor(max_workers=cores) as pool:
        list(pool.map(_worker_pairs, [(i, args.images, "emulation") for i in range(cores)]))  # warm workers
        t0 = time.perf_counter()
        res = list(pool.map(_worker_pairs, [(i, args.images, "emulation") for i in range(args.instances)]))
        wall = time.perf_counter() - t0
    pool_rate = sum(r[0] for r in res) / wall
    rows.append((f"emulation, {cores} workers", pool_rate, np.mean([r[2] / r[0] for r in res])))

    f1, _ = _float_rate(tm.network, x, 1)
    fall, logits = _float_rate(tm.network, x, cores)
    float_acc = float((logits.argmax(1) == y).mean())

    print("\nthroughput (image x chip-instance pairs per second; accuracy on the non-ideal chips)")
    print(f"  {'executor':<26} {'pairs/s':>10} {'accuracy':>9}")
    for name, rate, acc in rows:
        print(f"  {name:<26} {rate:10.0f} {100 * acc:8.2f} %")
    print(f"  {'ideal float PyTorch, 1 thread':<26} {f1:10.0f} {100 * float_acc:8.2f} %")
    print(f"  {'ideal float PyTorch, ' + str(cores) + ' thr':<26} {fall:10.0f}")
    print(f"\nratio emulation ({cores} workers) / ideal float PyTorch ({cores} threads): {pool_rate / fall:.4f}")
    try:
        import aihwkit  # noqa: F401

        print("aihwkit is installed but this script does not drive it yet")
    except ImportError:
        print("aihwkit: not measured: it ships on PyPI as a source distribution only (C++ build against torch, "
              "BLAS and pybind11); see README for the build attempt")
    hours = PAPER_PAIRS / pool_rate / 3600
    print(f"\ntargets: >= {TARGET_PAIRS:,} pairs/s: {pool_rate:,.0f} -> {'met' if pool_rate >= TARGET_PAIRS else 'NOT met'}; "
          f"paper-scale campaign (1,000 x 10,000 x 6) projected {hours:.1f} h (<= 1 h: "
          f"{'met' if hours <= 1 else 'NOT met'})")


if __name__ == "__main__":
    main()
