"""Which state a round of changes needs, and what each change's decision is told from what was read (pure).

A round is read in one go (`reads`); an accessplanit email change needs the old address's state too, known only
once the user's last address is, so a second read follows for email changes only (`missing`). `knowledge` then
hands each change what `decide` needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tandem_mapper.domain.model import Knowledge, event_email, old_address
from tandem_shared.contracts import ChangeEvent, ChangeKind, InstanceConfig, System, email_key
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


def _held_at(loaded: StateSnapshot, side: Side) -> str | None:
    """Where the side holds the contact instead, when it refused to move it to this address (one hop)."""
    if not loaded.has(*side):
        return None
    state = loaded.side(*side)
    return state.held_at if state is not None else None


def _resolved(loaded: StateSnapshot, side: Side) -> str | None:
    """`_held_at`, once that address's state is read too."""
    held_at = _held_at(loaded, side)
    return held_at if held_at and loaded.has(side[0], side[1], held_at) else None


def _moved_to(loaded: StateSnapshot, source: Side, target: Side) -> str | None:
    """Where the target side moved the contact to from this address, when it holds nothing here any more (a change
    naming the address it left, on its way while the move was decided or written). Only for a contact the source
    side knows at this address (its state, or a move of its own from it): someone else given the address since is a
    new contact."""
    if not loaded.has(*target) or loaded.side(*target) is not None:
        return None
    if loaded.has(*source) and loaded.side(*source) is None and loaded.moved_to(*source) is None:
        return None
    return loaded.moved_to(*target)


def missing(work: Work, loaded: StateSnapshot) -> list[Side]:
    """What the first read could not know to ask for: the old addresses' sides (accessplanit email changes), and
    the target's state where it holds the contact instead of an address it refused to move it to."""
    wanted: list[Side] = []
    for event, instance in work:
        email = synced_email(event, instance)
        if email is None:
            continue
        previous = previous_email(event, instance, loaded)
        old = old_address(event, previous)
        if old:
            wanted.extend(s for s in sides(instance.id, event.source, old) if not loaded.has(*s))
        target = event.source.other
        before = old or email  # where the target held the contact before this change
        moved_to = _moved_to(loaded, (instance.id, event.source, before), (instance.id, target, before))
        if moved_to and email_key(moved_to) != email_key(email) and not loaded.has(instance.id, target, moved_to):
            wanted.append((instance.id, target, moved_to))
        for address in (email, old):
            held_at = _held_at(loaded, (instance.id, target, address)) if address else None
            if held_at and not loaded.has(instance.id, target, held_at):
                wanted.append((instance.id, target, held_at))
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
        target_at = _resolved(loaded, (instance.id, target, email))
        before = old or email
        moved_to = _moved_to(loaded, (instance.id, source, before), (instance.id, target, before))
        # Moved to this change's own address: the move was this one, already seen or written there.
        moved_to = moved_to if moved_to and email_key(moved_to) != email_key(email) else None
        moved_to = moved_to if moved_to and loaded.has(instance.id, target, moved_to) else None
        target_moved_to = moved_to if not old else None
        target_old_moved_to = moved_to if old else None
        target_old_moved_at = loaded.moved_at(instance.id, target, old) if old and target_old_moved_to else None
        target_old_at = _resolved(loaded, (instance.id, target, old)) if old else None
        known[event.event_id] = Knowledge(
            source=loaded.side(instance.id, source, email),
            target=loaded.side(instance.id, target, target_at or target_moved_to or email),
            source_old=loaded.side(instance.id, source, old) if old else None,
            target_old=loaded.side(instance.id, target, target_old_at or target_old_moved_to or old) if old else None,
            previous_email=previous,
            target_at=target_at,
            target_old_at=target_old_at,
            target_moved_to=target_moved_to,
            target_old_moved_to=target_old_moved_to,
            target_old_moved_at=target_old_moved_at,
        )
    return known
