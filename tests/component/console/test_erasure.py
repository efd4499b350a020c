"""The console applies erasure requests through the shared ErasureApplier: the contact's executions leave its store,
each request is acknowledged (counts only), and the offset after it is stored, so a restart starts after it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import ConsumerRecord

from fakes.producer import InMemoryProducer
from support.traces import trace
from tandem_console.erasure import ConsoleEraser, console_erasure
from tandem_console.filters import ExecutionFilter
from tandem_console.store import TraceStore
from tandem_shared.contracts import ErasureAcknowledgement, ErasureRequest, Stage, TraceStatus
from tandem_shared.contracts.envelopes import erasure_envelope
from tandem_shared.contracts.topics import ERASURE
from tandem_shared.kafka import KafkaConnection

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def record(request: ErasureRequest | None, offset: int) -> ConsumerRecord[bytes, bytes]:
    value = erasure_envelope(request).value if request else b"{not json"
    return ConsumerRecord(ERASURE, 0, offset, 0, 0, b"k", value, None, 0, 0, [])


async def test_the_console_erases_acknowledges_and_stores_the_offset_after_each_request(tmp_path: Path) -> None:
    store = TraceStore(f"sqlite:///{tmp_path / 'console.db'}")
    store.create()
    records = [
        trace(f"{who}-{instance}", instance, Stage.INGEST, TraceStatus.SUCCEEDED, at=T0, email=f"{who}@example.com")
        for who, instance in [("ada", "demo"), ("ada", "other"), ("bob", "demo")]
    ]
    store.add(records, topic="tandem.trace", next_offsets={0: 3})
    later = T0 + timedelta(minutes=1)
    first = ErasureRequest(request_id="r1", email="ADA@example.com", instance_id="demo", requested_at=later)
    second = ErasureRequest(request_id="r2", email="bob@example.com", requested_at=later)
    producer = InMemoryProducer()
    applier = console_erasure(KafkaConnection("127.0.0.1:1", "test"), producer, store)

    await applier.apply([record(first, 0), record(None, 1), record(second, 2)])

    stored = {e.execution_id for e in store.list_executions(ExecutionFilter(), limit=10).items}
    assert stored == {"ada-other"}
    acks = [ErasureAcknowledgement.from_data_out(t.output.data_out) for t in producer.traces]
    assert [(a.request_id, a.service, a.removed) for a in acks if a] == [
        ("r1", "console", {"execution(s)": 1}),
        ("r2", "console", {"execution(s)": 1}),
    ]
    assert "example.com" not in "".join(t.model_dump_json() for t in producer.traces)
    # The unreadable request is skipped, not retried for ever; a restart follows from after the last request.
    assert await ConsoleEraser(store).positions() == {0: 3}
