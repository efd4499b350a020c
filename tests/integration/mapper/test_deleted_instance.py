"""The mapper and a deleted instance, on the real broker and Redis: what it held goes, what comes later is dropped."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from support.kafka import connect
from support.mapper import MapperHarness, accessplanit_change
from support.mapper import mapper_test_instance as make_instance
from support.waiting import eventually
from tandem_shared.contracts import TraceStatus
from tandem_shared.instance_store import delete_instance

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


async def test_a_deleted_instance_loses_its_held_changes_and_its_later_changes_are_dropped(
    harness: MapperHarness,
) -> None:
    config = await harness.put(make_instance(f"deleted-{uuid.uuid4().hex[:8]}"))
    other = await harness.put(make_instance(f"kept-{uuid.uuid4().hex[:8]}", paused=True))
    await harness.put(config.model_copy(update={"version": 2, "paused": True}))
    held = [
        await harness.change(accessplanit_change(i.id, "401", at=T0 + timedelta(seconds=n), Surname=f"S{n}"))
        for n, i in enumerate((config, config, other))
    ]
    assert {r.status for r in await harness.mapper_records([e.execution_id for e in held])} == {TraceStatus.HELD}
    assert await harness.state.held.backlog(config.id) == 2

    # The tombstone alone (no purge by the CLI): the mapper drops the instance's held changes itself.
    await delete_instance(connect(harness.kafka), config.id)

    async def dropped() -> bool:
        return harness.registry.get(config.id) is None and await harness.state.held.backlog(config.id) == 0

    await eventually(dropped, timeout=30)
    assert await harness.state.held.backlog(other.id) == 1

    late = await harness.change(accessplanit_change(config.id, "401", at=T0 + timedelta(minutes=1), Surname="Late"))
    [record] = await harness.mapper_records([late.execution_id])
    assert (record.status, record.summary) == (TraceStatus.SKIPPED, f"Dropped: instance {config.id} was deleted")
    assert await harness.commands(config.id) == []  # nothing it held was released, nothing later decided
