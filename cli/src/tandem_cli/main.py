"""The `tandem` operator command. Each sub-command group lives in its own module, which adds it to the parser
through its `register(subparsers)`; the groups never import this module."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

import structlog

from tandem_cli import audit, contacts, instances, reconcile, replay, report, webhooks

# Each entry adds one sub-command group to the parser; a group's handler returns the process exit code.
Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]
REGISTRARS: tuple[Registrar, ...] = (
    instances.register,
    reconcile.register,
    replay.register,
    report.register,
    webhooks.register,
    contacts.register,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tandem", description="Operate Tandem: instances, replay, reports, contacts.")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in REGISTRARS:
        register(sub)
    return parser


def quiet_library_logs() -> None:
    """Library log lines go to stderr, warnings and worse only: stdout is the command's output and may be piped."""
    structlog.configure(
        # Looked up at each use, so a replaced sys.stderr (a test's capture, since closed) is never written to.
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )


def main(argv: Sequence[str] | None = None) -> int:
    quiet_library_logs()
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    code = handler(args)
    audit.record(args, code)
    return code
