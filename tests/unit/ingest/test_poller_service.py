"""The catch-up poller on its ports, without Redis, Kafka or the simulator: what it publishes, where its cursor
goes, which rounds stop early, and the trace records it leaves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from fakes.ingest import InMemoryClaims, InMemoryCursors, InMemoryLeases, ListedUsers
from fakes.producer import InMemoryProducer
from tandem_ingest.dedupe import Claim
from tandem_ingest.domain.cursor import Position
from tandem_ingest.domain.normalize.accessplanit import record_kind, user_event
from tandem_ingest.intake import Intake
from tandem_ingest.poller import AccessplanitPoller, PollerConfig
from tandem_ingest.publishing import ChangePublisher
from tandem_shared.contracts import (
    ChangeEvent,
    Direction,
    ErrorInfo,
    InstanceConfig,
    Stage,
    TraceRecord,
    TraceStatus,
    Trigger,
    utcnow,
)
from tandem_shared.contracts.topics import CHANGES
from tandem_shared.instances import StaticInstanceRegistry, demo_instance


def user(user_id: int, at: str, **fields: Any) -> dict[str, Any]:
    return {"ID": str(user_id), "DateUpdated": at, "Email": f"u{user_id}@example.com", **fields}


def event_id_of(instance: InstanceConfig, record: dict[str, Any]) -> str:
    """The id the webhook and the poller both give this record's change."""
    return user_event(
        instance_id=instance.id,
        kind=record_kind(record),
        user=record,
        trigger=Trigger.WEBHOOK,
        execution_id="any",
        received_at=utcnow(),
        source_action="webhook",
    ).event_id


@dataclass
class Replica:
    poller: AccessplanitPoller
    producer: InMemoryProducer
    locks: Any
    traces: list[TraceRecord] = field(default_factory=list)

    def published(self) -> list[ChangeEvent]:
        return [ChangeEvent.model_validate_json(s.value or b"") for s in self.producer.sent if s.topic == CHANGES]

    def published_ids(self) -> list[str | None]:
        return [e.identity.accessplanit_user_id for e in self.published()]


@dataclass
class World:
    """What replicas share: accessplanit's users, the cursors, the leases and the duplicate claims (Redis)."""

    users: ListedUsers = field(default_factory=ListedUsers)
    cursors: InMemoryCursors = field(default_factory=InMemoryCursors)
    leases: InMemoryLeases = field(default_factory=InMemoryLeases)
    claims: InMemoryClaims = field(default_factory=InMemoryClaims)
    instance: InstanceConfig = field(default_factory=demo_instance)

    def replica(self, *, page_size: int = 100, max_pages: int = 10, overlap_s: float = 0.0) -> Replica:
        producer = InMemoryProducer()
        locks = self.leases.replica()
        traces: list[TraceRecord] = []

        async def trace(record: TraceRecord) -> None:
            traces.append(record)

        poller = AccessplanitPoller(
            registry=StaticInstanceRegistry([self.instance]),
            users=self.users,
            intake=Intake(ChangePublisher(producer, timeout_s=1.0), self.claims),
            cursors=self.cursors,
            locks=locks,
            trace=trace,
            config=PollerConfig(interval_s=0.1, page_size=page_size, max_pages=max_pages, overlap_s=overlap_s),
        )
        return Replica(poller, producer, locks, traces)


@pytest.fixture
def world() -> World:
    return World()


async def test_the_first_round_starts_at_the_newest_change_and_the_next_publishes_what_changed_since(
    world: World,
) -> None:
    world.users.users = [user(1, "2026-11-26T07:00:00.000Z")]
    tandem = world.replica()
    [first] = await tandem.poller.poll_all()
    assert first.initialized and first.cursor_after == Position("2026-11-26T07:00:00.000Z", "1")
    assert tandem.published() == [] and tandem.traces == [], "a round that found nothing leaves no trace"

    world.users.users += [user(3, "2026-11-26T07:00:01.000Z"), user(2, "2026-11-26T07:00:01.000Z")]
    [second] = await tandem.poller.poll_all()
    assert tandem.published_ids() == ["2", "3"], "in (DateUpdated, ID) order"
    assert second.cursor_after == Position("2026-11-26T07:00:01.000Z", "3")
    assert [e.trigger for e in tandem.published()] == [Trigger.POLL, Trigger.POLL]
    receipts = [t for t in tandem.producer.traces if t.stage is Stage.POLLER]
    assert all(t.status is TraceStatus.SUCCEEDED for t in receipts)
    assert [(t.execution_id, t.instance_id, t.trigger, t.contact_email, t.accessplanit_user_id) for t in receipts] == [
        (e.execution_id, e.instance_id, Trigger.POLL, e.identity.email, e.identity.accessplanit_user_id)
        for e in tandem.published()
    ], "each change's receipt is a step of its own execution, about its contact"
    assert any("Found by the catch-up poll" in line.message for line in receipts[0].logs)
    [report] = tandem.traces
    assert report.stage is Stage.POLLER and report.status is TraceStatus.SUCCEEDED and report.changes_detected
    assert report.summary == (
        "Catch-up poll read 2 changed user(s): 2 not received by webhook (published now), 0 already received"
    )
    assert report.output.data_out == {
        "from": {"DateUpdated": "2026-11-26T07:00:00.000Z", "ID": "1"},
        "cursor_before": {"DateUpdated": "2026-11-26T07:00:00.000Z", "ID": "1"},
        "cursor_after": {"DateUpdated": "2026-11-26T07:00:01.000Z", "ID": "3"},
        "published_event_ids": [e.event_id for e in tandem.published()],
        "deferred_deliveries_answered": 0,
        "deferred_users_read_alone": 0,
    }


async def test_a_change_already_received_is_counted_not_published_again(world: World) -> None:
    tandem = world.replica(overlap_s=5.0)
    await tandem.poller.poll_all()
    world.users.users = [user(1, "2026-11-26T07:00:00.000Z")]
    await tandem.poller.poll_all()
    [again] = await tandem.poller.poll_all()  # the overlap reads the same record once more
    assert again.read == 1 and again.duplicates == 1 and again.published == []
    assert tandem.published_ids() == ["1"]


async def test_rounds_page_until_a_short_page_within_max_pages(world: World) -> None:
    tandem = world.replica(page_size=2, max_pages=2)
    await tandem.poller.poll_all()
    world.users.users = [user(n, f"2026-11-26T07:00:0{n}.000Z") for n in range(1, 6)]
    await tandem.poller.poll_all()
    assert tandem.published_ids() == ["1", "2", "3", "4"], "two pages of two, then the round ends"
    await tandem.poller.poll_all()
    assert tandem.published_ids() == ["1", "2", "3", "4", "5"], "the next round resumes from the cursor"


async def test_a_change_being_received_right_now_stops_the_round_before_it(world: World) -> None:
    tandem = world.replica()
    await tandem.poller.poll_all()
    world.users.users = [user(n, f"2026-11-26T07:00:0{n}.000Z") for n in range(1, 4)]
    webhook_claim = (world.instance.id, event_id_of(world.instance, world.users.users[1]))
    world.claims.states[webhook_claim] = Claim.IN_FLIGHT  # a webhook is storing user 2's change
    [stopped] = await tandem.poller.poll_all()
    assert stopped.stopped_early == "user 2 is being received right now"
    assert stopped.cursor_after == Position("2026-11-26T07:00:01.000Z", "1"), "the cursor stays before it"
    assert tandem.published_ids() == ["1"]
    await world.claims.release(*webhook_claim)  # the webhook's publish failed: the change is the poller's again
    await tandem.poller.poll_all()
    assert tandem.published_ids() == ["1", "2", "3"]


async def test_only_one_replica_polls_an_instance_until_it_lets_go(world: World) -> None:
    first, second = world.replica(), world.replica()
    await first.poller.poll_all()
    world.users.users = [user(1, "2026-11-26T07:00:01.000Z")]
    assert await second.poller.poll_all() == []
    await first.poller.poll_all()
    await first.locks.release_all()
    assert len(await second.poller.poll_all()) == 1
    assert first.published_ids() == ["1"] and second.published() == []


async def test_an_unreadable_record_is_passed_and_the_round_is_traced_as_failed(world: World) -> None:
    tandem = world.replica()
    await tandem.poller.poll_all()
    world.users.users = [user(1, "2026-11-26T07:00:01.000Z", Email=42), user(2, "2026-11-26T07:00:02.000Z")]
    [report] = await tandem.poller.poll_all()
    assert report.skipped == ["user 1: Data.Email must be a string"]
    assert tandem.published_ids() == ["2"]
    [trace] = tandem.traces
    assert trace.status is TraceStatus.FAILED
    assert trace.summary.endswith(", 1 unreadable")
    assert [line.message for line in trace.logs] == ["not synced: user 1: Data.Email must be a string"]


async def test_a_failing_api_is_traced_once_per_distinct_problem_and_the_cursor_stays(world: World) -> None:
    tandem = world.replica()
    await tandem.poller.poll_all()
    cursor = world.cursors.cursors[world.instance.id]
    world.users.failure = ErrorInfo(error_class="HTTPStatusError", message="accessplanit answered 500", permanent=False)
    for _ in range(3):
        [report] = await tandem.poller.poll_all()
        assert report.stopped_early == "accessplanit answered 500"
    [failed] = tandem.traces
    assert failed.status is TraceStatus.FAILED and failed.summary == "Catch-up poll failed (will be retried next round)"
    assert failed.error == world.users.failure
    world.users.failure = ErrorInfo(error_class="SecretUnavailable", message="no key", permanent=True)
    await tandem.poller.poll_all()
    assert [t.summary for t in tandem.traces][-1] == "Catch-up poll failed (needs attention)"
    assert world.cursors.cursors[world.instance.id] == cursor


async def test_instances_that_do_not_sync_accessplanit_changes_are_not_polled(world: World) -> None:
    world.instance = world.instance.model_copy(update={"direction": Direction.MAILCHIMP_TO_ACCESSPLANIT})
    tandem = world.replica()
    assert await tandem.poller.poll_all() == []
    assert world.users.pages_read == 0 and world.cursors.cursors == {}
