"""The mapper decides changes in batches: the same outcome as one by one, in a few round trips per batch.

The mapper's real code path with real Redis; Kafka is replaced by a list (the last test runs on the real broker).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Connection, Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from fakes.producer import InMemoryProducer
from support.mapper import PERSON, accessplanit_change, mailchimp_change, running_mapper
from support.state import side
from support.waiting import eventually
from tandem_mapper.held import HeldChanges
from tandem_mapper.service import Mapper
from tandem_mapper.settings import MapperSettings
from tandem_shared.contact_hash import contact_hash
from tandem_shared.contracts import (
    ChangeEvent,
    InstanceConfig,
    Operation,
    SyncCommand,
    System,
    TraceRecord,
    TraceStatus,
    canonical_json,
)
from tandem_shared.instances import StaticInstanceRegistry, demo_instance
from tandem_shared.redis.client import connect_url
from tandem_shared.redis.held import HeldStore
from tandem_shared.redis.state import RedisStateStore, RedisStateTransaction, StateStore, StateTransaction
from tandem_shared.sync.rules import StateSnapshot, ts_ms

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


class Captured(InMemoryProducer):
    """Stands in for Kafka: what the mapper publishes, and whether it waited for a publish alone."""

    def trace(self, event: ChangeEvent) -> list[TraceRecord]:
        return [r for r in self.traces if r.execution_id == event.execution_id]


def instance(prefix: str, **changes: Any) -> InstanceConfig:
    return demo_instance().model_copy(update={"id": f"{prefix}-{uuid.uuid4().hex[:8]}", **changes})


def make_mapper(store: StateStore, registry: StaticInstanceRegistry) -> tuple[Mapper, Captured]:
    published = Captured()
    settings = MapperSettings(REDIS_URL="redis://127.0.0.1:9/0", held_sweep_s=0.2)
    return Mapper(published, settings, registry, store), published


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStateStore]:
    state = RedisStateStore.from_url(redis_url, clock=lambda: ts_ms(T0))
    yield state
    await state.close()


def story(instance_id: str) -> list[ChangeEvent]:
    """Two contacts, each changed several times within one batch, one of them across an email change."""
    at = [T0 + timedelta(seconds=i) for i in range(10)]
    return [
        accessplanit_change(instance_id, "7", at=at[0], Email="ada@old.example", Surname="Lovelace"),
        accessplanit_change(instance_id, "8", at=at[0], Email="grace@example.com", Surname="Hopper"),
        accessplanit_change(instance_id, "7", at=at[1], Email="ada@old.example", Surname="Byron"),
        # The same webhook delivered twice: the second finds nothing new, because the first's state is there.
        accessplanit_change(instance_id, "7", at=at[2], Email="ada@old.example", Surname="Byron"),
        accessplanit_change(instance_id, "8", at=at[2], Email="grace@example.com", Surname="Murray Hopper"),
        # The address changes: the user's last address, noted by the first change, is the old one.
        accessplanit_change(instance_id, "7", at=at[3], Email="ada@new.example", Surname="Byron"),
        mailchimp_change(instance_id, "ada@new.example", at=at[4], FNAME="Augusta", LNAME="Byron"),
        accessplanit_change(instance_id, "7", at=at[5], Email="ada@new.example", Surname="King"),
    ]


def outcome(published: Captured, events: list[ChangeEvent]) -> tuple[list[Any], dict[str, list[Any]]]:
    """Per change its trace (status, summary, what went out); per contact its commands, in order."""
    traces = [[(r.status, r.summary, r.output.data_out) for r in published.trace(e)] for e in events]
    commands: dict[str, list[Any]] = {}
    for c in published.commands:
        key = c.identity.contact_key
        commands.setdefault(key, []).append((c.target, c.operation, c.payload, c.identity.old_email))
    return traces, commands


async def state_of(store: RedisStateStore, instance_id: str) -> list[Any]:
    addresses = ["ada@old.example", "ada@new.example", "grace@example.com"]
    sides = [(instance_id, system, email) for system in System for email in addresses]
    snapshot = await store.load_many(sides, user_ids=[(instance_id, "7"), (instance_id, "8")])
    return [snapshot.side(*side) for side in sides] + [snapshot.user_email(instance_id, u) for u in ("7", "8")]


async def test_several_changes_of_one_contact_in_a_batch_end_as_if_decided_one_by_one(store: RedisStateStore) -> None:
    one, batched = instance("one-by-one"), instance("batched")
    mapper, by_one = make_mapper(store, StaticInstanceRegistry([one, batched]))
    singles = story(one.id)
    for event in singles:
        await mapper.on_change(event)
    mapper_b, by_batch = make_mapper(store, StaticInstanceRegistry([one, batched]))
    batch = story(batched.id)
    await mapper_b.on_changes(batch)

    assert outcome(by_batch, batch) == outcome(by_one, singles)
    assert await state_of(store, batched.id) == await state_of(store, one.id)

    # What the story means, so that "the same" is not the same mistake twice: the later changes could only be
    # decided so against the state the earlier ones of the batch left.
    traces, commands = outcome(by_batch, batch)
    ada = commands["ap:7"]
    assert [(op, payload["email_address"], payload["merge_fields"], old) for _, op, payload, old in ada] == [
        (Operation.UPSERT, "ada@old.example", {"FNAME": "Ada", "LNAME": "Lovelace"}, None),
        (Operation.UPSERT, "ada@old.example", {"FNAME": "Ada", "LNAME": "Byron"}, None),
        # The duplicate webhook: Mailchimp is not known to hold the values before the writer records its write.
        (Operation.UPSERT, "ada@old.example", {"FNAME": "Ada", "LNAME": "Byron"}, None),
        # The user's last address came from the batch's first change.
        (Operation.CHANGE_EMAIL, "ada@new.example", {"FNAME": "Ada", "LNAME": "Byron"}, "ada@old.example"),
        (Operation.UPSERT, "ada@new.example", {"LNAME": "King"}, None),
    ]
    duplicate = [c for c in by_batch.commands if c.execution_id in (batch[2].execution_id, batch[3].execution_id)]
    assert len({c.idempotency_key for c in duplicate}) == 1  # the writer applies it once
    # The Mailchimp change of the batch is later than the last accessplanit change's first name.
    assert traces[7][0][1].endswith("1 field(s) kept from Mailchimp's later change")
    assert [p["merge_fields"]["LNAME"] for _, _, p, _ in commands["ap:8"]] == ["Hopper", "Murray Hopper"]
    assert commands[f"mc:{contact_hash('ada@new.example')}"] == [
        (System.ACCESSPLANIT, Operation.UPSERT, {"Email": "ada@new.example", "Forenames": "Augusta"}, None),
        # Tandem's writes of the batch's first names to Mailchimp are still in flight (no writer records them
        # here): they would land over this change, so it is written back after them (docs/convergence.md).
        (
            System.MAILCHIMP,
            Operation.UPSERT,
            {"email_address": "ada@new.example", "status_if_new": "subscribed", "merge_fields": {"FNAME": "Augusta"}},
            None,
        ),
    ]
    assert by_batch.awaited_one_by_one == 0


async def test_a_batch_across_two_instances_holds_the_paused_ones_changes_in_order_and_maps_the_other(
    store: RedisStateStore,
) -> None:
    active, paused = instance("active"), instance("paused", paused=True)
    registry = StaticInstanceRegistry([active, paused])
    mapper, published = make_mapper(store, registry)
    surnames = ["Byron", "King", "Lovelace-King"]
    held = [
        accessplanit_change(paused.id, "9", at=T0 + timedelta(seconds=i), Surname=name)
        for i, name in enumerate(surnames)
    ]
    mapped = [accessplanit_change(active.id, "9", at=T0 + timedelta(seconds=i), Surname=f"A{i}") for i in range(2)]
    await mapper.on_changes([held[0], mapped[0], held[1], mapped[1], held[2]])

    for event in held:
        [record] = published.trace(event)
        assert (record.status, record.summary) == (
            TraceStatus.HELD,
            "Held: the instance is paused; processed in order on resume",
        )
    assert [e.event.event_id for e in await HeldChanges(store.held).oldest(paused.id)] == [e.event_id for e in held]
    assert [c.payload["merge_fields"]["LNAME"] for c in published.commands] == ["A0", "A1"]
    assert all(c.instance_id == active.id for c in published.commands)

    # Resumed while this replica is not yet releasing: changes arriving now queue behind the backlog.
    await registry.put(paused.model_copy(update={"version": 2, "paused": False}))
    later = [
        accessplanit_change(paused.id, "9", at=T0 + timedelta(minutes=1, seconds=i), Surname=f"L{i}") for i in range(2)
    ]
    await mapper.on_changes(later)
    assert [published.trace(e)[0].summary for e in later] == [
        "Held behind 3 earlier change(s) being released in order",
        "Held behind 4 earlier change(s) being released in order",
    ]

    await mapper.start()
    try:

        async def released() -> list[str] | None:
            names = [c.payload["merge_fields"]["LNAME"] for c in published.commands if c.instance_id == paused.id]
            return names if len(names) == 5 else None

        assert await eventually(released, timeout=30) == [*surnames, "L0", "L1"]
    finally:
        await mapper.stop()


class FlakyWrites(RedisStateTransaction):
    """A real transaction whose EXEC fails when its store says so."""

    def __init__(self, flaky: FlakyStore, store: RedisStateStore, redis: Redis) -> None:
        super().__init__(store, redis)
        self._flaky = flaky

    async def execute(self) -> None:
        self._flaky.executes += 1
        if self._flaky.executes != self._flaky.fail_at:
            await super().execute()
            return
        if self._flaky.applied_before_failing:  # the answer to EXEC was lost
            await super().execute()
        raise RedisConnectionError("Redis went away")


class FlakyStore:
    """A real store on which Redis fails once, at the n-th write of the mapper (the n-th transaction it runs), or
    while `down`."""

    def __init__(self, redis: Redis, *, fail_at: int = 0, applied_before_failing: bool = False, **kwargs: Any) -> None:
        self._redis = redis
        self._store = RedisStateStore(redis, owns_client=True, **kwargs)
        self.fail_at = fail_at
        self.applied_before_failing = applied_before_failing
        self.executes = 0
        self.down = False
        self.refused = 0

    @property
    def held(self) -> HeldStore:
        return self._store.held

    def transaction(self) -> StateTransaction:
        return FlakyWrites(self, self._store, self._redis)

    async def record_written(self, command: SyncCommand) -> None:
        await self._store.record_written(command)

    async def load_many(self, *args: Any, **kwargs: Any) -> StateSnapshot:
        if self.down:
            self.refused += 1
            raise RedisConnectionError("Redis is down")
        return await self._store.load_many(*args, **kwargs)

    async def close(self) -> None:
        await self._store.close()


def two_rounds(instance_id: str) -> list[ChangeEvent]:
    return [
        accessplanit_change(instance_id, "7", at=T0, Surname="Byron"),
        accessplanit_change(instance_id, "8", at=T0, Surname="Hopper"),
        accessplanit_change(instance_id, "7", at=T0 + timedelta(seconds=1), Surname="King"),
        accessplanit_change(instance_id, "8", at=T0 + timedelta(seconds=1), Surname="Murray Hopper"),
    ]


def commands_of(published: Captured) -> list[tuple[str | None, str, str]]:
    return sorted(
        (c.identity.accessplanit_user_id, c.payload["merge_fields"]["LNAME"], c.fingerprint) for c in published.commands
    )


# Two rounds of two transactions each (the notes of the commands, then the state): a failure at each of them,
# with the transaction lost or applied.
@pytest.mark.parametrize("applied", [False, True])
@pytest.mark.parametrize("fail_at", [1, 2, 3, 4])
async def test_a_batch_that_redis_fails_part_way_is_decided_again_to_the_same_commands(
    redis_url: str, fail_at: int, applied: bool
) -> None:
    clean = RedisStateStore.from_url(redis_url, clock=lambda: ts_ms(T0))
    redis = connect_url(redis_url)
    flaky = FlakyStore(redis, fail_at=fail_at, applied_before_failing=applied, clock=lambda: ts_ms(T0))
    reference, failing = instance("clean"), instance("flaky")
    try:
        mapper, expected = make_mapper(clean, StaticInstanceRegistry([reference]))
        await mapper.on_changes(two_rounds(reference.id))

        mapper, published = make_mapper(flaky, StaticInstanceRegistry([failing]))
        batch = two_rounds(failing.id)
        with pytest.raises(RedisConnectionError):
            await mapper.on_changes(batch)  # the handler raises: FastStream seeks back, nothing is committed
        await mapper.on_changes(batch)  # the same records, fetched again

        def sent(c: SyncCommand) -> tuple[str | None, str]:
            return c.identity.accessplanit_user_id, canonical_json(c.payload).decode()

        # Every command of the clean run went out; one sent twice carries the same idempotency key (the writer
        # applies it once).
        assert {sent(c) for c in expected.commands} <= {sent(c) for c in published.commands}
        keys: dict[tuple[str | None, str], set[str]] = {}
        for c in published.commands:
            keys.setdefault(sent(c), set()).add(c.idempotency_key)
        assert all(len(k) == 1 for k in keys.values())
        # Only when the whole batch was durable and its commit was lost is anything else sent: the first round's
        # changes are decided again after the second round's, and send nothing older than what they find.
        extra = [c for c in published.commands if sent(c) not in {sent(e) for e in expected.commands}]
        assert not extra or (fail_at, applied) == (4, True)
        final = {"7": "King", "8": "Murray Hopper"}
        for c in extra:
            assert (
                c.payload["merge_fields"].get("LNAME", final[str(c.identity.accessplanit_user_id)])
                == final[str(c.identity.accessplanit_user_id)]
            )
        for user in ("7", "8"):
            for system in System:
                email = f"user{user}@example.com"
                assert await side(flaky, failing.id, system, email) == await side(clean, reference.id, system, email)
        assert all(published.trace(e) for e in batch)
    finally:
        await clean.close()
        await flaky.close()


class CountingConnection(Connection):
    """Counts what goes to Redis: one send per round trip (a pipeline sends all its commands at once)."""

    sends = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sends += 1  # on this class: the test counts through a subclass made for the URL
        await super().send_packed_command(command, check_health)


async def round_trips(redis_url: str, batch: Callable[[str], list[ChangeEvent]]) -> int:
    config = instance("trips")
    redis = connect_url(redis_url)
    # Counting on whichever connection the URL asks for (plain, or TLS for rediss://), before the first is made.
    pool = redis.connection_pool
    pool.connection_class = type("Counting", (CountingConnection, pool.connection_class), {})
    store = RedisStateStore(redis, clock=lambda: ts_ms(T0), owns_client=True)
    try:
        await redis.ping()  # connect first: the handshake is not the batch's
        mapper, published = make_mapper(store, StaticInstanceRegistry([config]))
        before = CountingConnection.sends
        await mapper.on_changes(batch(config.id))
        assert published.commands and published.awaited_one_by_one == 0
        return CountingConnection.sends - before
    finally:
        await store.close()


async def test_redis_round_trips_per_batch_do_not_grow_with_the_batch(redis_url: str) -> None:
    def distinct(n: int) -> Callable[[str], list[ChangeEvent]]:
        return lambda i: [accessplanit_change(i, str(1000 + k), at=T0, updated_by=PERSON) for k in range(n)]

    def twice(n: int) -> Callable[[str], list[ChangeEvent]]:
        return lambda i: [
            accessplanit_change(i, str(1000 + k), at=T0 + timedelta(seconds=r), Surname=f"S{r}")
            for r in range(2)
            for k in range(n)
        ]

    small, large = await round_trips(redis_url, distinct(5)), await round_trips(redis_url, distinct(200))
    repeated = await round_trips(redis_url, twice(100))
    # Per round: one read (state, users' addresses, backlogs), the notes of the commands, the state.
    assert (small, large) == (3, 3)
    assert repeated == 2 * large  # a second round for each contact's second change


async def test_on_the_broker_a_batch_is_committed_only_once_redis_took_it(kafka_bootstrap: str, redis_url: str) -> None:
    flaky = FlakyStore(connect_url(redis_url))
    async with running_mapper(kafka_bootstrap, redis_url, state=flaky, failure_pause_s=0.2) as harness:
        config = await harness.put(instance("broker"))
        committed_before = await harness.committed()
        flaky.down = True
        changes = [await harness.change(e) for e in two_rounds(config.id)]

        async def tried_twice() -> bool:
            return flaky.refused >= 2

        await eventually(tried_twice, timeout=30)  # fetched, failed, sought back and fetched again
        assert flaky.executes == 0
        assert await harness.committed() == committed_before
        assert await harness.commands(config.id) == []

        flaky.down = False
        records = await harness.mapper_records([c.execution_id for c in changes])
        assert {r.status for r in records} == {TraceStatus.SUCCEEDED}
        commands = await harness.commands(config.id)
        assert sorted(c.payload["merge_fields"]["LNAME"] for c in commands) == [
            "Byron",
            "Hopper",
            "King",
            "Murray Hopper",
        ]

        async def committed_all() -> bool:
            return await harness.committed() == await harness.end_offsets()

        await eventually(committed_all, timeout=30)
