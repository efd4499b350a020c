"""No change, whatever it holds, stops the mapper: a batch that fails on a change's own data is decided change by
change, and only the change that fails so is skipped. Kafka or Redis failures still have the batch decided again."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from tandem_mapper.entrypoint import decide_batch
from tandem_shared.contracts import ChangeEvent, ChangeKind, ContactIdentity, System, Trigger

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


def change(user_id: str) -> ChangeEvent:
    return ChangeEvent(
        event_id=f"e-{user_id}",
        execution_id=f"x-{user_id}",
        instance_id="demo",
        source=System.ACCESSPLANIT,
        kind=ChangeKind.UPDATED,
        identity=ContactIdentity(accessplanit_user_id=user_id),
        fields={"ID": user_id},
        occurred_at=NOW,
        received_at=NOW,
        trigger=Trigger.WEBHOOK,
    )


class Mapper:
    """Fails every batch holding the poison change, as a decision failing on a value would."""

    def __init__(self, poison: str, failure: Exception) -> None:
        self.poison = poison
        self.failure = failure
        self.decided: list[str] = []

    async def on_changes(self, events: Sequence[ChangeEvent]) -> None:
        if any(e.event_id == self.poison for e in events):
            raise self.failure
        self.decided += [e.event_id for e in events]


async def test_a_change_failing_on_its_data_is_skipped_and_the_rest_decided_in_order() -> None:
    mapper = Mapper("e-2", ValueError("year 0 is out of range"))
    await decide_batch(mapper, [change("1"), change("2"), change("3")])  # type: ignore[arg-type]
    assert mapper.decided == ["e-1", "e-3"]


async def test_an_infrastructure_failure_has_the_batch_decided_again() -> None:
    mapper = Mapper("e-2", ConnectionError("redis down"))
    with pytest.raises(ConnectionError):
        await decide_batch(mapper, [change("1"), change("2")])  # type: ignore[arg-type]
    assert mapper.decided == []
