"""The console keeps its audit log from `tandem.trace` too: an audit record read from the trace (the CLI's, another
replica's, its own read back, or read again by a rebuild) is stored once, in the audit log, not as an execution."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord

from tandem_console.audit import AuditEntry, AuditLog
from tandem_console.consumer import TraceConsumer
from tandem_console.store import TraceStore
from tandem_shared.audit import audit_trace
from tandem_shared.contracts.envelopes import trace_envelope
from tandem_shared.contracts.topics import TRACE
from tandem_shared.kafka import KafkaConnection

AT = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def message(entry: AuditEntry, offset: int, source: str = "console") -> ConsumerRecord[bytes, bytes]:
    value = trace_envelope(audit_trace(entry.as_record(source), "demo")).value
    return ConsumerRecord(TRACE, 0, offset, 0, 0, b"k", value, None, 0, 0, [])


@pytest.fixture
def store(tmp_path: Path) -> TraceStore:
    built = TraceStore(f"sqlite:///{tmp_path / 'console.db'}")
    built.create()
    return built


async def test_audit_records_from_the_trace_are_stored_once_and_are_no_executions(
    store: TraceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = TraceConsumer(KafkaConnection("127.0.0.1:1", "test"), store)

    async def no_lag() -> int:
        return 0

    monkeypatch.setattr(consumer._follower, "lag", no_lag)  # no broker: nothing to measure
    audit = AuditLog(store.engine)
    own = AuditEntry(AT, "ops", "password", "pause_instance", "/api/instances/demo/pause", 200)
    assert audit.record(own)  # recorded when the action was answered, then read back from the trace
    cli = AuditEntry(AT, "cli:ada", "cli", "forget_contact", "tandem contacts forget", 0)

    await consumer._add([message(own, 0), message(cli, 1, "cli"), message(cli, 2, "cli")])
    await consumer._add([message(own, 0), message(cli, 1, "cli")])  # a rebuild reads them again

    stored = audit.latest()
    assert sorted((e.audit_id, e.who, e.action) for e in stored) == sorted(
        [(own.audit_id, "ops", "pause_instance"), (cli.audit_id, "cli:ada", "forget_contact")]
    )
    assert store.execution(own.audit_id) is None and store.execution(cli.audit_id) is None
