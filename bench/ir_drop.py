"""IR-drop solver benchmark: remeco.models.crossbar against badcrossbar, fast against exact.

A campaign programs a tile once and feeds it thousands of inputs, so the workload is
one random tile (16 conductance levels between 0.5 and 10 uS, 2 ohm per wire segment)
and 4,096 read-voltage vectors (uniform 0..0.2 V) in 16 calls of 256.

* exact vs badcrossbar: our time includes building the ``NodalCrossbar`` (the whole
  solve) and the 16 calls; badcrossbar gets its cheapest mode (no node voltages, only
  output currents). For large arrays badcrossbar is timed on fewer calls and scaled
  (each call is an independent factorization and solve, so time is linear in calls);
  the table says when. Error: max relative output-current difference on the vectors
  both sides computed.
* fast vs exact: relative column-current error over all vectors (mean and max) and the
  speed ratio of building the transfer matrix (the per-call work, ``V @ T``, is the
  same for both methods, so the campaign ratio is also printed).

Usage::

    python bench/ir_drop.py                  # 64, 128, 256
    python bench/ir_drop.py --quick          # 64, 128, badcrossbar on 2 calls each
    python bench/ir_drop.py --sizes 32 128 --bc-calls 4

Timings are best-of-``--repeat`` wall times on whatever else the machine is running.
The exact solver makes many small BLAS-3 calls; on a machine whose cores are busy,
multi-threaded OpenBLAS slows them down badly, so compare with
``OPENBLAS_NUM_THREADS=1`` when the load average is high.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import warnings

import numpy as np
import scipy

from remeco.models.crossbar import NodalCrossbar
from remeco.models.device import DeviceParams

# The default device range (remeco.models.device.DeviceParams): 16 levels, g_off..g_on.
LEVELS = DeviceParams().level_conductance(np.arange(DeviceParams().levels))
R_WIRE = 2.0
TARGET_EXACT_SPEEDUP = 100.0  # at 128 x 128
TARGET_EXACT_ERROR = 1e-9
TARGET_FAST_MEAN_ERROR = 0.01  # at 128 x 128
TARGET_FAST_SPEEDUP = 100.0


def import_badcrossbar():
    """Import badcrossbar without its side effects on warnings and root logging."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    with warnings.catch_warnings(record=True):
        import badcrossbar
    for handler in root.handlers[len(handlers) :]:
        root.removeHandler(handler)
    root.setLevel(level)
    logging.getLogger("badcrossbar").setLevel(logging.WARNING)
    return badcrossbar


def best_of(repeat: int, fn):
    """Smallest wall time of ``repeat`` runs of ``fn()`` and the last result."""
    best, result = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def campaign(G: np.ndarray, batches: np.ndarray, method: str) -> np.ndarray:
    """Program one tile and run every batch through it: (calls, batch, n) currents."""
    xb = NodalCrossbar(G, R_WIRE, R_WIRE, method=method)
    return np.stack([xb.output_currents(v) for v in batches])


def run_size(bc, size: int, calls: int, batch: int, bc_calls: int, repeat: int, seed: int) -> dict:
    """Measure one square size; returns the row of the table."""
    rng = np.random.default_rng(seed + size)
    G = rng.choice(LEVELS, size=(size, size))
    batches = rng.uniform(0.0, 0.2, size=(calls, batch, size))

    t_exact, exact = best_of(repeat, lambda: campaign(G, batches, "exact"))
    t_fast, fast = best_of(repeat, lambda: campaign(G, batches, "fast"))
    # Transfer-matrix construction alone (what differs between the two methods).
    t_build_exact, _ = best_of(repeat, lambda: NodalCrossbar(G, R_WIRE, R_WIRE, "exact"))
    t_build_fast, _ = best_of(max(repeat, 20), lambda: NodalCrossbar(G, R_WIRE, R_WIRE, "fast"))

    row = dict(size=size, t_exact=t_exact, t_fast=t_fast, t_build_exact=t_build_exact, t_build_fast=t_build_fast)
    rel_fast = np.abs(fast - exact) / np.abs(exact)
    row.update(fast_mean=rel_fast.mean(), fast_max=rel_fast.max())
    rel_ideal = np.abs(batches @ G - exact) / np.abs(exact)
    row.update(ideal_mean=rel_ideal.mean())

    if bc is not None and bc_calls > 0:
        bc_calls = min(bc_calls, calls)
        resistances = 1.0 / G
        outputs = []
        start = time.perf_counter()
        for v in batches[:bc_calls]:
            sol = bc.compute(v.T, resistances, R_WIRE, node_voltages=False, all_currents=False)
            outputs.append(sol.currents.output)
        t_bc = (time.perf_counter() - start) * calls / bc_calls
        ref = np.stack(outputs)
        row.update(t_bc=t_bc, bc_calls=bc_calls, exact_err=np.max(np.abs(exact[:bc_calls] - ref) / np.abs(ref)))
    return row


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", help="square crossbar sizes (default 64 128 256)")
    p.add_argument("--quick", action="store_true", help="sizes 64 and 128, badcrossbar on 2 calls, 1 repeat")
    p.add_argument("--calls", type=int, default=16, help="calls per campaign (default 16)")
    p.add_argument("--batch", type=int, default=256, help="input vectors per call (default 256)")
    p.add_argument(
        "--bc-calls",
        type=int,
        help="badcrossbar calls actually timed, scaled to --calls (default: all up to 128, 2 above; 0 skips it)",
    )
    p.add_argument("--repeat", type=int, default=3, help="best-of repeats for our timings (default 3)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    sizes = args.sizes or ([64, 128] if args.quick else [64, 128, 256])
    repeat = 1 if args.quick else args.repeat

    try:
        bc = import_badcrossbar()
    except ImportError:
        bc = None
        print("badcrossbar is not installed: exact-vs-badcrossbar columns are skipped")

    print(
        f"IR-drop benchmark: {args.calls} calls x {args.batch} inputs per tile, r = {R_WIRE} ohm per segment, "
        f"G in [{LEVELS[0]:.2g}, {LEVELS[-1]:.2g}] S (16 levels), V in [0, 0.2] V"
    )
    print(
        f"numpy {np.__version__}, scipy {scipy.__version__}, {os.cpu_count()} CPUs, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, "
        f"load average {os.getloadavg()[0]:.2f}; best of {repeat} for our timings\n"
    )
    rows = []
    for size in sizes:
        bc_calls = args.bc_calls
        if bc_calls is None:
            bc_calls = 2 if (args.quick or size > 128) else args.calls
        rows.append(run_size(bc, size, args.calls, args.batch, bc_calls, repeat, args.seed))

    print("exact vs badcrossbar (campaign wall time; ours includes building NodalCrossbar)")
    print(f"{'size':>6} {'badcrossbar s':>14} {'exact s':>9} {'speed-up':>9} {'max rel err':>12}  note")
    for r in rows:
        if "t_bc" not in r:
            print(f"{r['size']:>6} {'-':>14} {r['t_exact']:>9.4f} {'-':>9} {'-':>12}  badcrossbar skipped")
            continue
        note = "" if r["bc_calls"] == args.calls else f"badcrossbar timed on {r['bc_calls']} calls, scaled x{args.calls / r['bc_calls']:g}"
        print(
            f"{r['size']:>6} {r['t_bc']:>14.2f} {r['t_exact']:>9.4f} {r['t_bc'] / r['t_exact']:>8.0f}x "
            f"{r['exact_err']:>12.1e}  {note}"
        )

    print("\nfast vs exact (relative column-current error over all inputs; build = transfer matrix only)")
    print(
        f"{'size':>6} {'mean err':>9} {'max err':>9} {'no-IR err':>10} {'build exact s':>14} {'build fast s':>13} "
        f"{'build ratio':>12} {'campaign ratio':>15}"
    )
    for r in rows:
        print(
            f"{r['size']:>6} {r['fast_mean']:>9.2e} {r['fast_max']:>9.2e} {r['ideal_mean']:>10.2e} "
            f"{r['t_build_exact']:>14.5f} {r['t_build_fast']:>13.6f} {r['t_build_exact'] / r['t_build_fast']:>11.0f}x "
            f"{r['t_exact'] / r['t_fast']:>14.1f}x"
        )
    print("(no-IR err: error of ignoring IR drop, I = V @ G, for scale)")

    at128 = [r for r in rows if r["size"] == 128]
    if at128:
        r = at128[0]
        print("\ntargets at 128 x 128:")
        if "t_bc" in r:
            speedup = r["t_bc"] / r["t_exact"]
            ok = speedup >= TARGET_EXACT_SPEEDUP and r["exact_err"] <= TARGET_EXACT_ERROR
            print(
                f"  exact >= {TARGET_EXACT_SPEEDUP:g}x badcrossbar with max rel err <= {TARGET_EXACT_ERROR:g}: "
                f"{speedup:.0f}x, {r['exact_err']:.1e} -> {'met' if ok else 'NOT met'}"
            )
        build_ratio = r["t_build_exact"] / r["t_build_fast"]
        ok = r["fast_mean"] <= TARGET_FAST_MEAN_ERROR and build_ratio >= TARGET_FAST_SPEEDUP
        print(
            f"  fast mean err <= {TARGET_FAST_MEAN_ERROR:.0%} and >= {TARGET_FAST_SPEEDUP:g}x exact (transfer-matrix build): "
            f"{r['fast_mean']:.2e}, {build_ratio:.0f}x -> {'met' if ok else 'NOT met'}"
        )
        print(
            f"  (per campaign the shared V @ T products dominate once the tile is built: "
            f"fast is {r['t_exact'] / r['t_fast']:.1f}x exact there)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
