"""Every Redis key Tandem writes, in one place. The strings are part of the stored state: changing one loses what
an earlier version stored under it (tests/unit/shared/test_redis_keys.py pins each format).

`{…}` is a Redis Cluster hash tag: the keys that one script or transaction touches together share a slot.

    tandem:{<instance>}:state:<system>:<contact>   HASH    what one side holds for a contact (`sync.rules`)
    tandem:{<instance>}:moved:<system>:<contact>   STRING  the address a side moved the contact to from this one
    tandem:{<instance>}:ap-user-email              HASH    accessplanit user id → the last address seen for it
    tandem:{<instance>}:held                       STREAM  changes held while the instance is paused (mapper)
    tandem:{<instance>}:held:lock                  STRING  lease of the mapper replica releasing held changes
    {tandem|<instance>|<target>|<contact>}:key:<idempotency key>   STRING  a command in flight or applied (writer)
    {tandem|<instance>|<target>|<contact>}:lock                     STRING  the writer claim holding the contact
    {tandem|<instance>|<target>|<contact>}:applied-at               STRING  source time of the newest change applied
    tandem:{<instance>}:reconcile:lock             STRING  lease of the writer replica running a reconciliation
    tandem:{<instance>}:reconcile:checkpoint       HASH    a running or interrupted reconciliation: request, position
    tandem:{<instance>}:reconcile:last             HASH    the last finished reconciliation: run id, status, counts
    tandem:{<instance>}:reconcile:scheduled        STRING  a scheduled run was requested within the interval
    tandem:{<instance>}:tombstones:<system>        SET     keyed hashes of addresses Tandem saw deleted on a side
    tandem:reconcile:unfinished                    SET     instances with a reconciliation checkpoint to resume
    tandem:ingest:event:<instance>:<event>         STRING  ingest's claim on publishing one change
    tandem:erasure:<service>:offsets               HASH    partition → next offset of tandem.erasure applied
    tandem:poller:<instance>:cursor                STRING  the catch-up poller's position
    tandem:poller:<instance>:lock                  STRING  lease of the ingest replica polling the instance
    tandem:poller:<instance>:deferred              ZSET    users whose delivery waits for the catch-up read
    tandem:poller:<instance>:rereads               ZSET    the instance's window of re-reads for unsigned deliveries
    tandem:concurrency:<name>                      ZSET    a vendor's concurrency semaphore (Mailchimp connections)
    tandem:budget:{<vendor>:<credential digest>:<endpoint>}        ZSET    a request budget's sliding window
    tandem:budget:{<vendor>:<credential digest>:<endpoint>}:block  STRING  the vendor said 429: wait until it expires

`<contact>` in the state keys is `contact_hash(email)` (a keyed hash, `tandem_shared.contact_hash`), and a Mailchimp
contact's `<contact>` in the writer's slots is `mc:<contact_hash(email)>`: no address appears in a key, and none can
be recovered from one without the deployment's key. Earlier versions named state keys by `subscriber_hash(email)`
(unkeyed MD5) and writer slots by `mc:<address>`: `legacy_state_key` names the former, which `redis.state` adopts
lazily (read old, write new). `<event>` in ingest's claims is `keyed_hash(event id)`: an event id is a plain SHA-256
over the delivery, a Mailchimp one over the address among the rest.
Every scheme above the vendor limits carries the instance: `instance_key_patterns` finds them all (deleting an
instance removes its state at once).
"""

from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

from tandem_shared.contact_hash import contact_hash, keyed_hash
from tandem_shared.contracts import System, subscriber_hash

CONCURRENCY_PREFIX = "tandem:concurrency:"


def _instance(instance_id: str) -> str:
    return f"tandem:{{{instance_id}}}"


def state_key(instance_id: str, system: System, email: str) -> str:
    return f"{_instance(instance_id)}:state:{system.value}:{contact_hash(email)}"


def moved_key(instance_id: str, system: System, email: str) -> str:
    """The forward pointer a move leaves at the address it left (same slot as `state_key`: one script writes both):
    a change still naming that address finds the contact at its new one (docs/convergence.md, "Moves")."""
    return f"{_instance(instance_id)}:moved:{system.value}:{contact_hash(email)}"


def moved_key_pattern(instance_id: str) -> str:
    """SCAN MATCH pattern of every forward pointer of one instance (erasure finds those pointing to an address)."""
    return f"{_instance(_glob_literal(instance_id))}:moved:*"


def legacy_state_key(instance_id: str, system: System, email: str) -> str:
    """Where versions before the keyed hash kept the same state (same slot as `state_key`: one script moves it)."""
    return f"{_instance(instance_id)}:state:{system.value}:{subscriber_hash(email)}"


def user_email_key(instance_id: str) -> str:
    return f"{_instance(instance_id)}:ap-user-email"


def held_key(instance_id: str) -> str:
    return f"{_instance(instance_id)}:held"


def held_lock_key(instance_id: str) -> str:
    return f"{_instance(instance_id)}:held:lock"


def reconcile_lock_key(instance_id: str) -> str:
    return f"{_instance(instance_id)}:reconcile:lock"


def reconcile_checkpoint_key(instance_id: str) -> str:
    return f"{_instance(instance_id)}:reconcile:checkpoint"


def reconcile_last_key(instance_id: str) -> str:
    return f"{_instance(instance_id)}:reconcile:last"


def reconcile_scheduled_key(instance_id: str) -> str:
    return f"{_instance(instance_id)}:reconcile:scheduled"


def tombstones_key(instance_id: str, system: System) -> str:
    """No address in it or in its members: each member is the `tandem_shared.contact_hash` of one."""
    return f"{_instance(instance_id)}:tombstones:{system.value}"


RECONCILE_UNFINISHED = "tandem:reconcile:unfinished"


class IdempotencyKeys(NamedTuple):
    """The writer's keys for one command: all in the slot of its contact, so one script touches all three."""

    applied: str  # "inflight:<token>" while being written, then "done:<epoch ms>"
    lock: str  # the claim's token while a command of this contact is being written
    applied_at: str  # source time (µs) of the newest change applied to the contact


def _writer_slots(instance_id: str) -> str:
    """What the writer's slots of one instance begin with (the slot closes after target and contact)."""
    return f"{{tandem|{instance_id}|"


def idempotency_keys(instance_id: str, target: System, contact_key: str, idempotency_key: str) -> IdempotencyKeys:
    slot = f"{_writer_slots(instance_id)}{target.value}|{contact_key}}}"
    return IdempotencyKeys(f"{slot}:key:{idempotency_key}", f"{slot}:lock", f"{slot}:applied-at")


def contact_slot_pattern(instance_id: str, contact_key: str) -> str:
    """SCAN MATCH pattern of the writer's keys of one contact of one instance, every target's (erasure)."""
    return f"{_writer_slots(_glob_literal(instance_id))}*|{_glob_literal(contact_key)}}}:*"


def _ingest_claims(instance_id: str) -> str:
    return f"tandem:ingest:event:{instance_id}"


def ingest_claim_key(instance_id: str, event_id: str) -> str:
    """Named by the keyed hash of the event id. Claims named by the event id itself (earlier versions) are left to
    expire (`TANDEM_INGEST_DEDUPE_DONE_TTL_S`): a delivery repeated across the upgrade is published once more."""
    return f"{_ingest_claims(instance_id)}:{keyed_hash(event_id)}"


def erasure_offsets_key(service: str) -> str:
    return f"tandem:erasure:{service}:offsets"


def _poller(instance_id: str) -> str:
    return f"tandem:poller:{instance_id}"


def poller_cursor_key(instance_id: str) -> str:
    return f"{_poller(instance_id)}:cursor"


def poller_lock_key(instance_id: str) -> str:
    return f"{_poller(instance_id)}:lock"


def poller_deferred_key(instance_id: str) -> str:
    return f"{_poller(instance_id)}:deferred"


def reread_window_key(instance_id: str) -> str:
    """A `RateBudget` key: its block key (`budget_block_key`) sits under the same prefix."""
    return f"{_poller(instance_id)}:rereads"


def concurrency_key(name: str, prefix: str = CONCURRENCY_PREFIX) -> str:
    return f"{prefix}{name}"


def _glob_literal(value: str) -> str:
    """`value` matched literally in a SCAN MATCH pattern (Redis glob: `*`, `?`, `[…]`, backslash escapes)."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", value)


def instance_key_patterns(instance_id: str) -> tuple[str, ...]:
    """SCAN MATCH patterns that together match every key of one instance, and no other instance's (an instance id
    never contains the separators `}`, `|` or `:`, so a pattern cannot reach into a longer id's keys).

    Built by the key functions themselves, with `*` in the places that vary, so a scheme and its pattern cannot
    drift apart."""
    instance = _glob_literal(instance_id)
    return (
        f"{_instance(instance)}:*",  # sync state, user emails, held changes, reconciliation, tombstones
        f"{_writer_slots(instance)}*",  # the writer's keys of every target and contact
        f"{_ingest_claims(instance)}:*",
        f"{_poller(instance)}:*",  # the poller's cursor, lease, deferred users and re-read window
    )


def budget_key(namespace: str, credential: str, endpoint: str) -> str:
    """One credential's budget on one endpoint. The credential is hashed: keys are visible to operators.

    The braces keep the log and its block key in one slot (one script touches both).
    """
    digest = hashlib.sha256(credential.encode("utf-8")).hexdigest()[:32]
    return f"tandem:budget:{{{namespace}:{digest}:{endpoint.lower()}}}"


def budget_block_key(budget: str) -> str:
    return f"{budget}:block"
