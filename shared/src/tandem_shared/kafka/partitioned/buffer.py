"""A partition's fetched records in offset order, waiting to be taken in hand."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from tandem_shared.kafka.partitioned.records import InboundRecord


class PartitionBuffer:
    """Unlike asyncio.Queue, the waiting records can be looked at and taken out of order: a key whose record is in
    hand waits while other keys go ahead, and a fold takes a key's later records into the handling of its first."""

    def __init__(self) -> None:
        self._records: deque[InboundRecord] = deque()

    def put(self, record: InboundRecord) -> None:
        self._records.append(record)

    def __len__(self) -> int:
        return len(self._records)

    def waiting(self) -> list[InboundRecord]:
        return list(self._records)

    def take(self, records: Sequence[InboundRecord]) -> None:
        if len(records) == 1 and self._records and self._records[0].offset == records[0].offset:
            # The common case under a backlog (the oldest record starts): no rebuild of the whole buffer.
            self._records.popleft()
            return
        offsets = {r.offset for r in records}
        self._records = deque(r for r in self._records if r.offset not in offsets)

    def first_offset(self) -> int | None:
        return self._records[0].offset if self._records else None

    def first_startable(
        self, busy_keys: set[bytes | None], ready_in: Callable[[bytes | None], float]
    ) -> tuple[InboundRecord | None, float | None]:
        """The oldest record whose key has nothing in hand and is ready (`ready_in(key)` <= 0 means now), so never
        one overtaking its own key; else None and the soonest (seconds from now) a waiting key becomes ready."""
        blocked = set(busy_keys)
        soonest: float | None = None
        for record in self._records:
            if record.key in blocked:
                continue
            wait = ready_in(record.key)
            if wait <= 0:
                return record, None
            soonest = wait if soonest is None else min(soonest, wait)
            blocked.add(record.key)
        return None, soonest
