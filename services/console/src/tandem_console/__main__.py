"""`python -m tandem_console serve|rebuild` (settings from TANDEM_CONSOLE_* and KAFKA_BOOTSTRAP_SERVERS)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys

import uvicorn

from tandem_console.credentials import Role, hash_password, hash_token, new_token
from tandem_console.rebuild import rebuild
from tandem_console.settings import ConsoleSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tandem-console")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the console (the default)")
    # Loopback unless asked: exposing the console is a decision (with its Host allow-list and logins set up).
    serve.add_argument("--host", default="127.0.0.1")
    sub.add_parser("rebuild", help="empty the store and read tandem.trace again from its beginning, then exit")
    account = sub.add_parser("hash-password", help="an accounts-file user entry: asks for the password")
    account.add_argument("name")
    account.add_argument("--role", choices=[r.label for r in Role if r >= Role.VIEWER], default="viewer")
    token = sub.add_parser("new-token", help="a new API token (shown once) and its accounts-file entry")
    token.add_argument("name")
    token.add_argument("--role", choices=[r.label for r in Role], default="viewer")
    args = parser.parse_args(argv)
    if args.command == "hash-password":
        password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
        entry = {"name": args.name, "role": args.role, "password_hash": hash_password(password)}
        sys.stdout.write(json.dumps(entry) + "\n")
        return 0
    if args.command == "new-token":
        value = new_token()
        sys.stderr.write(f"token (shown once, keep it in the caller's secret store): {value}\n")
        sys.stdout.write(json.dumps({"name": args.name, "role": args.role, "token_hash": hash_token(value)}) + "\n")
        return 0
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
