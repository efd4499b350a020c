from __future__ import annotations

import pytest

from tandem_ingest.domain.cursor import Cursor, Position, page_filter, record_position, round_start


def test_pages_follow_date_then_id_so_equal_timestamps_are_never_skipped() -> None:
    assert page_filter(Position("2026-11-26T07:00:00.123Z", "100004")) == (
        "DateUpdated gt '2026-11-26T07:00:00.123Z' or (DateUpdated eq '2026-11-26T07:00:00.123Z' and ID gt '100004')"
    )


def test_a_start_time_without_an_id_includes_that_instant() -> None:
    assert page_filter(Position("2026-11-26T07:00:00.123Z")) == "DateUpdated ge '2026-11-26T07:00:00.123Z'"


def test_an_empty_tenant_is_read_from_the_start() -> None:
    assert page_filter(Position(None)) == ""


def test_a_round_starts_a_little_before_the_cursor() -> None:
    cursor = Cursor(Position("2026-11-26T07:00:10.000Z", "9"), Position("2026-11-26T06:00:00.000Z", "1"))
    assert round_start(cursor, 2.5) == Position("2026-11-26T07:00:07.500Z")
    assert round_start(cursor, 0) == cursor.position


def test_the_overlap_never_reaches_before_polling_began() -> None:
    cursor = Cursor(Position("2026-11-26T07:00:01.000Z", "9"), Position("2026-11-26T07:00:00.000Z", "5"))
    assert round_start(cursor, 5) == Position("2026-11-26T07:00:00.000Z", "5")


def test_a_cursor_only_moves_forward_and_survives_serialization() -> None:
    cursor = Cursor.starting_at(Position("2026-11-26T07:00:00.000Z", "5"))
    later = cursor.advanced_to(Position("2026-11-26T07:00:00.000Z", "10"))
    assert later.position.user_id == "10"
    assert later.advanced_to(Position("2026-11-26T06:59:59.999Z", "99")) == later
    assert later.floor == cursor.floor
    assert Cursor.from_json(later.to_json()) == later
    empty = Cursor.starting_at(Position(None))
    assert Cursor.from_json(empty.to_json()) == empty
    assert empty.advanced_to(Position("2026-11-26T07:00:00.000Z", "1")).position.user_id == "1"


@pytest.mark.parametrize(
    "record",
    [{"ID": "1"}, {"ID": "1", "DateUpdated": "yesterday"}, {"ID": "1", "DateUpdated": 5}, {"DateUpdated": "2026"}],
)
def test_records_without_a_usable_date_do_not_move_the_cursor(record: dict[str, object]) -> None:
    assert record_position(record) is None


def test_ids_compare_as_numbers() -> None:
    assert Position("2026-11-26T07:00:00.000Z", "10").sort_key() > Position("2026-11-26T07:00:00.000Z", "9").sort_key()
