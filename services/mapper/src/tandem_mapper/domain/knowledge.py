"""Which state a round of changes needs, and what each change's decision is told from what was read (pure).

A round is read in one go (`reads`); an accessplanit email change needs the old address's state too, known only
once the user's last address is, so a second read follows for email changes only (`missing`). `knowledge` then
hands each change what `decide` needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tandem_mapper.domain.model import Knowledge, event_email, old_address
from tandem_shared.contracts import ChangeEvent, ChangeKind, InstanceConfig, System
from tandem_shared.sync.rules import StateSnapshot

Side = tuple[str, System, str]  # (instance, system, email)
Work = Sequence[tuple[ChangeEvent, InstanceConfig]]

_NOT_SYNCED = (ChangeKind.DELETED, ChangeKind.UNSUBSCRIBED, ChangeKind.CLEANED)


@dataclass(frozen=True)
class Reads:
    """What one read of a round asks for: contacts' sides and accessplanit users' last addresses."""

    sides: list[Side]
    user_ids: list[tuple[str, str]]  # (instance, accessplanit user id)


def synced_email(event: ChangeEvent, instance: InstanceConfig) -> str | None:
    """The address whose state `decide` looks at; None when it decides without any."""
    email = event_email(event)
    if email is None or event.kind in _NOT_SYNCED or not instance.direction.allows(event.flow):
        return None
    return email


def sides(instance_id: str, source: System, email: str) -> list[Side]:
    return [(instance_id, source, email), (instance_id, source.other, email)]


def previous_email(event: ChangeEvent, instance: InstanceConfig, loaded: StateSnapshot) -> str | None:
    user_id = event.identity.accessplanit_user_id
    if event.source is not System.ACCESSPLANIT or not user_id or synced_email(event, instance) is None:
        return None
    return loaded.user_email(instance.id, user_id)


def reads(work: Work) -> Reads:
    """The first read of a round: each change's sides at its address (and at its old one, when the change says)."""
    wanted: list[Side] = []
    users: list[tuple[str, str]] = []
    for event, instance in work:
        email = synced_email(event, instance)
        if email is None:
            continue
        wanted.extend(sides(instance.id, event.source, email))
        user_id = event.identity.accessplanit_user_id
        if event.source is System.ACCESSPLANIT and user_id:
            users.append((instance.id, user_id))
        old = old_address(event, None)
        if old:
            wanted.extend(sides(instance.id, event.source, old))
    return Reads(wanted, users)


def missing(work: Work, loaded: StateSnapshot) -> list[Side]:
    """The old addresses' sides the first read could not know to ask for (accessplanit email changes)."""
    wanted: list[Side] = []
    for event, instance in work:
        previous = previous_email(event, instance, loaded)
        old = old_address(event, previous) if synced_email(event, instance) else None
        if old:
            wanted.extend(s for s in sides(instance.id, event.source, old) if not loaded.has(*s))
    return wanted


def knowledge(work: Work, loaded: StateSnapshot) -> dict[str, Knowledge]:
    """What `decide` is told about each change's contact, by event id."""
    known: dict[str, Knowledge] = {}
    for event, instance in work:
        email = synced_email(event, instance)
        if email is None:
            known[event.event_id] = Knowledge()
            continue
        source, target = event.source, event.source.other
        previous = previous_email(event, instance, loaded)
        old = old_address(event, previous)
        known[event.event_id] = Knowledge(
            source=loaded.side(instance.id, source, email),
            target=loaded.side(instance.id, target, email),
            source_old=loaded.side(instance.id, source, old) if old else None,
            target_old=loaded.side(instance.id, target, old) if old else None,
            previous_email=previous,
        )
    return known
