"""A write to an accessplanit user whose delivery waits for the catch-up read (issue 15, soak at 20 edits/s): a field
holding a value Tandem does not know, changed not provably before the command's change, is someone's later edit
not read yet. It is left out, not written over; the catch-up read carries it to Mailchimp."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fakes.state import InMemoryStateStore
from support.commands import sync_command
from tandem_shared.contracts import CheckedField, InstanceConfig, SourceCheck, SyncCommand, System
from tandem_shared.instances import demo_instance
from tandem_shared.sync.rules import field_digest, ts_ms
from tandem_writer.deferred_edits import UnseenEditGuard
from tandem_writer.domain.deferred_edits import release_recheck, unseen_edit_check
from tandem_writer.domain.source_check import CheckResult

EMAIL = "ada@example.com"
# The Mailchimp change the command carries: stamped second S, so it happened in [S, S + 1 s).
CHANGE = datetime(2026, 12, 3, 21, 0, 0, tzinfo=UTC)
ARRIVED = ts_ms(CHANGE) + 300


def from_mailchimp(**fields: Any) -> SyncCommand:
    return sync_command("demo", System.ACCESSPLANIT, {"Email": EMAIL, **fields}, email=EMAIL, occurred=CHANGE)


def user(updated: datetime, **fields: Any) -> dict[str, Any]:
    return {"ID": "7", "Email": EMAIL, "DateUpdated": updated.isoformat().replace("+00:00", "Z"), **fields}


async def known_store(**fields: str) -> InMemoryStateStore:
    """What Tandem knows accessplanit holds: seen there."""
    store = InMemoryStateStore()
    transaction = store.transaction()
    transaction.merge(
        "demo",
        System.ACCESSPLANIT,
        EMAIL,
        {name: field_digest(v) for name, v in fields.items()},
        source_ts_ms=1,
        origin="seen",
    )
    await transaction.execute()
    return store


def test_an_edit_not_read_yet_after_the_change_is_left_out_and_the_trace_says_why() -> None:
    result = unseen_edit_check(
        from_mailchimp(Forenames="Grace", Surname="Hopper"),
        user(CHANGE + timedelta(milliseconds=400), Forenames="Hedy", Surname="Start"),
        "7",
        None,
        ARRIVED,
    )

    # Surname holds a value Tandem does not know either (nothing known): changed in the same edit, left out too.
    assert result.command is None
    assert result.logs[0] == (
        "accessplanit user 7 has a delivery waiting for the catch-up read (since 21:00:00.300 UTC), read before the "
        "write: Forenames holds 'Hedy', a value Tandem did not write nor see, changed at 2026-12-03 21:00:00.400 UTC, "
        "not before this change from 2026-12-03 21:00:00.000 UTC: a later edit there, not written over (the catch-up "
        "read carries it)"
    )


async def test_only_fields_holding_unknown_values_are_left_out() -> None:
    store = await known_store(Surname="Start")
    snapshot = await store.load_many([("demo", System.ACCESSPLANIT, EMAIL)])
    known = snapshot.side("demo", System.ACCESSPLANIT, EMAIL)

    result = unseen_edit_check(
        from_mailchimp(Forenames="Grace", Surname="Hopper"),
        user(CHANGE + timedelta(seconds=2), Forenames="Hedy", Surname="Start"),
        "7",
        known,
        ARRIVED,
    )

    assert result.command is not None
    assert result.command.payload == {"Email": EMAIL, "Surname": "Hopper"}
    assert result.confirmed == ["Surname"]


def test_an_edit_provably_older_than_the_change_is_written_over() -> None:
    # Its event, when the catch-up read brings it, is older than this change and loses to it on both sides.
    command = from_mailchimp(Forenames="Grace")
    result = unseen_edit_check(command, user(CHANGE - timedelta(milliseconds=1), Forenames="Hedy"), "7", None, ARRIVED)
    assert result.command == command
    assert "changed at 2026-12-03 20:59:59.999 UTC, before this change" in result.logs[0]


def test_the_value_the_command_writes_is_no_edit() -> None:
    command = from_mailchimp(Forenames="Grace")
    result = unseen_edit_check(command, user(CHANGE + timedelta(seconds=3), Forenames="Grace"), "7", None, ARRIVED)
    assert result.command == command
    assert result.logs == []


class Deferred:
    def __init__(self, arrived: dict[str, int]) -> None:
        self.arrived = arrived
        self.asked: list[tuple[str, str]] = []

    async def arrived_ms(self, instance_id: str, user_id: str) -> int | None:
        self.asked.append((instance_id, user_id))
        return self.arrived.get(user_id)


INSTANCE: InstanceConfig = demo_instance()


async def test_the_guard_judges_only_users_updated_since_the_change() -> None:
    store = await known_store(Forenames="Start")
    command = from_mailchimp(Forenames="Grace")
    edited = user(CHANGE + timedelta(seconds=1), Forenames="Hedy")

    # Updated before the change: nothing there can be later, and nothing is read.
    quiet = Deferred({"7": ARRIVED})
    before = await UnseenEditGuard(quiet, store).check(command, INSTANCE, user(CHANGE - timedelta(seconds=2)))
    assert before.command == command and before.logs == []
    assert quiet.asked == []

    # Updated since, its delivery on its way or being read back by ingest (not deferred): not written over.
    on_its_way = await UnseenEditGuard(Deferred({}), store).check(command, INSTANCE, edited)
    assert on_its_way.command is None
    assert on_its_way.logs[0].startswith(
        "accessplanit user 7, looked up before the write, was updated since this change: Forenames holds 'Hedy', a "
        "value Tandem did not write nor see"
    )
    assert on_its_way.logs[0].endswith("(its own delivery carries it)")

    deferred = Deferred({"7": ARRIVED})
    result = await UnseenEditGuard(deferred, store).check(command, INSTANCE, edited)
    assert deferred.asked == [("demo", "7")]
    assert result.command is None
    assert "Forenames holds 'Hedy', a value Tandem did not write nor see" in result.logs[0]

    # "Start" is what Tandem saw there: no edit waits in that field, whatever the deferred set says.
    unchanged = await UnseenEditGuard(deferred, store).check(
        command, INSTANCE, user(CHANGE + timedelta(seconds=1), Forenames="Start")
    )
    assert unchanged.command == command


def released(**fields: Any) -> SyncCommand:
    """A held "Grace" released to accessplanit, checked by the writer's read (where Tandem last knew "Start")."""
    spec = SourceCheck(
        system=System.ACCESSPLANIT,
        email=EMAIL,
        fields={
            name: CheckedField(source_field=name, digest=field_digest(value), raced=[field_digest("Start")])
            for name, value in fields.items()
        },
        ts_ms=ts_ms(CHANGE),
        held_change_ms=ts_ms(CHANGE),
    )
    return from_mailchimp(**fields).model_copy(update={"source_check": spec})


def test_a_released_change_is_judged_again_on_the_lookup_just_before_the_write() -> None:
    # The writer's read found "Start" (Tandem's): written. A person's edit landed after that read, before the lookup.
    command = released(Forenames="Grace", Surname="Hopper")
    result = release_recheck(command, user(CHANGE + timedelta(seconds=4), Forenames="Hedy", Surname="Start"))

    assert result.command is not None
    assert result.command.payload == {"Email": EMAIL, "Surname": "Hopper"}
    assert any(
        log.startswith(
            "Looked accessplanit up again just before writing a released held change: Forenames holds "
            "'Hedy', a value Tandem did not write nor see"
        )
        for log in result.logs
    ), result.logs


def test_a_released_change_the_lookup_finds_nothing_new_for_is_written_silently() -> None:
    command = released(Forenames="Grace")
    assert release_recheck(command, user(CHANGE + timedelta(seconds=4), Forenames="Start")) == CheckResult(command)
    # Fields the writer's read already left out are not judged again.
    without = command.model_copy(update={"payload": {"Email": EMAIL}})
    assert release_recheck(without, user(CHANGE + timedelta(seconds=4), Forenames="Hedy")).logs == []
    # Only released changes: a live one is written as the deferred-set rule says.
    live = from_mailchimp(Forenames="Grace")
    assert release_recheck(live, user(CHANGE + timedelta(seconds=4), Forenames="Hedy")) == CheckResult(live)


async def test_the_guard_rechecks_a_release_even_for_a_user_not_deferred() -> None:
    store = await known_store(Forenames="Start")
    result = await UnseenEditGuard(Deferred({}), store).check(
        released(Forenames="Grace"), INSTANCE, user(CHANGE + timedelta(seconds=4), Forenames="Hedy")
    )
    assert result.command is None
