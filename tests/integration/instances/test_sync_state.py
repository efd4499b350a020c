"""The Redis side of change detection and echo suppression: what each side holds, per contact, last change wins."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from redis.exceptions import ResponseError

from support.commands import sync_command
from support.state import side, user_email
from tandem_shared.contracts import Operation, SyncCommand, System
from tandem_shared.redis.client import connect_url
from tandem_shared.redis.keys import legacy_state_key, state_key
from tandem_shared.redis.state import RedisStateStore, StateStore, StateTransaction
from tandem_shared.sync.rules import abandoned_marks, field_digest, ts_ms

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStateStore]:
    state = RedisStateStore.from_url(redis_url)
    yield state
    await state.close()


async def apply(store: StateStore, change: Callable[[StateTransaction], None]) -> None:
    """One change in a transaction of its own."""
    transaction = store.transaction()
    change(transaction)
    await transaction.execute()


@pytest.fixture
def instance_id() -> str:
    return f"state-{uuid.uuid4().hex[:8]}"


def command(instance_id: str, payload: dict[str, object], *, at: datetime, old_email: str | None = None) -> SyncCommand:
    return sync_command(
        instance_id,
        System.MAILCHIMP,
        payload,
        email=str(payload["email_address"]),
        user_id="7",
        old_email=old_email,
        operation=Operation.CHANGE_EMAIL if old_email else Operation.UPSERT,
        execution_id="x",
        event_id="e",
        occurred=at,
        fp="f",
        key="k",
    )


async def test_a_write_is_recorded_as_what_the_target_holds_and_remembered_as_tandems(
    store: StateStore, instance_id: str
) -> None:
    payload = {"email_address": "Ada@Example.com", "status_if_new": "subscribed", "merge_fields": {"FNAME": "Ada"}}
    await store.record_written(command(instance_id, payload, at=T0))
    state = await side(store, instance_id, System.MAILCHIMP, "ada@example.com")
    assert state is not None
    assert state.fields["FNAME"].digest == field_digest("Ada")
    assert state.fields["FNAME"].ts_ms == ts_ms(T0)
    assert state.fields["FNAME"].origin == "written"
    assert state.last_origin == "written"
    recent = state.written_recently("FNAME", field_digest("Ada"))
    assert recent is not None and recent.source_ts_ms == ts_ms(T0)
    assert await side(store, instance_id, System.ACCESSPLANIT, "ada@example.com") is None


async def test_a_write_remembers_the_value_it_replaced(store: StateStore, instance_id: str) -> None:
    first = {"email_address": "ada@example.com", "merge_fields": {"FNAME": "Ada", "LNAME": "Lovelace"}}
    await store.record_written(command(instance_id, first, at=T0))
    second = {"email_address": "ada@example.com", "merge_fields": {"FNAME": "Augusta", "LNAME": "Lovelace"}}
    await store.record_written(command(instance_id, second, at=T0 + timedelta(1)))
    state = await side(store, instance_id, System.MAILCHIMP, "ada@example.com")
    assert state is not None
    assert state.replaced_at("FNAME", field_digest("Ada")) is not None
    assert state.replaced_at("LNAME", field_digest("Lovelace")) is None  # unchanged: nothing replaced


async def test_the_later_value_wins_whatever_order_the_updates_arrive_in(store: StateStore, instance_id: str) -> None:
    later, earlier = {"LNAME": field_digest("Byron")}, {"LNAME": field_digest("King")}
    await apply(
        store,
        lambda t: t.merge(
            instance_id, System.MAILCHIMP, "a@x.io", later, source_ts_ms=ts_ms(T0 + timedelta(1)), origin="seen"
        ),
    )
    await apply(
        store,
        lambda t: t.merge(instance_id, System.MAILCHIMP, "a@x.io", earlier, source_ts_ms=ts_ms(T0), origin="seen"),
    )
    state = await side(store, instance_id, System.MAILCHIMP, "a@x.io")
    assert state is not None
    assert state.fields["LNAME"].digest == field_digest("Byron")


async def test_an_unchanged_value_keeps_the_time_it_was_set(store: StateStore, instance_id: str) -> None:
    digest = {"LNAME": field_digest("Byron")}
    await apply(
        store, lambda t: t.merge(instance_id, System.MAILCHIMP, "a@x.io", digest, source_ts_ms=ts_ms(T0), origin="seen")
    )
    await apply(
        store,
        lambda t: t.merge(
            instance_id, System.MAILCHIMP, "a@x.io", digest, source_ts_ms=ts_ms(T0 + timedelta(1)), origin="seen"
        ),
    )
    state = await side(store, instance_id, System.MAILCHIMP, "a@x.io")
    assert state is not None
    assert state.fields["LNAME"].ts_ms == ts_ms(T0)


async def test_an_email_change_moves_what_is_known_to_the_new_address(store: StateStore, instance_id: str) -> None:
    old = {"email_address": "ada@old.example", "status_if_new": "subscribed", "merge_fields": {"FNAME": "Ada"}}
    await store.record_written(command(instance_id, old, at=T0))
    new = {"email_address": "ada@new.example", "status_if_new": "subscribed", "merge_fields": {"LNAME": "King"}}
    await store.record_written(command(instance_id, new, at=T0 + timedelta(1), old_email="ada@old.example"))
    assert await side(store, instance_id, System.MAILCHIMP, "ada@old.example") is None
    state = await side(store, instance_id, System.MAILCHIMP, "ada@new.example")
    assert state is not None
    assert set(state.fields) == {"FNAME", "LNAME"}


async def test_a_move_leaves_a_forward_pointer_and_merges_with_state_already_at_the_new_address(
    store: StateStore, instance_id: str
) -> None:
    """A write recorded at the new address (through the pointer) before the move itself was decided is kept."""
    ap, old, new = System.ACCESSPLANIT, "ada@old.example", "ada@new.example"
    await apply(
        store, lambda t: t.merge(instance_id, ap, old, {"Surname": "a", "Phone": "p"}, source_ts_ms=1, origin="seen")
    )
    await apply(store, lambda t: t.set_user_email(instance_id, "7", old))
    await apply(store, lambda t: t.merge(instance_id, ap, new, {"Surname": "b"}, source_ts_ms=2, origin="written"))

    await apply(store, lambda t: t.move(instance_id, ap, old, new, 1_764_000_000_123))

    snapshot = await store.load_many([(instance_id, ap, old), (instance_id, ap, new)])
    assert snapshot.side(instance_id, ap, old) is None
    assert snapshot.moved_to(instance_id, ap, old) == new and snapshot.moved_to(instance_id, ap, new) is None
    assert snapshot.moved_at(instance_id, ap, old) == 1_764_000_000_123  # the move's time, to order two moves by
    state = snapshot.side(instance_id, ap, new)
    assert state is not None and state.user_id == "7"
    assert (state.fields["Surname"].digest, state.fields["Phone"].digest) == ("b", "p")  # digests, as merged
    assert state.written_recently("Surname", "b") is not None

    # And back: the pointer turns round.
    await apply(store, lambda t: t.move(instance_id, ap, new, old, 1_764_000_000_999))
    back = await store.load_many([(instance_id, ap, old), (instance_id, ap, new)])
    assert back.moved_to(instance_id, ap, new) == old and back.moved_to(instance_id, ap, old) is None


async def test_one_read_of_several_instances_answers_each_its_own(store: StateStore) -> None:
    """`load_many` reads each instance's keys in a script call of its own (one Redis Cluster slot each)."""
    ap, mc = System.ACCESSPLANIT, System.MAILCHIMP
    first, second = (f"state-{uuid.uuid4().hex[:8]}" for _ in range(2))
    for n, instance in enumerate((first, second)):
        digests = {"Surname": f"s{n}"}
        await apply(
            store, lambda t, i=instance, d=digests: t.merge(i, ap, "old@example.com", d, source_ts_ms=1, origin="seen")
        )
        await apply(store, lambda t, i=instance, n=n: t.set_user_email(i, "7", f"u{n}@example.com"))
    await apply(store, lambda t: t.move(second, ap, "old@example.com", "new@example.com", 3))

    snapshot = await store.load_many(
        [(first, ap, "old@example.com"), (second, ap, "old@example.com"), (first, mc, "x@example.com")],
        user_ids=[(second, "7"), (first, "7"), (first, "8")],
        backlogs=[second, first],
    )

    kept = snapshot.side(first, ap, "old@example.com")
    assert kept is not None and kept.fields["Surname"].digest == "s0"
    assert snapshot.side(second, ap, "old@example.com") is None
    assert snapshot.moved_to(second, ap, "old@example.com") == "new@example.com"
    assert snapshot.moved_to(first, ap, "old@example.com") is None
    assert snapshot.side(first, mc, "x@example.com") is None
    assert snapshot.user_email(first, "7") == "u0@example.com"
    assert snapshot.user_email(second, "7") == "u1@example.com"
    assert snapshot.user_email(first, "8") is None
    assert snapshot.backlogs == {first: 0, second: 0}


async def test_keys_carry_no_address_and_the_last_address_of_a_user_is_kept(
    store: StateStore, instance_id: str
) -> None:
    key = state_key(instance_id, System.ACCESSPLANIT, "ada@example.com")
    assert "ada" not in key and "example" not in key
    assert key.startswith(f"tandem:{{{instance_id}}}:state:accessplanit:")
    assert await user_email(store, instance_id, "7") is None
    await apply(store, lambda t: t.set_user_email(instance_id, "7", "ada@example.com"))
    assert await user_email(store, instance_id, "7") == "ada@example.com"


async def test_state_under_its_legacy_name_is_adopted_on_first_read(
    store: RedisStateStore, redis_url: str, instance_id: str
) -> None:
    """The upgrade to keyed-hash key names: read old, write new."""
    await store.record_written(command(instance_id, {"email_address": "ada@example.com", "merge_fields": {}}, at=T0))
    current = state_key(instance_id, System.MAILCHIMP, "ada@example.com")
    legacy = legacy_state_key(instance_id, System.MAILCHIMP, "ada@example.com")
    stale = legacy_state_key(instance_id, System.MAILCHIMP, "bob@example.com")
    redis = connect_url(redis_url)
    try:
        await redis.rename(current, legacy)  # what a version before keyed hashes left
        await redis.hset(stale, "_last", "seen|1")
        await redis.hset(state_key(instance_id, System.MAILCHIMP, "bob@example.com"), "_last", "written|2")

        state = await side(store, instance_id, System.MAILCHIMP, "Ada@Example.com")
        bob = await side(store, instance_id, System.MAILCHIMP, "bob@example.com")

        assert state is not None and state.last_origin == "written"
        assert bob is not None and bob.last_origin == "written"  # written since the upgrade: the legacy copy goes
        assert (await redis.exists(legacy), await redis.exists(current), await redis.exists(stale)) == (0, 1, 0)
        assert await redis.ttl(current) > 0
    finally:
        await redis.aclose()


async def test_writes_older_than_the_echo_window_are_forgotten(redis_url: str, instance_id: str) -> None:
    store = RedisStateStore.from_url(redis_url, recent_window_ms=0)
    try:
        first = {"email_address": "a@x.io", "status_if_new": "subscribed", "merge_fields": {"LNAME": "Byron"}}
        second = {"email_address": "a@x.io", "status_if_new": "subscribed", "merge_fields": {"LNAME": "King"}}
        await store.record_written(command(instance_id, first, at=T0))
        await store.record_written(command(instance_id, second, at=T0 + timedelta(1)))
        state = await side(store, instance_id, System.MAILCHIMP, "a@x.io")
        assert state is not None
        assert state.written_recently("LNAME", field_digest("Byron")) is None
    finally:
        await store.close()


async def test_a_batch_of_writes_leaves_what_the_same_calls_one_by_one_leave(redis_url: str) -> None:
    clock = lambda: ts_ms(T0)  # noqa: E731
    store = RedisStateStore.from_url(redis_url, clock=clock)
    one_by_one, batched = f"state-{uuid.uuid4().hex[:8]}", f"state-{uuid.uuid4().hex[:8]}"
    payload = {"email_address": "ada@new.example", "merge_fields": {"FNAME": "Ada", "LNAME": "King"}}
    try:
        old, new = "ada@old.example", "ada@new.example"
        await apply(
            store, lambda t: t.merge(one_by_one, System.MAILCHIMP, old, {"FNAME": "d1"}, source_ts_ms=1, origin="seen")
        )
        await apply(store, lambda t: t.move(one_by_one, System.MAILCHIMP, old, new, 1))
        await apply(
            store, lambda t: t.merge(one_by_one, System.MAILCHIMP, new, {"LNAME": "d2"}, source_ts_ms=2, origin="seen")
        )
        await apply(store, lambda t: t.set_user_email(one_by_one, "7", new))
        await apply(store, lambda t: t.expect_write(command(one_by_one, payload, at=T0)))

        writes = store.transaction()
        writes.merge(batched, System.MAILCHIMP, "ada@old.example", {"FNAME": "d1"}, source_ts_ms=1, origin="seen")
        writes.move(batched, System.MAILCHIMP, "ada@old.example", "ada@new.example", 1)
        writes.merge(batched, System.MAILCHIMP, "ada@new.example", {"LNAME": "d2"}, source_ts_ms=2, origin="seen")
        writes.set_user_email(batched, "7", "ada@new.example")
        writes.expect_write(command(batched, payload, at=T0))
        assert len(writes) == 5
        await writes.execute()

        sides = [
            (i, System.MAILCHIMP, e) for i in (one_by_one, batched) for e in ("ada@old.example", "ada@new.example")
        ]
        snapshot = await store.load_many(sides, user_ids=[(one_by_one, "7"), (batched, "7")], backlogs=[batched])
        for email in ("ada@old.example", "ada@new.example"):
            expected = await side(store, one_by_one, System.MAILCHIMP, email)
            assert snapshot.side(one_by_one, System.MAILCHIMP, email) == expected
            assert snapshot.side(batched, System.MAILCHIMP, email) == expected
        assert snapshot.side(batched, System.MAILCHIMP, "ada@old.example") is None  # moved
        new = snapshot.side(batched, System.MAILCHIMP, "ada@new.example")
        assert new is not None and set(new.fields) == {"FNAME", "LNAME"}
        assert new.written_recently("LNAME", field_digest("King")) is not None
        assert snapshot.user_email(batched, "7") == "ada@new.example"
        assert snapshot.backlog(batched) == 0
    finally:
        await store.close()


async def test_a_batch_of_writes_runs_its_scripts_after_redis_forgot_them(
    store: StateStore, instance_id: str, redis_url: str
) -> None:
    # After a restart Redis knows no script: an EVALSHA would fail on its own inside the transaction while the
    # commands around it apply.
    admin = connect_url(redis_url)
    try:
        await admin.script_flush()
    finally:
        await admin.aclose()
    writes = store.transaction()
    writes.set_user_email(instance_id, "7", "ada@example.com")
    writes.merge(instance_id, System.ACCESSPLANIT, "ada@example.com", {"Surname": "d"}, source_ts_ms=5, origin="seen")
    await writes.execute()
    state = await side(store, instance_id, System.ACCESSPLANIT, "ada@example.com")
    assert state is not None and state.fields["Surname"].digest == "d"
    assert await user_email(store, instance_id, "7") == "ada@example.com"


async def test_one_read_answers_for_many_contacts_and_for_what_is_held(store: StateStore, instance_id: str) -> None:
    writes = store.transaction()
    writes.merge(instance_id, System.MAILCHIMP, "a@example.com", {"FNAME": "d"}, source_ts_ms=1, origin="seen")
    writes.park_held(instance_id, {"event": "{}"})
    await writes.execute()
    snapshot = await store.load_many(
        [(instance_id, System.MAILCHIMP, "A@example.com"), (instance_id, System.MAILCHIMP, "b@example.com")],
        user_ids=[(instance_id, "8")],
        backlogs=[instance_id],
    )
    assert snapshot.side(instance_id, System.MAILCHIMP, "a@example.com") == await side(
        store, instance_id, System.MAILCHIMP, "a@example.com"
    )
    assert snapshot.side(instance_id, System.MAILCHIMP, "b@example.com") is None
    assert snapshot.user_email(instance_id, "8") is None
    assert snapshot.backlog(instance_id) == 1
    assert snapshot.has(instance_id, System.MAILCHIMP, "A@Example.com")
    assert not snapshot.has(instance_id, System.ACCESSPLANIT, "a@example.com")


async def test_pending_marks_are_cleared_only_while_they_are_the_abandoned_commands(
    store: StateStore, instance_id: str
) -> None:
    payload = {"email_address": "a@x.io", "status_if_new": "subscribed", "merge_fields": {"FNAME": "Ada", "LNAME": "K"}}
    folded = command(instance_id, payload, at=T0).model_copy(update={"command_id": "folded"})
    # A later command notes the same LNAME: that mark is its own now, and stays.
    later = folded.model_copy(update={"command_id": "later", "payload": {**payload, "merge_fields": {"LNAME": "K"}}})
    await apply(store, lambda t: t.expect_write(folded))
    await apply(store, lambda t: t.expect_write(later))

    abandoned = abandoned_marks(folded, None)
    assert abandoned is not None
    await store.clear_pending(abandoned)

    state = await side(store, instance_id, System.MAILCHIMP, "a@x.io")
    assert state is not None
    assert set(state.pending_writes) == {f"LNAME|{field_digest('K')}"}
    # A write's record prunes only marks older than the window: it reads the time before the command id.
    other = {**payload, "merge_fields": {"FNAME": "Grace"}}
    await store.record_written(command(instance_id, other, at=T0))
    state = await side(store, instance_id, System.MAILCHIMP, "a@x.io")
    assert state is not None and set(state.pending_writes) == {f"LNAME|{field_digest('K')}"}


async def test_a_call_that_fails_raises_and_the_calls_before_it_stay_applied(
    store: StateStore, instance_id: str, redis_url: str
) -> None:
    admin = connect_url(redis_url)
    try:
        # Not a hash: the merge at this address fails inside the instance's script.
        await admin.set(state_key(instance_id, System.MAILCHIMP, "b@example.com"), "not a hash")
        writes = store.transaction()
        writes.merge(instance_id, System.MAILCHIMP, "a@example.com", {"FNAME": "d"}, source_ts_ms=1, origin="seen")
        writes.merge(instance_id, System.MAILCHIMP, "b@example.com", {"FNAME": "d"}, source_ts_ms=1, origin="seen")
        writes.set_user_email(instance_id, "7", "a@example.com")
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await writes.execute()
        assert len(writes) == 0  # nothing of it is sent again by a later execute
        state = await side(store, instance_id, System.MAILCHIMP, "a@example.com")
        assert state is not None and state.fields["FNAME"].digest == "d"
        assert await user_email(store, instance_id, "7") is None
    finally:
        await admin.aclose()
