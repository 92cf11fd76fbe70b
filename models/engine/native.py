"""The fused integer kernel (``kernel.c``): building it, loading it, calling it.

The kernel is plain C with AVX-512 VNNI intrinsics, compiled by the system C compiler
into a shared library and called through :mod:`ctypes` (no Python headers, no build
tool beyond ``cc``; ctypes releases the GIL for the call). ``scripts/setup.sh`` builds
it (``python -m remeco.models.engine.native --build``); if it is missing it is built on
first use. The library lives in ``$REMECO_KERNEL_DIR`` or, by default, beside this
module (an editable install) or in the user cache when that folder is read-only; its
file name carries a hash of the source and the compiler flags, so an edited kernel is
never served stale, and a hash of the library itself, checked before it is loaded: a
damaged library (truncated, overwritten) would crash the process inside ``dlopen``, so it
is named in one warning line, removed and rebuilt instead (:mod:`remeco.models.cachefile`).

:func:`load` returns the loaded library or raises :class:`KernelUnavailable` with one
line saying why (no compiler, a compiler error, a CPU without AVX-512 VNNI); callers
fall back to the torch path (:mod:`remeco.models.engine.torch_ops`).

The same library holds two parts of chip programming, plain C that needs no particular
CPU: the write-and-verify loop (``write_verify.c``, :mod:`remeco.models.device`) and the
fast IR-drop transfer of a tile stack (``ir_drop.c``, :mod:`remeco.models.crossbar`).
:func:`programming` returns the library for them or None, and the callers then use their
numpy code (the same bits). ``REMECO_NO_KERNEL=1`` turns off all of the library,
``REMECO_NO_NATIVE_PROGRAMMING=1`` the programming parts only.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["KernelUnavailable", "LayerStruct", "load", "amx_available", "build", "library_path", "SOURCE", "STATUS"]

#: The kernel's C source.
SOURCE = Path(__file__).with_name("kernel.c")
#: All sources of the library: the kernel and the write-and-verify loop.
SOURCES = (SOURCE, Path(__file__).with_name("write_verify.c"), Path(__file__).with_name("ir_drop.c"))
#: Compiler flags (the target ISA is set per function in the source, so a CPU without
#: VNNI can still load the library and be told so by ``remeco_cpu_supported``; no FMA
#: contraction, so write_verify.c and ir_drop.c round every float operation as numpy does).
CFLAGS = ("-O3", "-std=c11", "-fPIC", "-shared", "-fno-strict-aliasing", "-ffp-contract=off")
#: The ABI version the Python side expects (``remeco_kernel_abi`` in kernel.c).
ABI = 5
#: The ABI versions of write_verify.c (``remeco_write_verify_abi``; ``WriteVerifyStruct``)
#: and ir_drop.c (``remeco_ir_drop_abi``).
WV_ABI = 2
IR_DROP_ABI = 1


#: Kernel return codes (the enum in kernel.c) -> what they mean.
STATUS = {1: "accumulator outside int32", 2: "out of memory", 3: "invalid layer description",
          4: "an input value is wider than input_bits"}


class KernelUnavailable(RuntimeError):
    """The fused kernel cannot be used here; the message says why in one line."""


class LayerStruct(ctypes.Structure):
    """Mirror of ``remeco_layer_t`` in kernel.c (field order and types must match)."""

    _fields_ = [
        ("K", ctypes.c_int32),
        ("rows", ctypes.c_int32),
        ("row_tiles", ctypes.c_int32),
        ("PB", ctypes.c_int32),
        ("input_bits", ctypes.c_int32),
        ("adc_shift", ctypes.c_int32),
        ("adc_max", ctypes.c_int32),
        ("N", ctypes.c_int32),
        ("n_slices", ctypes.c_int32),
        ("slice_bits", ctypes.c_int32),
        ("code_frac", ctypes.c_int32),
        ("mode", ctypes.c_int32),
        ("weight_offset", ctypes.c_int64),
        ("multiplier", ctypes.c_int64),
        ("shift", ctypes.c_int32),
        ("_pad", ctypes.c_int32),
        ("w", ctypes.c_void_p),
        ("tile_off", ctypes.c_void_p),
        ("grp_start", ctypes.c_void_p),
        ("grp_cols", ctypes.c_void_p),
        ("grp_k", ctypes.c_void_p),
        ("bias", ctypes.c_void_p),
        ("conv", ctypes.c_int32),
        ("C", ctypes.c_int32),
        ("H", ctypes.c_int32),
        ("W", ctypes.c_int32),
        ("kernel", ctypes.c_int32),
        ("stride", ctypes.c_int32),
        ("padding", ctypes.c_int32),
        ("Ho", ctypes.c_int32),
        ("Wo", ctypes.c_int32),
        ("pool", ctypes.c_int32),
        ("split", ctypes.c_int32),
        ("Npad", ctypes.c_int32),
        ("wa", ctypes.c_void_p),
        ("wa_off", ctypes.c_void_p),
        ("ep_k", ctypes.c_void_p),
        ("ep_half", ctypes.c_void_p),
        ("n_extra", ctypes.c_int32),
        ("_pad2", ctypes.c_int32),
        ("ex_dst", ctypes.c_void_p),
        ("ex_col", ctypes.c_void_p),
        ("lut_rows", ctypes.c_int32),
        ("lut_i16", ctypes.c_int32),
        ("lut", ctypes.c_void_p),
        ("lut_off", ctypes.c_void_p),
    ]


class WriteVerifyStruct(ctypes.Structure):
    """Mirror of ``remeco_wv_t`` in write_verify.c (field order and types must match)."""

    _fields_ = [("levels", ctypes.c_int32), ("vector", ctypes.c_int32)] + [
        (name, ctypes.c_double) for name in (
            "g_off", "g_on", "g_span", "spacing", "tolerance", "max_pulses", "pulse_width", "min_width",
            "rn_up", "rn_down", "tol_progress", "y_lo", "y_hi", "shrink", "k_min", "k_max", "thr_up", "thr_down")
    ] + [(name, ctypes.c_void_p) for name in (
        "g_target", "aim_up", "aim_down", "ok_c", "rising_c", "here_c", "count_c", "burst_c",
        "fz_pulses", "fz_reads", "fz_time", "fz_converged")]


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def _tag() -> str:
    text = b""
    for source in SOURCES:
        try:
            text += source.read_bytes()
        except OSError as exc:
            raise KernelUnavailable(f"cannot read the kernel source {source}: {exc.strerror or exc}") from None
    return hashlib.sha256(text + " ".join(CFLAGS).encode()).hexdigest()[:16]


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _intact(path: Path) -> bool:
    """True if the library's content matches the digest in its name (``...-<tag>-<digest>.so``)."""
    try:
        return _file_digest(path) == path.stem.rsplit("-", 1)[1]
    except (OSError, IndexError):
        return False


def _candidate_dirs() -> list[Path]:
    env = os.environ.get("REMECO_KERNEL_DIR")
    if env:
        return [Path(env)]
    cache = Path(os.environ.get("REMECO_CACHE") or Path.home() / ".cache" / "remeco") / "kernel"
    return [Path(__file__).parent / "_build", cache]


def library_path() -> Path | None:
    """Path of an already built, intact library for the current source, or None.

    A library whose content does not match its name is reported in one warning line and
    removed (so it is rebuilt), never loaded.
    """
    from ..cachefile import warn_damaged

    pattern = f"remeco_kernel-{_tag()}-*.so"
    for folder in _candidate_dirs():
        for path in sorted(folder.glob(pattern)):
            if path.is_file() and _intact(path):
                return path
            warn_damaged(path, "its content does not match the digest in its name")
    return None


def build(verbose: bool = False) -> Path:
    """Compile kernel.c (atomically: a temporary file renamed into place) and return its path.

    Raises
    ------
    KernelUnavailable
        No C compiler, the compile failed, or no folder is writable.
    """
    cc = _compiler()
    if cc is None:
        raise KernelUnavailable("no C compiler found (set CC or install gcc)")
    tag = _tag()
    errors = []
    for folder in _candidate_dirs():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=folder)
            os.close(fd)
        except OSError as exc:
            errors.append(f"{folder}: {exc.strerror or exc}")
            continue
        cmd = [cc, *CFLAGS, *map(str, SOURCES), "-o", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            os.unlink(tmp)
            first = next((line for line in done.stderr.splitlines() if "error" in line), done.stderr.strip()[:200])
            raise KernelUnavailable(f"{cc} could not compile {SOURCE.name}: {first or f'exit status {done.returncode}'}")
        if verbose:
            print(" ".join(cmd), file=sys.stderr)
        path = folder / f"remeco_kernel-{tag}-{_file_digest(Path(tmp))}.so"
        os.replace(tmp, path)
        return path
    raise KernelUnavailable("no writable folder for the kernel library: " + "; ".join(errors))


def _memoised(open_fn):
    """``open_fn`` run once per process: its library is returned again, or the one-line
    reason of its :class:`KernelUnavailable` raised again, on every later call."""
    memo: dict[str, object] = {}

    @functools.wraps(open_fn)
    def get() -> ctypes.CDLL:
        if "lib" in memo:
            return memo["lib"]
        if "error" in memo:
            raise KernelUnavailable(memo["error"])
        try:
            memo["lib"] = open_fn()
        except KernelUnavailable as exc:
            memo["error"] = str(exc)
            raise
        return memo["lib"]

    return get


@_memoised
def _open() -> ctypes.CDLL:
    """The library (built first if needed), opened and its ABI checked; memoised per process."""
    if os.environ.get("REMECO_NO_KERNEL"):
        raise KernelUnavailable("disabled by REMECO_NO_KERNEL")
    path = library_path() or build()
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        raise KernelUnavailable(f"cannot load {path}: {exc}") from None
    try:
        abi = lib.remeco_kernel_abi()
    except AttributeError:  # a library, but not this kernel's
        raise KernelUnavailable(f"{path} is not a remeco kernel (no remeco_kernel_abi)") from None
    if abi != ABI:
        raise KernelUnavailable(f"{path} has another ABI version")
    return lib


@_memoised
def load() -> ctypes.CDLL:
    """The loaded kernel library (built first if needed); memoised per process.

    Raises
    ------
    KernelUnavailable
        With the one-line reason; the same reason is raised again on later calls.
    """
    lib = _open()
    if not lib.remeco_cpu_supported():
        raise KernelUnavailable("this CPU lacks AVX-512 VNNI / DQ (the fused kernel's instructions)")
    lib.remeco_amx_supported.restype = ctypes.c_int
    for name in ("remeco_layer_images_vnni", "remeco_layer_images_amx"):
        fn = getattr(lib, name)
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.POINTER(LayerStruct), ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                       ctypes.POINTER(ctypes.c_int64)]
    return lib


@_memoised
def _programming() -> ctypes.CDLL:
    """The library with its programming functions' ABIs checked and signatures set."""
    lib = _open()
    for symbol, want in (("remeco_write_verify_abi", WV_ABI), ("remeco_ir_drop_abi", IR_DROP_ABI)):
        abi = getattr(lib, symbol, None)
        if abi is None or abi() != want:
            raise KernelUnavailable(f"the library's {symbol} is not {want}")
    fn = lib.remeco_write_verify
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.POINTER(WriteVerifyStruct), ctypes.c_int64] + [ctypes.c_void_p] * 10
    i64, f64, ptr = ctypes.c_int64, ctypes.c_double, ctypes.c_void_p
    lib.remeco_fast_transfer_lines.restype = ctypes.c_int
    lib.remeco_fast_transfer_lines.argtypes = [i64, i64, i64, ptr, f64, f64] + [ptr] * 3
    lib.remeco_fast_transfer_leak.restype = None
    lib.remeco_fast_transfer_leak.argtypes = [i64, i64, i64] + [ptr] * 3
    return lib


def programming() -> ctypes.CDLL | None:
    """The library with its programming functions ready to call (``remeco_write_verify``,
    ``remeco_fast_transfer_lines``, ``remeco_fast_transfer_leak``), or None.

    None when ``REMECO_NO_NATIVE_PROGRAMMING`` is set (read on every call) or the library
    cannot be built or loaded (the reason is not repeated here: the numpy code gives the
    same bits, only slower).
    """
    if os.environ.get("REMECO_NO_NATIVE_PROGRAMMING"):
        return None
    try:
        return _programming()
    except KernelUnavailable:
        return None


def amx_available() -> bool:
    """True if the kernel's AMX-INT8 path runs here (CPU and operating system allow it).

    ``REMECO_NO_AMX=1`` turns it off (the AVX-512 VNNI path is used instead).
    """
    if os.environ.get("REMECO_NO_AMX"):
        return False
    try:
        return bool(load().remeco_amx_supported())
    except KernelUnavailable:
        return False


def pointer(array: np.ndarray) -> int:
    """Address of a C-contiguous array's data (the caller keeps the array alive)."""
    if not array.flags.c_contiguous:
        raise ValueError("kernel arrays must be C-contiguous")
    return array.ctypes.data


def main(argv: list[str] | None = None) -> int:
    """``python -m remeco.models.engine.native --build``: build (if needed) and report."""
    import argparse

    ap = argparse.ArgumentParser(description="Build the fused crossbar kernel.")
    ap.add_argument("--build", action="store_true", help="compile kernel.c now (even if a library exists)")
    args = ap.parse_args(argv)
    try:
        path = build() if args.build else (library_path() or build())
        load()
    except KernelUnavailable as exc:
        print(f"remeco kernel: not available ({exc}); the engine will use its torch path", file=sys.stderr)
        return 0
    print(f"remeco kernel: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
