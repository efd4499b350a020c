"""The console keeps its audit log from `tandem.trace` too: an audit record read from the trace (another replica's,
its own read back, or read again by a rebuild) is stored once, in the audit log, not as an execution. And the
sessions a logout revoked, on SQLite and Postgres alike."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord

from tandem_console.audit import AuditEntry, AuditLog
from tandem_console.consumer import TraceConsumer
from tandem_console.sessions import RevokedSessions
from tandem_console.store import TraceStore
from tandem_shared.audit import audit_trace
from tandem_shared.contracts.envelopes import trace_envelope
from tandem_shared.contracts.topics import TRACE
from tandem_shared.kafka import KafkaConnection

AT = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def message(entry: AuditEntry, offset: int, source: str = "console") -> ConsumerRecord[bytes, bytes]:
    value = trace_envelope(audit_trace(entry.as_record(source), "demo")).value
    return ConsumerRecord(TRACE, 0, offset, 0, 0, b"k", value, None, 0, 0, [])


# Postgres is the devstack's (tests/conftest.py): audit ids and session ids are random, so what earlier runs left
# there does not matter.
@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TraceStore]:
    if request.param == "postgres":
        url = str(request.getfixturevalue("postgres_url"))
    else:
        url = f"sqlite:///{tmp_path / 'console.db'}"
    built = TraceStore(url)
    built.create()
    yield built
    built.close()


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

    stored = [e for e in audit.latest() if e.audit_id in (own.audit_id, cli.audit_id)]
    assert sorted((e.audit_id, e.who, e.action) for e in stored) == sorted(
        [(own.audit_id, "ops", "pause_instance"), (cli.audit_id, "cli:ada", "forget_contact")]
    )
    assert store.execution(own.audit_id) is None and store.execution(cli.audit_id) is None


def test_a_revoked_session_stays_revoked_until_it_would_have_expired(store: TraceStore) -> None:
    revoked = RevokedSessions(store.engine)
    sid, other = f"sid-{uuid.uuid4().hex}", f"sid-{uuid.uuid4().hex}"
    revoked.revoke(sid, expires_s=2_000, now_s=1_000)
    revoked.revoke(sid, expires_s=2_000, now_s=1_000)  # a second logout of the same cookie
    assert revoked.is_revoked(sid) and not revoked.is_revoked(other)
    revoked.revoke(other, expires_s=4_000, now_s=3_000)  # the next revocation drops those that ran out
    assert not revoked.is_revoked(sid) and revoked.is_revoked(other)
