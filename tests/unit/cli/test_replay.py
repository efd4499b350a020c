from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import pytest

from support.commands import sync_command
from tandem_cli.main import build_parser
from tandem_cli.replay import parse_when
from tandem_shared.contracts import (
    Headers,
    SyncCommand,
    System,
    Trigger,
)
from tandem_shared.contracts.envelopes import command_envelope
from tandem_shared.contracts.topics import COMMANDS_DLQ
from tandem_shared.replay import Filters, Parked, replayed_command, select

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


def command(
    name: str, instance: str = "acme", execution: str | None = None, original: str | None = None
) -> SyncCommand:
    payload = {"email_address": f"{name}@example.com"}
    return sync_command(
        instance,
        System.MAILCHIMP,
        payload,
        email=payload["email_address"],
        name=name,
        execution_id=execution or f"x-{name}",
        original_execution_id=original,
        attempt=6,
        occurred=NOW,
    )


def parked(cmd: SyncCommand | None, offset: int, minutes_ago: int = 0) -> Parked:
    return Parked(
        topic=COMMANDS_DLQ,
        partition=2,
        offset=offset,
        timestamp=NOW - timedelta(minutes=minutes_ago),
        key=b"k",
        value=b"{}",
        headers={},
        command=cmd,
    )


def test_select_filters_by_instance_time_and_execution_and_keeps_the_latest_copy_per_change() -> None:
    ada = command("ada")
    entries = [
        parked(ada, 1, minutes_ago=90),
        parked(command("bob", instance="other"), 2),
        parked(command("cy", execution="x-new", original="x-cy-first"), 3, minutes_ago=10),
        parked(ada, 4, minutes_ago=5),
        parked(None, 5),
    ]
    everything = select(entries, Filters(instance="acme"))
    assert [e.offset for e in everything.chosen] == [3, 4]
    assert [e.offset for e in everything.duplicates] == [1]
    assert [e.offset for e in everything.unreadable] == [5]
    assert [e.offset for e in select(entries, Filters(execution="x-cy-first")).chosen] == [3]
    recent = select(entries, Filters(instance="acme", since=NOW - timedelta(minutes=7)))
    assert [e.offset for e in recent.chosen] == [4]
    old = select(entries, Filters(until=NOW - timedelta(hours=1)))
    assert [e.offset for e in old.chosen] == [1]


def test_a_replayed_command_is_a_new_execution_linked_to_the_first_with_attempts_reset() -> None:
    original = command("ada", execution="x-2", original="x-1")
    replayed = replayed_command(original, "x-3")
    assert (replayed.execution_id, replayed.original_execution_id) == ("x-3", "x-1")
    assert replayed.attempt == 1 and replayed.trigger is Trigger.REPLAY
    assert replayed.idempotency_key == original.idempotency_key, "the writer still recognises the change"
    assert replayed.command_id != original.command_id
    headers = command_envelope(replayed, replayed_from=parked(original, 17).where).headers
    assert headers[Headers.REPLAYED_FROM] == f"{COMMANDS_DLQ}@2:17"
    assert headers[Headers.ORIGINAL_EXECUTION_ID] == "x-1"
    assert headers[Headers.IDEMPOTENCY_KEY] == original.idempotency_key


def test_times_are_iso_or_ages() -> None:
    assert parse_when("2h", now=NOW) == NOW - timedelta(hours=2)
    assert parse_when("30m", now=NOW) == NOW - timedelta(minutes=30)
    assert parse_when("2026-11-25T09:30") == datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    assert parse_when("2026-11-25T09:30+01:00").utcoffset() == timedelta(hours=1)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_when("yesterday")


def test_the_replay_command_is_registered_with_its_options() -> None:
    args = build_parser().parse_args(["replay", "--from", "dlq", "--instance", "acme", "--since", "1d", "--dry-run"])
    assert (args.source, args.instance, args.dry_run, args.remap) == ("dlq", "acme", True, False)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["replay", "--from", "somewhere"])
