"""Unsigned deliveries beyond the re-read allowance, on fakes: deferred, then answered by the catch-up poll's pages
(or a read of the user alone), never by a read that began before the delivery arrived."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fakes.ingest import (
    Allowance,
    InMemoryClaims,
    InMemoryCursors,
    InMemoryDeferredUsers,
    InMemoryLeases,
    ListedUsers,
    RecordReader,
)
from fakes.producer import InMemoryProducer
from tandem_ingest.catch_up import CatchUp
from tandem_ingest.intake import Intake
from tandem_ingest.poller import AccessplanitPoller, PollerConfig
from tandem_ingest.publishing import ChangePublisher
from tandem_shared.contracts import ChangeEvent, ChangeKind, Direction, InstanceConfig, Stage, TraceRecord, Trigger
from tandem_shared.contracts.topics import CHANGES
from tandem_shared.instances import StaticInstanceRegistry, demo_instance


def user(user_id: int, at: str) -> dict[str, Any]:
    return {"ID": str(user_id), "DateUpdated": at, "Email": f"u{user_id}@example.com", "Forenames": "A", "Surname": "B"}


@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    instance: InstanceConfig = field(default_factory=demo_instance)
    clock: Clock = field(default_factory=Clock)
    users: ListedUsers = field(default_factory=ListedUsers)
    reader: RecordReader = field(default_factory=RecordReader)
    deferred: InMemoryDeferredUsers = field(default_factory=InMemoryDeferredUsers)
    allowance: Allowance = field(default_factory=Allowance)
    producer: InMemoryProducer = field(default_factory=InMemoryProducer)
    traces: list[TraceRecord] = field(default_factory=list)
    woken: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        async def trace(record: TraceRecord) -> None:
            self.traces.append(record)

        self.poller = AccessplanitPoller(
            registry=StaticInstanceRegistry([self.instance]),
            users=self.users,
            intake=Intake(ChangePublisher(self.producer, timeout_s=1.0), InMemoryClaims()),
            cursors=InMemoryCursors(),
            locks=InMemoryLeases().replica(),
            trace=trace,
            config=PollerConfig(interval_s=60, page_size=2, max_pages=2, overlap_s=0.0, clock_skew_s=1.0),
            deferred=self.deferred,
            reader=self.reader,
            clock=self.clock,
        )
        self.catch_up = CatchUp(
            self.allowance, self.deferred, wake=self.woken.append, trace=trace, enabled=True, clock=self.clock
        )

    def published(self) -> list[ChangeEvent]:
        return [ChangeEvent.model_validate_json(s.value or b"") for s in self.producer.sent if s.topic == CHANGES]

    def published_users(self) -> list[str | None]:
        return [e.identity.accessplanit_user_id for e in self.published()]

    async def deliver(self, user_id: int) -> str | None:
        return await self.catch_up.defers(self.instance, str(user_id))


async def test_within_the_allowance_a_delivery_is_read_on_its_own_and_beyond_it_is_deferred() -> None:
    world = World(allowance=Allowance(left=1))
    assert await world.deliver(1) is None, "the first is read now"
    execution_id = await world.deliver(2)
    assert execution_id is not None
    assert world.deferred.waiting(world.instance.id) == {"2"}
    assert world.woken == [world.instance.id], "the poller is asked to read soon"
    [trace] = world.traces
    assert (trace.execution_id, trace.stage, trace.trigger) == (execution_id, Stage.INGEST, Trigger.WEBHOOK)
    assert trace.accessplanit_user_id == "2"
    assert trace.summary == "Delivery for accessplanit user 2 deferred to the catch-up read"


async def test_an_instance_that_is_not_polled_never_defers() -> None:
    world = World()
    world.instance = world.instance.model_copy(update={"direction": Direction.MAILCHIMP_TO_ACCESSPLANIT})
    assert await world.deliver(1) is None
    assert world.deferred.arrivals == {}


async def test_an_import_costs_a_request_per_page_and_every_deferred_user_is_answered() -> None:
    world = World()
    await world.poller.poll_all()  # the cursor starts before the import
    world.users.users = [user(n, f"2026-11-26T07:00:0{n}.000Z") for n in range(1, 6)]
    for n in range(1, 6):
        assert await world.deliver(n) is not None
    world.clock.now += 2  # the round begins after the deliveries arrived (beyond the clock skew)

    [first] = await world.poller.poll_all()
    assert first.more_to_read, "two pages of two: the import goes on in the next round"
    assert first.deferred_settled == 4
    [second] = await world.poller.poll_all()
    assert not second.more_to_read and second.deferred_settled == 1

    assert world.published_users() == ["1", "2", "3", "4", "5"]
    assert world.users.pages_read == 3 and world.reader.reads == [], "pages only: no read of a user alone"
    assert world.deferred.waiting(world.instance.id) == set()


async def test_a_page_requested_before_the_delivery_arrived_does_not_answer_it() -> None:
    world = World()
    await world.poller.poll_all()
    world.users.users = [user(1, "2026-11-26T07:00:01.000Z")]
    await world.deliver(1)  # arrives within the clock skew of the page request below
    [report] = await world.poller.poll_all()
    assert report.deferred_settled == 0 and report.read_alone == 0
    assert world.deferred.waiting(world.instance.id) == {"1"}, "still owed a read"

    world.clock.now += 2
    world.reader.records["1"] = world.users.users[0]
    [later] = await world.poller.poll_all()
    assert later.read_alone == 1 and world.reader.reads == ["1"], "not listed again (cursor past it): read alone"
    assert world.deferred.waiting(world.instance.id) == set()


async def test_a_deferred_user_no_page_lists_is_read_alone_and_a_deleted_one_is_removed() -> None:
    world = World()
    await world.poller.poll_all()
    await world.deliver(7)  # deleted in accessplanit since: no page lists it, the read finds nothing
    world.clock.now += 2
    [report] = await world.poller.poll_all()
    assert report.read_alone == 1 and world.reader.reads == ["7"]
    [removed] = world.published()
    assert (removed.kind, removed.identity.accessplanit_user_id, removed.trigger) == (
        ChangeKind.DELETED,
        "7",
        Trigger.POLL,
    )
    assert world.deferred.waiting(world.instance.id) == set()
