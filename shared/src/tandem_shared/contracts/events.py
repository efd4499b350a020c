"""ChangeEvent: what ingest publishes to `tandem.changes` for every change it learns of."""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from tandem_shared.contracts.common import ContactIdentity, Contract, Flow, System, Trigger


class ChangeKind(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    EMAIL_CHANGED = "email_changed"
    DELETED = "deleted"
    UNSUBSCRIBED = "unsubscribed"
    CLEANED = "cleaned"


class ChangeEvent(Contract):
    event_id: str = Field(description="Deterministic from the vendor delivery, so a redelivery has the same id.")
    execution_id: str = Field(description="The execution this change starts; every stage traces under it.")
    original_execution_id: str | None = Field(default=None, description="Set on replays: the execution being replayed.")
    instance_id: str
    source: System
    kind: ChangeKind
    identity: ContactIdentity
    fields: dict[str, Any] = Field(default_factory=dict, description="The record's fields as the source sent them.")
    occurred_at: datetime = Field(description="When the change happened in the source system.")
    received_at: datetime
    trigger: Trigger
    updated_by_id: str | None = Field(
        default=None, description="accessplanit UpdatedByID: who made the change (echo detection)."
    )
    source_action: str | None = Field(
        default=None, description="The vendor's own name for what happened (webhook type, HTTP method)."
    )

    @property
    def flow(self) -> Flow:
        return Flow.from_source(self.source)


def deterministic_event_id(*parts: str | None) -> str:
    """sha256 over the parts that identify one vendor delivery; redeliveries and poll re-reads map to the same id."""
    joined = "|".join(p or "" for p in parts)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:32]
