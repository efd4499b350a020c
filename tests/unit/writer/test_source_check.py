"""The writer's authoritative read before a checked write: a field is written only while the source still holds
the change's value; otherwise it is left out and what the read found becomes the source's known value."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fakes.state import InMemoryStateStore
from fakes.target import ScriptedTarget
from support.commands import sync_command
from tandem_shared.contracts import CheckedField, InstanceConfig, SourceCheck, SyncCommand, System
from tandem_shared.instances import demo_instance
from tandem_shared.sync.rules import field_digest, parse_state
from tandem_writer.domain.source_check import check
from tandem_writer.source_check import SourceCheckedTarget

EMAIL = "ada@example.com"


def checked_command(**fields: Any) -> SyncCommand:
    command = sync_command("demo", System.ACCESSPLANIT, {"Email": EMAIL, **fields}, email=EMAIL, user_id="7")
    spec = SourceCheck(
        system=System.MAILCHIMP,
        email=EMAIL,
        fields={"Forenames": CheckedField(source_field="FNAME", digest=field_digest("Grace"))},
        ts_ms=1234,
    )
    return command.model_copy(update={"source_check": spec})


class Reader:
    system = System.MAILCHIMP

    def __init__(self, values: Mapping[str, Any] | None) -> None:
        self.values = values
        self.reads = 0

    async def read(self, instance: InstanceConfig, spec: SourceCheck, user_id: str | None) -> Mapping[str, Any] | None:
        self.reads += 1
        return self.values


def test_a_field_the_source_still_holds_is_written() -> None:
    command = checked_command(Forenames="Grace", Surname="Hopper")
    result = check(command, {"FNAME": "Grace", "LNAME": "Hopper"})
    assert result.command == command
    assert result.confirmed == ["Forenames"]
    assert result.read_digests == {}


def test_a_field_the_source_no_longer_holds_is_left_out_and_the_rest_written() -> None:
    result = check(checked_command(Forenames="Grace", Surname="Hopper"), {"FNAME": "Ada"})
    assert result.command is not None
    assert result.command.payload == {"Email": EMAIL, "Surname": "Hopper"}
    assert result.read_digests == {"FNAME": field_digest("Ada")}
    assert "now holds 'Ada'" in result.logs[0]


async def test_nothing_is_written_when_the_source_moved_on_and_its_state_is_corrected() -> None:
    inner = ScriptedTarget(system=System.ACCESSPLANIT)
    state = InMemoryStateStore()
    reader = Reader({"FNAME": "Ada"})
    target = SourceCheckedTarget(inner, {System.MAILCHIMP: reader}, state)

    outcome = await target.write(checked_command(Forenames="Grace"), demo_instance())

    assert outcome.ok and not outcome.wrote
    assert inner.writes == []
    assert reader.reads == 1 and target.reads[System.MAILCHIMP] == 1
    assert outcome.summary.startswith("Not written to accessplanit: Re-read from Mailchimp: FNAME now holds 'Ada'")
    known = parse_state(state.raw("demo", System.MAILCHIMP, EMAIL))
    assert known is not None and known.fields["FNAME"].digest == field_digest("Ada")


async def test_a_command_without_a_check_is_written_without_a_read() -> None:
    inner = ScriptedTarget(system=System.ACCESSPLANIT)
    reader = Reader(None)
    target = SourceCheckedTarget(inner, {System.MAILCHIMP: reader}, None)
    command = checked_command(Forenames="Grace").model_copy(update={"source_check": None})

    outcome = await target.write(command, demo_instance())

    assert outcome.ok and outcome.wrote and outcome.written is None
    assert inner.writes == [command] and reader.reads == 0


async def test_a_repair_waits_until_the_write_it_follows_has_landed() -> None:
    inner = ScriptedTarget(system=System.ACCESSPLANIT)
    state = InMemoryStateStore(now_ms=int(time.time() * 1000))
    in_flight = sync_command("demo", System.ACCESSPLANIT, {"Email": EMAIL, "Forenames": "Grace"}, email=EMAIL)
    transaction = state.transaction()
    transaction.expect_write(in_flight)
    await transaction.execute()
    noted = parse_state(state.raw("demo", System.ACCESSPLANIT, EMAIL))
    assert noted is not None
    repair = sync_command("demo", System.ACCESSPLANIT, {"Email": EMAIL, "Forenames": "Hedy"}, email=EMAIL, name="r")
    repair = repair.model_copy(update={"waits_for": dict(noted.pending_writes)})
    target = SourceCheckedTarget(inner, {}, state)

    async def land() -> None:
        await asyncio.sleep(0.2)
        await state.record_written(in_flight)

    landing = asyncio.create_task(land())
    outcome = await target.write(repair, demo_instance())
    await landing

    assert outcome.ok and inner.writes == [repair]
    assert parse_state(state.raw("demo", System.ACCESSPLANIT, EMAIL)).pending_writes == {}  # type: ignore[union-attr]


def write_back(at: datetime, forenames: str, **fields: Any) -> SyncCommand:
    """accessplanit's own change, written back to accessplanit (keyed by the user, unlike Mailchimp's writes)."""
    payload = {"Email": EMAIL, "Forenames": forenames}
    command = sync_command("demo", System.ACCESSPLANIT, payload, email=EMAIL, user_id="7", name="r", occurred=at)
    return command.model_copy(update={"write_back": True, **fields})


def from_mailchimp(at: datetime, forenames: str) -> SyncCommand:
    payload = {"Email": EMAIL, "Forenames": forenames}
    return sync_command("demo", System.ACCESSPLANIT, payload, email=EMAIL, name=forenames, occurred=at)


async def test_a_write_back_is_not_written_over_a_later_change_written_to_its_side_meanwhile() -> None:
    # The soak's divergence at 20 edits/s: accessplanit's "Hedy" (at T) is written back to accessplanit after a
    # write of Mailchimp's it raced; while it waits, Mailchimp's later "Joan" (T + 2.5 s) is written to accessplanit
    # by the other direction's command (another Kafka key, another claim). Written then, "Hedy" would land over
    # "Joan" in accessplanit while Mailchimp keeps "Joan", for good.
    t = datetime(2026, 12, 3, 18, 16, 1, 460_000, tzinfo=UTC)
    inner = ScriptedTarget(system=System.ACCESSPLANIT)
    state = InMemoryStateStore(now_ms=int(time.time() * 1000))
    await state.record_written(from_mailchimp(t - timedelta(seconds=2), "Grace"))  # the write it raced
    await state.record_written(from_mailchimp(t + timedelta(milliseconds=2540), "Joan"))
    target = SourceCheckedTarget(inner, {}, state)

    outcome = await target.write(write_back(t, "Hedy"), demo_instance())

    assert outcome.ok and not outcome.wrote and inner.writes == []
    assert outcome.summary.startswith("Not written back to accessplanit: Forenames: accessplanit has since been")
    assert "later change (from 2026-12-03 18:16:04.000 UTC)" in outcome.summary


async def test_a_write_back_over_an_older_write_is_written_and_only_its_later_fields_are_dropped() -> None:
    t = datetime(2026, 12, 3, 18, 16, 1, tzinfo=UTC)
    inner = ScriptedTarget(system=System.ACCESSPLANIT)
    state = InMemoryStateStore(now_ms=int(time.time() * 1000))
    raced = from_mailchimp(t - timedelta(seconds=1), "Grace")
    await state.record_written(raced.model_copy(update={"payload": {**raced.payload, "Surname": "Lamarr"}}))
    later = from_mailchimp(t + timedelta(seconds=1), "Joan")
    await state.record_written(later.model_copy(update={"payload": {"Email": EMAIL, "Surname": "Clarke"}}))
    target = SourceCheckedTarget(inner, {}, state)

    outcome = await target.write(
        write_back(t, "Hedy").model_copy(
            update={"payload": {"Email": EMAIL, "Forenames": "Hedy", "Surname": "Kiesler"}}
        ),
        demo_instance(),
    )

    assert outcome.ok and outcome.wrote
    [written] = inner.writes
    assert written.payload == {"Email": EMAIL, "Forenames": "Hedy"}
    assert outcome.written == written
    assert "Surname: accessplanit has since been written by Tandem with a later change" in outcome.summary


async def test_a_write_back_whose_write_is_still_in_flight_after_the_wait_is_deferred(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("tandem_writer.source_check.LAND_WAIT_S", 0.1)
    inner = ScriptedTarget(system=System.ACCESSPLANIT)
    state = InMemoryStateStore(now_ms=int(time.time() * 1000))
    never = from_mailchimp(datetime.now(UTC), "Grace")
    transaction = state.transaction()
    transaction.expect_write(never)
    await transaction.execute()
    noted = parse_state(state.raw("demo", System.ACCESSPLANIT, EMAIL))
    assert noted is not None
    repair = write_back(datetime.now(UTC), "Hedy", waits_for=dict(noted.pending_writes))

    outcome = await SourceCheckedTarget(inner, {}, state).write(repair, demo_instance())

    assert not outcome.ok and outcome.transient and outcome.defer_s == 0.1
    assert inner.writes == []
    assert outcome.summary == "Not written back yet: the write(s) it follows were still in flight after 0.1 s"


async def test_a_command_long_queued_is_not_written_over_a_later_change_its_target_was_given_meanwhile() -> None:
    # At 20 edits/s the writer fell 10 s behind: Mailchimp's "Grace" (T) was written to accessplanit after the write-
    # back of accessplanit's later "Hedy" (T + 1.4 s) had stopped waiting for it, and landed over it for good.
    t = datetime.now(UTC) - timedelta(seconds=12)
    inner = ScriptedTarget(system=System.ACCESSPLANIT)
    state = InMemoryStateStore(now_ms=int(time.time() * 1000))
    await state.record_written(write_back(t + timedelta(milliseconds=1423), "Hedy"))
    late = from_mailchimp(t, "Grace").model_copy(update={"created_at": t + timedelta(milliseconds=600)})
    target = SourceCheckedTarget(inner, {}, state)

    outcome = await target.write(late, demo_instance())
    assert not outcome.wrote and inner.writes == []
    assert outcome.summary.startswith("Not written to accessplanit: Forenames: accessplanit has since been written")

    # Decided a moment ago, it is written without a read: a write-back of a later change waits for it.
    fresh = from_mailchimp(t, "Grace").model_copy(update={"created_at": datetime.now(UTC)})
    assert (await target.write(fresh, demo_instance())).wrote and inner.writes == [fresh]
