"""The `tandem` operator command. Each sub-command group lives in its own module and registers itself here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

# Each entry adds one sub-command group to the parser; a group's handler returns the process exit code.
Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]
REGISTRARS: list[Registrar] = []


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tandem", description="Operate Tandem: instances, replay, reports.")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in REGISTRARS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    if not REGISTRARS:
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    quiet_logging()
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


# Each module appends its registrar to REGISTRARS when imported (after REGISTRARS exists, hence down here).
from tandem_cli import instances, report  # noqa: E402, F401
from tandem_cli.common import quiet_logging  # noqa: E402
