"""A held change released after a resume is checked on its target first (RELEASE_OVER_AN_EDIT, issue 15): a field
the target holds someone else's value of, changed after the held change, is left out — that later edit's own event
carries it — while values Tandem knows, and edits provably older than the held change, are written over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from support.commands import sync_command
from tandem_shared.contracts import CheckedField, SourceCheck, SyncCommand, System
from tandem_shared.sync.rules import field_digest, ts_ms
from tandem_writer.domain.source_check import check

EMAIL = "ada@example.com"
# The held Mailchimp change: stamped second S (whole seconds), so it happened in [S, S + 1 s).
HELD = datetime(2026, 12, 3, 19, 0, 0, tzinfo=UTC)


def released(**fields: Any) -> SyncCommand:
    """The held "Grace" (and any other fields) released to accessplanit, where Tandem last knew "Start"."""
    command = sync_command("demo", System.ACCESSPLANIT, {"Email": EMAIL, **fields}, email=EMAIL)
    spec = SourceCheck(
        system=System.ACCESSPLANIT,
        email=EMAIL,
        fields={
            name: CheckedField(source_field=name, digest=field_digest(value), raced=[field_digest("Start")])
            for name, value in fields.items()
        },
        ts_ms=ts_ms(HELD),
        held_change_ms=ts_ms(HELD),
    )
    return command.model_copy(update={"source_check": spec})


def user(updated: datetime, **fields: Any) -> dict[str, Any]:
    return {"ID": "7", "Email": EMAIL, "DateUpdated": updated.isoformat().replace("+00:00", "Z"), **fields}


def test_a_later_edit_on_the_target_is_not_written_over_and_the_trace_says_why() -> None:
    result = check(released(Forenames="Grace"), user(HELD + timedelta(milliseconds=1200), Forenames="Hedy"))

    assert result.command is None
    assert result.read_digests == {}  # Hedy must still arrive as news, with its own event
    assert result.logs == [
        "Read accessplanit before releasing a held change: Forenames holds 'Hedy', a value Tandem did not write "
        "nor see, changed at 2026-12-03 19:00:01.200 UTC, not before this held change from 2026-12-03 "
        "19:00:00.000 UTC: a later edit there, not written over (its own event carries it)"
    ]


def test_only_the_fields_edited_later_are_left_out() -> None:
    result = check(
        released(Forenames="Grace", Surname="Hopper"),
        user(HELD + timedelta(seconds=2), Forenames="Hedy", Surname="Start"),
    )

    assert result.command is not None
    assert result.command.payload == {"Email": EMAIL, "Surname": "Hopper"}
    assert result.confirmed == ["Surname"]


def test_a_value_tandem_knows_is_written_over_whenever_the_record_changed() -> None:
    # The record moved later (Tandem's own write of another field, say), but this field still holds what Tandem
    # knew: nobody edited it since.
    command = released(Forenames="Grace")
    result = check(command, user(HELD + timedelta(seconds=5), Forenames="Start"))
    assert result.command == command
    assert result.logs == []


def test_an_edit_provably_older_than_the_held_change_is_written_over() -> None:
    # Its own event, when it comes, is older than the held change and loses to it on both sides.
    command = released(Forenames="Grace")
    result = check(command, user(HELD - timedelta(milliseconds=1), Forenames="Hedy"))
    assert result.command == command
    assert "changed at 2026-12-03 18:59:59.999 UTC, before this held change" in result.logs[0]


def test_an_edit_within_the_held_changes_second_is_not_provably_older_so_it_is_kept() -> None:
    # The held change happened somewhere in [S, S + 1 s); an edit at S + 1 ms may be later, and Tandem will
    # receive it later: that order decides (docs/convergence.md).
    result = check(released(Forenames="Grace"), user(HELD + timedelta(milliseconds=1), Forenames="Hedy"))
    assert result.command is None


def test_a_record_without_an_update_time_keeps_a_value_tandem_does_not_know() -> None:
    result = check(released(Forenames="Grace"), {"ID": "7", "Email": EMAIL, "Forenames": "Hedy"})
    assert result.command is None
    assert "changed at an unknown time" in result.logs[0]


def test_no_contact_on_the_target_means_nothing_to_write_over() -> None:
    command = released(Forenames="Grace")
    result = check(command, None)
    assert result.command == command
