"""Which changes of a batch may be decided side by side (pure).

A batch is decided in rounds: every change of a round is decided against the state loaded at the start of the
round, and the round's state updates are applied before the next round loads. Two changes that could read or
write the same state (one contact's, one address's, one accessplanit user's address) go to different rounds, in
the order they came in, so each is decided against the state the earlier one left, as if one by one.

What an accessplanit user's last address was before the batch is known only once it is read; a change of the
batch about that old address may then share a round with the user's email change, as changes with different
keys on different partitions are decided concurrently anyway (their writes still apply in batch order).
"""

from __future__ import annotations

from collections.abc import Sequence

from tandem_mapper.domain.model import event_email
from tandem_shared.contracts import ChangeEvent, email_key, message_key


def contact_tokens(event: ChangeEvent) -> set[str]:
    """What a change's decision may read or write, as names: changes sharing one are not decided side by side."""
    instance = event.instance_id
    identity = event.identity
    tokens = {f"key:{message_key(instance, identity.contact_key)}"}
    for address in (event_email(event), identity.email, identity.old_email):
        if address:
            tokens.add(f"email:{instance}:{email_key(address)}")
    if identity.accessplanit_user_id:
        tokens.add(f"user:{instance}:{identity.accessplanit_user_id}")
    return tokens


def rounds(events: Sequence[ChangeEvent]) -> list[list[int]]:
    """The batch's positions by round: a change goes one round after the latest earlier change it shares a token
    with (round 0 when none), so rounds keep each contact's changes in batch order."""
    last_round: dict[str, int] = {}
    by_round: list[list[int]] = []
    # An accessplanit change reads its user's last address, which an earlier change of the batch may have set:
    # that address's state moves on an email change.
    user_address: dict[str, str] = {}
    for position, event in enumerate(events):
        tokens = contact_tokens(event)
        user = event.identity.accessplanit_user_id
        if user:
            user_token = f"user:{event.instance_id}:{user}"
            if user_token in user_address:
                tokens.add(user_address[user_token])
            if address := event_email(event):
                user_address[user_token] = f"email:{event.instance_id}:{email_key(address)}"
        index = 1 + max((last_round[t] for t in tokens if t in last_round), default=-1)
        for token in tokens:
            last_round[token] = index
        if index == len(by_round):
            by_round.append([])
        by_round[index].append(position)
    return by_round
