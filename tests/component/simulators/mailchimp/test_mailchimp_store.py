"""The store and service in process: a batch is one transaction, its webhooks are announced after the commit, and
the in-memory lookups never outlive the rows they copy (writes and rollbacks drop them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailchimp_sim.domain import MergeField, subscriber_hash
from mailchimp_sim.schemas import BatchSubscribe
from mailchimp_sim.seed import DEMO_LIST_ID, seed
from mailchimp_sim.service import AudienceService, Change
from mailchimp_sim.settings import SimSettings
from mailchimp_sim.store import Store, Webhook


@pytest.fixture
def store(tmp_path: Path) -> Store:
    settings = SimSettings(data_dir=tmp_path)
    store = Store(settings.data_dir)
    seed(store, settings)
    return store


def _members(*emails: str) -> BatchSubscribe:
    return BatchSubscribe(
        members=[{"email_address": e, "status_if_new": "subscribed"} for e in emails], update_existing=True
    )


def _run(service: AudienceService, request: BatchSubscribe) -> dict[str, object]:
    return service.batch(DEMO_LIST_ID, request, skip_merge_validation=False, skip_duplicate_check=False, source="api")


def test_a_batch_commits_once_and_announces_its_changes_after_the_commit(store: Store) -> None:
    statements: list[str] = []
    announced: list[tuple[str, bool]] = []

    def notify(change: Change) -> None:
        assert change.after is not None
        # Committed by now: no transaction is open when a change is announced.
        announced.append((change.after.email_address, store._conn.in_transaction))

    service = AudienceService(store, SimSettings(data_dir=Path(".")), notify)
    store._conn.set_trace_callback(statements.append)

    result = _run(service, _members("a@example.com", "b@example.com", "not-an-address", "c@example.com"))

    store._conn.set_trace_callback(None)
    assert (result["total_created"], result["error_count"]) == (3, 1)
    assert [s for s in statements if s.startswith(("BEGIN", "COMMIT", "ROLLBACK"))] == ["BEGIN IMMEDIATE", "COMMIT"]
    assert announced == [("a@example.com", False), ("b@example.com", False), ("c@example.com", False)]


def test_a_batch_that_fails_half_way_writes_and_announces_nothing(store: Store) -> None:
    announced: list[Change] = []
    service = AudienceService(store, SimSettings(data_dir=Path(".")), announced.append)
    save = store.save_member
    calls = 0

    def failing_second_save(*args: object, **kwargs: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("disk full")
        save(*args, **kwargs)  # type: ignore[arg-type]

    store.save_member = failing_second_save  # type: ignore[method-assign]
    with pytest.raises(OSError):
        _run(service, _members("a@example.com", "b@example.com"))
    store.save_member = save  # type: ignore[method-assign]

    assert store.member(DEMO_LIST_ID, subscriber_hash("a@example.com")) is None
    assert store.query_members(
        DEMO_LIST_ID, status=None, since=None, before=None, unique_email_id=None, vip_only=False, offset=0, count=10
    ) == ([], 0)
    assert announced == []
    assert _run(service, _members("a@example.com"))["total_created"] == 1, "the store is usable afterwards"


def test_a_nested_transaction_rolls_back_alone(store: Store) -> None:
    with store.transaction():
        store.forget(DEMO_LIST_ID, "kept")
        with pytest.raises(RuntimeError), store.transaction():
            store.forget(DEMO_LIST_ID, "dropped")
            raise RuntimeError
    assert (store.is_forgotten(DEMO_LIST_ID, "kept"), store.is_forgotten(DEMO_LIST_ID, "dropped")) == (True, False)


def test_cached_lookups_follow_writes_and_rollbacks(store: Store) -> None:
    assert store.account_for_key("tandemdemo0000000000000000000000-us1") == "tandemdemo"
    tags = [f.tag for f in store.merge_fields(DEMO_LIST_ID)]
    store.put_merge_field(DEMO_LIST_ID, MergeField(7, "PLAN", "Plan", "text"))
    assert [f.tag for f in store.merge_fields(DEMO_LIST_ID)] == [*tags, "PLAN"]
    store.delete_merge_field(DEMO_LIST_ID, 7)
    assert [f.tag for f in store.merge_fields(DEMO_LIST_ID)] == tags

    with pytest.raises(RuntimeError), store.transaction():
        store.put_merge_field(DEMO_LIST_ID, MergeField(8, "LOST", "Lost", "text"))
        store.update_audience(DEMO_LIST_ID, "Renamed", True)
        store.add_api_key("tandemdemo0000000000000000000000-us1", "someone-else")
        assert store.merge_fields(DEMO_LIST_ID)[-1].tag == "LOST"
        raise RuntimeError
    assert [f.tag for f in store.merge_fields(DEMO_LIST_ID)] == tags
    audience = store.audience(DEMO_LIST_ID)
    assert audience is not None and (audience.name, audience.double_optin) == ("Tandem Demo", False)
    assert store.account_for_key("tandemdemo0000000000000000000000-us1") == "tandemdemo"

    hook = Webhook("w1", DEMO_LIST_ID, "http://127.0.0.1:9/hook", {"subscribe": True}, {"api": True}, False, "")
    assert store.webhooks(DEMO_LIST_ID) == []
    store.save_webhook(hook)
    store.disable_webhook("w1")
    assert [h.disabled for h in store.webhooks(DEMO_LIST_ID)] == [True]
    store.delete_webhook("w1")
    assert store.webhooks(DEMO_LIST_ID) == []
    store.wipe()
    assert store.account_for_key("tandemdemo0000000000000000000000-us1") is None
    assert store.audience(DEMO_LIST_ID) is None
