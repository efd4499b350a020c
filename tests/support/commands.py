"""SyncCommands for tests: one factory, so a test states only what matters to it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tandem_shared.contracts import (
    ContactIdentity,
    Operation,
    SyncCommand,
    System,
    Trigger,
    fingerprint,
    idempotency_key,
)


def sync_command(
    instance_id: str,
    target: System,
    payload: Mapping[str, Any],
    *,
    email: str | None,
    user_id: str | None = None,
    old_email: str | None = None,
    operation: Operation = Operation.UPSERT,
    name: str = "c",
    occurred: datetime | None = None,
    fp: str | None = None,
    key: str | None = None,
    trigger: Trigger = Trigger.WEBHOOK,
    **fields: Any,
) -> SyncCommand:
    """A command as the mapper makes it: ids from `name`, fingerprint of the payload and the real idempotency key
    unless given (`fp`, `key`), occurred now unless `occurred`; `fields` set any other SyncCommand field."""
    identity = ContactIdentity(accessplanit_user_id=user_id, email=email, old_email=old_email)
    fp = fingerprint(dict(payload)) if fp is None else fp
    at = occurred or datetime.now(UTC)
    values: dict[str, Any] = {
        "command_id": name,
        "execution_id": f"x-{name}",
        "event_id": f"e-{name}",
        "instance_id": instance_id,
        "target": target,
        "operation": operation,
        "identity": identity,
        "payload": dict(payload),
        "fingerprint": fp,
        "idempotency_key": key or idempotency_key(instance_id, target, identity.contact_key, operation, fp),
        "trigger": trigger,
        "source_occurred_at": at,
        "created_at": at,
    }
    return SyncCommand(**{**values, **fields})
