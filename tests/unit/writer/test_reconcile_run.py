"""A reconciliation run against in-memory vendors and Kafka: paging, the report, and resuming from a checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from fakes.producer import InMemoryProducer
from tandem_shared.contracts import ChangeEvent, utcnow
from tandem_shared.contracts.reconcile import ReconcileProgress, ReconcileRequest, ReconcileUpdate, RunStatus
from tandem_shared.contracts.topics import CHANGES, RECONCILE_RUNS
from tandem_shared.instances import demo_instance
from tandem_shared.reconcile.domain import Policy
from tandem_shared.vendors.accessplanit.client import AccessplanitClient
from tandem_shared.vendors.mailchimp.client import MailchimpClient, Reply
from tandem_writer import reconcile_run
from tandem_writer.reconcile_run import Limits, ReconcileRun

INSTANCE = demo_instance()
AT = datetime(2026, 12, 1, tzinfo=UTC).isoformat()
LIMITS = Limits(ap_requests_per_window=4800, ap_window_s=3600, ap_share=0.25, mailchimp_members_per_s=1000)


class FakeAccessplanit:
    def __init__(self, users: list[dict[str, Any]]) -> None:
        self.users = users
        self.requests: list[Mapping[str, str]] = []

    async def request_json(self, method: str, path: str, *, params: Mapping[str, str], **_: Any) -> Any:
        self.requests.append(params)
        skip, top = int(params["$skip"]), int(params["$top"])
        return {"results": self.users[skip : skip + top], "count": len(self.users)}


class FakeMailchimp:
    def __init__(self, members: list[dict[str, Any]]) -> None:
        self.members = members
        self.requests: list[Mapping[str, Any]] = []

    async def request(self, method: str, path: str, *, params: Mapping[str, Any], **_: Any) -> Reply:
        self.requests.append(params)
        found = [] if params.get("status") == "archived" else self.members
        offset, count = params["offset"], params["count"]
        return Reply(200, {"members": found[offset : offset + count], "total_items": len(found)})


class BrokerDies(InMemoryProducer):
    """Kafka goes away after so many repairs were handed over (the process is killed mid-run)."""

    def __init__(self, after_changes: int) -> None:
        super().__init__()
        self.after = after_changes

    async def send(self, topic: str, value: bytes | None, **kwargs: Any) -> Any:
        if topic == CHANGES and sum(s.topic == CHANGES for s in self.sent) >= self.after:
            raise ConnectionError("killed")
        return await super().send(topic, value, **kwargs)


def users(n: int) -> list[dict[str, Any]]:
    return [
        {"ID": str(100 + i), "Email": f"u{i:03d}@example.com", "Forenames": "A", "Surname": "B", "DateUpdated": AT}
        for i in range(n)
    ]


def make_run(
    ap: FakeAccessplanit,
    producer: InMemoryProducer,
    *,
    repair: bool = True,
    after: str = "",
    mc: FakeMailchimp | None = None,
    limits: Limits = LIMITS,
) -> ReconcileRun:
    request = ReconcileRequest(run_id="r1", instance_id=INSTANCE.id, repair=repair, requested_at=utcnow())
    return ReconcileRun(
        request,
        INSTANCE,
        accessplanit=cast(AccessplanitClient, ap),
        mailchimp=cast(MailchimpClient, mc or FakeMailchimp([])),
        producer=producer,
        policy=Policy(repair=repair),
        limits=limits,
        after=after,
        resumed=bool(after),
    )


def changes(producer: InMemoryProducer) -> list[ChangeEvent]:
    return [ChangeEvent.model_validate_json(s.value or b"") for s in producer.sent if s.topic == CHANGES]


def updates(producer: InMemoryProducer) -> list[ReconcileUpdate]:
    return [ReconcileUpdate.model_validate_json(s.value or b"") for s in producer.sent if s.topic == RECONCILE_RUNS]


async def test_a_dry_run_pages_through_both_sides_and_reports_without_publishing_changes() -> None:
    ap = FakeAccessplanit(users(2500))
    producer = InMemoryProducer()
    progress = await make_run(ap, producer, repair=False).execute(lambda *_: _nothing())
    assert progress.status is RunStatus.DONE
    assert progress.counts == {"only_accessplanit": 2500}
    assert [r["$skip"] for r in ap.requests] == ["0", "1000", "2000"]  # 1 request per 1000 users read
    assert changes(producer) == []
    rows = [row for update in updates(producer) for row in update.rows]
    assert len(rows) == 2500 and all(r.action == "would repair: → Mailchimp" for r in rows)


async def test_a_run_killed_part_way_resumes_after_its_checkpoint_and_publishes_nothing_new_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reconcile_run, "BATCH", 10)
    ap = FakeAccessplanit(users(35))
    checkpoints: list[tuple[str, int]] = []

    async def save(after: str, progress: ReconcileProgress) -> None:
        checkpoints.append((after, progress.published))

    killed = BrokerDies(after_changes=25)
    with pytest.raises(ConnectionError):
        await make_run(ap, killed).execute(save)
    after, published = checkpoints[-1]
    assert (after, published) == ("u019@example.com", 20)  # two batches acknowledged, the third was in flight

    resumed = InMemoryProducer()
    progress = await make_run(ap, resumed, after=after).execute(save)
    assert progress.status is RunStatus.DONE and progress.resumed
    first, second = changes(killed), changes(resumed)
    assert [e.identity.email for e in second] == [f"u{i:03d}@example.com" for i in range(20, 35)]
    # What the killed run had in flight is published again as the very same change (same event and execution):
    # the writer's idempotency record makes the repeat a no-op, so no contact is written twice.
    repeated = {e.event_id: e for e in first[20:]}
    assert all(
        repeated[e.event_id] == e.model_copy(update={"received_at": repeated[e.event_id].received_at})
        for e in second
        if e.event_id in repeated
    )
    assert {e.identity.email for e in first} | {e.identity.email for e in second} == {u["Email"] for u in ap.users}


async def test_repairs_to_accessplanit_are_paced_to_the_runs_share_of_its_budget() -> None:
    members = [
        {"email_address": f"m{i:03d}@example.com", "status": "subscribed", "last_changed": AT}
        | {"merge_fields": {"FNAME": "A", "LNAME": "B"}}
        for i in range(5)
    ]
    # Four requests a second, all of it the run's: two users a second (a look-up and a write each).
    limits = Limits(ap_requests_per_window=4, ap_window_s=1.0, ap_share=1.0, mailchimp_members_per_s=1000)
    producer = InMemoryProducer()
    checkpoints: list[str] = []

    async def save(after: str, progress: ReconcileProgress) -> None:
        checkpoints.append(after)

    run = make_run(FakeAccessplanit([]), producer, mc=FakeMailchimp(members), limits=limits)
    progress = await run.execute(save)
    assert progress.published == 5 and len(changes(producer)) == 5
    # Before each wait for the budget, what was published is checkpointed: a run killed while it waits loses none.
    assert checkpoints == ["m001@example.com", "m003@example.com", "m004@example.com"]
    assert "published at 2 users per 1 s" in (progress.message or "")


async def _nothing() -> None:
    return None
