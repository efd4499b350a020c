"""What the mapper decides for one change (pure): a command for the other side, or why there is none."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tandem_shared.contracts import (
    ChangeEvent,
    ChangeKind,
    ErrorInfo,
    Flow,
    InstanceConfig,
    Operation,
    SyncCommand,
    System,
    TraceStatus,
    fingerprint,
    idempotency_key,
)


@dataclass(frozen=True)
class Decision:
    status: TraceStatus
    summary: str
    command: SyncCommand | None = None
    error: ErrorInfo | None = None
    changes_detected: bool | None = None
    logs: list[str] = field(default_factory=list)


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def mailchimp_member(event: ChangeEvent, instance: InstanceConfig) -> tuple[dict[str, Any] | None, ErrorInfo | None]:
    """The Mailchimp member body for an accessplanit user under the instance's mappings."""
    email = _text(event.fields.get("Email"))
    if not email:
        return None, ErrorInfo(
            error_class="MissingEmail", message="User has no email address", permanent=True, field="Email"
        )
    merge_fields: dict[str, Any] = {}
    for mapping in instance.mappings_for(Flow.ACCESSPLANIT_TO_MAILCHIMP):
        if mapping.mailchimp == "EMAIL":
            continue
        merge_fields[mapping.mailchimp] = _text(event.fields.get(mapping.accessplanit))
    member = {
        "email_address": email,
        "status_if_new": instance.mailchimp.status_if_new,
        "merge_fields": merge_fields,
    }
    return member, None


def decide(event: ChangeEvent, instance: InstanceConfig, *, command_id: str, now: datetime) -> Decision:
    flow = event.flow
    if not instance.direction.allows(flow):
        return Decision(
            TraceStatus.SKIPPED,
            f"{flow.label} is not synced by this instance ({instance.direction})",
            changes_detected=False,
        )
    if event.kind is ChangeKind.DELETED:
        return Decision(
            TraceStatus.SKIPPED, "Deletes are not synced: the contact is kept on the other side", changes_detected=False
        )
    if flow is not Flow.ACCESSPLANIT_TO_MAILCHIMP:
        return Decision(TraceStatus.SKIPPED, f"{flow.label} is not mapped yet", changes_detected=False)
    payload, error = mailchimp_member(event, instance)
    if error is not None or payload is None:
        return Decision(
            TraceStatus.FAILED,
            f"Not sent to Mailchimp: {error.message if error else 'no payload'}",
            error=error,
            changes_detected=True,
        )
    fp = fingerprint(payload)
    command = SyncCommand(
        command_id=command_id,
        execution_id=event.execution_id,
        original_execution_id=event.original_execution_id,
        event_id=event.event_id,
        instance_id=event.instance_id,
        target=System.MAILCHIMP,
        operation=Operation.UPSERT,
        identity=event.identity,
        payload=payload,
        fingerprint=fp,
        idempotency_key=idempotency_key(
            event.instance_id, System.MAILCHIMP, event.identity.contact_key, Operation.UPSERT, fp
        ),
        trigger=event.trigger,
        source_occurred_at=event.occurred_at,
        created_at=now,
    )
    return Decision(
        TraceStatus.SUCCEEDED,
        f"Mapped to a Mailchimp upsert of {payload['email_address']}",
        command=command,
        changes_detected=True,
    )
