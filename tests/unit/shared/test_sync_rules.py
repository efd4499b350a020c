"""The sync-state rules without Redis: digests, what a payload writes, the stored hash's format, what recording a
write and noting an expected write mean, and the snapshot a batch reads."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from support.commands import sync_command
from tandem_shared.contracts import Operation, System
from tandem_shared.sync.rules import (
    EMPTY_DIGEST,
    AbandonedMarks,
    FieldState,
    RecentWrite,
    SideState,
    StateSnapshot,
    abandoned_marks,
    content_fingerprint,
    expected_write,
    field_digest,
    parse_state,
    payload_content,
    recorded_write,
    side_key,
    ts_ms,
)

T0 = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("one", "other"),
    [(None, ""), (4, "4"), (4.0, "4"), (" Ada ", "Ada"), ({"b": 1, "a": None}, {"b": "1"}), ([1, 2], ("1", "2"))],
)
def test_values_that_mean_the_same_have_one_digest(one: object, other: object) -> None:
    assert field_digest(one) == field_digest(other)


def test_digests_tell_values_apart_and_are_short() -> None:
    assert field_digest("Ada") != field_digest("ada")
    assert field_digest(True) != field_digest("1")
    assert len(field_digest("Ada")) == 16
    assert EMPTY_DIGEST == field_digest("")


def test_a_payload_writes_its_mapped_fields_without_the_address() -> None:
    mailchimp = {"email_address": "a@x.io", "status_if_new": "subscribed", "merge_fields": {"fname": "Ada"}}
    assert payload_content(System.MAILCHIMP, mailchimp) == {"FNAME": "Ada"}
    accessplanit = {"Email": "a@x.io", "Surname": "King", "CustomFields": {"Tier": "Gold"}}
    assert payload_content(System.ACCESSPLANIT, accessplanit) == {"Surname": "King", "custom:Tier": "Gold"}


def test_the_fingerprint_ignores_key_order_and_the_case_of_the_address() -> None:
    one = {"email_address": "Ada@X.io", "merge_fields": {"FNAME": "Ada", "LNAME": "King"}}
    other = {"merge_fields": {"LNAME": "King ", "FNAME": "Ada"}, "email_address": "ada@x.io"}
    assert content_fingerprint(System.MAILCHIMP, one) == content_fingerprint(System.MAILCHIMP, other)
    changed = {"email_address": "ada@x.io", "merge_fields": {"FNAME": "Ada", "LNAME": "Byron"}}
    assert content_fingerprint(System.MAILCHIMP, changed) != content_fingerprint(System.MAILCHIMP, one)


def test_a_stored_side_is_parsed_field_by_field() -> None:
    raw = {
        "f:FNAME": "d1|1000|written",
        "f:LNAME": "d2|2000|seen",
        "r:FNAME|d1": "1000|5000",
        "r:LNAME|d0": "900",
        "o:FNAME|d0": "5000",
        "_last": "written|1000",
    }
    assert parse_state(raw) == SideState(
        fields={"FNAME": FieldState("d1", 1000, "written"), "LNAME": FieldState("d2", 2000, "seen")},
        last_origin="written",
        last_ts_ms=1000,
        recent_writes={"FNAME|d1": RecentWrite(1000, 5000), "LNAME|d0": RecentWrite(900, 0)},
        replaced={"FNAME|d0": 5000},
    )
    assert parse_state({}) is None
    side = parse_state({"f:FNAME": "d1|1|odd"})
    assert side is not None and side.fields["FNAME"].origin == "seen" and side.last_origin == "seen"
    assert side.written_recently("FNAME", "d1") is None


def test_a_write_records_the_digests_of_its_payload_at_the_source_time() -> None:
    payload = {"email_address": "Ada@x.io", "merge_fields": {"FNAME": "Ada"}}
    command = sync_command("demo", System.MAILCHIMP, payload, email="other@x.io", occurred=T0)
    written = recorded_write(command)
    assert written is not None
    assert (written.instance_id, written.system, written.email) == ("demo", System.MAILCHIMP, "Ada@x.io")
    assert written.digests == {"FNAME": field_digest("Ada")}
    assert written.source_ts_ms == ts_ms(T0)
    assert written.moved_from is None


def test_an_email_change_moves_the_state_unless_only_the_case_changed() -> None:
    payload = {"email_address": "ada@new.io", "merge_fields": {}}
    moved = recorded_write(
        sync_command(
            "demo",
            System.MAILCHIMP,
            payload,
            email="ada@new.io",
            old_email="ada@old.io",
            operation=Operation.CHANGE_EMAIL,
        )
    )
    assert moved is not None and moved.moved_from == "ada@old.io" and moved.digests == {}
    recased = recorded_write(
        sync_command(
            "demo",
            System.MAILCHIMP,
            payload,
            email="ada@new.io",
            old_email="ADA@new.io",
            operation=Operation.CHANGE_EMAIL,
        )
    )
    assert recased is not None and recased.moved_from is None
    upsert = recorded_write(sync_command("demo", System.MAILCHIMP, payload, email="ada@new.io", old_email="ada@old.io"))
    assert upsert is not None and upsert.moved_from is None


def test_a_command_without_an_address_records_and_notes_nothing() -> None:
    command = sync_command("demo", System.ACCESSPLANIT, {"Surname": "King"}, email=None, user_id="7")
    assert recorded_write(command) is None
    assert expected_write(command, now_ms=1) is None


def test_an_expected_write_notes_each_value_as_a_recent_write() -> None:
    payload = {"Email": "ada@x.io", "Surname": "King", "CustomFields": {"Tier": "Gold"}}
    command = sync_command("demo", System.ACCESSPLANIT, payload, email="ada@x.io", occurred=T0)
    noted = expected_write(command, now_ms=42)
    assert noted is not None
    assert (noted.instance_id, noted.system, noted.email) == ("demo", System.ACCESSPLANIT, "ada@x.io")
    assert noted.fields == {
        f"r:Surname|{field_digest('King')}": f"{ts_ms(T0)}|42",
        f"r:custom:Tier|{field_digest('Gold')}": f"{ts_ms(T0)}|42",
        # In flight until the writer records it (or clears it: `abandoned_marks`); the command id says whose.
        f"p:Surname|{field_digest('King')}": "42|c",
        f"p:custom:Tier|{field_digest('Gold')}": "42|c",
    }
    known = parse_state(noted.fields)
    assert known is not None
    assert known.in_flight("Surname", other_than=field_digest("Byron"), since_ms=0) == {
        f"Surname|{field_digest('King')}": 42
    }
    assert known.in_flight("Surname", other_than=field_digest("King"), since_ms=0) == {}
    assert known.in_flight("Surname", other_than=field_digest("Byron"), since_ms=43) == {}
    only_address = sync_command("demo", System.ACCESSPLANIT, {"Email": "ada@x.io"}, email="ada@x.io")
    assert expected_write(only_address, now_ms=42) is None


def test_a_snapshot_answers_only_for_what_was_read() -> None:
    side = SideState({"FNAME": FieldState("d", 1, "seen")}, "seen", 1)
    first = StateSnapshot({side_key("demo", System.MAILCHIMP, "a@x.io"): side}, {("demo", "7"): "a@x.io"}, {})
    second = StateSnapshot({side_key("demo", System.ACCESSPLANIT, "A@x.io "): None}, {}, {"demo": 3})
    both = first.extend(second)
    assert both.side("demo", System.MAILCHIMP, "A@x.io") == side
    assert both.side("demo", System.ACCESSPLANIT, "a@x.io") is None
    assert both.has("demo", System.ACCESSPLANIT, "a@X.io") and not first.has("demo", System.ACCESSPLANIT, "a@x.io")
    assert both.user_email("demo", "7") == "a@x.io"
    assert both.backlog("demo") == 3
    with pytest.raises(KeyError):
        first.side("demo", System.MAILCHIMP, "b@x.io")
    with pytest.raises(KeyError):
        first.backlog("demo")


def test_a_pending_mark_is_read_with_or_without_its_command_id() -> None:
    known = parse_state({"p:FNAME|d1": "42|cmd-1", "p:FNAME|d2": "43"})
    assert known is not None
    assert known.pending_writes == {"FNAME|d1": 42, "FNAME|d2": 43}


def test_the_marks_of_a_write_that_never_lands_are_all_abandoned() -> None:
    command = sync_command(
        "demo", System.MAILCHIMP, {"merge_fields": {"FNAME": "Ada", "LNAME": "King"}}, email="a@x.io"
    )
    assert abandoned_marks(command, None) == AbandonedMarks(
        "demo", System.MAILCHIMP, "a@x.io", "c", [f"FNAME|{field_digest('Ada')}", f"LNAME|{field_digest('King')}"]
    )


def test_only_the_marks_a_landed_write_did_not_carry_are_abandoned() -> None:
    # A source check left FNAME out; LNAME was written (and its record cleared its mark).
    command = sync_command(
        "demo", System.MAILCHIMP, {"merge_fields": {"FNAME": "Ada", "LNAME": "King"}}, email="a@x.io"
    )
    landed = command.model_copy(update={"payload": {"merge_fields": {"LNAME": "King"}}})
    abandoned = abandoned_marks(command, landed)
    assert abandoned is not None and abandoned.marks == [f"FNAME|{field_digest('Ada')}"]
    assert abandoned_marks(command, command) is None
