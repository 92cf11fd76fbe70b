"""The ``remeco`` command line.

Subcommands register themselves in :data:`COMMANDS` (name -> (help, add_arguments, run)),
so later layers add commands without touching the parser plumbing. Errors the user can
fix (bad values, missing files, paths that are the wrong kind or not writable, see
:mod:`remeco.host.paths`) are printed as one line and exit with status 2; they are never
shown as a traceback. Any other exception is a bug and keeps its traceback.

A command module whose third-party dependency is not installed (torch, SciPy or Amaranth
on a PYNQ board) is left out and named in ``remeco --help`` (:data:`UNAVAILABLE`), so
the commands that need NumPy only (``remeco run --bundle``) still work there.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from remeco import __version__

__all__ = ["main", "COMMANDS", "UNAVAILABLE", "UserError"]


class UserError(Exception):
    """An error in what the user asked for; printed without a traceback."""


Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
COMMANDS: dict[str, Command] = {}
#: Command modules left out because a package they import is missing: module -> package.
UNAVAILABLE: dict[str, str] = {}
_COMMAND_MODULES = ("demo", "dse", "network_cli", "reproduce", "rtl_cli", "run_cli")


def command(name: str, help: str):
    """Decorator registering ``run(args) -> exit status`` with an ``add_arguments`` hook."""

    def wrap(add_arguments: Callable[[argparse.ArgumentParser], None]):
        def bind(run: Callable[[argparse.Namespace], int]):
            COMMANDS[name] = (help, add_arguments, run)
            return run

        return bind

    return wrap


def _load_commands() -> None:
    # Imported for their registration side effect; kept here so `remeco --help` lists all.
    for name in _COMMAND_MODULES:
        module = f"remeco.host.{name}"
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            missing = (exc.name or "").split(".")[0]
            if not missing or missing == "remeco":
                raise  # our own code is broken: never hide that
            UNAVAILABLE[module] = missing


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    _load_commands()
    epilog = None
    if UNAVAILABLE:
        missing = ", ".join(f"{m} (needs {p})" for m, p in sorted(UNAVAILABLE.items()))
        epilog = f"Commands not available here, a package is missing: {missing}."
    parser = argparse.ArgumentParser(
        prog="remeco",
        description="Reliable memristor-crossbar accelerators: golden models, redundancy (ReMeCo), RTL verification.",
        epilog=epilog,
    )
    parser.add_argument("--version", action="version", version=f"remeco {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_arguments, _run) in sorted(COMMANDS.items()):
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``remeco`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    _help, _add, run = COMMANDS[args.command]
    try:
        return int(run(args) or 0)
    except (UserError, ValueError, FileNotFoundError) as exc:
        print(f"remeco {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"remeco {args.command}: interrupted; finished work is kept, run the same command again to resume",
              file=sys.stderr)
        return 130
    except OSError as exc:
        from remeco.host.paths import user_os_error

        if not user_os_error(exc):
            raise  # not about the user's paths, permissions or disk: keep the traceback
        print(f"remeco {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    """The error as one line: an OSError as ``path: reason``, others by their first line."""
    if isinstance(exc, OSError) and exc.strerror:
        names = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        return f"{names}: {exc.strerror}" if names else exc.strerror
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
