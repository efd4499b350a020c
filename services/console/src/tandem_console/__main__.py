"""`python -m tandem_console serve|rebuild` (settings from TANDEM_CONSOLE_* and KAFKA_BOOTSTRAP_SERVERS)."""

from __future__ import annotations

import argparse
import asyncio
import sys

import uvicorn

from tandem_console.rebuild import rebuild
from tandem_console.settings import ConsoleSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tandem-console")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the console (the default)")
    # Loopback unless asked: the console has no login, so it is exposed only on purpose.
    serve.add_argument("--host", default="127.0.0.1")
    sub.add_parser("rebuild", help="empty the store and read tandem.trace again from its beginning, then exit")
    args = parser.parse_args(argv)
    settings = ConsoleSettings()
    if args.command == "rebuild":
        stored = asyncio.run(rebuild(settings))
        sys.stdout.write(f"rebuilt: {stored} trace records stored in {settings.database_url}\n")
        return 0
    host = getattr(args, "host", "127.0.0.1")
    # No log config of uvicorn's own: the app's configure_logging renders uvicorn's lines like every other one.
    uvicorn.run(
        "tandem_console.app:create_app",
        factory=True,
        host=host,
        port=settings.port,
        log_config=None,
        http="tandem_shared.http_server:DeadlineProtocol",  # a deadline for each request's headers and body
        limit_concurrency=1000,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
