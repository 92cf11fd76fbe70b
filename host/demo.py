"""``remeco demo``: one crossbar layer under each non-ideality, physics vs emulation.

A random 8-bit layer (``size`` inputs x ``size/2`` neurons, so its 2 x 4-bit slices fill
a ``size x size`` tile) is programmed on a few chip instances under one non-ideality at
a time and under all of them, then fed random ReLU-like 8-bit inputs. For every scenario
it reports the error of the crossbar's dot products against the exact integer ones, for
the float physics model and the fixed-point emulation model (the RTL contract), and the
difference between the two models (cell codes round effective conductances to 1/16 of a
level; an ADC input exactly on a rounding tie, common on an ideal chip, may round either
way in float).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from remeco.host.cli import command
from remeco.models.chip import ChipParams, program_layer
from remeco.models.emulation import EmulationFormat, calibrate_adc_shift, emulate_matvec
from remeco.models.mapping import map_layer
from remeco.models.physics import physics_matvec
from remeco.models.random import rng_for

__all__ = ["SCENARIOS", "run_demo"]

# name -> changes to the ideal chip; "all" is the paper's default non-ideal chip.
SCENARIOS: dict[str, dict] = {
    "ideal": {},
    "stuck-at 1%": {"stuck_at_rate": 0.01},
    "stuck-on only 1%": {"stuck_at_rate": 0.01, "stuck_on_fraction": 1.0},
    "stuck-off only 1%": {"stuck_at_rate": 0.01, "stuck_on_fraction": 0.0},
    "D2D 0.2, open loop": {"d2d_sigma": 0.2, "write_verify": False},
    "D2D 0.2, write-verify": {"d2d_sigma": 0.2, "write_verify": True},
    "IR-drop 2 ohm, exact": {"wire_resistance": 2.0, "ir_drop": "exact"},
    "IR-drop 2 ohm, fast": {"wire_resistance": 2.0, "ir_drop": "fast"},
    "all (paper defaults)": "default",
}


def _scenario_params(changes) -> ChipParams:
    if changes == "default":
        return ChipParams()
    return ChipParams.ideal().with_(**changes)


def run_demo(size: int = 128, inputs: int = 256, instances: int = 3, seed: int = 0) -> list[dict]:
    """Run every scenario; returns one plain-data row per scenario."""
    if size < 4 or size % 2:
        raise ValueError(f"size must be an even integer >= 4, got {size}")
    if inputs < 1 or instances < 1:
        raise ValueError("inputs and instances must be >= 1")
    fmt = EmulationFormat(rows=size, cols=size)
    rng = rng_for(seed, 0, "demo-layer")
    weights = np.clip(np.round(rng.normal(0, 40, (size, size // 2))), -128, 127).astype(np.int64)
    mapped = map_layer(weights, fmt)
    x = rng.integers(0, 256, (inputs, size)) * (rng.random((inputs, size)) < 0.5)
    exact = (x @ weights).astype(np.float64) * (1 << fmt.code_frac)
    scale = np.sqrt(np.mean(exact**2))
    ideal = program_layer(mapped, ChipParams.ideal(), seed=seed, instance=0)
    device = ChipParams().device
    adc_shift = calibrate_adc_shift(x[: max(1, inputs // 4)], mapped, ideal.codes(device, fmt))
    rows = []
    for name, changes in SCENARIOS.items():
        params = _scenario_params(changes)
        err_p, err_e, gap, t_prog = [], [], [], 0.0
        for inst in range(instances):
            t0 = time.perf_counter()
            prog = program_layer(mapped, params, seed=seed, instance=inst)
            t_prog += time.perf_counter() - t0
            zp = physics_matvec(x, mapped, prog.transfer, adc_shift, g_off=device.g_off, g_on=device.g_on,
                                v_read=device.v_read)
            ze = emulate_matvec(x, mapped, prog.codes(device, fmt), adc_shift)
            err_p.append(np.sqrt(np.mean((zp - exact) ** 2)) / scale)
            err_e.append(np.sqrt(np.mean((ze - exact) ** 2)) / scale)
            gap.append(np.sqrt(np.mean((zp - ze) ** 2)) / scale)
        rows.append(
            {
                "scenario": name,
                "physics_rel_rms_error": float(np.mean(err_p)),
                "emulation_rel_rms_error": float(np.mean(err_e)),
                "emulation_vs_physics": float(np.mean(gap)),
                "program_seconds": t_prog / instances,
            }
        )
    return rows


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=128, help="crossbar rows = columns (default 128)")
    p.add_argument("--inputs", type=int, default=256, help="random input vectors (default 256)")
    p.add_argument("--instances", type=int, default=3, help="chip instances per scenario (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the chip instances (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


@command("demo", "Crossbar demo: one layer under each non-ideality, physics vs emulation model.")(_add_arguments)
def _run(args: argparse.Namespace) -> int:
    rows = run_demo(args.size, args.inputs, args.instances, args.seed)
    if args.json:
        print(json.dumps({"size": args.size, "rows": rows}))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{args.size}x{args.size} crossbar, {args.inputs} inputs, {args.instances} chip instances")
    for col in ("scenario", "physics error", "emulation error", "emulation - physics", "program s"):
        table.add_column(col, justify="left" if col == "scenario" else "right")
    for r in rows:
        table.add_row(
            r["scenario"],
            f"{100 * r['physics_rel_rms_error']:.2f} %",
            f"{100 * r['emulation_rel_rms_error']:.2f} %",
            f"{100 * r['emulation_vs_physics']:.2f} %",
            f"{r['program_seconds']:.3f}",
        )
    Console().print(table)
    print(
        "errors: RMS of (crossbar - exact integer dot product) / RMS of exact, 8-bit ADC included;\n"
        "offset encoding (u = w + 128) turns a small common attenuation (IR-drop) into a large error."
    )
    return 0
