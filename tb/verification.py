"""RTL-vs-model verification of every block for one layer configuration.

:func:`bench_specs` turns a :class:`VerifyParams` (numeric format + layer shape) into the
parameter set of each bench, in one place; the pytest files under ``tests/rtl`` and
:func:`verify` (behind ``remeco verify``, :mod:`remeco.host.rtl_cli`) both run these specs.
At the default :attr:`VerifyParams.vectors` every bench compares at least 10,000 outputs
with its model. The last row is the accelerator top (:class:`remeco.rtl.top.AcceleratorTop`)
at a small :class:`~remeco.models.fabric.FabricConfig` of the same numeric format
(:func:`top_config`), driven through its AXI4-Lite and AXI4-Stream ports.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, replace

from ..models.fabric import FabricConfig
from ..rtl.top import TOP_NAME
from ..rtl.verilog import LayerParams
from .runner import SIMULATORS, BenchResult, run_bench

__all__ = ["VerifyParams", "BenchSpec", "bench_specs", "top_config", "verify", "COMPONENTS"]

#: Components in datapath order, then the accelerator top (the names of the rows :func:`verify` returns).
COMPONENTS = ("crossbar", "adc", "shift_add", "averager", "combine", "requant", "pe", "top")


@dataclass(frozen=True)
class VerifyParams(LayerParams):
    """What to verify: a layer (:class:`remeco.rtl.verilog.LayerParams`) and how hard to try.

    Attributes
    ----------
    vectors:
        Scale of the random stimulus: every bench compares at least about this many
        outputs with its model (ADC and requantizer vectors; crossbar column sums,
        shift-and-add ``y`` values, averaged slices, combined ``z``, PE outputs, top
        accumulators).
    seed:
        Seed of every bench's stimulus.
    valid_prob, ready_prob:
        Probability of a beat on offer / of ``ready`` per cycle on the bench streams.
    """

    vectors: int = 10_000
    seed: int = 1
    valid_prob: float = 0.8
    ready_prob: float = 0.7

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field that is out of range."""
        super().validate()
        if isinstance(self.vectors, bool) or not isinstance(self.vectors, int) or self.vectors < 1:
            raise ValueError(f"vectors must be an integer >= 1, got {self.vectors!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 1 << 32:
            raise ValueError(f"seed must be an integer in [0, 2**32), got {self.seed!r}")
        for name in ("valid_prob", "ready_prob"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 < v <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {v!r}")


@dataclass(frozen=True)
class BenchSpec:
    """One bench run: which component, which bench module, which parameters."""

    component: str
    bench: str
    top: str
    params: dict
    simulator: str = "verilator"
    #: Run with the clock in the HDL (``run_bench(hdl_clock=True)``) when the simulator is Verilator.
    hdl_clock: bool = False
    #: Simulators the bench passes on.
    simulators: tuple[str, ...] = SIMULATORS

    def design(self):
        """The Amaranth component under test (built by the bench module's ``design``)."""
        return importlib.import_module(self.bench).design(self.params)

    def run(self, waves: bool = True) -> BenchResult:
        """Build and run the bench; see :func:`remeco.tb.runner.run_bench`."""
        return run_bench(self.bench, self.design(), top=self.top, params=self.params, simulator=self.simulator,
                         waves=waves, hdl_clock=self.hdl_clock and self.simulator == "verilator")


def top_config(vp: VerifyParams | None = None) -> FabricConfig:
    """The :class:`FabricConfig` of the ``top`` row: ``vp``'s numeric format, fan-in (at
    least a tile and a row: the bench's layers reach that) and largest ``k``; 4 column
    lanes, 2 vector lanes and memories just deep enough for the bench's random layers
    (every rule of the top at a size that simulates in seconds)."""
    vp = vp or VerifyParams()
    lanes = 4
    fan_in = max(vp.fan_in, vp.fmt.rows + 1)
    # the bench's layers: up to 3 * lanes - 1 neurons, every slice copied 2**k times
    blocks = -(-(3 * lanes - 1) * vp.fmt.n_slices * (1 << vp.max_copies_log2) // lanes)
    return FabricConfig(fmt=vp.fmt, column_lanes=lanes, vector_lanes=2, code_words=_TOP_LAYERS * blocks * fan_in,
                        desc_words=_TOP_LAYERS * blocks * lanes, max_fan_in=fan_in,
                        max_copies_log2=vp.max_copies_log2)


# Layers the top's bench places in its memories; its runs draw 1..16 vectors of a random layer.
_TOP_LAYERS = 5
_TOP_MAX_VECTORS = 16


def bench_specs(vp: VerifyParams | None = None) -> dict[str, BenchSpec]:
    """The bench of every component for ``vp`` (default :class:`VerifyParams`).

    ``"top"`` is left out when :func:`top_config` rejects ``vp``'s format (e.g. code
    words wider than the fabric's 16 bits).
    """
    vp = vp or VerifyParams()
    fmt, w = vp.fmt, vp.widths()
    common = {"seed": vp.seed, "valid_prob": vp.valid_prob, "ready_prob": vp.ready_prob}
    fmt_fields = {
        "rows": fmt.rows, "slice_bits": fmt.slice_bits, "n_slices": fmt.n_slices,
        "input_bits": fmt.input_bits, "code_frac": fmt.code_frac, "adc_bits": fmt.adc_bits,
    }
    tiles = -(-vp.fan_in // fmt.rows)
    specs = {
        "crossbar": BenchSpec("crossbar", "remeco.tb.bench_crossbar", "crossbar", {
            **common, "rows": fmt.rows, "cols": fmt.cols, "tiles": 6, "code_bits": fmt.code_bits,
            "acc_width": w["acc"], "tag_width": 5, "planes": max(20, vp.vectors // (4 * fmt.cols)),
        }),
        "adc": BenchSpec("adc", "remeco.tb.bench_adc", "adc", {
            **common, "acc_width": w["acc"], "adc_bits": fmt.adc_bits, "adc_shift": vp.adc_shift,
            "tag_width": 0, "vectors": vp.vectors,
        }),
        "shift_add": BenchSpec("shift_add", "remeco.tb.bench_shift_add", "shift_add", {
            **common, "adc_bits": fmt.adc_bits, "input_bits": fmt.input_bits, "cols": fmt.cols,
            # one y per column and job
            "y_width": w["y"], "tiles": tiles, "jobs": max(8, -(-vp.vectors // fmt.cols)),
        }),
        "averager": BenchSpec("averager", "remeco.tb.bench_averager", "averager", {
            **common, "y_width": w["y"], "n_slices": fmt.n_slices, "slice_bits": fmt.slice_bits,
            "max_copies_log2": vp.max_copies_log2, "neurons": vp.neurons,
            # one averaged value per (neuron, slice) of a layer
            "layers": max(6, -(-vp.vectors // (vp.neurons * fmt.n_slices))),
        }),
        "combine": BenchSpec("combine", "remeco.tb.bench_combine", "combine", {
            **common, **fmt_fields, "fan_in": vp.fan_in, "adc_shift": vp.adc_shift,
            "max_copies_log2": vp.max_copies_log2, "neurons": max(60, vp.vectors),
        }),
        "requant": BenchSpec("requant", "remeco.tb.bench_requant", "requant", {
            **common, "z_width": w["z"], "code_frac": fmt.code_frac, "vectors": vp.vectors,
        }),
    }
    pe_col_tiles = vp.col_tiles  # enough for the largest plan
    pe_layers = 4
    specs["pe"] = BenchSpec("pe", "remeco.tb.bench_pe", "pe", {
        **common, **fmt_fields, "cols": fmt.cols, "code_bits": fmt.code_bits,
        "fan_in": vp.fan_in, "neurons": vp.neurons, "col_tiles": pe_col_tiles, "adc_shift": vp.adc_shift,
        "max_copies_log2": vp.max_copies_log2, "layers": pe_layers, "vectors": max(4, vp.vectors // 1000),
        # most outputs come from a full-rate phase per layer, which the HDL clock makes cheap
        "stream_vectors": -(-vp.vectors // (pe_layers * vp.neurons)),
    }, hdl_clock=True)
    try:
        top_cfg = top_config(vp)
    except ValueError:
        return specs  # a format the fabric cannot hold (see FabricConfig): no top row
    # A run compares vectors x neurons accumulators, about 8.5 x 6 on average. Verilator
    # only: on Icarus cocotbext-axi's S2MM sink samples an X tvalid right after the reset
    # (the bench leaves the bus inputs undriven until its bus models start).
    specs["top"] = BenchSpec("top", "remeco.tb.bench_top", TOP_NAME, {
        "cfg": top_cfg.to_dict(), "layers": _TOP_LAYERS, "runs": max(20, -(-vp.vectors // 25)),
        "max_vectors": _TOP_MAX_VECTORS, "seed": vp.seed, "pause": round(1.0 - min(vp.valid_prob, vp.ready_prob), 3),
    }, simulators=("verilator",))
    return specs


def verify(
    vp: VerifyParams | None = None,
    components: tuple[str, ...] | None = None,
    simulator: str = "verilator",
    waves: bool = True,
    results: list[BenchResult] | None = None,
) -> list[tuple[str, int, int, float]]:
    """Run the benches; one row ``(component, vectors, mismatches, seconds)`` per component.

    ``components`` defaults to every entry of :func:`bench_specs` that runs on ``simulator``
    (the top: Verilator only, and only when its format fits the fabric); asking for one
    that cannot run raises ``ValueError``.

    ``seconds`` is wall time including the (cached) build. A bench that fails without
    a mismatch count (a crash, a timeout, a protocol error) reports ``mismatches = -1``.
    With ``results``, each run's :class:`~remeco.tb.runner.BenchResult` (messages, log
    and waveform paths) is appended to it.
    """
    specs = bench_specs(vp)
    if components and "top" in components and "top" not in specs:
        top_config(vp)  # raises ValueError saying why the top cannot take this format
    if not components:
        components = tuple(n for n, spec in specs.items() if simulator in spec.simulators)
    unsupported = [n for n in components if simulator not in specs[n].simulators]
    if unsupported:
        raise ValueError(f"the bench of {', '.join(unsupported)} does not run on {simulator}")
    rows = []
    for name in components:
        spec = replace(specs[name], simulator=simulator)
        t0 = time.monotonic()
        res = spec.run(waves=waves)
        if results is not None:
            results.append(res)
        mism = res.mismatches if (res.failures == 0 or res.mismatches) else -1
        rows.append((name, res.vectors, mism, time.monotonic() - t0))
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m remeco.tb.verification``: run :func:`verify` and print the table."""
    import argparse

    ap = argparse.ArgumentParser(description="RTL == model equivalence of every block (cocotb benches)")
    ap.add_argument("--vectors", type=int, default=VerifyParams.vectors)
    ap.add_argument("--seed", type=int, default=VerifyParams.seed)
    ap.add_argument("--simulator", choices=("verilator", "icarus"), default="verilator")
    ap.add_argument("--components", nargs="*", choices=COMPONENTS, default=None)
    ap.add_argument("--no-waves", action="store_true", help="do not record waveforms")
    args = ap.parse_args(argv)
    rows = verify(VerifyParams(vectors=args.vectors, seed=args.seed),
                  tuple(args.components) if args.components else None, args.simulator, not args.no_waves)
    print(f"{'component':<10} {'vectors':>8} {'mismatches':>10} {'seconds':>8}")
    for name, vectors, mism, secs in rows:
        print(f"{name:<10} {vectors:>8} {mism:>10} {secs:>8.1f}")
    return 0 if all(r[2] == 0 and r[1] > 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
