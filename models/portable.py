"""Pinned float kernels: run a computation in a child process whose float results do
not depend on the CPU it runs on.

Why a child process
-------------------
torch picks its float kernels when it loads, by the CPU: ATen's vector width
(``ATEN_CPU_CAPABILITY``: AVX-512, AVX2 or the baseline build), oneDNN's convolutions
(by instruction set) and MKL's BLAS (by instruction set *and* vendor). Each choice sums
in another order, so training, thousands of steps of float sums, ends in another
network on another machine: on one AMD EPYC (Zen 4) the default LeNet-5 recipe gave
network ``80dec441...``, and each knob alone moved it (``ATEN_CPU_CAPABILITY=avx2``:
``675c0fd7...``; ``=default``: ``4eca253b...``; ``MKL_CBWR=COMPATIBLE``:
``46213fcf...``; ``ONEDNN_MAX_CPU_ISA=AVX2``: ``256cfc67...``), and an Intel Xeon
trained ``43e8470f...``.

These choices are made once per process (the environment is read when torch and MKL
load), so a caller that has already imported torch cannot change them; the child
starts with :data:`PINNED_ENV`:

* ``ATEN_CPU_CAPABILITY=default``: ATen's baseline x86-64 kernels, the same
  instructions on every x86-64 CPU (no AVX-512 / AVX2 dispatch);
* ``MKL_CBWR=COMPATIBLE``: MKL's conditional-numerical-reproducibility branch that
  runs the same code on Intel and non-Intel CPUs (Intel oneMKL developer guide,
  "Conditional Numerical Reproducibility");
* oneDNN off (``torch.backends.mkldnn.enabled = False``): convolutions become im2col
  plus MKL GEMM, pinned by the line above;
* one thread (``OMP_NUM_THREADS=1``, ``MKL_NUM_THREADS=1``): a fixed summation order.

Measured on that machine, the pinned child trains the same network (``54ed51d9...``)
under every knob above set in the parent and with ``MKL_ENABLE_INSTRUCTIONS``,
``MKL_DEBUG_CPU_TYPE`` or two OpenMP threads, and dropping any one of the three pins
changes it. The cost is speed: the default LeNet-5 trains in ~23 s instead of ~16 s.
Scope: x86-64 CPUs with the pinned torch wheel (another torch build or an ARM CPU has
other kernels), glibc's math library as shipped by the base image.

Protocol (plain files, no pickle)
---------------------------------
The parent writes ``in.npz`` (arrays) and ``args.json`` into a temporary folder and
runs ``python -m remeco.models.portable MODULE:FUNCTION FOLDER``. The child calls
``FUNCTION(arrays, args, log)``, which returns a dict of arrays, and writes them to
``out.npz`` (temporary file, then rename). Lines the function logs reach the parent's
``log`` as they happen. A failure in the child is one line in the parent's
:class:`PinnedProcessError`; an interrupt of the parent stops the child.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

__all__ = ["PINNED_ENV", "PinnedProcessError", "run_pinned", "check_pinned", "probe"]

#: Environment of the child process (see the module docstring for each entry).
PINNED_ENV: Mapping[str, str] = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
#: Variables that choose other float kernels; removed from the child's environment.
_UNPINNED = ("MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
#: Prefix of the child's log lines on its standard output.
_LOG = "remeco-log: "


class PinnedProcessError(RuntimeError):
    """The pinned child process failed; the message is its one-line reason."""


def run_pinned(
    target: str,
    arrays: Mapping[str, np.ndarray],
    args: Mapping[str, object],
    *,
    log: Callable[[str], None] | None = None,
) -> dict[str, np.ndarray]:
    """Run ``target(arrays, args, log)`` in a child process with pinned float kernels.

    Parameters
    ----------
    target:
        ``"package.module:function"``; the function takes ``(arrays, args, log)`` and
        returns a dict of NumPy arrays.
    arrays:
        Input arrays (saved with :func:`numpy.savez`, no pickle).
    args:
        JSON-serialisable arguments.
    log:
        Receives each line the function logs, while it runs.

    Returns
    -------
    dict of numpy.ndarray
        The function's result.

    Raises
    ------
    PinnedProcessError
        If the child fails (its last error line is the message).
    """
    env = {k: v for k, v in os.environ.items() if k not in _UNPINNED}
    env.update(PINNED_ENV)
    with tempfile.TemporaryDirectory(prefix="remeco-pinned-") as folder:
        work = Path(folder)
        np.savez(work / "in.npz", **arrays)
        (work / "args.json").write_text(json.dumps(args))
        command = [sys.executable, "-m", "remeco.models.portable", target, str(work)]
        # stderr to a file: a chatty child cannot fill a pipe nobody reads.
        with open(work / "stderr.txt", "w") as stderr, subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1
        ) as child:
            try:
                assert child.stdout is not None
                for line in child.stdout:
                    if line.startswith(_LOG) and log is not None:
                        log(line[len(_LOG) :].rstrip("\n"))
                code = child.wait()
            except BaseException:
                # Interrupted (Ctrl-C) or failing here: the child must not outlive us.
                child.kill()
                child.wait()
                raise
        if code != 0:
            errors = (work / "stderr.txt").read_text(errors="replace")
            lines = [line for line in errors.strip().splitlines() if line.strip()]
            reason = lines[-1] if lines else f"exit status {code}"
            raise PinnedProcessError(f"pinned process {target} failed: {reason}")
        with np.load(work / "out.npz", allow_pickle=False) as out:
            return {name: out[name] for name in out.files}


def check_pinned() -> None:
    """Raise ``RuntimeError`` unless this process runs with pinned float kernels.

    Called by the child before it computes: ATen must run its baseline kernels (an
    unknown value of ``ATEN_CPU_CAPABILITY`` is ignored by torch with a warning, so it
    is checked here), and the MKL branch and thread counts must be those of
    :data:`PINNED_ENV`.
    """
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "DEFAULT":
        raise RuntimeError(f"ATen runs {capability} kernels, not the pinned baseline (DEFAULT)")
    for name, value in PINNED_ENV.items():
        if os.environ.get(name) != value:
            raise RuntimeError(f"{name}={os.environ.get(name)!r}, pinned value {value!r}")


def probe(arrays: Mapping[str, np.ndarray], args: Mapping[str, object], log: Callable[[str], None]) -> dict:
    """A target for :func:`run_pinned` that reports the child's float settings:
    ``capability`` (ATen's kernels), ``mkldnn`` (oneDNN on), ``threads`` and the
    pinned environment variables as the child sees them; ``echo`` returns the input
    array ``x`` (round trip of the file protocol)."""
    import torch

    log("probe running")
    settings = {name: os.environ.get(name, "") for name in PINNED_ENV}
    settings.update(capability=torch.backends.cpu.get_cpu_capability(),
                    mkldnn=str(torch.backends.mkldnn.enabled), threads=str(torch.get_num_threads()))
    out = {"settings": np.array(json.dumps(settings))}
    if "x" in arrays:
        out["echo"] = arrays["x"]
    return out


def _child(target: str, folder: Path) -> None:
    """The child's side of :func:`run_pinned`."""
    import torch

    check_pinned()
    # The two pins that are not environment variables: no oneDNN, one intra-op thread.
    torch.backends.mkldnn.enabled = False
    torch.set_num_threads(1)
    module_name, _, function_name = target.partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    with np.load(folder / "in.npz", allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    args = json.loads((folder / "args.json").read_text())

    def log(line: str) -> None:
        print(_LOG + line, flush=True)

    result = function(arrays, args, log)
    partial = folder / "out.partial.npz"
    np.savez(partial, **result)
    partial.replace(folder / "out.npz")


if __name__ == "__main__":
    try:
        _child(sys.argv[1], Path(sys.argv[2]))
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # one line for the parent, not a traceback
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
