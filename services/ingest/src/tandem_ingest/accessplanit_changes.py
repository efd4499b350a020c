"""accessplanit specifics shared by the webhook route and the poller: reading users, marking Tandem's own writes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from tandem_ingest.domain.cursor import NEWEST_FIRST, ORDER, Position, page_filter, record_position
from tandem_ingest.domain.normalize.accessplanit import WebhookDelivery, removed_user_event, webhook_event
from tandem_shared.contracts import ChangeEvent, Headers, InstanceConfig, Trigger
from tandem_shared.vendors.accessplanit.client import AccessplanitClients
from tandem_shared.vendors.priority import Priority

# The poll carries changes to Mailchimp as the webhooks do (the ones they missed): the live path.
POLL_PRIORITY = Priority.LIVE


class UserReader(Protocol):
    async def get_user(self, instance: InstanceConfig, user_id: str) -> dict[str, Any] | None:
        """The user's current record, None once accessplanit no longer has it; raises AccessplanitError."""
        ...


class ApiUserReader:
    def __init__(self, clients: AccessplanitClients) -> None:
        self._clients = clients

    async def get_user(self, instance: InstanceConfig, user_id: str) -> dict[str, Any] | None:
        # The record a webhook announced, read to publish the change: part of the live path.
        return await self._clients.for_instance(instance).get_user(user_id, priority=Priority.LIVE)


class CoalescingUserReader:
    """Re-reads of one user share one request when their deliveries arrive within `window_s` of each other.

    An unsigned delivery costs one read, and accessplanit allows 5,000 requests an hour per module, so an edit burst
    on one user (a form saved field by field, an import touching it twice) must not spend one read per delivery.
    The first delivery opens a window; every delivery of that user arriving before the window closes joins it; the
    one read is taken at the trailing edge, after all of them arrived, so no delivery gets a record read before it
    came in. A delivery arriving once that read has started waits for a read of its own. Nothing is refused: each
    delivery gets the shared record (or the shared error, and then accessplanit retries it).

    `min_interval_s` bounds the reads of one user however the deliveries are spaced (a steady one every 0.2 s
    would otherwise cost a read each): a window opened sooner than that after the user's last read stays open
    until the interval has passed, and every delivery meanwhile joins it.
    """

    def __init__(
        self,
        inner: UserReader,
        window_s: float,
        *,
        min_interval_s: float = 0.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._window_s = window_s
        self._min_interval_s = min_interval_s
        self._sleep = sleep
        self._clock = clock
        self._open: dict[tuple[str, int, str], asyncio.Future[dict[str, Any] | None]] = {}
        self._last_read: dict[tuple[str, int, str], float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def get_user(self, instance: InstanceConfig, user_id: str) -> dict[str, Any] | None:
        if self._window_s <= 0 and self._min_interval_s <= 0:
            return await self._inner.get_user(instance, user_id)
        # The instance's version is part of the key: a delivery after a key rotation never shares an older read.
        key = (instance.id, instance.version, user_id)
        shared = self._open.get(key)
        if shared is None:
            shared = asyncio.get_running_loop().create_future()
            self._open[key] = shared
            last = self._last_read.get(key)
            wait_s = self._window_s
            if last is not None:
                wait_s = max(wait_s, last + self._min_interval_s - self._clock())
            task = asyncio.create_task(self._read_at_trailing_edge(key, instance, user_id, shared, wait_s))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # One caller giving up (a dropped connection) must not cancel the read the others wait for.
        return await asyncio.shield(shared)

    async def _read_at_trailing_edge(
        self,
        key: tuple[str, int, str],
        instance: InstanceConfig,
        user_id: str,
        shared: asyncio.Future[dict[str, Any] | None],
        wait_s: float,
    ) -> None:
        try:
            await self._sleep(wait_s)
        finally:
            # Closed before the read starts: a delivery from now on may postdate this read, so it gets its own.
            del self._open[key]
        now = self._clock()
        self._last_read[key] = now
        # Only reads within the interval matter: older ones are forgotten, so the map stays as small as the burst.
        for stale in [k for k, at in self._last_read.items() if at + self._min_interval_s <= now and k != key]:
            del self._last_read[stale]
        try:
            record = await self._inner.get_user(instance, user_id)
        except asyncio.CancelledError:
            shared.cancel()
            raise
        except Exception as exc:  # every joined delivery answers with it (503, so accessplanit retries)
            shared.set_exception(exc)
        else:
            shared.set_result(record)


def own_write_marks(event: ChangeEvent, instance: InstanceConfig) -> tuple[list[str], dict[str, str]]:
    """Trace notes and Kafka headers for a change made by the integration's own API user (an echo candidate)."""
    own = instance.accessplanit.integration_user_id
    if own is None or event.updated_by_id != own:
        return [], {}
    note = f"Changed by accessplanit user {own}, the integration's own API user: this is Tandem's own write"
    return [note], {Headers.ORIGIN: "tandem"}


async def delivery_event(
    delivery: WebhookDelivery,
    instance: InstanceConfig,
    reader: UserReader,
    *,
    trusted: bool,
    execution_id: str,
    received_at: datetime,
) -> ChangeEvent:
    """The delivery's change. The record is read from the API when the delivery only names the user (IDs-only
    payloads) or when it is not signed: then only the API, with the instance's own key, is believed."""
    record = delivery.record if trusted else None
    if record is None:
        record = await reader.get_user(instance, delivery.user_id)
        if record is None:
            return removed_user_event(
                instance_id=instance.id,
                user_id=delivery.user_id,
                occurred_at=delivery.timestamp or received_at,
                trigger=Trigger.WEBHOOK,
                execution_id=execution_id,
                received_at=received_at,
                source_action=f"{delivery.action} (the user no longer exists)",
            )
    return webhook_event(delivery, record, instance_id=instance.id, execution_id=execution_id, received_at=received_at)


class ApiChangedUsers:
    """The catch-up poller's reads: pages of users in (DateUpdated, ID) order, with the instance's own key."""

    def __init__(self, clients: AccessplanitClients) -> None:
        self._clients = clients

    async def newest(self, instance: InstanceConfig) -> Position:
        """Where the newest change is now (the start of a first poll); Position(None) when there is no user."""
        newest = await self._clients.for_instance(instance).list_users(
            filter="",
            orderby=NEWEST_FIRST,
            top=1,
            select="ID,DateUpdated",
            action="find the newest change",
            priority=POLL_PRIORITY,
        )
        position = record_position(newest[0]) if newest else None
        return position or Position(None)

    async def page(self, instance: InstanceConfig, after: Position, size: int) -> list[dict[str, Any]]:
        return await self._clients.for_instance(instance).list_users(
            filter=page_filter(after),
            orderby=ORDER,
            top=size,
            action="read users changed since the last poll",
            priority=POLL_PRIORITY,
        )
