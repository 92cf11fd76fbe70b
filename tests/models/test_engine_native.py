"""The fused kernel's library is a cache (issue 12): a damaged one is named and rebuilt, and a
library the kernel cannot use is one warning line and the torch path, never a crash.

Each case runs in a fresh process with its own ``$REMECO_KERNEL_DIR`` (the library is
loaded once per process). A truncated library is the case that matters: ``dlopen`` of one
ends the process with SIGBUS, so it must be caught before it is loaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from remeco.models.engine import native

_PROBE = "from remeco.models.engine import resolve_path; print(resolve_path('native'))"


def _probe(kernel_dir: Path, **env) -> subprocess.CompletedProcess:
    env = {**os.environ, "REMECO_KERNEL_DIR": str(kernel_dir), **env}
    env.pop("REMECO_NO_KERNEL", None)
    return subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def kernel_runs():
    try:
        native.load()
    except native.KernelUnavailable as exc:
        pytest.skip(f"the fused kernel does not run here ({exc})")


def test_a_truncated_library_is_named_and_rebuilt(kernel_runs, tmp_path):
    first = _probe(tmp_path)
    assert first.returncode == 0 and first.stdout.split() == ["native"], first.stderr
    (library,) = tmp_path.glob("remeco_kernel-*.so")
    library.write_bytes(library.read_bytes()[:1000])  # as a full disk or a cut copy leaves it
    again = _probe(tmp_path)
    assert again.returncode == 0, (again.returncode, again.stderr)  # was -7 (SIGBUS) in dlopen
    assert again.stdout.split() == ["native"]
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and "damaged cache entry" in lines[0] and library.name in lines[0], lines
    (rebuilt,) = tmp_path.glob("remeco_kernel-*.so")
    assert native._intact(rebuilt)


def test_a_library_that_is_not_the_kernel_is_one_line_and_the_torch_path(kernel_runs, tmp_path):
    cc = native._compiler()
    src = tmp_path / "other.c"
    src.write_text("int other(void) { return 1; }\n")
    other = tmp_path / "other.so"
    subprocess.run([cc, "-shared", "-fPIC", str(src), "-o", str(other)], check=True, capture_output=True)
    # Named as a library of this source with its right digest: it passes the digest check.
    other.rename(tmp_path / f"remeco_kernel-{native._tag()}-{native._file_digest(other)}.so")
    done = _probe(tmp_path)
    assert done.returncode == 0 and done.stdout.split() == ["torch"], done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not a remeco kernel" in lines[0] and "torch path" in lines[0], lines


def test_a_compiler_that_fails_silently_is_named_with_its_status(tmp_path):
    done = _probe(tmp_path / "empty", CC=shutil.which("false") or "false")
    assert done.returncode == 0 and done.stdout.split() == ["torch"], done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "could not compile kernel.c: exit status 1" in lines[0], lines


def test_the_fallback_line_is_said_once_not_once_per_pool_worker():
    """Workers inherit what the caller said (remeco.evaluate(workers=2) with the kernel off
    printed the fallback line once per worker); check_engine says it before the work."""
    child = ("from remeco.models.engine.core import _warn_once; "
             "_warn_once('fused kernel unavailable (x); using the torch path'); _warn_once('another')")
    code = ("import subprocess, sys\n"
            "from remeco.host.engines import check_engine\n"
            "check_engine('native', None)\n"
            "from remeco.models.engine.core import _warn_once\n"
            "_warn_once('fused kernel unavailable (x); using the torch path')\n"
            f"subprocess.run([sys.executable, '-c', {child!r}], check=True)\n")
    env = {**os.environ, "REMECO_NO_KERNEL": "1"}
    env.pop("REMECO_ENGINE_WARNED", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "remeco engine: fused kernel unavailable (disabled by REMECO_NO_KERNEL); using the torch path",
        "remeco engine: fused kernel unavailable (x); using the torch path",
        "remeco engine: another",
    ]


def test_a_kernel_folder_that_cannot_be_written_is_one_line_and_the_torch_path(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # a folder under a file: unwritable even for root
    done = _probe(blocker / "kernel")
    assert done.returncode == 0 and done.stdout.split() == ["torch"], done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no writable folder for the kernel library" in lines[0] and str(blocker) in lines[0], lines
