"""The writer's state checks read together: the reads asked for in one loop tick are one `load_many`, and each
caller gets exactly its own side, as read after it asked."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fakes.state import InMemoryStateStore, StateUnavailable
from fakes.target import ScriptedTarget
from support.commands import sync_command
from tandem_shared.contracts import SyncCommand, System
from tandem_shared.instances import demo_instance
from tandem_shared.sync.rules import StateSnapshot, field_digest
from tandem_writer.side_reads import SideReads
from tandem_writer.source_check import SourceCheckedTarget


class CountingStore(InMemoryStateStore):
    def __init__(self, *, now_ms: int = 0) -> None:
        super().__init__(now_ms=now_ms)
        self.loads: list[list[Any]] = []
        self.fail = False

    async def load_many(self, sides: Iterable[Any], **kwargs: Any) -> StateSnapshot:
        wanted = list(sides)
        self.loads.append(wanted)
        if self.fail:
            raise StateUnavailable("the state store is away")
        return await super().load_many(wanted, **kwargs)


async def seen(store: InMemoryStateStore, email: str, name: str) -> None:
    transaction = store.transaction()
    transaction.merge("demo", System.MAILCHIMP, email, {"FNAME": field_digest(name)}, source_ts_ms=5, origin="seen")
    await transaction.execute()


async def test_reads_asked_for_together_are_one_load_and_each_caller_gets_its_own_side() -> None:
    store = CountingStore()
    await seen(store, "ada@example.com", "Ada")
    reads = SideReads(store)
    ada, grace = await asyncio.gather(
        reads.side("demo", System.MAILCHIMP, "ada@example.com"),
        reads.side("demo", System.MAILCHIMP, "grace@example.com"),
    )
    assert len(store.loads) == 1 and len(store.loads[0]) == 2
    assert ada is not None and ada.fields["FNAME"].digest == field_digest("Ada")
    assert grace is None


async def test_a_read_after_a_change_sees_the_change() -> None:
    store = CountingStore()
    reads = SideReads(store)
    assert await reads.side("demo", System.MAILCHIMP, "ada@example.com") is None
    await seen(store, "ada@example.com", "Ada")
    later = await reads.side("demo", System.MAILCHIMP, "ada@example.com")
    assert later is not None and later.fields["FNAME"].digest == field_digest("Ada")
    assert len(store.loads) == 2


async def test_a_failed_read_is_raised_to_every_caller_of_it_and_the_next_read_is_made_afresh() -> None:
    store = CountingStore()
    reads = SideReads(store)
    store.fail = True
    results = await asyncio.gather(
        reads.side("demo", System.MAILCHIMP, "ada@example.com"),
        reads.side("demo", System.MAILCHIMP, "grace@example.com"),
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [StateUnavailable, StateUnavailable]
    store.fail = False
    assert await reads.side("demo", System.MAILCHIMP, "ada@example.com") is None


async def test_a_cancelled_caller_does_not_stop_the_others() -> None:
    store = CountingStore()
    reads = SideReads(store)
    cancelled = asyncio.create_task(reads.side("demo", System.MAILCHIMP, "ada@example.com"))
    kept = asyncio.create_task(reads.side("demo", System.MAILCHIMP, "grace@example.com"))
    await asyncio.sleep(0)
    cancelled.cancel()
    assert await kept is None
    with pytest.raises(asyncio.CancelledError):
        await cancelled


def to_accessplanit(email: str, forenames: str, *, occurred: datetime, decided: datetime) -> SyncCommand:
    payload = {"Email": email, "Forenames": forenames}
    command = sync_command(
        "demo", System.ACCESSPLANIT, payload, email=email, name=f"{email}-{forenames}", occurred=occurred
    )
    return command.model_copy(update={"created_at": decided})


async def test_a_backlog_checked_together_still_keeps_each_command_off_a_later_value_on_its_own_target() -> None:
    # A backlog: every command was decided more than 5 s ago, so each is checked against its target's state before
    # it is written, and the checks are read together. The one whose target was given a later change meanwhile is
    # not written over it; the others are written.
    t = datetime.now(UTC) - timedelta(seconds=12)
    inner = ScriptedTarget(system=System.ACCESSPLANIT)
    store = CountingStore(now_ms=int(time.time() * 1000))
    await store.record_written(to_accessplanit("b@example.com", "Joan", occurred=t + timedelta(seconds=2), decided=t))
    target = SourceCheckedTarget(inner, {}, store)
    queued = [
        to_accessplanit(f"{name}@example.com", "Grace", occurred=t, decided=t + timedelta(seconds=1))
        for name in ("a", "b", "c")
    ]
    store.loads.clear()

    outcomes = await asyncio.gather(*(target.write(command, demo_instance()) for command in queued))

    assert len(store.loads) == 1  # one read for the three checks
    assert [o.wrote for o in outcomes] == [True, False, True]
    assert outcomes[1].summary.startswith("Not written to accessplanit: Forenames: accessplanit has since been")
    assert sorted(w.identity.email or "" for w in inner.writes) == ["a@example.com", "c@example.com"]
