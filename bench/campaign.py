"""Campaign throughput: non-ideal LeNet-5 inference in (image x chip-instance) pairs per second.

The full stack per chip instance: stuck-at faults + D2D variation after write-and-verify
+ fast IR-drop + 2 x 4-bit slices + 8-bit ADC (the default ChipParams), programmed from
(seed, instance), then the fixed-point emulation model (bit-exact with the RTL) on the
test images. Printed side by side with:

- ideal float PyTorch inference of the same network (dequantized weights; the bound);
- IBM aihwkit's analog inference of the same network (same weights, same images; its
  InferenceRPUConfig with PCM-like programming noise, a new programming per chip
  instance), run in a separate interpreter given by ``--aihwkit-python`` or the
  ``REMECO_AIHWKIT_PYTHON`` variable: aihwkit ships as a source distribution only and
  its C++ build (~8 minutes here, see README) is not part of remeco's environment.

Targets: >= 20,000 pairs / s on this 2-core machine; a paper-scale campaign (1,000
instances x 10,000 images x 6 plans) projected at <= 1 hour.

Run: ``python bench/campaign.py [--images 1000] [--instances 4]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
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
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--instances", type=int, default=4, help="chip instances for the 2-worker run")
    ap.add_argument("--aihwkit-python", default=os.environ.get("REMECO_AIHWKIT_PYTHON"),
                    help="python interpreter of an environment with aihwkit installed")
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
    # The emulation converts every input bit plane of every weight slice separately (the
    # ADC is non-linear per plane), so it does at least input_bits * n_slices times the
    # multiply-adds of the ideal network, with the same GEMM kernels: an upper bound.
    fmt = mapped.fmt
    work = fmt.input_bits * fmt.n_slices
    print(f"work bound: >= {work}x the ideal network's MACs per pair ({fmt.input_bits} input bit planes x "
          f"{fmt.n_slices} slices), so at most ~{fall / work:,.0f} pairs/s on this machine with float GEMMs "
          f"(target {TARGET_PAIRS:,}: {TARGET_PAIRS / (fall / work):.1f}x above that bound)")
    if args.aihwkit_python:
        try:
            ai = _aihwkit_rate(args.aihwkit_python, tm.network, x, y, 2)
            print(f"aihwkit {ai['version']} analog inference, 1 thread (programming + inference per instance): "
                  f"{ai['pairs_per_s']:.0f} pairs/s, accuracy {100 * ai['accuracy']:.2f} %; "
                  f"ratio remeco emulation (1 core) / aihwkit (1 thread): {rows[0][1] / ai['pairs_per_s']:.3f}")
        except (OSError, RuntimeError) as exc:
            print(f"aihwkit: could not run with {args.aihwkit_python}: {exc}")
    else:
        print("aihwkit: not measured here: it ships as a source distribution only; build it in its own "
              "environment (README) and pass --aihwkit-python")
    hours = PAPER_PAIRS / pool_rate / 3600
    print(f"\ntargets: >= {TARGET_PAIRS:,} pairs/s: {pool_rate:,.0f} -> {'met' if pool_rate >= TARGET_PAIRS else 'NOT met'}; "
          f"paper-scale campaign (1,000 x 10,000 x 6) projected {hours:.1f} h (<= 1 h: "
          f"{'met' if hours <= 1 else 'NOT met'})")


if __name__ == "__main__":
    main()
