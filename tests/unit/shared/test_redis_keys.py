"""Every Redis key scheme, pinned: the strings are stored state, so a changed format would lose what an earlier
version wrote (sync state, held changes, applied writes, poller cursors) on upgrade."""

from __future__ import annotations

from fnmatch import fnmatchcase

from tandem_shared.contracts import System, deterministic_event_id
from tandem_shared.redis import keys

# HMAC-SHA256("ada@example.com") under the suite's key (tests/support/infra.py), first 32 hex characters.
ADA = "c952095b468c8bfcd042eee8bbe27d4b"
ADA_MD5 = "3e3417d7ef77d5932a6734b916515ed5"  # md5("ada@example.com"): Mailchimp's member id, the legacy name
EV_1 = "c5961a39fffda7d3ea535b90ba546902"  # keyed_hash("ev-1") under the suite's key


def test_sync_state_keys_share_the_instance_slot_and_carry_no_address() -> None:
    assert keys.state_key("demo", System.MAILCHIMP, "Ada@Example.com ") == f"tandem:{{demo}}:state:mailchimp:{ADA}"
    assert keys.state_key("demo", System.ACCESSPLANIT, "ada@example.com") == f"tandem:{{demo}}:state:accessplanit:{ADA}"
    assert keys.user_email_key("demo") == "tandem:{demo}:ap-user-email"
    assert keys.moved_key("demo", System.MAILCHIMP, "Ada@Example.com") == f"tandem:{{demo}}:moved:mailchimp:{ADA}"


def test_the_legacy_state_key_is_the_unkeyed_member_id_in_the_same_slot() -> None:
    legacy = keys.legacy_state_key("demo", System.MAILCHIMP, "Ada@Example.com")
    assert legacy == f"tandem:{{demo}}:state:mailchimp:{ADA_MD5}"


def test_held_change_keys() -> None:
    assert keys.held_key("demo") == "tandem:{demo}:held"
    assert keys.held_lock_key("demo") == "tandem:{demo}:held:lock"


def test_reconciliation_and_tombstone_keys() -> None:
    assert keys.reconcile_lock_key("demo") == "tandem:{demo}:reconcile:lock"
    assert keys.reconcile_checkpoint_key("demo") == "tandem:{demo}:reconcile:checkpoint"
    assert keys.reconcile_last_key("demo") == "tandem:{demo}:reconcile:last"
    assert keys.reconcile_scheduled_key("demo") == "tandem:{demo}:reconcile:scheduled"
    assert keys.tombstones_key("demo", System.MAILCHIMP) == "tandem:{demo}:tombstones:mailchimp"
    assert keys.RECONCILE_UNFINISHED == "tandem:reconcile:unfinished"


def test_the_writers_keys_share_the_contacts_slot() -> None:
    assert keys.idempotency_keys("demo", System.MAILCHIMP, "c0ffee", "k1") == (
        "{tandem|demo|mailchimp|c0ffee}:key:k1",
        "{tandem|demo|mailchimp|c0ffee}:lock",
        "{tandem|demo|mailchimp|c0ffee}:applied-at",
    )
    named = keys.idempotency_keys("demo", System.ACCESSPLANIT, "ap:7", "k2")
    assert named.applied == "{tandem|demo|accessplanit|ap:7}:key:k2"
    assert named.lock == "{tandem|demo|accessplanit|ap:7}:lock"
    assert named.applied_at == "{tandem|demo|accessplanit|ap:7}:applied-at"


def test_erasure_keys() -> None:
    assert keys.erasure_offsets_key("mapper") == "tandem:erasure:mapper:offsets"
    assert keys.contact_slot_pattern("de*mo", "ap:7") == "{tandem|de\\*mo|*|ap:7}:*"


def test_ingest_claim_and_poller_keys() -> None:
    assert keys.ingest_claim_key("demo", "ev-1") == f"tandem:ingest:event:demo:{EV_1}"
    assert keys.poller_cursor_key("demo") == "tandem:poller:demo:cursor"
    assert keys.poller_lock_key("demo") == "tandem:poller:demo:lock"
    assert keys.poller_deferred_key("demo") == "tandem:poller:demo:deferred"
    assert keys.reread_window_key("demo") == "tandem:poller:demo:rereads"


def test_an_ingest_claim_names_no_event_id_and_no_address() -> None:
    """A Mailchimp event id is a plain SHA-256 over the delivery, address included: the claim carries its keyed
    hash, so the key confirms no guess without the deployment's key."""
    # As tandem_ingest.domain.normalize.mailchimp names a delivery without a member id.
    event_id = deterministic_event_id("mailchimp", "demo", "l1", "profile", "ada@example.com", "2026-12-03", "d")
    key = keys.ingest_claim_key("demo", event_id)
    assert event_id not in key
    assert "ada" not in key and ADA not in key and ADA_MD5 not in key
    assert key == keys.ingest_claim_key("demo", event_id)  # the same delivery, the same claim


def test_vendor_limit_keys() -> None:
    assert keys.concurrency_key("mailchimp:us1:abc") == "tandem:concurrency:mailchimp:us1:abc"
    assert keys.concurrency_key("acct", "test:x:") == "test:x:acct"
    budget = keys.budget_key("accessplanit", "http://127.0.0.1:1|some-api-key", "User")
    assert budget == "tandem:budget:{accessplanit:a269fa46ffa51f0b180789ff2df3f872:user}"
    assert keys.budget_block_key(budget) == f"{budget}:block"


def test_the_patterns_of_an_instance_are_pinned() -> None:
    assert keys.instance_key_patterns("demo") == (
        "tandem:{demo}:*",
        "{tandem|demo|*",
        "tandem:ingest:event:demo:*",
        "tandem:poller:demo:*",
    )


def _every_key_of(instance_id: str) -> list[str]:
    writer = [
        key
        for target in System
        for key in keys.idempotency_keys(instance_id, target, "ap:7", "k1")
        + keys.idempotency_keys(instance_id, target, ADA, "k2")
    ]
    return [
        keys.state_key(instance_id, System.MAILCHIMP, "ada@example.com"),
        keys.state_key(instance_id, System.ACCESSPLANIT, "ada@example.com"),
        keys.user_email_key(instance_id),
        keys.held_key(instance_id),
        keys.held_lock_key(instance_id),
        *writer,
        keys.ingest_claim_key(instance_id, "ev-1"),
        keys.poller_cursor_key(instance_id),
        keys.poller_lock_key(instance_id),
        keys.poller_deferred_key(instance_id),
        keys.reread_window_key(instance_id),
        keys.budget_block_key(keys.reread_window_key(instance_id)),
    ]


def _matched(key: str, patterns: tuple[str, ...]) -> bool:
    # fnmatch's glob is Redis's for these patterns (no escapes in them: the ids below have no glob characters).
    return any(fnmatchcase(key, pattern) for pattern in patterns)


def test_the_patterns_match_every_key_of_the_instance_and_none_of_another() -> None:
    patterns = keys.instance_key_patterns("demo")
    assert all(_matched(key, patterns) for key in _every_key_of("demo"))
    for other in ("demo-2", "dem", "2-demo", "demo0"):
        assert not any(_matched(key, patterns) for key in _every_key_of(other)), other
    shared = [keys.concurrency_key("mailchimp:us1:demo"), keys.budget_key("mailchimp", "demo", "members")]
    assert not any(_matched(key, patterns) for key in shared)


def test_glob_characters_in_an_id_are_matched_literally() -> None:
    # Instance ids cannot hold them (the contract's pattern); the purge must not widen to other instances if one did.
    assert keys.instance_key_patterns("a*[b]?\\")[3] == "tandem:poller:a\\*\\[b\\]\\?\\\\:*"
