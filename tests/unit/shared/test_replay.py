"""Which parked commands a replay publishes, and how: one decision for the CLI and the console."""

from __future__ import annotations

from datetime import UTC, datetime

from support.commands import sync_command
from support.mapper import accessplanit_change
from tandem_shared.contracts import ChangeEvent, SyncCommand, System
from tandem_shared.contracts.topics import COMMANDS_DLQ
from tandem_shared.replay import Changes, Parked, Selection, Verdict, decide, replay_event_id, replayed_event

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


class Applied:
    def __init__(self, *keys: str) -> None:
        self.keys = set(keys)

    async def applied_at(self, command: SyncCommand) -> datetime | None:
        return NOW if command.idempotency_key in self.keys else None


def parked(name: str, event_id: str) -> Parked:
    payload = {"email_address": f"{name}@example.com"}
    command = sync_command(
        "acme", System.MAILCHIMP, payload, email=payload["email_address"], name=name, event_id=event_id
    )
    return Parked(COMMANDS_DLQ, 0, len(name), NOW, b"k", command.model_dump_json().encode(), {}, command)


def found(*events: ChangeEvent, replayed: tuple[ChangeEvent, ...] = ()) -> Changes:
    changes = Changes()
    for event in events:
        changes.by_event[event.event_id] = (event, None)
    for event in replayed:
        again = replayed_event(event, "x-again", original_execution_id=event.execution_id)
        changes.replays[again.event_id] = again
    return changes


async def test_applied_commands_are_skipped_and_the_rest_replayed_as_they_are() -> None:
    done, todo = parked("done", "e-1"), parked("todo", "e-2")
    assert done.command is not None and todo.command is not None
    decisions = await decide(Selection(chosen=[done, todo]), Applied(done.command.idempotency_key))
    assert [(d.entry, d.verdict, d.change) for d in decisions] == [
        (done, Verdict.APPLIED, None),
        (todo, Verdict.REPLAY, None),
    ]


async def test_a_remap_takes_the_original_change_and_replays_each_change_once() -> None:
    fresh, earlier = accessplanit_change("acme", "1", at=NOW), accessplanit_change("acme", "2", at=NOW)
    entries = [parked("fresh", fresh.event_id), parked("earlier", earlier.event_id), parked("gone", "e-gone")]
    changes = found(fresh, earlier, replayed=(earlier,))
    decisions = await decide(Selection(chosen=entries), Applied(), changes)
    assert [(d.verdict, d.change) for d in decisions] == [
        (Verdict.REPLAY, fresh),
        (Verdict.REPLAYED_BEFORE, None),
        (Verdict.CHANGE_GONE, None),
    ]
    assert changes.replay_of(earlier) is not None and changes.replay_of(fresh) is None
    assert replay_event_id(fresh) != replay_event_id(earlier)
