"""What the delivery tests look at: the simulators as a user and an operator see them, the writer's topics,
trace records and applied-change records, and whether anything is still waiting on a retry tier."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import httpx
from aiokafka import ConsumerRecord, TopicPartition

from support.groups import committed_offsets
from support.kafka import connect
from support.stack import RunningStack
from support.topics import read_all
from tandem_devstack.stack import DEMO_ACCESSPLANIT_ADMIN_KEY, DEMO_MAILCHIMP_API_KEY, DEMO_MAILCHIMP_AUDIENCE
from tandem_shared.contracts import Headers, Stage, SyncCommand, TraceRecord, TraceStatus, subscriber_hash
from tandem_shared.contracts.topics import COMMANDS_RETRY, TRACE
from tandem_shared.kafka import read_records
from tandem_shared.redis.idempotency import RedisIdempotencyStore

# The writer sends a contact alone as a PUT and a backlog as batch subscribes: faults and counts cover both.
MEMBER_WRITE_ROUTES = ("PUT member", "POST batch subscribe")
# Test-speed settings for the writer: seconds-scale retries (still six attempts), a short claim expiry so a crashed
# writer's claims free up quickly, an HTTP timeout the simulator's "timeout" fault outlasts.
FAST_DELIVERY_ENV = {
    "TANDEM_WRITER_RETRY_DELAYS_S": "[1,1,2,3,5]",
    "TANDEM_WRITER_HTTP_TIMEOUT_S": "1.5",
    "TANDEM_WRITER_INFLIGHT_TTL_S": "4",
    "TANDEM_WRITER_SHUTDOWN_GRACE_S": "10",
    "TANDEM_WRITER_SESSION_TIMEOUT_MS": "6000",
}
MAX_ATTEMPTS = 6


def unique_email(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:8]}@example.com"


class Sims:
    """Both simulators: accessplanit as its users edit it, Mailchimp as the marketer and the operator see it."""

    def __init__(self, stack: RunningStack, client: httpx.AsyncClient) -> None:
        self._ap = f"{stack.url('accessplanit_sim')}/api/v2"
        self._mc = stack.url("mailchimp_sim")
        self._client = client
        self._ap_auth = {"Authorization": f"Bearer {DEMO_ACCESSPLANIT_ADMIN_KEY}"}
        self._mc_auth = ("any", DEMO_MAILCHIMP_API_KEY)

    async def create_user(self, email: str, forenames: str = "Ada", surname: str = "Lovelace", **fields: str) -> str:
        body = {"Forenames": forenames, "Surname": surname, "Email": email, "MainCompanyID": "2", **fields}
        response = await self._client.post(f"{self._ap}/User", headers=self._ap_auth, json=body)
        assert response.status_code in (200, 201), response.text
        return str(response.json()["ID"])

    async def update_user(self, user_id: str, **fields: str) -> None:
        response = await self._client.put(f"{self._ap}/User/{user_id}", headers=self._ap_auth, json=fields)
        assert response.status_code == 200, response.text

    async def member(self, email: str) -> dict[str, Any] | None:
        url = f"{self._mc}/3.0/lists/{DEMO_MAILCHIMP_AUDIENCE}/members/{subscriber_hash(email)}"
        response = await self._client.get(url, auth=self._mc_auth)
        return response.json() if response.status_code == 200 else None  # type: ignore[no-any-return]

    async def stats(self) -> dict[str, Any]:
        return (await self._client.get(f"{self._mc}/_sim/stats")).json()  # type: ignore[no-any-return]

    async def member_writes(self) -> int:
        """Members the simulator wrote (alone or in a batch): each one is an effect on the audience."""
        return sum((await self.stats())["members_written"].values())

    async def in_flight(self) -> int:
        return sum(a["in_flight"] for a in (await self.stats())["accounts"].values())

    async def control(self, **control: Any) -> None:
        for route in MEMBER_WRITE_ROUTES:
            response = await self._client.post(f"{self._mc}/_sim/controls", json={"route": route, **control})
            assert response.status_code == 200, response.text

    async def clear_controls(self) -> None:
        assert (await self._client.delete(f"{self._mc}/_sim/controls")).status_code == 204

    async def require_merge_field(self, merge_id: int, required: bool) -> None:
        url = f"{self._mc}/3.0/lists/{DEMO_MAILCHIMP_AUDIENCE}/merge-fields/{merge_id}"
        response = await self._client.patch(url, auth=self._mc_auth, json={"required": required})
        assert response.status_code == 200, response.text


@dataclass(frozen=True)
class Parked:
    record: ConsumerRecord[bytes, bytes]
    headers: dict[str, str]
    command: SyncCommand


async def parked(bootstrap: str, topics: list[str], instance_id: str) -> list[Parked]:
    """This instance's records on the given topics (retry tiers, DLQ, the command topic), with their headers."""
    found = []
    for record in await read_records(connect(bootstrap), topics):
        headers = {k: (v or b"").decode() for k, v in (record.headers or ())}
        if headers.get(Headers.INSTANCE_ID) != instance_id:
            continue
        found.append(Parked(record, headers, SyncCommand.model_validate_json(record.value or b"")))
    return found


async def left_on_retry_tiers(bootstrap: str, group_id: str, instance_id: str) -> list[Parked]:
    """This instance's retry records the writer group has not consumed yet (should be none once all is done)."""
    committed = await committed_offsets(bootstrap, group_id)
    return [
        p
        for p in await parked(bootstrap, list(COMMANDS_RETRY), instance_id)
        if committed.get(TopicPartition(p.record.topic, p.record.partition), 0) <= p.record.offset
    ]


async def delivery_traces(bootstrap: str, instance_id: str) -> list[TraceRecord]:
    return await read_all(
        bootstrap,
        TRACE,
        TraceRecord,
        where=lambda r: r.instance_id == instance_id and r.stage in (Stage.WRITER, Stage.RETRY),
    )


TERMINAL = (TraceStatus.SUCCEEDED, TraceStatus.DEAD_LETTERED)


def by_user(records: list[TraceRecord]) -> dict[str, list[TraceRecord]]:
    grouped: dict[str, list[TraceRecord]] = defaultdict(list)
    for record in records:
        if record.accessplanit_user_id:
            grouped[record.accessplanit_user_id].append(record)
    return grouped


async def applied(redis_url: str, commands: list[SyncCommand]) -> dict[str, bool]:
    store = RedisIdempotencyStore.from_url(redis_url)
    try:
        return {c.idempotency_key: await store.applied_at(c) is not None for c in commands}
    finally:
        await store.close()
