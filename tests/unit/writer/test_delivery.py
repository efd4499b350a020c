"""The delivery layer's decisions, with in-memory stand-ins for Redis, Kafka and the target."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from fakes.idempotency import InMemoryIdempotencyStore
from fakes.producer import InMemoryProducer, Sent
from fakes.target import ScriptedTarget, applied
from support.commands import sync_command
from tandem_shared.contracts import (
    ErrorInfo,
    Headers,
    Stage,
    SyncCommand,
    System,
    TraceRecord,
    TraceStatus,
)
from tandem_shared.contracts.topics import COMMANDS, COMMANDS_DLQ, COMMANDS_RETRY, TRACE
from tandem_shared.instances import StaticInstanceRegistry, demo_instance
from tandem_shared.kafka.partitioned import InboundRecord
from tandem_shared.redis.idempotency import ClaimState
from tandem_writer.delivery import Delivery
from tandem_writer.domain.decisions import Disposition
from tandem_writer.domain.outcome import WriteOutcome
from tandem_writer.domain.retry import RetryPolicy, epoch_ms

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
POLICY = RetryPolicy.from_delays([1, 2, 4, 8, 16])
TRANSIENT = ErrorInfo(error_class="TooManyRequests", message="TooManyRequests: slow down", permanent=False)
PERMANENT = ErrorInfo(error_class="InvalidResource", message="Invalid Resource: PHONE is required", permanent=True)


def command(occurred: datetime = NOW, first_name: str = "Ada", user_id: str = "7") -> SyncCommand:
    email = f"u{user_id}@example.com"
    payload = {"email_address": email, "merge_fields": {"FNAME": first_name}}
    return sync_command(
        "demo",
        System.MAILCHIMP,
        payload,
        email=email,
        user_id=user_id,
        name=f"c-{first_name}",
        execution_id=f"x-{first_name}",
        event_id=f"e-{first_name}",
        occurred=occurred,
    )


def record(cmd: SyncCommand | bytes, topic: str = COMMANDS, offset: int = 41, **headers: str) -> InboundRecord:
    value = cmd if isinstance(cmd, bytes) else cmd.model_dump_json().encode()
    return InboundRecord(topic, 3, offset, b"demo:ap:7", value, headers, 1_700_000_000_000)


class Producer(InMemoryProducer):
    """Kafka in memory, as the writer's tests read it back."""

    @property
    def forwarded(self) -> list[Sent]:
        """What went to a retry tier or the dead-letter topic."""
        return [s for s in self.sent if s.topic != TRACE]

    @property
    def records(self) -> list[TraceRecord]:
        return self.traces


def as_record(sent: Sent, offset: int = 0) -> InboundRecord:
    assert sent.partition is not None
    return InboundRecord(sent.topic, sent.partition, offset, sent.key, sent.value, sent.headers, 0)


def ok() -> WriteOutcome:
    return applied()


def failed(error: ErrorInfo) -> WriteOutcome:
    return WriteOutcome(False, f"Mailchimp refused the write: {error.message}", error=error)


@dataclass
class World:
    target: ScriptedTarget
    store: InMemoryIdempotencyStore = field(
        default_factory=lambda: InMemoryIdempotencyStore(inflight_ttl_s=5.0, clock=lambda: NOW)
    )
    producer: Producer = field(default_factory=Producer)
    registry: StaticInstanceRegistry = field(default_factory=lambda: StaticInstanceRegistry([demo_instance()]))

    @property
    def tracer(self) -> Producer:
        return self.producer

    @property
    def delivery(self) -> Delivery:
        return Delivery(
            registry=self.registry,
            targets={System.MAILCHIMP: self.target},
            store=self.store,
            producer=self.producer,
            policy=POLICY,
            clock=lambda: NOW,
            backoff_s=(0.0, 0.0),
        )


def world(*outcomes: WriteOutcome | Exception) -> World:
    return World(ScriptedTarget(*outcomes))


async def test_a_successful_write_is_recorded_as_applied_and_traced() -> None:
    w = world(ok())
    cmd = command()
    assert await w.delivery.handle(record(cmd)) is Disposition.APPLIED
    assert await w.store.applied_at(cmd) == NOW and not w.store.contact_locked(cmd)
    [trace] = w.tracer.records
    assert (trace.stage, trace.status, trace.attempt) == (Stage.WRITER, TraceStatus.SUCCEEDED, 1)
    assert w.producer.forwarded == []


async def test_a_redelivered_command_is_not_written_twice() -> None:
    w = world(ok(), ok())
    cmd = command()
    await w.delivery.handle(record(cmd))
    assert await w.delivery.handle(record(cmd, offset=42)) is Disposition.ALREADY_APPLIED
    assert len(w.target.writes) == 1
    skipped = w.tracer.records[-1]
    assert skipped.status is TraceStatus.SKIPPED
    assert skipped.summary.startswith("Skipped: already applied")


async def test_a_transient_failure_goes_to_the_first_retry_tier_with_its_headers() -> None:
    w = world(failed(TRANSIENT))
    cmd = command()
    rec = record(cmd, **{Headers.INSTANCE_ID: "demo", Headers.EXECUTION_ID: cmd.execution_id})
    assert await w.delivery.handle(rec) is Disposition.RETRY_PENDING
    [sent] = w.producer.forwarded
    assert (sent.topic, sent.partition, sent.key) == (COMMANDS_RETRY[0], 3, b"demo:ap:7")
    h = sent.headers
    assert h[Headers.ATTEMPT] == "2"
    assert h[Headers.NOT_BEFORE] == str(epoch_ms(NOW + timedelta(seconds=1)))
    origin = (h[Headers.ORIGINAL_TOPIC], h[Headers.ORIGINAL_PARTITION], h[Headers.ORIGINAL_OFFSET])
    assert origin == (COMMANDS, "3", "41")
    assert h[Headers.EXCEPTION_TYPE] == "TooManyRequests"
    assert h[Headers.INSTANCE_ID] == "demo" and h[Headers.EXECUTION_ID] == cmd.execution_id
    assert SyncCommand.model_validate_json(sent.value or b"").attempt == 2
    [trace] = w.tracer.records
    assert trace.status is TraceStatus.RETRY_PENDING
    assert trace.summary.startswith("Retry pending (attempt 2 of 6, next at 2026-11-26 07:00:01 UTC)")
    assert trace.error == TRANSIENT
    assert not w.store.in_flight(cmd) and not w.store.contact_locked(cmd), "a failed attempt releases its claim"


async def test_retries_walk_the_tiers_then_dead_letter_with_the_whole_history() -> None:
    w = world(*[failed(TRANSIENT)] * 6)
    rec = record(command())
    dispositions = []
    for offset in range(6):
        dispositions.append(await w.delivery.handle(rec))
        rec = as_record(w.producer.forwarded[-1], offset)
    assert dispositions == [Disposition.RETRY_PENDING] * 5 + [Disposition.DEAD_LETTERED]
    assert [s.topic for s in w.producer.forwarded] == [*COMMANDS_RETRY, COMMANDS_DLQ]
    assert [c.attempt for c in w.target.writes] == [1, 2, 3, 4, 5, 6]
    dead = w.producer.forwarded[-1]
    assert dead.headers[Headers.ATTEMPT] == "6"
    assert dead.headers[Headers.ORIGINAL_TOPIC] == COMMANDS and dead.headers[Headers.ORIGINAL_OFFSET] == "41"
    assert Headers.NOT_BEFORE not in dead.headers
    assert [t.stage for t in w.tracer.records] == [Stage.WRITER] + [Stage.RETRY] * 5
    assert w.tracer.records[-1].status is TraceStatus.DEAD_LETTERED
    assert w.tracer.records[-1].summary == "Dead-lettered (gave up after 6 of 6 attempts): TooManyRequests: slow down"


async def test_a_permanent_failure_is_dead_lettered_at_once() -> None:
    w = world(failed(PERMANENT))
    assert await w.delivery.handle(record(command())) is Disposition.DEAD_LETTERED
    [dead] = w.producer.forwarded
    assert dead.topic == COMMANDS_DLQ
    assert dead.headers[Headers.ERROR_PERMANENT] == "true"
    assert dead.headers[Headers.EXCEPTION_MESSAGE] == PERMANENT.message
    assert w.tracer.records[-1].summary.startswith("Dead-lettered (permanent error, not retried)")


async def test_a_retry_older_than_the_newest_applied_change_is_dropped() -> None:
    w = world(failed(TRANSIENT), ok())
    old, new = command(NOW, "Old"), command(NOW + timedelta(seconds=5), "New")
    await w.delivery.handle(record(old))
    await w.delivery.handle(record(new, offset=42))
    retry = as_record(w.producer.forwarded[-1])
    assert await w.delivery.handle(retry) is Disposition.SUPERSEDED
    assert [c.payload["merge_fields"]["FNAME"] for c in w.target.writes] == ["Old", "New"]
    assert w.tracer.records[-1].summary.startswith("Superseded")
    assert not w.store.contact_locked(old) and not w.store.in_flight(old)


async def test_a_command_for_a_contact_being_written_elsewhere_waits_without_using_an_attempt() -> None:
    w = world()
    cmd = command()
    other = command(NOW - timedelta(seconds=1), "Other")
    assert (await w.store.claim(other, "another writer")).state is ClaimState.CLAIMED
    assert await w.delivery.handle(record(cmd)) is Disposition.DEFERRED
    [sent] = w.producer.forwarded
    assert sent.headers[Headers.ATTEMPT] == "1"
    # The claim was just taken: its write is likely over within a second, long before the claim's TTL (5 s).
    assert sent.headers[Headers.NOT_BEFORE] == str(epoch_ms(NOW + timedelta(seconds=1)))
    assert w.target.writes == []
    assert w.tracer.records[-1].status is TraceStatus.RETRY_PENDING


@pytest.mark.parametrize(
    ("held_s", "wait_s"),
    [
        (1.5, 1.5),  # twice as old then
        (4.0, 2.0),  # twice as old is past the TTL (5 s): until it has surely expired, 1 s after
    ],
)
async def test_a_claim_held_longer_is_looked_at_again_once_twice_as_old_or_once_expired(
    held_s: float, wait_s: float
) -> None:
    now = [NOW - timedelta(seconds=held_s)]
    w = World(ScriptedTarget(), InMemoryIdempotencyStore(inflight_ttl_s=5.0, clock=lambda: now[-1]))
    assert (await w.store.claim(command(NOW, "Other"), "another writer")).state is ClaimState.CLAIMED
    now.append(NOW)

    assert await w.delivery.handle(record(command())) is Disposition.DEFERRED

    [sent] = w.producer.forwarded
    assert sent.headers[Headers.NOT_BEFORE] == str(epoch_ms(NOW + timedelta(seconds=wait_s)))


async def test_an_outage_while_forwarding_delays_the_outcome_but_forwards_exactly_once() -> None:
    w = world(failed(TRANSIENT))
    w.producer.failures = 3
    assert await w.delivery.handle(record(command())) is Disposition.RETRY_PENDING
    assert len(w.producer.forwarded) == 1
    assert len(w.target.writes) == 1


async def test_a_target_that_raises_is_retried_like_a_transient_failure() -> None:
    w = world(RuntimeError("boom"))
    assert await w.delivery.handle(record(command())) is Disposition.RETRY_PENDING
    assert w.producer.forwarded[0].headers[Headers.EXCEPTION_TYPE] == "RuntimeError"


async def test_an_unreadable_record_is_dead_lettered_as_it_came() -> None:
    w = world()
    rec = record(b'{"not": "a command"}', **{Headers.INSTANCE_ID: "demo", Headers.EXECUTION_ID: "x9"})
    assert await w.delivery.handle(rec) is Disposition.DEAD_LETTERED
    [dead] = w.producer.forwarded
    assert (dead.topic, dead.value) == (COMMANDS_DLQ, b'{"not": "a command"}')
    assert dead.headers[Headers.EXCEPTION_TYPE] == "InvalidCommand"
    assert w.tracer.records[-1].execution_id == "x9"


@pytest.mark.parametrize("topic", [COMMANDS, COMMANDS_RETRY[2]])
async def test_a_command_for_an_unknown_instance_is_skipped(topic: str) -> None:
    w = world()
    cmd = command().model_copy(update={"instance_id": "gone"})
    assert await w.delivery.handle(record(cmd, topic=topic, **{Headers.ATTEMPT: "3"})) is Disposition.IGNORED
    assert w.target.writes == [] and w.producer.forwarded == []
    assert w.tracer.records[-1].summary == "Unknown instance gone"


@pytest.mark.parametrize("topic", [COMMANDS, COMMANDS_RETRY[2]])
async def test_a_command_of_a_deleted_instance_is_dropped_with_a_trace_saying_so(topic: str) -> None:
    """Still on the main topic, a retry tier, or replayed from the dead-letter topic (onto the main topic)."""
    w = world(ok())
    await w.registry.delete("demo")
    cmd = command()
    replayed = {Headers.REPLAYED_FROM: f"{COMMANDS_DLQ}/0/7"} if topic == COMMANDS else {Headers.ATTEMPT: "3"}
    assert await w.delivery.handle(record(cmd, topic=topic, **replayed)) is Disposition.IGNORED
    assert w.target.writes == [] and w.producer.forwarded == []
    assert not w.store.in_flight(cmd) and await w.store.applied_at(cmd) is None  # nothing was claimed
    [dropped] = w.tracer.records
    assert (dropped.status, dropped.summary) == (TraceStatus.SKIPPED, "Dropped: instance demo was deleted")
    assert w.delivery.is_orphan(record(cmd, **{Headers.INSTANCE_ID: "demo"}))


def test_only_records_of_instances_that_no_longer_exist_skip_the_wait_on_a_retry_tier() -> None:
    w = world()
    due_later = {Headers.NOT_BEFORE: str(2_000_000_000_000)}
    assert w.delivery.is_orphan(record(command(), **{Headers.INSTANCE_ID: "gone", **due_later}))
    assert not w.delivery.is_orphan(record(command(), **{Headers.INSTANCE_ID: "demo", **due_later}))
    assert not w.delivery.is_orphan(record(command(), **due_later))


async def test_queued_upserts_for_one_contact_become_one_write_carrying_every_field() -> None:
    w = world()
    first = record(command(NOW, "Ada"), offset=41)
    bob = command(NOW, "Bob", user_id="8").model_dump_json().encode()
    other = InboundRecord(COMMANDS, 3, 42, b"demo:ap:8", bob, {}, 0)
    later = command(NOW + timedelta(seconds=1), "Augusta").model_copy(
        update={"payload": {"email_address": "u7@example.com", "merge_fields": {"LNAME": "King"}}}
    )
    latest = command(NOW + timedelta(seconds=2), "Ada Augusta")
    behind = [other, record(later, offset=43), record(latest, offset=44)]

    absorbed = w.delivery.absorbable(first, behind)
    assert [r.offset for r in absorbed] == [43, 44]
    assert await w.delivery.handle(first, absorbed) is Disposition.APPLIED

    assert len(w.target.writes) == 1
    written = w.target.writes[0]
    assert written.payload["merge_fields"] == {"FNAME": "Ada Augusta", "LNAME": "King"}
    assert written.execution_id == "x-Ada Augusta"
    by_execution = {r.execution_id: r for r in w.tracer.records}
    assert by_execution["x-Ada Augusta"].status is TraceStatus.SUCCEEDED
    assert by_execution["x-Ada"].status is TraceStatus.SKIPPED
    assert by_execution["x-Augusta"].status is TraceStatus.SKIPPED
    assert "x-Ada Augusta" in by_execution["x-Ada"].summary


async def test_retries_and_lone_commands_are_not_coalesced() -> None:
    w = world()
    retry = record(command(NOW, "Ada"), topic=COMMANDS_RETRY[0])
    assert w.delivery.absorbable(retry, [record(command(NOW, "Bob"), topic=COMMANDS_RETRY[0], offset=42)]) == []
    assert w.delivery.absorbable(record(command(NOW, "Ada")), []) == []
