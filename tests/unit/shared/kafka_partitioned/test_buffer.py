"""The partition buffer's `take`: the records named leave it, the others stay in offset order."""

from __future__ import annotations

from tandem_shared.kafka.partitioned import InboundRecord, PartitionBuffer


def record(offset: int, key: bytes = b"k") -> InboundRecord:
    return InboundRecord("tandem.commands", 0, offset, key + str(offset).encode(), b"{}", {}, 0)


def filled(*offsets: int) -> PartitionBuffer:
    buffer = PartitionBuffer()
    for offset in offsets:
        buffer.put(record(offset))
    return buffer


def test_taking_the_oldest_leaves_the_rest_in_order() -> None:
    buffer = filled(3, 4, 5)
    buffer.take([record(3)])
    assert [r.offset for r in buffer.waiting()] == [4, 5]
    assert buffer.first_offset() == 4


def test_taking_records_behind_the_oldest_keeps_the_oldest_first() -> None:
    buffer = filled(3, 4, 5, 6)
    buffer.take([record(5)])
    assert [r.offset for r in buffer.waiting()] == [3, 4, 6]
    buffer.take([record(3), record(6)])
    assert [r.offset for r in buffer.waiting()] == [4]


def test_taking_a_record_no_longer_buffered_changes_nothing() -> None:
    buffer = filled(3, 4)
    buffer.take([record(9)])
    assert [r.offset for r in buffer.waiting()] == [3, 4]
    buffer.take([record(3)])
    buffer.take([record(4)])
    assert len(buffer) == 0 and buffer.first_offset() is None


def test_the_first_startable_record_never_overtakes_its_own_key() -> None:
    buffer = PartitionBuffer()
    for offset, key in ((1, b"a"), (2, b"b"), (3, b"a"), (4, b"c")):
        buffer.put(InboundRecord("t", 0, offset, key, b"", {}, 0))
    assert buffer.first_startable({b"a"}, lambda _key: 0.0) == (buffer.waiting()[1], None)
    # b must wait 2 s: a (busy) and b are passed over, c is the first ready
    waits = {b"b": 2.0}
    assert buffer.first_startable({b"a"}, lambda key: waits.get(key or b"", 0.0))[0] == buffer.waiting()[3]
    waits[b"c"] = 1.0  # now none is ready; the soonest is c's
    assert buffer.first_startable({b"a"}, lambda key: waits.get(key or b"", 0.0)) == (None, 1.0)
