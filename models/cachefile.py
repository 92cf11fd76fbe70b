"""Cache entries on disk: written atomically, validated on load, rebuilt when damaged.

Every remeco cache (trained networks, sensitivity, simulator builds) follows one
contract, kept here so that it is written once:

* an entry is written to a temporary file in its own folder and renamed into place
  (:func:`atomic_write_bytes`, :func:`atomic_write_text`; ``.npz`` entries use
  :func:`remeco.models.quantized.atomic_savez`), so an interrupted or killed run leaves
  either the old entry or the new one, never half of one;
* a reader validates what it loads; an entry that cannot be used (empty, truncated, not
  the expected format, wrong or missing fields) is reported by :func:`warn_damaged` in one
  line naming the file, removed and rebuilt. A damaged cache is never a crash.

The warning goes to the ``remeco.cache`` logger (:data:`LOGGER`); without a configured
handler Python's last-resort handler prints it to stderr as the message alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

__all__ = ["LOGGER", "DAMAGED", "atomic_write_bytes", "atomic_write_text", "usual_mode", "warn_damaged"]

#: Logger of cache warnings (one line per damaged entry).
LOGGER = logging.getLogger("remeco.cache")

#: What reading or parsing a damaged entry can raise. A loader catches these (and only
#: these) around its parse and validation, so a bug elsewhere still shows its traceback.
DAMAGED: tuple[type[BaseException], ...] = (
    OSError, EOFError, ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError,
)


def usual_mode(fd: int) -> None:
    """Give a file made by :func:`tempfile.mkstemp` (mode 0600) the mode ``open()`` would
    have: ``0666`` less the umask, so an atomically written bundle or network file is as
    readable by others (a board's notebook user, a shared results folder) as one written
    directly."""
    mask = os.umask(0o022)  # reading the umask means setting it; put it back at once
    os.umask(mask)
    os.fchmod(fd, 0o666 & ~mask)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    The folder is created if needed. Returns the path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        usual_mode(fd)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def warn_damaged(path: str | os.PathLike, problem: BaseException | str, *, remove: bool = True) -> None:
    """Report a damaged cache entry in one line and (by default) remove it, so it is rebuilt.

    Parameters
    ----------
    path:
        The entry (a file or a folder).
    problem:
        What is wrong: an exception (its type and first line are shown) or a sentence.
    remove:
        Delete the entry (a folder with its contents); a failure to delete is ignored,
        the caller overwrites the entry anyway.
    """
    if isinstance(problem, BaseException):
        text = str(problem).strip().splitlines()
        problem = f"{type(problem).__name__}: {text[0]}" if text else type(problem).__name__
    LOGGER.warning("remeco: warning: damaged cache entry %s (%s); rebuilding it", path, problem)
    if remove:
        path = Path(path)
        if path.is_dir() and not path.is_symlink():
            import shutil

            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
