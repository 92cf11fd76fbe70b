"""The ``remeco`` command line.

Subcommands register themselves in :data:`COMMANDS` (name -> (help, add_arguments, run)),
so later layers add commands without touching the parser plumbing. Errors the user can
fix (bad values, missing files) are printed as one line and exit with status 2; they are
never shown as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from remeco import __version__

__all__ = ["main", "COMMANDS", "UserError"]


class UserError(Exception):
    """An error in what the user asked for; printed without a traceback."""


Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
COMMANDS: dict[str, Command] = {}


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
    from remeco.host import demo, dse, network_cli, reproduce, rtl_cli, run_cli  # noqa: F401


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    _load_commands()
    parser = argparse.ArgumentParser(
        prog="remeco",
        description="Reliable memristor-crossbar accelerators: golden models, redundancy (ReMeCo), RTL verification.",
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
        print(f"remeco {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"remeco {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
