"""Requesting a reconciliation run and following it to its end on `tandem.reconcile.runs` (the CLI, the benchmark)."""

from __future__ import annotations

from collections.abc import Callable

from aiokafka import AIOKafkaConsumer

from tandem_shared.contracts.envelopes import reconcile_request_envelope
from tandem_shared.contracts.reconcile import ReconcileProgress, ReconcileRequest, ReconcileUpdate, ReportRow
from tandem_shared.contracts.topics import RECONCILE_RUNS
from tandem_shared.kafka import KafkaConnection, KafkaProducer
from tandem_shared.kafka.admin import partitions_of
from tandem_shared.kafka.producer import send_envelope


class RunNotStarted(RuntimeError):
    """No writer reported on the run in time (the request stays on the topic)."""


async def _end_offsets(consumer: AIOKafkaConsumer, connection: KafkaConnection) -> None:
    partitions = await partitions_of(connection, RECONCILE_RUNS)
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:  # resolve the positions now, before the request can be answered
        await consumer.position(tp)


async def follow_run(
    connection: KafkaConnection,
    request: ReconcileRequest,
    *,
    on_progress: Callable[[ReconcileProgress], None],
    start_timeout_s: float,
    detach: bool = False,
) -> tuple[ReconcileProgress | None, list[ReportRow]]:
    """Publishes the request and follows its run to its end: the last progress and every report row (each once)."""
    consumer = connection.consumer(enable_auto_commit=False, auto_offset_reset="latest")
    await consumer.start()
    try:
        await _end_offsets(consumer, connection)
        producer = KafkaProducer(connection)
        await producer.start()
        try:
            await (await send_envelope(producer, reconcile_request_envelope(request)))
        finally:
            await producer.stop()
        if detach:
            return None, []
        rows: dict[str, ReportRow] = {}
        last: ReconcileProgress | None = None
        waited = 0.0
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            got = False
            for records in batches.values():
                for record in records:
                    if record.key != request.run_id.encode() or record.value is None:
                        continue
                    update = ReconcileUpdate.model_validate_json(record.value)
                    got = True
                    last = update.progress
                    for row in update.rows:  # a resumed run may report a contact again
                        rows[f"{row.category}|{row.email}|{','.join(row.accessplanit_user_ids)}"] = row
                    on_progress(last)
            if last is not None and last.status.finished:
                return last, list(rows.values())
            waited = 0.0 if got or last is not None else waited + 1.0
            if last is None and waited >= start_timeout_s:
                raise RunNotStarted(
                    f"no writer started run {request.run_id} within {start_timeout_s:.0f}s; the request stays on "
                    "tandem.reconcile.requests and runs when a writer reads it"
                )
    finally:
        await consumer.stop()
