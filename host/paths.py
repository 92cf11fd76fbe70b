"""Output paths the user names, checked before any work starts.

A command that will write results after minutes of training or simulation checks its
output folder or file first (:func:`check_out_dir`, :func:`check_out_file`): a path that
is the wrong kind (a file where a folder is expected, or the reverse), lies under a
file, or cannot be created or written is a :class:`~remeco.host.cli.UserError` naming the
option, the path and what was expected, which the CLI prints as one line (exit status 2).

:func:`user_os_error` tells the CLI which ``OSError`` s raised later anyway (a folder made
read-only meanwhile, a full disk) are the user's to fix, so they are shown as one line
too; any other exception keeps its traceback.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from remeco.host.cli import UserError

__all__ = ["check_out_dir", "check_out_file", "user_os_error"]

# errno values of an OSError that is about the user's paths, permissions or disk.
_USER_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("EACCES", "EPERM", "EROFS", "ENOSPC", "EDQUOT", "EISDIR", "ENOTDIR", "EEXIST", "ENAMETOOLONG",
                 "ENOENT", "ELOOP", "EFBIG")
    if hasattr(errno, name)
)


def _file_above(path: Path) -> Path | None:
    """The nearest ancestor of ``path`` that exists and is not a folder, if any."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def check_out_dir(path: str | os.PathLike, flag: str = "--out", *, create: bool = True) -> Path:
    """The output folder ``path``, created (with ``create``) and known writable.

    Raises :class:`UserError` if ``path`` is a file, lies under a file, or cannot be
    created or written.
    """
    if isinstance(path, str) and not path.strip():
        raise UserError(f"{flag} must name a folder, got an empty path")
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise UserError(f"{flag} {p} is a file; expected a folder (created if missing)")
    above = _file_above(p)
    if above is not None:
        raise UserError(f"{flag} {p} lies under {above}, which is a file; expected a folder")
    if create:
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{flag} {p}: cannot create the folder ({exc.strerror or exc})") from None
    base = _nearest_existing(p)
    if not os.access(base, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {p}: {base} is not writable; expected a folder you can write to")
    return p


def check_out_file(path: str | os.PathLike, flag: str) -> Path:
    """The output file ``path`` (its folder created): not a folder, not under a file, writable.

    Raises :class:`UserError` naming ``flag`` otherwise.
    """
    if isinstance(path, str) and not path.strip():
        raise UserError(f"{flag} must name a file, got an empty path")
    p = Path(path).expanduser()
    if p.is_dir():
        raise UserError(f"{flag} {p} is a folder; expected a file name (e.g. {p / 'lenet.npz'})")
    above = _file_above(p)
    if above is not None:
        raise UserError(f"{flag} {p} lies under {above}, which is a file; expected a path in a folder")
    if p.exists() and not os.access(p, os.W_OK):
        raise UserError(f"{flag} {p} exists and is not writable")
    check_out_dir(p.parent, f"{flag} {p}: folder")
    return p


def user_os_error(exc: BaseException) -> bool:
    """True if ``exc`` is an ``OSError`` about paths, permissions or disk space (the user's to fix)."""
    return isinstance(exc, OSError) and exc.errno in _USER_ERRNOS
