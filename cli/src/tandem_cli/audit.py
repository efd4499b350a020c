"""The CLI's operator actions in the trace, as the console's are: one `AuditRecord` per state-changing command
(who ran it, what, on which instance, how it ended), so the console's audit log and dashboards see both ways in.

A command opts in with `audited(parser, action, target)`; `main` records it once the command has ended. Recording is
best effort: the action is done (or refused) already, and a broker that cannot take the record is said on stderr."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime

from tandem_cli.common import (
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Unavailable,
    run,
)
from tandem_shared.audit import audit_trace
from tandem_shared.contracts import AuditRecord
from tandem_shared.ids import new_id
from tandem_shared.kafka import KafkaConnection, KafkaProducer
from tandem_shared.tracing import publish_trace

# An audit record's outcome is an HTTP status (the console's); the CLI's exit codes map onto the same meanings.
OUTCOME_OF_EXIT = {
    EXIT_OK: 200,
    EXIT_INVALID: 422,
    EXIT_USAGE: 400,
    EXIT_NOT_FOUND: 404,
    EXIT_UNAVAILABLE: 503,
}

Target = Callable[[argparse.Namespace], tuple[str, str | None]]
Servers = Callable[[argparse.Namespace], str | None]


def _broker_option(args: argparse.Namespace) -> str | None:
    return getattr(args, "bootstrap_servers", None)


def audited(parser: argparse.ArgumentParser, action: str, target: Target, *, servers: Servers = _broker_option) -> None:
    """Record `action` each time this command runs. `target` names what it acted on (no personal data) and the
    instance, if one; `servers` reads the command's Kafka option (`--bootstrap-servers` unless told otherwise)."""
    parser.set_defaults(audit_action=action, audit_target=target, audit_servers=servers)


def operator() -> str:
    """The account that ran the command: the OS user (a CLI has no login of its own)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return f"cli:uid {os.getuid()}"


def audit_record(action: str, target: str, exit_code: int, *, who: str, at: datetime) -> AuditRecord:
    return AuditRecord(
        audit_id=new_id(),
        at=at,
        who=who,
        via="cli",
        action=action,
        target=target,
        outcome=OUTCOME_OF_EXIT.get(exit_code, 500),
        source="cli",
    )


def record(args: argparse.Namespace, exit_code: int) -> None:
    """Publish the audit record of the command `args` ran, if it is audited."""
    action: str | None = getattr(args, "audit_action", None)
    if action is None or exit_code == EXIT_USAGE:  # a usage error reached nothing: there is no action to record
        return
    target, instance_id = args.audit_target(args)
    entry = audit_record(action, target, exit_code, who=operator(), at=datetime.now(UTC))
    servers = args.audit_servers(args) or os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    try:
        run(publish(KafkaConnection.from_env("tandem-cli", servers), entry, instance_id), timeout=10, what="Kafka")
    except Unavailable as exc:
        print(f"tandem: the audit record of {action} was not published: {exc}", file=sys.stderr)


async def publish(connection: KafkaConnection, entry: AuditRecord, instance_id: str | None) -> None:
    producer = KafkaProducer(connection)
    await producer.start()
    try:
        await publish_trace(producer, audit_trace(entry, instance_id))
    finally:
        await producer.stop()
