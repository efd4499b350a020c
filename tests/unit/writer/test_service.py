"""The writer as `bootstrap` composes it, on in-memory fakes only (no Kafka, no Redis): what becomes of a command,
where it is forwarded and what is traced. The real-broker tests (tests/integration/test_delivery_*.py) remain the
proof of delivery."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from fakes.idempotency import InMemoryIdempotencyStore
from fakes.kafka import FakeBroker, FakeConsumer
from fakes.producer import InMemoryProducer, Sent
from fakes.target import ScriptedTarget, applied
from support.commands import sync_command
from support.waiting import eventually
from tandem_shared.contracts import ErrorInfo, Headers, Stage, SyncCommand, System, TraceStatus, utcnow
from tandem_shared.contracts.topics import COMMANDS, COMMANDS_DLQ, COMMANDS_RETRY, TRACE
from tandem_shared.instances import StaticInstanceRegistry, demo_instance
from tandem_shared.kafka.partitioned import InboundRecord
from tandem_shared.redis.state import Side
from tandem_shared.sync.rules import AbandonedMarks, StateSnapshot, side_key
from tandem_writer.bootstrap import Writer, bootstrap
from tandem_writer.domain.decisions import Disposition
from tandem_writer.domain.outcome import WriteOutcome
from tandem_writer.domain.retry import from_epoch_ms
from tandem_writer.settings import WriterSettings

DELAYS_S = [10.0, 60.0, 300.0, 1800.0, 7200.0]
TRANSIENT = ErrorInfo(error_class="TooManyRequests", message="TooManyRequests: slow down", permanent=False)
PERMANENT = ErrorInfo(error_class="InvalidResource", message="Invalid Resource: PHONE is required", permanent=True)


@dataclass
class WrittenState:
    """The sync-state store as far as the writer uses it: what a successful write recorded."""

    written: list[SyncCommand] = field(default_factory=list)
    cleared: list[AbandonedMarks] = field(default_factory=list)

    async def record_written(self, command: SyncCommand) -> None:
        self.written.append(command)

    async def clear_pending(self, abandoned: AbandonedMarks) -> None:
        self.cleared.append(abandoned)

    async def load_many(self, sides: Iterable[Side], **_: object) -> StateSnapshot:
        """Nothing known about any side (a write-back or a long-queued command is then written as it is)."""
        return StateSnapshot({side_key(*s): None for s in sides}, {}, {})

    async def close(self) -> None:
        return None


@dataclass
class Fakes:
    target: ScriptedTarget
    producer: InMemoryProducer = field(default_factory=InMemoryProducer)
    store: InMemoryIdempotencyStore = field(default_factory=InMemoryIdempotencyStore)
    state: WrittenState = field(default_factory=WrittenState)
    broker: FakeBroker = field(default_factory=FakeBroker)
    clients: list[FakeConsumer] = field(default_factory=list)

    def writer(self) -> Writer:
        settings = WriterSettings(retry_delays_s=DELAYS_S, contact_write_interval_s=0.0)
        return bootstrap(
            settings,
            producer=self.producer,
            idempotency=self.store,
            state=self.state,  # type: ignore[arg-type]
            targets={System.MAILCHIMP: self.target},
            registry=StaticInstanceRegistry([demo_instance()]),
            consumer_factory=lambda: self._client(settings.group_id),
        )

    def _client(self, group_id: str) -> FakeConsumer:
        self.clients.append(self.broker.consumer(group_id))
        return self.clients[-1]

    @property
    def forwarded(self) -> list[Sent]:
        return [s for s in self.producer.sent if s.topic != TRACE]


def fakes(*outcomes: WriteOutcome | Exception) -> Fakes:
    return Fakes(ScriptedTarget(*outcomes))


def command(name: str = "Ada", *, occurred: datetime | None = None, instance_id: str = "demo") -> SyncCommand:
    payload = {"email_address": "u7@example.com", "merge_fields": {"FNAME": name}}
    return sync_command(
        instance_id,
        System.MAILCHIMP,
        payload,
        email="u7@example.com",
        user_id="7",
        name=name,
        execution_id=f"x-{name}",
        event_id=f"e-{name}",
        occurred=occurred,
    )


def record(cmd: SyncCommand, *, topic: str = COMMANDS, offset: int = 41) -> InboundRecord:
    headers = {Headers.INSTANCE_ID: cmd.instance_id, Headers.EXECUTION_ID: cmd.execution_id}
    return InboundRecord(topic, 3, offset, b"demo:mc:7", cmd.model_dump_json().encode(), headers, 1_700_000_000_000)


def failed(error: ErrorInfo) -> WriteOutcome:
    return WriteOutcome(False, f"Mailchimp refused the write: {error.message}", error=error)


async def test_a_command_is_applied_once_and_its_redelivery_skipped_as_already_applied() -> None:
    f = fakes(applied(), applied())
    writer = f.writer()
    cmd = command()
    assert await writer.delivery.handle(record(cmd)) is Disposition.APPLIED
    assert await writer.delivery.handle(record(cmd, offset=42)) is Disposition.ALREADY_APPLIED

    assert f.target.writes == [cmd]
    assert f.state.written == [cmd], "what the target now holds is recorded once, for the mapper"
    assert await f.store.applied_at(cmd) is not None and not f.store.contact_locked(cmd)
    first, second = f.producer.traces
    assert (first.stage, first.status, first.changes_detected) == (Stage.WRITER, TraceStatus.SUCCEEDED, True)
    assert first.summary == "Mailchimp member u7@example.com is subscribed"
    assert (second.status, second.changes_detected) == (TraceStatus.SKIPPED, False)
    assert second.summary.startswith("Skipped: already applied at ")
    assert f.forwarded == []


async def test_a_transient_failure_goes_to_the_first_retry_tier_not_before_its_delay() -> None:
    f = fakes(failed(TRANSIENT))
    writer = f.writer()
    cmd = command()
    before = utcnow()
    assert await writer.delivery.handle(record(cmd)) is Disposition.RETRY_PENDING
    after = utcnow()

    [sent] = f.forwarded
    assert (sent.topic, sent.partition, sent.key) == (COMMANDS_RETRY[0], 3, b"demo:mc:7")
    assert SyncCommand.model_validate_json(sent.value or b"").attempt == 2
    h = sent.headers
    assert h[Headers.ATTEMPT] == "2"
    not_before = from_epoch_ms(int(h[Headers.NOT_BEFORE]))
    delay = timedelta(seconds=DELAYS_S[0])
    assert before + delay - timedelta(milliseconds=1) <= not_before <= after + delay
    assert (h[Headers.ORIGINAL_TOPIC], h[Headers.ORIGINAL_PARTITION], h[Headers.ORIGINAL_OFFSET]) == (
        COMMANDS,
        "3",
        "41",
    )
    assert (h[Headers.EXCEPTION_TYPE], h[Headers.ERROR_PERMANENT]) == ("TooManyRequests", "false")
    assert h[Headers.INSTANCE_ID] == "demo" and h[Headers.EXECUTION_ID] == cmd.execution_id
    assert not f.store.in_flight(cmd) and not f.store.contact_locked(cmd), "a failed attempt releases its claim"
    assert f.state.written == []
    [trace] = f.producer.traces
    assert (trace.status, trace.error) == (TraceStatus.RETRY_PENDING, TRANSIENT)
    assert trace.summary.startswith("Retry pending (attempt 2 of 6, next at ")


async def test_a_permanent_failure_is_dead_lettered_with_its_history_in_the_headers() -> None:
    f = fakes(failed(PERMANENT))
    writer = f.writer()
    cmd = command()
    assert await writer.delivery.handle(record(cmd)) is Disposition.DEAD_LETTERED

    [dead] = f.forwarded
    assert (dead.topic, dead.key, dead.partition) == (COMMANDS_DLQ, b"demo:mc:7", 3)
    assert SyncCommand.model_validate_json(dead.value or b"") == cmd
    h = dead.headers
    assert (h[Headers.ATTEMPT], h[Headers.ERROR_PERMANENT]) == ("1", "true")
    assert (h[Headers.EXCEPTION_TYPE], h[Headers.EXCEPTION_MESSAGE]) == ("InvalidResource", PERMANENT.message)
    assert (h[Headers.ORIGINAL_TOPIC], h[Headers.ORIGINAL_OFFSET]) == (COMMANDS, "41")
    assert Headers.NOT_BEFORE not in h
    assert h[Headers.FIRST_FAILED_AT] == h[Headers.LAST_FAILED_AT]
    [trace] = f.producer.traces
    assert trace.status is TraceStatus.DEAD_LETTERED
    assert trace.summary == f"Dead-lettered (permanent error, not retried): {PERMANENT.message}"
    assert not f.store.in_flight(cmd) and await f.store.applied_at(cmd) is None


async def test_a_command_older_than_the_newest_applied_change_is_superseded() -> None:
    f = fakes()
    writer = f.writer()
    now = utcnow()
    old, new = command("Old", occurred=now - timedelta(minutes=1)), command("New", occurred=now)
    assert await writer.delivery.handle(record(new)) is Disposition.APPLIED
    assert await writer.delivery.handle(record(old, topic=COMMANDS_RETRY[0], offset=7)) is Disposition.SUPERSEDED

    assert f.target.writes == [new]
    assert f.forwarded == []
    superseded = f.producer.traces[-1]
    assert (superseded.execution_id, superseded.status) == ("x-Old", TraceStatus.SKIPPED)
    assert superseded.summary.startswith("Superseded: a newer change to this contact")
    assert not f.store.in_flight(old) and not f.store.contact_locked(old), "the claim is given back"


async def test_a_command_for_an_unknown_instance_is_skipped_with_a_trace() -> None:
    f = fakes()
    writer = f.writer()
    cmd = command(instance_id="gone")
    assert await writer.delivery.handle(record(cmd)) is Disposition.IGNORED

    assert f.target.writes == [] and f.forwarded == []
    assert not f.store.in_flight(cmd)
    [trace] = f.producer.traces
    assert (trace.instance_id, trace.execution_id) == ("gone", cmd.execution_id)
    assert (trace.status, trace.summary) == (TraceStatus.SKIPPED, "Unknown instance gone")


async def test_the_composed_writer_consumes_writes_traces_and_commits_on_fakes() -> None:
    f = fakes()
    [tp] = f.broker.create_topic(COMMANDS)
    retries = {tp for topic in COMMANDS_RETRY for tp in f.broker.create_topic(topic)}
    cmd = command()
    f.broker.produce(tp, cmd.model_dump_json().encode(), key=b"demo:mc:7")
    writer = f.writer()
    await writer.connect()
    await writer.consume()
    try:
        [client] = f.clients
        await client.rebalance({tp, *retries})

        async def committed() -> bool:
            return f.broker.committed[client.group_id].get(tp) == 1

        await eventually(committed, timeout=10.0, interval=0.02)
        assert f.target.writes == [cmd]
        assert [t.status for t in f.producer.traces] == [TraceStatus.SUCCEEDED]
    finally:
        await writer.stop()
    assert f.target.closed and client.stopped
