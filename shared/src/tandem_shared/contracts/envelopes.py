"""Each contract's Kafka record: topic, key, value and Tandem's headers, decided here once for every producer.

Values are the contract's JSON; keys keep a contact's records on one partition (changes, commands) or an execution's
trace records together. Header values are str on the wire (see `Headers`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tandem_shared.contracts.commands import SyncCommand
from tandem_shared.contracts.erasure import ErasureRequest
from tandem_shared.contracts.events import ChangeEvent
from tandem_shared.contracts.instances import InstanceConfig
from tandem_shared.contracts.reconcile import ReconcileRequest, ReconcileUpdate
from tandem_shared.contracts.topics import (
    CHANGES,
    COMMANDS,
    ERASURE,
    INSTANCES,
    RECONCILE_REQUESTS,
    RECONCILE_RUNS,
    TRACE,
    Headers,
    message_key,
)
from tandem_shared.contracts.trace import TraceRecord


@dataclass(frozen=True)
class Envelope:
    """One record as it goes to Kafka; a None value is a tombstone (compacted topics)."""

    topic: str
    key: bytes
    value: bytes | None
    headers: Mapping[str, str]


def change_envelope(
    event: ChangeEvent, *, headers: Mapping[str, str] | None = None, replayed_from: str | None = None
) -> Envelope:
    """`headers`: a stage's own marks, put ahead of the standard ones; `replayed_from`: what a replay repeats."""
    out = {**(headers or {}), Headers.INSTANCE_ID: event.instance_id, Headers.EXECUTION_ID: event.execution_id}
    if event.original_execution_id is not None:
        out[Headers.ORIGINAL_EXECUTION_ID] = event.original_execution_id
    out[Headers.EVENT_ID] = event.event_id
    if replayed_from is not None:
        out[Headers.REPLAYED_FROM] = replayed_from
    key = message_key(event.instance_id, event.identity.contact_key).encode()
    return Envelope(CHANGES, key, event.model_dump_json().encode(), out)


def command_envelope(command: SyncCommand, *, replayed_from: str | None = None) -> Envelope:
    out = {
        Headers.INSTANCE_ID: command.instance_id,
        Headers.EXECUTION_ID: command.execution_id,
        Headers.IDEMPOTENCY_KEY: command.idempotency_key,
    }
    if replayed_from is not None:
        if command.original_execution_id is not None:
            out[Headers.ORIGINAL_EXECUTION_ID] = command.original_execution_id
        out[Headers.EVENT_ID] = command.event_id
        out[Headers.REPLAYED_FROM] = replayed_from
    key = message_key(command.instance_id, command.identity.contact_key).encode()
    return Envelope(COMMANDS, key, command.model_dump_json().encode(), out)


def trace_envelope(record: TraceRecord) -> Envelope:
    headers = {Headers.INSTANCE_ID: record.instance_id, Headers.EXECUTION_ID: record.execution_id}
    return Envelope(TRACE, record.execution_id.encode(), record.model_dump_json().encode(), headers)


def instance_envelope(instance_id: str, config: InstanceConfig | None) -> Envelope:
    """A configuration, or (None) the tombstone that deletes the instance."""
    value = config.model_dump_json().encode() if config is not None else None
    return Envelope(INSTANCES, instance_id.encode(), value, {})


def erasure_envelope(request: ErasureRequest) -> Envelope:
    """Keyed by the contact's keyed hash: the address is in the value only, which the topic's retention ends."""
    headers = {Headers.INSTANCE_ID: request.instance_id} if request.instance_id else {}
    return Envelope(ERASURE, request.contact.encode(), request.model_dump_json().encode(), headers)


def reconcile_request_envelope(request: ReconcileRequest) -> Envelope:
    """Keyed by instance: one instance's requests stay in order on one partition."""
    headers = {Headers.INSTANCE_ID: request.instance_id}
    return Envelope(RECONCILE_REQUESTS, request.instance_id.encode(), request.model_dump_json().encode(), headers)


def reconcile_update_envelope(update: ReconcileUpdate) -> Envelope:
    """Keyed by run: a follower reads one run's progress and rows in the order they were found."""
    progress = update.progress
    headers = {Headers.INSTANCE_ID: progress.instance_id}
    return Envelope(RECONCILE_RUNS, progress.run_id.encode(), update.model_dump_json().encode(), headers)
