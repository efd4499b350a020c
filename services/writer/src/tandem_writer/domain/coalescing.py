"""Coalescing (pure): several upserts for one contact waiting in one partition become one write.

A contact edited ten times in a second gives ten commands, queued one behind the other in the contact's partition
while the writer waits on the vendor. Writing them in turn costs ten requests of a budget of ten simultaneous
connections, to end where the last one ends. The writer instead takes the first command together with every later
upsert for the same contact already queued behind it, and makes one write: the newest command, carrying all their
fields (a later value wins, field by field), so nothing a skipped command would have written is lost. The write
keeps the newest command's idempotency key: once it is applied, a redelivery of the newest command is skipped as
already applied, and one of the older ones as superseded by it (the delivery layer's newest-applied marker).

Only upserts fold: an email change, or anything after one, is written in its own turn, because what it addresses
(the old address) is not what the upserts around it address.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tandem_shared.contracts import Operation, SyncCommand, fingerprint


@dataclass(frozen=True)
class Queued:
    """A command waiting in a partition, where the consumer holds it."""

    offset: int
    key: bytes | None
    command: SyncCommand | None  # None: unreadable, never folded


@dataclass(frozen=True)
class Coalesced:
    command: SyncCommand  # the one write to make: the newest command, carrying every folded field
    absorbed: tuple[Queued, ...]  # the later queued commands it carries, oldest first


def fold_payloads(payloads: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Later payloads win key by key; nested field maps (Mailchimp `merge_fields`, accessplanit `CustomFields`)
    are merged the same way one level down."""
    folded: dict[str, Any] = {}
    for payload in payloads:
        for name, value in payload.items():
            earlier = folded.get(name)
            if isinstance(earlier, Mapping) and isinstance(value, Mapping):
                folded[name] = {**earlier, **value}
            else:
                folded[name] = value
    return folded


def _foldable(first: SyncCommand, other: SyncCommand) -> bool:
    # A command with a source check is written only as far as its source confirms it, and one that waits for an
    # in-flight write only after it: never folded.
    return (
        first.source_check is None
        and other.source_check is None
        and not first.waits_for
        and not other.waits_for
        and other.operation is Operation.UPSERT
        and other.target is first.target
        and other.instance_id == first.instance_id
        and other.identity.contact_key == first.identity.contact_key
    )


def coalesce(head: Queued, behind: Sequence[Queued]) -> Coalesced | None:
    """The write that covers `head` and the upserts for its contact queued `behind` it, or None when there is
    nothing to fold (`head` is then written as it is). Stops at the contact's first command that cannot fold."""
    first = head.command
    if first is None or first.operation is not Operation.UPSERT or head.key is None:
        return None
    absorbed: list[Queued] = []
    for queued in behind:
        if queued.key != head.key:
            continue
        if queued.command is None or not _foldable(first, queued.command):
            break
        absorbed.append(queued)
    if not absorbed:
        return None
    newest = absorbed[-1].command
    assert newest is not None
    payload = fold_payloads([first.payload, *(q.command.payload for q in absorbed if q.command is not None)])
    command = newest.model_copy(update={"payload": payload, "fingerprint": fingerprint(payload)})
    return Coalesced(command, tuple(absorbed))
