"""SyncCommand: what the mapper asks the writer to do to one target for one contact."""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson
from pydantic import Field

from tandem_shared.contracts.common import ContactIdentity, Contract, Flow, System, Trigger


class Operation(StrEnum):
    UPSERT = "upsert"
    CHANGE_EMAIL = "change_email"


class SyncCommand(Contract):
    command_id: str
    execution_id: str
    original_execution_id: str | None = None
    event_id: str
    instance_id: str
    target: System
    operation: Operation
    identity: ContactIdentity
    payload: dict[str, Any] = Field(description="Target-native body, e.g. a Mailchimp member or accessplanit user.")
    fingerprint: str = Field(description="sha256 of the canonical payload (change detection, echo suppression).")
    idempotency_key: str
    attempt: int = 1
    trigger: Trigger
    source_occurred_at: datetime
    created_at: datetime

    @property
    def flow(self) -> Flow:
        return Flow.from_source(self.target.other)


def canonical_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def fingerprint(payload: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def idempotency_key(instance_id: str, target: System, contact_key: str, operation: Operation, fp: str) -> str:
    """Same instance, target, contact, operation and payload → same key: the write is done at most once."""
    raw = f"{instance_id}|{target.value}|{contact_key}|{operation.value}|{fp}"
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()
