"""The partition buffer's `take`: the records named leave it, the others stay in offset order."""

from __future__ import annotations

from tandem_writer.consumer import _Pending
from tandem_writer.delivery import InboundRecord


def record(offset: int, key: bytes = b"k") -> InboundRecord:
    return InboundRecord("tandem.commands", 0, offset, key + str(offset).encode(), b"{}", {}, 0)


def filled(*offsets: int) -> _Pending:
    pending = _Pending()
    for offset in offsets:
        pending.put_nowait(record(offset))
    return pending


def test_taking_the_oldest_leaves_the_rest_in_order() -> None:
    pending = filled(3, 4, 5)
    pending.take([record(3)])
    assert [r.offset for r in pending.waiting()] == [4, 5]
    assert pending.first_offset() == 4


def test_taking_records_behind_the_oldest_keeps_the_oldest_first() -> None:
    pending = filled(3, 4, 5, 6)
    pending.take([record(5)])
    assert [r.offset for r in pending.waiting()] == [3, 4, 6]
    pending.take([record(3), record(6)])
    assert [r.offset for r in pending.waiting()] == [4]


def test_taking_a_record_no_longer_buffered_changes_nothing() -> None:
    pending = filled(3, 4)
    pending.take([record(9)])
    assert [r.offset for r in pending.waiting()] == [3, 4]
    pending.take([record(3)])
    pending.take([record(4)])
    assert pending.qsize() == 0 and pending.first_offset() is None
