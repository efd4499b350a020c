"""The mapper marks each write it decides as pending on its target's side (`p:<field>|<digest>`); a change of that
field decided meanwhile is written back after it (docs/convergence.md). A write that will never land must not
leave its marks behind: the writer clears them when it folds, supersedes, skips or dead-letters a command, or when a
source check leaves a field out — each mark only while it is still that command's."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from fakes.idempotency import InMemoryIdempotencyStore
from fakes.producer import InMemoryProducer
from fakes.state import InMemoryStateStore
from fakes.target import ScriptedTarget
from support.commands import sync_command
from tandem_shared.contracts import (
    CheckedField,
    ErrorInfo,
    Headers,
    InstanceConfig,
    SourceCheck,
    SyncCommand,
    System,
)
from tandem_shared.contracts.topics import COMMANDS, TRACE
from tandem_shared.instances import StaticInstanceRegistry, demo_instance
from tandem_shared.kafka.partitioned import InboundRecord
from tandem_shared.sync.rules import field_digest, parse_state
from tandem_writer.delivery import Delivery
from tandem_writer.domain.decisions import Disposition
from tandem_writer.domain.outcome import WriteOutcome
from tandem_writer.domain.retry import RetryPolicy
from tandem_writer.source_check import SourceCheckedTarget, SourceReader

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
EMAIL = "u7@example.com"
PERMANENT = ErrorInfo(error_class="InvalidResource", message="Invalid Resource", permanent=True)
TRANSIENT = ErrorInfo(error_class="TooManyRequests", message="slow down", permanent=False)


def command(name: str, at: datetime = NOW, **merges: str) -> SyncCommand:
    payload = {"email_address": EMAIL, "merge_fields": merges}
    return sync_command("demo", System.MAILCHIMP, payload, email=EMAIL, user_id="7", name=name, occurred=at)


def record(cmd: SyncCommand, offset: int) -> InboundRecord:
    return InboundRecord(COMMANDS, 3, offset, b"demo:ap:7", cmd.model_dump_json().encode(), {}, 0)


class World:
    def __init__(self, *outcomes: WriteOutcome, reader: SourceReader | None = None) -> None:
        self.state = InMemoryStateStore(now_ms=1_000)
        self.target = ScriptedTarget(*outcomes)
        self.producer = InMemoryProducer()
        readers = {System.ACCESSPLANIT: reader} if reader is not None else {}
        self.delivery = Delivery(
            registry=StaticInstanceRegistry([demo_instance()]),
            targets={System.MAILCHIMP: SourceCheckedTarget(self.target, readers, self.state)},
            store=InMemoryIdempotencyStore(inflight_ttl_s=5.0, clock=lambda: NOW),
            producer=self.producer,
            policy=RetryPolicy.from_delays([1, 2]),
            clock=lambda: NOW,
            backoff_s=(0.0, 0.0),
            state=self.state,
        )

    async def decided(self, *commands: SyncCommand) -> None:
        """The mapper's notes of these writes, in order."""
        for cmd in commands:
            transaction = self.state.transaction()
            transaction.expect_write(cmd)
            await transaction.execute()

    def pending(self) -> set[str]:
        side = parse_state(self.state.raw("demo", System.MAILCHIMP, EMAIL))
        return set(side.pending_writes) if side else set()


def mark(name: str, value: str) -> str:
    return f"{name}|{field_digest(value)}"


async def test_a_folded_commands_overridden_values_leave_no_pending_mark() -> None:
    w = World()
    ada, grace, hedy = command("ada", FNAME="Ada", LNAME="King"), command("grace", FNAME="Grace"), command("hedy")
    hedy = hedy.model_copy(update={"payload": {"email_address": EMAIL, "merge_fields": {"FNAME": "Hedy"}}})
    await w.decided(ada, grace, hedy)
    assert w.pending() == {mark("FNAME", "Ada"), mark("LNAME", "King"), mark("FNAME", "Grace"), mark("FNAME", "Hedy")}

    head = record(ada, 41)
    absorbed = w.delivery.absorbable(head, [record(grace, 42), record(hedy, 43)])
    assert await w.delivery.handle(head, absorbed) is Disposition.APPLIED

    # One write of FNAME=Hedy, LNAME=King: its record clears those marks; Ada's and Grace's will never be written.
    assert w.pending() == set()


async def test_a_folded_write_on_its_way_to_a_retry_keeps_the_marks_of_what_it_carries() -> None:
    w = World(WriteOutcome(False, "refused", error=TRANSIENT))
    ada, grace = command("ada", FNAME="Ada", LNAME="King"), command("grace", FNAME="Grace")
    await w.decided(ada, grace)

    head = record(ada, 41)
    assert await w.delivery.handle(head, w.delivery.absorbable(head, [record(grace, 42)])) is Disposition.RETRY_PENDING

    # FNAME=Grace and LNAME=King are still to be written (by the retry); FNAME=Ada never will be.
    assert w.pending() == {mark("LNAME", "King"), mark("FNAME", "Grace")}


async def test_a_superseded_command_leaves_no_pending_mark_but_a_later_one_of_the_same_value_keeps_its_own() -> None:
    w = World()
    old, new = command("old", NOW, FNAME="Old", LNAME="Same"), command("new", NOW + timedelta(seconds=5), FNAME="New")
    await w.decided(old, new)
    assert await w.delivery.handle(record(new, 41)) is Disposition.APPLIED
    again = command("again", NOW + timedelta(seconds=6), LNAME="Same")
    await w.decided(again)  # the same LNAME value, noted by a later command: its mark now

    assert await w.delivery.handle(record(old, 42)) is Disposition.SUPERSEDED

    assert w.pending() == {mark("LNAME", "Same")}


async def test_a_dead_lettered_command_leaves_no_pending_mark_and_one_on_its_way_to_a_retry_keeps_it() -> None:
    w = World(WriteOutcome(False, "refused", error=TRANSIENT), WriteOutcome(False, "refused", error=PERMANENT))
    retried, refused = command("retried", FNAME="Retried"), command("refused", LNAME="Refused")
    await w.decided(retried, refused)

    assert await w.delivery.handle(record(retried, 41)) is Disposition.RETRY_PENDING
    assert await w.delivery.handle(record(refused, 42)) is Disposition.DEAD_LETTERED

    assert w.pending() == {mark("FNAME", "Retried")}


class SourceHolds:
    system = System.ACCESSPLANIT

    def __init__(self, **values: str) -> None:
        self.values = values

    async def read(self, instance: InstanceConfig, spec: SourceCheck, user_id: str | None) -> dict[str, str]:
        return self.values


async def test_fields_a_source_check_leaves_out_leave_no_pending_mark() -> None:
    w = World(reader=SourceHolds(Forenames="Later", Surname="King"))
    spec = SourceCheck(
        system=System.ACCESSPLANIT,
        email=EMAIL,
        fields={
            "FNAME": CheckedField(source_field="Forenames", digest=field_digest("Ada")),
            "LNAME": CheckedField(source_field="Surname", digest=field_digest("King")),
        },
        ts_ms=1,
    )
    checked = command("checked", FNAME="Ada", LNAME="King").model_copy(update={"source_check": spec})
    await w.decided(checked)

    assert await w.delivery.handle(record(checked, 41)) is Disposition.APPLIED

    [written] = w.target.writes
    assert written.payload["merge_fields"] == {"LNAME": "King"}
    assert w.pending() == set()


async def test_a_write_back_whose_write_is_still_in_flight_is_deferred_without_using_an_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("tandem_writer.source_check.LAND_WAIT_S", 0.1)
    w = World()
    w.state.clock_ms = int(time.time() * 1000)
    in_flight = command("in-flight", FNAME="Grace")
    await w.decided(in_flight)
    noted = parse_state(w.state.raw("demo", System.MAILCHIMP, EMAIL))
    assert noted is not None
    repair = command("repair", FNAME="Hedy").model_copy(
        update={"write_back": True, "waits_for": dict(noted.pending_writes)}
    )

    assert await w.delivery.handle(record(repair, 41)) is Disposition.DEFERRED

    assert w.target.writes == []
    [deferred] = [s for s in w.producer.sent if s.topic != TRACE]
    assert deferred.headers[Headers.ATTEMPT] == "1"
    assert w.pending() == {mark("FNAME", "Grace")}  # still in flight: its mark stays
