"""The writer's authoritative read before a checked write: a field is written only while the source still holds
the change's value; otherwise it is left out and what the read found becomes the source's known value."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

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
