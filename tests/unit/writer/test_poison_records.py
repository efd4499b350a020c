"""No record, whatever it holds, blocks a partition: a delivery step that fails on the record's own data sends it
to the dead-letter topic with the reason, where before it was repeated for ever in front of every record behind it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

from unit.writer.test_service import command, fakes, record

from fakes.idempotency import InMemoryIdempotencyStore
from fakes.target import applied
from tandem_shared.contracts import Headers, SyncCommand, TraceStatus
from tandem_shared.contracts.topics import COMMANDS_DLQ
from tandem_shared.redis.idempotency import _from_micros, _micros
from tandem_writer.domain.decisions import Disposition

# The probe's dates: as UTC, the first lies in year 0 and the second in year 10000.
EARLIEST = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14)))


class StoreFailingOnData(InMemoryIdempotencyStore):
    """Fails every claim as the Redis store did on a stored time beyond year 9999 (`_from_micros`)."""

    def __init__(self) -> None:
        super().__init__()
        self.claims = 0

    async def claim(self, command: SyncCommand, token: str):  # type: ignore[no-untyped-def]
        self.claims += 1
        raise ValueError("year 10000 is out of range")


async def test_a_claim_failing_on_the_records_data_dead_letters_it_with_the_reason() -> None:
    f = fakes(applied())
    f.store = StoreFailingOnData()
    writer = f.writer()
    cmd = command(occurred=LATEST)
    async with asyncio.timeout(30):  # before: repeated for ever, the partition stalled behind it
        assert await writer.delivery.handle(record(cmd)) is Disposition.DEAD_LETTERED
    assert f.store.claims == 1
    [dead] = f.forwarded
    assert dead.topic == COMMANDS_DLQ
    assert (dead.headers[Headers.EXCEPTION_TYPE], dead.headers[Headers.ERROR_PERMANENT]) == ("PoisonRecord", "true")
    [trace] = f.producer.traces
    assert trace.status is TraceStatus.DEAD_LETTERED
    assert trace.error is not None and "claim failed on this record's data: ValueError" in trace.error.message
    assert f.target.writes == []


async def test_commands_at_the_edges_of_the_calendar_are_written_and_their_successors_too() -> None:
    f = fakes(applied(), applied(), applied())
    writer = f.writer()
    for name, occurred in (("Ada", EARLIEST), ("Bea", LATEST)):
        assert await writer.delivery.handle(record(command(name, occurred=occurred))) is Disposition.APPLIED
    assert await writer.delivery.handle(record(command("Cy"), offset=50)) in (
        Disposition.APPLIED,
        Disposition.SUPERSEDED,
    )


def test_a_stored_time_no_datetime_can_hold_reads_as_unknown() -> None:
    """The Redis store kept the newest applied time in microseconds; reading back these raised on every claim."""
    assert _from_micros(str(_micros(LATEST))) is None
    assert _from_micros(str(_micros(EARLIEST))) is None
    assert _from_micros(str(10**30)) is None
    ordinary = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
    assert _from_micros(str(_micros(ordinary))) == ordinary
